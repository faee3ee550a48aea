"""Direct (per-layer) conversion between state dicts and graph features.

This is the reference path: each weight is reshaped into kernels, one layer at a
time, and written into the centre of its edges' rows of a zero tensor (one copy
of the weights, no padded temporaries); graph to state dict crops them back
with :func:`~wslgraph.graph.kernels.crop_kernels`. :class:`~wslgraph.GraphTemplate`
computes the same result for many models at once from flat parameter vectors;
the tests hold the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from wslgraph.errors import ShapeMismatchError
from wslgraph.graph.kernels import crop_kernels
from wslgraph.graph.layout import GraphLayout, expand_kernel_shape
from wslgraph.graph.param_graph import ParamGraph, structure_tensors
from wslgraph.graph.vocab import IDENTITY_EDGES, NUM_NODE_FEATURES

__all__ = ["graph_from_state_dict", "state_dict_from_graph", "check_state_dict"]

_EXACT_INT = 2**53  # float64 holds every integer up to this exactly


def check_state_dict(layout: GraphLayout, state_dict: Mapping[str, Tensor]) -> None:
    """Raise :class:`ShapeMismatchError` unless keys, shapes and dtypes match the layout."""
    missing = [e.key for e in layout.state if e.key not in state_dict]
    unexpected = [k for k in state_dict if k not in layout.entries]
    if missing or unexpected:
        raise ShapeMismatchError(f"state dict does not match the architecture: missing {missing}, "
                                 f"unexpected {unexpected}")
    for entry in layout.state:
        tensor = state_dict[entry.key]
        if tuple(tensor.shape) != entry.shape:
            raise ShapeMismatchError(f"'{entry.key}' has shape {list(tensor.shape)}, the architecture "
                                     f"needs {list(entry.shape)}")


def graph_from_state_dict(layout: GraphLayout, state_dict: Mapping[str, Tensor]) -> ParamGraph:
    """Build the :class:`ParamGraph` of ``state_dict`` (an instance of ``layout``'s architecture)."""
    check_state_dict(layout, state_dict)
    device = next(iter(state_dict.values())).device if state_dict else None
    x = torch.zeros(layout.num_nodes, NUM_NODE_FEATURES, dtype=layout.dtype, device=device)
    for param in layout.node_params:
        group = layout.groups[param.group]
        x[group.offset:group.offset + group.size, int(param.column)] = state_dict[param.key].reshape(-1)
    grid = layout.kernel_grid
    edge_attr = torch.zeros(layout.num_edges, *grid, dtype=layout.dtype, device=device)  # padding stays 0
    for block in layout.edge_blocks:  # each block's kernels written once, into the centre of its rows
        shape = expand_kernel_shape(block.kernel_shape, len(grid))
        rows = edge_attr.narrow(0, block.offset, block.num_edges)
        for dim, (size, left) in enumerate(zip(shape, layout.padding(block))):
            rows = rows.narrow(dim + 1, left, size)
        if block.kind in IDENTITY_EDGES:
            rows.fill_(1)
        else:
            rows.copy_(state_dict[block.key].reshape(block.num_edges, *shape))
    edge_attr = edge_attr.view(layout.num_edges, layout.edge_dim)
    values = [state_dict[key].detach().reshape(-1).to(device) for key in layout.scalars]
    if any(v.numel() and int(v.abs().max()) > _EXACT_INT for v in values):
        raise ShapeMismatchError(f"integer buffers {list(layout.scalars)} exceed 2**53 and cannot be stored exactly")
    scalars = torch.cat([v.to(torch.float64) for v in values]).view(1, -1) if values else \
        torch.zeros(1, 0, dtype=torch.float64, device=device)
    return ParamGraph(x=x, edge_attr=edge_attr, scalars=scalars, layout=layout,
                      **structure_tensors(layout, device))


def state_dict_from_graph(graph: ParamGraph) -> dict[str, Tensor]:
    """The exact state dict of a single parameter graph."""
    layout = graph.layout
    if graph.x.shape != (layout.num_nodes, NUM_NODE_FEATURES) or \
            graph.edge_attr.shape != (layout.num_edges, layout.edge_dim):
        raise ShapeMismatchError(
            f"graph tensors x {list(graph.x.shape)}, edge_attr {list(graph.edge_attr.shape)} do not match its "
            f"layout ({layout.num_nodes} nodes, {layout.num_edges} edges of width {layout.edge_dim})")
    tensors: dict[str, Tensor] = {}
    for block in layout.edge_blocks:
        if block.kind not in IDENTITY_EDGES:
            rows = graph.edge_attr.narrow(0, block.offset, block.num_edges)
            tensors[block.key] = crop_kernels(rows, block, layout)
    for param in layout.node_params:
        group = layout.groups[param.group]
        tensors[param.key] = graph.x[group.offset:group.offset + group.size, int(param.column)]
    column = 0
    for key in layout.scalars:
        numel = layout.entries[key].numel
        tensors[key] = graph.scalars[0, column:column + numel]
        column += numel
    return {e.key: tensors[e.key].reshape(e.shape).to(e.dtype, copy=True) for e in layout.state}
