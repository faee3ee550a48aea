"""Windows of consecutive layers of a parameter graph: bounded-size subgraphs of a large network.

A :class:`LayerWindows` cuts an architecture's depth levels (``NodeGroup.layer``) into windows of ``size``
consecutive levels. Window ``w`` *owns* the node groups of its levels; it holds them, every edge block that feeds
them, and the groups those blocks come from (its context: the previous layer, or the start of a skip
connection). Each window is a :class:`~wslgraph.graph.GraphLayout` of its own, with the original depth of every
group kept (so positional encodings stay those of the whole network), the node types kept (hidden nodes stay
unordered: a window has the permutation symmetry of the network) and the whole network's kernel grid (every
window has the same edge features). :meth:`LayerWindows.batch` builds window ``w`` of many networks from their
flat rows ``[B, P]`` with one gather, without building the whole graph.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor
from torch_geometric.data import Batch

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ShapeMismatchError
from wslgraph.graph.layout import GraphLayout, NodeParam

__all__ = ["LayerWindows"]


class LayerWindows:
    """Windows of ``size`` consecutive depth levels of ``layout`` (see the module docstring).

    Args:
        layout: The whole network's layout (or a :class:`~wslgraph.GraphTemplate`).
        size: Depth levels each window owns (default: ``4``).

    Attributes:
        layouts: The window layouts.
        owned: For each window, its owned groups (indices into ``layout.groups``).
        templates: A :class:`~wslgraph.GraphTemplate` per window.
    """

    def __init__(self, layout: GraphLayout | GraphTemplate, size: int = 4) -> None:
        layout = layout.layout if isinstance(layout, GraphTemplate) else layout
        if size < 1:
            raise ValueError(f"size must be >= 1 depth level, got {size}")
        self.layout, self.size = layout, size
        depth = max(g.layer for g in layout.groups)
        self.layouts: list[GraphLayout] = []
        self.owned: list[tuple[int, ...]] = []
        self._indices: list[Tensor] = []
        for start in range(1, depth + 1, size):  # level 0 is the input: context of the first window only
            owned = tuple(i for i, g in enumerate(layout.groups) if start <= g.layer < start + size)
            if not owned:
                continue
            sub, index = self._window(owned)
            self.layouts.append(sub)
            self.owned.append(owned)
            self._indices.append(index)
        self.templates = [GraphTemplate(sub) for sub in self.layouts]

    def _window(self, owned: tuple[int, ...]) -> tuple[GraphLayout, Tensor]:
        layout = self.layout
        blocks = [b for b in layout.edge_blocks if b.dst in owned]
        members = sorted(set(owned) | {b.src for b in blocks})
        renumber = {old: new for new, old in enumerate(members)}
        groups, offset = [], 0
        for old in members:
            groups.append(replace(layout.groups[old], offset=offset))
            offset += layout.groups[old].size
        node_params = tuple(NodeParam(p.key, renumber[p.group], p.column) for p in layout.node_params
                            if p.group in renumber)
        keys = {b.key for b in blocks if b.key is not None} | {p.key for p in node_params}
        state = tuple(e for e in layout.state if e.key in keys)  # the whole network's order
        edge_blocks = tuple(replace(b, src=renumber[b.src], dst=renumber[b.dst], offset=0) for b in blocks)
        sub = GraphLayout(groups=tuple(groups), edge_blocks=edge_blocks, node_params=node_params, scalars=(),
                          state=state, kernel_grid=layout.kernel_grid, dtype=layout.dtype)
        index = torch.cat([torch.arange(layout.span(e.key).start, layout.span(e.key).stop) for e in state]) \
            if state else torch.empty(0, dtype=torch.long)
        return sub, index

    def __len__(self) -> int:
        return len(self.layouts)

    def __repr__(self) -> str:
        largest = max((sub.num_edges for sub in self.layouts), default=0)
        return (f"{type(self).__name__}(windows={len(self)}, size={self.size}, "
                f"largest_window_edges={largest:,}, network_edges={self.layout.num_edges:,})")

    def rows(self, rows: Tensor, window: int) -> Tensor:
        """Window ``window``'s flat rows ``[B, P_w]`` of the networks' rows ``[B, P]``."""
        if rows.dim() != 2 or rows.shape[1] != self.layout.num_params:
            raise ShapeMismatchError(f"expected flat rows [B, {self.layout.num_params}] of the whole network, "
                                     f"got {tuple(rows.shape)}")
        return rows[:, self._indices[window].to(rows.device)]

    def batch(self, rows: Tensor, window: int) -> Batch:
        """Window ``window`` of each network as a batch of parameter graphs."""
        return self.templates[window].batch(self.rows(rows, window))
