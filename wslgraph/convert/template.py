"""Architecture templates: convert whole zoos of one architecture at once."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from wslgraph.convert.features import check_state_dict
from wslgraph.convert.trace import trace
from wslgraph.errors import ShapeMismatchError
from wslgraph.graph.layout import GraphLayout, expand_kernel_shape, num_block_edges
from wslgraph.graph.param_graph import ParamGraph, structure_tensors
from wslgraph.graph.vocab import NUM_NODE_FEATURES, EdgeType

__all__ = ["GraphTemplate"]

_NODE_KEYS = ("x", "x_mask", "node_type", "layer", "io_position", "activation")
_EDGE_KEYS = ("edge_index", "edge_attr", "edge_type")


@dataclass(frozen=True)
class _Indices:
    """Gather indices on one device. Index ``P`` reads 0, ``P + 1`` reads 1."""

    x: Tensor  # [num_nodes * 5] positions in the augmented parameter vector
    edge: Tensor  # [num_edges * edge_dim]
    scalar: Tensor  # [num_scalars]
    structure: dict[str, Tensor]
    inverse_src: Tensor  # parameter positions ...
    inverse_dst: Tensor  # ... and where they sit in cat(x, edge_attr, scalars) of one graph


class GraphTemplate:
    """The topology of one architecture, computed once, for zoo-scale conversion.

    ``template.batch(params)`` turns ``N`` flat parameter vectors into a
    :class:`~torch_geometric.data.Batch` of ``N`` :class:`~wslgraph.ParamGraph`
    s with whole-tensor index arithmetic (no Python loop over models, layer
    entries or edges); the graphs equal :func:`~wslgraph.to_graph`'s exactly.

    A flat parameter vector holds every state-dict entry (buffers included)
    flattened in ``state_dict()`` order, cast to ``layout.dtype``.

    Args:
        layout: The architecture's :class:`~wslgraph.graph.layout.GraphLayout`.

    Example:
        >>> template = GraphTemplate.from_module(model)
        >>> params = torch.stack([template.flatten(m.state_dict()) for m in zoo])
        >>> batch = template.batch(params)            # N graphs
        >>> torch.equal(template.unbatch(batch), params)
        True
    """

    def __init__(self, layout: GraphLayout) -> None:
        self.layout = layout
        self._offsets: dict[str, int] = {}
        offset = 0
        for entry in layout.state:
            self._offsets[entry.key] = offset
            offset += entry.numel
        self._cache: dict[torch.device, _Indices] = {}
        self._cpu = self._build_indices()
        self._cache[torch.device("cpu")] = self._cpu

    @classmethod
    def from_module(cls, module: nn.Module, *, input_shape: Sequence[int] | None = None) -> GraphTemplate:
        """Trace ``module``'s architecture (its parameter values are not used)."""
        return cls(trace(module, input_shape)[0])

    @property
    def num_params(self) -> int:
        """Length ``P`` of a flat parameter vector."""
        return self.layout.num_params

    def __repr__(self) -> str:
        layout = self.layout
        return (f"{type(self).__name__}(num_params={self.num_params}, num_nodes={layout.num_nodes}, "
                f"num_edges={layout.num_edges}, edge_dim={layout.edge_dim})")

    # ------------------------------------------------------------ flat vectors
    def flatten(self, state_dict: Mapping[str, Tensor]) -> Tensor:
        """A state dict as one flat vector ``[P]`` of ``layout.dtype``."""
        check_state_dict(self.layout, state_dict)
        dtype = self.layout.dtype
        digits = round(-math.log2(torch.finfo(dtype).eps)) + 1  # significand bits
        limit = 2**digits
        parts = []
        for entry in self.layout.state:
            tensor = state_dict[entry.key]
            if not tensor.is_floating_point() and tensor.numel() and int(tensor.abs().max()) > limit:
                raise ShapeMismatchError(f"'{entry.key}' holds integers above 2**{digits}, "
                                         f"which {dtype} cannot store exactly")
            parts.append(tensor.reshape(-1).to(dtype))
        return torch.cat(parts)

    def unflatten(self, vector: Tensor) -> dict[str, Tensor]:
        """The state dict of a flat vector ``[P]`` (inverse of :meth:`flatten`)."""
        if vector.dim() != 1 or vector.numel() != self.num_params:
            raise ShapeMismatchError(f"expected a flat parameter vector of shape [{self.num_params}], got "
                                     f"{list(vector.shape)}; for many models use batch()/unbatch()")
        state = {}
        for entry in self.layout.state:
            part = vector.narrow(0, self._offsets[entry.key], entry.numel)
            if not entry.dtype.is_floating_point and not torch.equal(part, part.round()):
                raise ShapeMismatchError(f"'{entry.key}' is an integer buffer but the vector holds "
                                         f"non-integer values {part.tolist()} there")
            state[entry.key] = part.reshape(entry.shape).to(entry.dtype, copy=True)
        return state

    # --------------------------------------------------------------- batching
    def batch(self, params: Tensor) -> Batch:
        """``N`` graphs from a ``[N, P]`` tensor of flat parameter vectors."""
        if params.dim() != 2 or params.shape[1] != self.num_params or not params.is_floating_point():
            raise ShapeMismatchError(f"expected a floating tensor of shape [N, {self.num_params}], got "
                                     f"{params.dtype} {list(params.shape)}; use params.unsqueeze(0) for one model")
        layout, num = self.layout, params.shape[0]
        idx = self._indices(params.device)
        aug = torch.cat([params, params.new_zeros(num, 1), params.new_ones(num, 1)], dim=1)
        num_nodes, num_edges = layout.num_nodes, layout.num_edges
        graphs = torch.arange(num, device=params.device)
        offsets = graphs * num_nodes
        data = {
            "x": aug.index_select(1, idx.x).view(num * num_nodes, NUM_NODE_FEATURES),
            "edge_attr": aug.index_select(1, idx.edge).view(num * num_edges, layout.edge_dim),
            "scalars": aug.index_select(1, idx.scalar).to(torch.float64),
            "edge_index": (idx.structure["edge_index"].unsqueeze(1) + offsets.view(1, num, 1)).view(2, -1),
            "x_mask": idx.structure["x_mask"].repeat(num, 1),
        }
        for key in ("node_type", "layer", "io_position", "activation", "edge_type"):
            data[key] = idx.structure[key].repeat(num)
        batch = Batch(_base_cls=ParamGraph)
        for key, value in data.items():
            batch[key] = value
        batch.layout = [layout] * num
        batch.batch = graphs.repeat_interleave(num_nodes)
        batch.ptr = torch.arange(num + 1, device=params.device) * num_nodes
        steps = torch.arange(num + 1, device=params.device)
        batch._num_graphs = num
        batch._slice_dict = {key: steps * (num_edges if key in _EDGE_KEYS else num_nodes if key in _NODE_KEYS else 1)
                             for key in data}
        batch._slice_dict["layout"] = steps
        zeros = torch.zeros(num, dtype=torch.long, device=params.device)
        batch._inc_dict = {key: offsets if key == "edge_index" else zeros for key in data}
        batch._inc_dict["layout"] = None
        return batch

    def unbatch(self, batch: ParamGraph | Batch) -> Tensor:
        """The ``[N, P]`` flat parameter vectors of a batch of this architecture."""
        layout = self.layout
        layouts = batch.layout if isinstance(batch.layout, list) else [batch.layout]
        if any(other is not layout and other != layout for other in {id(o): o for o in layouts}.values()):
            raise ShapeMismatchError("the batch holds graphs of another architecture (or with re-padded edge "
                                     "features) than this template; use wslgraph.to_state_dict per graph")
        num = len(layouts)
        expected = {"x": (num * layout.num_nodes, NUM_NODE_FEATURES),
                    "edge_attr": (num * layout.num_edges, layout.edge_dim)}
        for key, shape in expected.items():
            if tuple(batch[key].shape) != shape:
                raise ShapeMismatchError(f"batch.{key} has shape {list(batch[key].shape)}, {num} graphs of this "
                                         f"architecture need {list(shape)}")
        if batch.scalars.shape[1] < len(layout.scalars):
            raise ShapeMismatchError(f"batch.scalars has {batch.scalars.shape[1]} columns, "
                                     f"the architecture needs {len(layout.scalars)}")
        idx = self._indices(batch.x.device)
        dtype = layout.dtype
        flat = torch.cat([batch.x.reshape(num, -1).to(dtype), batch.edge_attr.reshape(num, -1).to(dtype),
                          batch.scalars[:, :len(layout.scalars)].to(dtype)], dim=1)
        params = flat.new_empty(num, self.num_params)
        params.index_copy_(1, idx.inverse_src, flat.index_select(1, idx.inverse_dst))
        return params

    # ---------------------------------------------------------------- indices
    def _indices(self, device: torch.device) -> _Indices:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._cache:
            cpu = self._cpu
            self._cache[device] = _Indices(
                cpu.x.to(device), cpu.edge.to(device), cpu.scalar.to(device),
                {k: v.to(device) for k, v in cpu.structure.items()},
                cpu.inverse_src.to(device), cpu.inverse_dst.to(device))
        return self._cache[device]

    def _build_indices(self) -> _Indices:
        """Gather positions from index arithmetic (independent of the F.pad reference path)."""
        layout = self.layout
        zero, one = self.num_params, self.num_params + 1
        x = torch.full((layout.num_nodes, NUM_NODE_FEATURES), zero, dtype=torch.long)
        for param in layout.node_params:
            group = layout.groups[param.group]
            x[group.offset:group.offset + group.size, int(param.column)] = \
                self._offsets[param.key] + torch.arange(group.size)
        grid = layout.kernel_grid
        strides = [math.prod(grid[d + 1:]) for d in range(len(grid))]
        edge = torch.full((layout.num_edges, layout.edge_dim), zero, dtype=torch.long)
        for block in layout.edge_blocks:
            count = num_block_edges(block, layout)
            shape = expand_kernel_shape(block.kernel_shape, len(grid))
            cells = torch.arange(math.prod(shape))
            coords = torch.unravel_index(cells, shape) if shape else ()
            position = sum(((c + pad) * s for c, pad, s in zip(coords, layout.padding(block), strides)),
                           torch.zeros_like(cells))
            rows = torch.arange(block.offset, block.offset + count)
            if block.kind == EdgeType.RESIDUAL:
                edge[rows.unsqueeze(1), position] = one
            else:
                edge[rows.unsqueeze(1), position] = self._offsets[block.key] + \
                    torch.arange(count * cells.numel()).view(count, cells.numel())
        scalar = torch.tensor([self._offsets[key] for key in layout.scalars], dtype=torch.long)
        flat = torch.cat([x.view(-1), edge.view(-1), scalar])
        real = flat < zero
        inverse_src, inverse_dst = flat[real], real.nonzero().view(-1)
        if not torch.equal(inverse_src.sort().values, torch.arange(self.num_params)):
            raise RuntimeError(f"internal error: the layout does not place each of the {self.num_params} "
                               "parameters exactly once")
        return _Indices(x.view(-1), edge.view(-1), scalar, structure_tensors(layout), inverse_src, inverse_dst)
