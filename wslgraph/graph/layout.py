"""Frozen description of how one architecture's parameters sit in a graph.

A :class:`GraphLayout` is computed once per architecture (by tracing) and says
where every state-dict entry lives: which edges hold a weight tensor and with
which true kernel shape, which node-feature column holds a bias or a norm
parameter, and which graph-level scalar holds an integer buffer. It is what
makes :func:`~wslgraph.to_state_dict` exact, and what
:class:`~wslgraph.GraphTemplate` turns into gather indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch
from torch import Tensor

from wslgraph.errors import InvalidGraphError
from wslgraph.graph.vocab import IDENTITY_EDGES, Activation, EdgeType, NodeFeature, NodeType

__all__ = ["NodeGroup", "EdgeBlock", "NodeParam", "StateEntry", "GraphLayout", "batch_layouts", "common_layout",
           "expand_kernel_shape"]


@dataclass(frozen=True)
class NodeGroup:
    """A set of nodes created together: a layer's input, neurons or channels.

    Args:
        name: Qualified name of the module that created the group (``"input"``
            for the network input).
        size: Number of nodes (neurons or channels).
        offset: Index of the group's first node in the graph.
        node_type: Input, hidden or output.
        layer: Depth index (0 for the input; one more than the deepest group
            feeding it otherwise).
        activation: Activation applied to the group's values.
        norm_groups: Number of channel groups of a ``GroupNorm`` acting on the
            group (1 otherwise); hidden-neuron permutations must keep them.
        activation_param: The activation's parameter: ``w0`` of a sine,
            the negative slope of LeakyReLU, ``alpha`` of ELU, ``beta`` of
            Softplus (0 where there is none).
    """

    name: str
    size: int
    offset: int
    node_type: NodeType
    layer: int
    activation: Activation = Activation.IDENTITY
    norm_groups: int = 1
    activation_param: float = 0.0

    @property
    def nodes(self) -> range:
        return range(self.offset, self.offset + self.size)


@dataclass(frozen=True)
class EdgeBlock:
    """The edges of one weight tensor (or of one residual addition).

    Edges are enumerated in the weight's memory order: edge ``e = o * n + i``
    connects input ``i`` (of the ``n`` inputs output ``o`` sees) to output
    ``o``. A block's edge features are its kernels, zero-padded centrally to
    the layout's ``kernel_grid``.

    The block's geometry is filled in by the :class:`GraphLayout` that holds
    it (computed once, when the layout is built; no other module derives it):
    ``offset``, ``grid = (groups, m, k)`` (edge ``(g, i, j)`` runs from source
    node ``g * k + j`` to target node ``g * m + i`` of its groups: a linear
    layer is ``(1, out, in)``, a grouped convolution ``(groups, out / groups,
    in / groups)``, a residual addition ``(channels, 1, 1)``), ``fan_in = k``,
    ``num_edges`` and ``param_offset``, where the weight starts in the flat
    parameter vector (``-1`` for residual edges).

    Args:
        kind: Edge type.
        key: State-dict key of the weight (``None`` for residual edges).
        src: Index of the source :class:`NodeGroup`.
        dst: Index of the target :class:`NodeGroup`.
        offset: Index of the block's first edge in the graph (set by the layout).
        weight_shape: True shape of the weight tensor (``()`` for residual).
        kernel_shape: Spatial shape of each edge's feature: ``()`` for linear
            and residual edges, the conv kernel, or the ``H x W`` block of a
            Linear after Flatten.
        groups: ``groups`` of a grouped convolution (1 otherwise).
        dst_start: First target channel of an identity block (0 but for the
            part of a concatenation after the first: ``torch.cat`` makes a
            group whose channels ``dst_start .. dst_start + size`` receive one
            identity edge each from a source group of that size).
        src_start: First source channel of an identity block (0 but for a
            chunk of a group after the first: ``x.chunk(2, dim=1)``).
        length: Number of identity edges (0: the whole source group); for
            ``ATTENTION_HEAD``, the number of key dims or attention outputs
            (``groups`` = heads: each key dim to its head's node, or each head
            node to its outputs).
        dst_stride: Step between the target channels of an identity block
            (1 but for a channel shuffle: ShuffleNet's ``view`` / ``transpose``
            / ``view`` sends source channel ``src_start + t`` to target
            channel ``dst_start + t * dst_stride``).
    """

    kind: EdgeType
    key: str | None
    src: int
    dst: int
    offset: int
    weight_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    groups: int = 1
    dst_start: int = 0
    src_start: int = 0
    length: int = 0
    dst_stride: int = 1
    grid: tuple[int, int, int] = field(default=(0, 0, 0), compare=False, repr=False)
    param_offset: int = field(default=-1, compare=False, repr=False)

    @property
    def kernel_numel(self) -> int:
        return math.prod(self.kernel_shape)

    @property
    def fan_in(self) -> int:
        """Number of source nodes each target node receives an edge from."""
        return self.grid[2]

    @property
    def num_edges(self) -> int:
        """One edge per (input, output) pair that exists."""
        return self.grid[0] * self.grid[1] * self.grid[2]


_BLOCK_FIELDS = ("kind", "key", "src", "dst", "offset", "weight_shape", "kernel_shape", "groups")
_COPY_FIELDS = {"dst_start": 0, "src_start": 0, "length": 0, "dst_stride": 1}  # written only when not the default


@dataclass(frozen=True)
class NodeParam:
    """A per-node tensor (bias or normalization parameter) in a column of ``x``."""

    key: str
    group: int
    column: NodeFeature


@dataclass(frozen=True)
class StateEntry:
    """One state-dict entry: its key, true shape and dtype."""

    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, repr=False)
class GraphLayout:
    """Where every parameter of an architecture lives in its parameter graph.

    Args:
        groups: Node groups in node order (input first, output last).
        edge_blocks: Edge blocks in edge order.
        node_params: Per-node tensors and their ``x`` columns.
        scalars: Keys of integer buffers kept as graph-level scalars
            (``num_batches_tracked``; a buffer of several entries, such as
            Swin's ``relative_position_index``, takes one column per entry), in
            ``ParamGraph.scalars`` column order.
        state: Every state-dict entry, in ``module.state_dict()`` order.
        kernel_grid: Common shape every edge feature is padded to; the edge
            feature width is its product.
        dtype: Floating dtype of the graph's features.
    """

    groups: tuple[NodeGroup, ...]
    edge_blocks: tuple[EdgeBlock, ...]
    node_params: tuple[NodeParam, ...]
    scalars: tuple[str, ...]
    state: tuple[StateEntry, ...]
    kernel_grid: tuple[int, ...]
    dtype: torch.dtype

    def __post_init__(self) -> None:
        offsets, position = {}, 0
        for entry in self.state:
            offsets[entry.key] = position
            position += entry.numel
        blocks, edge_offset = [], 0
        for block in self.edge_blocks:
            if block.kind == EdgeType.ATTENTION_HEAD:  # a head's key dims -> its head node -> its outputs
                per_head = block.length // block.groups
                into_heads = self.groups[block.dst].size == block.groups
                grid = (block.groups, 1, per_head) if into_heads else (block.groups, per_head, 1)
            elif block.kind in IDENTITY_EDGES:
                grid = (block.length or self.groups[block.src].size - block.src_start, 1, 1)
            elif block.kind == EdgeType.EMBEDDING:  # (..., tokens, channels): each token node reads the channels
                fan_in = self.groups[block.src].size
                grid = (1, math.prod(block.weight_shape) // fan_in, fan_in)
            else:
                groups = block.groups if block.kind == EdgeType.CONV else 1
                fan_in = block.weight_shape[1] if block.kind == EdgeType.CONV else self.groups[block.src].size
                grid = (groups, block.weight_shape[0] // groups, fan_in)
            blocks.append(replace(block, offset=edge_offset, grid=grid, param_offset=offsets.get(block.key, -1)))
            edge_offset += blocks[-1].num_edges
        object.__setattr__(self, "edge_blocks", tuple(blocks))
        object.__setattr__(self, "_offsets", offsets)

    def __repr__(self) -> str:
        return (f"GraphLayout(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"num_params={self.num_params}, kernel_grid={self.kernel_grid})")

    @property
    def num_nodes(self) -> int:
        last = self.groups[-1]
        return last.offset + last.size

    @property
    def num_edges(self) -> int:
        return sum(b.num_edges for b in self.edge_blocks)

    @property
    def edge_dim(self) -> int:
        return math.prod(self.kernel_grid)

    @property
    def num_params(self) -> int:
        """Total number of state-dict elements (buffers included)."""
        return sum(entry.numel for entry in self.state)

    @cached_property
    def entries(self) -> dict[str, StateEntry]:
        return {entry.key: entry for entry in self.state}

    @property
    def offsets(self) -> dict[str, int]:
        """Where each state-dict entry starts in the flat parameter vector (``state_dict()`` order; do not mutate)."""
        return self._offsets

    @property
    def num_scalars(self) -> int:
        """Columns of ``ParamGraph.scalars``: one per entry of each buffer in ``scalars``."""
        return sum(self.entries[key].numel for key in self.scalars)

    @property
    def scalar_positions(self) -> Tensor:
        """``[num_scalars]``: where each column of ``ParamGraph.scalars`` sits in the flat parameter vector."""
        spans = [torch.arange(self._offsets[key], self._offsets[key] + self.entries[key].numel) for key in self.scalars]
        return torch.cat(spans) if spans else torch.zeros(0, dtype=torch.long)

    def statistic_keys(self, *columns: NodeFeature) -> set[str]:
        """State-dict keys held in the given node-feature columns (e.g. ``RUNNING_VAR``): batch norm's running
        statistics are buffers, not weights."""
        return {p.key for p in self.node_params if p.column in columns}

    def span(self, key: str) -> slice:
        """The slice of the flat parameter vector that holds state-dict entry ``key``."""
        start = self._offsets[key]
        return slice(start, start + self.entries[key].numel)

    def endpoints(self, block: EdgeBlock, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """Source and target node indices of ``block``'s edges, in edge order."""
        groups, m, k = block.grid
        group = torch.arange(groups, device=device).view(-1, 1, 1)
        targets = (group * m + torch.arange(m, device=device).view(1, -1, 1)).expand(groups, m, k)
        sources = (group * k + torch.arange(k, device=device).view(1, 1, -1)).expand(groups, m, k)
        return (self.groups[block.src].offset + block.src_start + sources.reshape(-1),
                self.groups[block.dst].offset + block.dst_start + block.dst_stride * targets.reshape(-1))

    def is_copy(self, block: EdgeBlock) -> bool:
        """Whether an identity block copies channels into a group made of copies (a concatenation's part, a
        chunk, a channel shuffle) rather than tying two equal groups (a residual sum, a gate's factor) or
        describing attention."""
        if block.kind != EdgeType.RESIDUAL:
            return False
        src, dst = self.groups[block.src].size, self.groups[block.dst].size
        return (block.dst_start > 0 or block.src_start > 0 or block.dst_stride != 1 or src != dst
                or block.length not in (0, src))

    def copy_targets(self, block: EdgeBlock) -> slice:
        """The channels of its target group an identity block writes (a strided slice)."""
        length = block.grid[0]
        return slice(block.dst_start, block.dst_start + block.dst_stride * (length - 1) + 1, block.dst_stride)

    def copy_sources(self, block: EdgeBlock) -> slice:
        """The channels of its source group an identity block reads."""
        return slice(block.src_start, block.src_start + block.grid[0])

    def with_kernel_grid(self, kernel_grid: tuple[int, ...]) -> GraphLayout:
        """The same layout with edge features padded to a larger grid."""
        return replace(self, kernel_grid=tuple(kernel_grid))

    def padding(self, block: EdgeBlock) -> tuple[int, ...]:
        """Leading zero padding of ``block``'s kernel in each grid dimension."""
        shape = expand_kernel_shape(block.kernel_shape, len(self.kernel_grid))
        return tuple((g - k) // 2 for g, k in zip(self.kernel_grid, shape))

    def to_dict(self) -> dict:
        """A JSON-ready description (enums by name, dtypes as strings); :meth:`from_dict` inverts it."""
        return {
            "groups": [{**vars(g), "node_type": g.node_type.name, "activation": g.activation.name}
                       for g in self.groups],
            "edge_blocks": [{**{f: getattr(b, f) for f in _BLOCK_FIELDS}, "kind": b.kind.name,
                             "weight_shape": list(b.weight_shape), "kernel_shape": list(b.kernel_shape),
                             **{f: getattr(b, f) for f, default in _COPY_FIELDS.items()
                                if getattr(b, f) != default}}  # older files: none
                            for b in self.edge_blocks],
            "node_params": [{"key": p.key, "group": p.group, "column": p.column.name} for p in self.node_params],
            "scalars": list(self.scalars),
            "state": [{"key": e.key, "shape": list(e.shape), "dtype": _dtype_name(e.dtype)} for e in self.state],
            "kernel_grid": list(self.kernel_grid),
            "dtype": _dtype_name(self.dtype),
        }

    @classmethod
    def from_dict(cls, data: dict) -> GraphLayout:
        """The layout described by :meth:`to_dict`'s output; malformed input raises :class:`InvalidGraphError`."""
        try:
            return cls(
                groups=tuple(NodeGroup(**{**g, "node_type": NodeType[g["node_type"]],
                                          "activation": Activation[g["activation"]]}) for g in data["groups"]),
                edge_blocks=tuple(EdgeBlock(**{**{f: b[f] for f in (*_BLOCK_FIELDS, *_COPY_FIELDS) if f in b},
                                               "kind": EdgeType[b["kind"]], "weight_shape": tuple(b["weight_shape"]),
                                               "kernel_shape": tuple(b["kernel_shape"])})
                                  for b in data["edge_blocks"]),
                node_params=tuple(NodeParam(p["key"], p["group"], NodeFeature[p["column"]])
                                  for p in data["node_params"]),
                scalars=tuple(data["scalars"]),
                state=tuple(StateEntry(e["key"], tuple(e["shape"]), _dtype(e["dtype"])) for e in data["state"]),
                kernel_grid=tuple(data["kernel_grid"]),
                dtype=_dtype(data["dtype"]),
            )
        except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, AttributeError) as error:
            raise InvalidGraphError(f"not a GraphLayout description ({type(error).__name__}: {error}); "
                                    "it must come from GraphLayout.to_dict()") from error


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def batch_layouts(graph: object) -> list[GraphLayout | None]:
    """The layout of every graph in a ParamGraph or Batch (``None`` where a graph has none)."""
    layout = getattr(graph, "layout", None)
    return layout if isinstance(layout, list) else [layout]


def common_layout(graph: object) -> GraphLayout | None:
    """The one layout all graphs of a ParamGraph or Batch share, or ``None`` if they differ."""
    distinct = list({id(layout): layout for layout in batch_layouts(graph)}.values())
    first = distinct[0]
    if isinstance(first, GraphLayout) and all(other is first or other == first for other in distinct[1:]):
        return first
    return None


def expand_kernel_shape(kernel_shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """Prepend singleton dims so a kernel shape has ``rank`` dims (linear: all 1)."""
    return (1,) * (rank - len(kernel_shape)) + tuple(kernel_shape)
