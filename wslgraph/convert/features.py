"""Direct (per-layer) conversion between state dicts and graph features.

This is the reference path: each weight is reshaped into kernels and padded
with :func:`torch.nn.functional.pad`. :class:`~wslgraph.GraphTemplate` computes
the same result with precomputed gather indices; the tests hold the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from wslgraph.errors import ShapeMismatchError
from wslgraph.graph.kernels import crop_kernels, pad_kernels
from wslgraph.graph.layout import GraphLayout
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
    features = []
    for block in layout.edge_blocks:
        count = block.num_edges
        if block.kind in IDENTITY_EDGES:
            kernels = torch.ones(count, dtype=layout.dtype, device=device)
        else:
            kernels = state_dict[block.key].to(layout.dtype).reshape(count, *block.kernel_shape)
        features.append(pad_kernels(kernels, block, layout))
    edge_attr = torch.cat(features) if features else torch.zeros(0, layout.edge_dim, dtype=layout.dtype)
    values = [state_dict[key] for key in layout.scalars]
    if any(abs(int(v)) > _EXACT_INT for v in values):
        raise ShapeMismatchError(f"integer buffers {list(layout.scalars)} exceed 2**53 and cannot be stored exactly")
    scalars = torch.tensor([[float(v) for v in values]], dtype=torch.float64, device=device)
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
    for column, key in enumerate(layout.scalars):
        tensors[key] = graph.scalars[0, column]
    return {e.key: tensors[e.key].reshape(e.shape).to(e.dtype, copy=True) for e in layout.state}
