"""The dense fast path: same-architecture batches as tensors, not scatters.

In a batch of graphs of one architecture (built by
:class:`~wslgraph.GraphTemplate` or :func:`~wslgraph.collate`), the edges of
each layer form a dense block. Every block is a grid ``[groups, m, k]``:
edge ``(g, i, j)`` runs from source node ``g * k + j`` to target node
``g * m + i`` of its groups, in the graph's edge order. A linear layer is
``[1, out, in]``, a grouped convolution ``[groups, out / groups, in / groups]``
and a residual addition ``[channels, 1, 1]``. Gathering endpoint features
becomes broadcasting and aggregation a reduction over a tensor axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.param_graph import structure_tensors

__all__ = ["DenseBlock", "DensePlan", "dense_plan"]


@dataclass(frozen=True)
class DenseBlock:
    """One edge block as a ``[groups, m, k]`` grid (see the module docstring)."""

    src: int  # first source node
    dst: int  # first target node
    edges: int  # first edge
    groups: int
    m: int  # targets per group
    k: int  # sources per group (fan-in)

    @property
    def num_edges(self) -> int:
        return self.groups * self.m * self.k


@dataclass(frozen=True)
class DensePlan:
    """The dense blocks of one architecture, and the tensors needed to check a batch against it."""

    blocks: tuple[DenseBlock, ...]
    groups: tuple[tuple[int, int], ...]  # (first node, size) of every node group, in node order
    num_nodes: int
    num_edges: int
    in_degree: Tensor  # [num_nodes]
    out_degree: Tensor  # [num_nodes]
    edge_index: Tensor  # [2, num_edges] of one graph
    _copies: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``(in_degree, out_degree, edge_index)`` on ``device``, copied there once (no per-step transfers)."""
        device = torch.device(device)
        if device not in self._copies:
            self._copies[device] = tuple(t.to(device) for t in (self.in_degree, self.out_degree, self.edge_index))
        return self._copies[device]

    @property
    def block_sizes(self) -> list[int]:
        return [b.num_edges for b in self.blocks]

    def by_group(self, tensor: Tensor) -> dict[int, Tensor]:
        """Split ``[N, num_nodes, C]`` into its node groups, keyed by each group's first node."""
        parts = tensor.split([size for _, size in self.groups], dim=1)
        return {start: part for (start, _), part in zip(self.groups, parts)}

    def split_edges(self, edges: Tensor, num_graphs: int) -> list[Tensor]:
        """Edge states ``[num_graphs * num_edges, C]`` as one ``[N, groups, m, k, C]`` tensor per block."""
        channels = edges.shape[-1]
        parts = edges.view(num_graphs, self.num_edges, channels).split(self.block_sizes, dim=1)
        return [part.reshape(num_graphs, b.groups, b.m, b.k, channels) for b, part in zip(self.blocks, parts)]

    def join_edges(self, blocks: list[Tensor]) -> Tensor:
        """Inverse of :meth:`split_edges`: ``[num_graphs * num_edges, C]`` in edge order."""
        num_graphs, channels = blocks[0].shape[0], blocks[0].shape[-1]
        return torch.cat([b.reshape(num_graphs, -1, channels) for b in blocks], dim=1).reshape(-1, channels)

    def matches(self, edge_index: Tensor, num_graphs: int) -> bool:
        """Whether a batch's ``edge_index`` is this plan's, graph after graph (exact check)."""
        if edge_index.shape != (2, num_graphs * self.num_edges):
            return False
        base = self.on(edge_index.device)[2]
        offsets = torch.arange(num_graphs, device=edge_index.device) * self.num_nodes
        expected = base.unsqueeze(1) + offsets.view(1, -1, 1)
        return torch.equal(edge_index.view(2, num_graphs, self.num_edges), expected)


_PLANS: dict[GraphLayout, DensePlan] = {}


def dense_plan(layout: GraphLayout) -> DensePlan:
    """The (cached) dense plan of an architecture."""
    if layout not in _PLANS:
        blocks = []
        for block in layout.edge_blocks:
            src, dst = layout.groups[block.src], layout.groups[block.dst]
            blocks.append(DenseBlock(src.offset, dst.offset, block.offset, *block.grid))
        in_degree = torch.zeros(layout.num_nodes, dtype=torch.long)
        out_degree = torch.zeros(layout.num_nodes, dtype=torch.long)
        for b in blocks:
            in_degree[b.dst:b.dst + b.groups * b.m] += b.k
            out_degree[b.src:b.src + b.groups * b.k] += b.m
        edge_index = structure_tensors(layout)["edge_index"]
        groups = tuple((g.offset, g.size) for g in layout.groups)
        _PLANS[layout] = DensePlan(tuple(blocks), groups, layout.num_nodes, sum(b.num_edges for b in blocks), in_degree,
                                   out_degree, edge_index)
    return _PLANS[layout]
