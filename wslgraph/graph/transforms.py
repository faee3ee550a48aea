"""Padding graphs of different architectures to one feature width, and collation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch_geometric.data import Batch
from torch_geometric.transforms import BaseTransform

from wslgraph.errors import ShapeMismatchError
from wslgraph.graph.kernels import crop_kernels, pad_kernels
from wslgraph.graph.layout import expand_kernel_shape
from wslgraph.graph.param_graph import ParamGraph

__all__ = ["PadEdgeFeatures", "collate", "common_kernel_grid"]


def common_kernel_grid(graphs: Sequence[ParamGraph]) -> tuple[int, ...]:
    """The smallest kernel grid every graph's edge features fit into."""
    rank = max(len(g.layout.kernel_grid) for g in graphs)
    grids = [expand_kernel_shape(g.layout.kernel_grid, rank) for g in graphs]
    return tuple(max(sizes) for sizes in zip(*grids)) if rank else ()


class PadEdgeFeatures(BaseTransform):
    """Re-pad a graph's edge features centrally to a larger kernel grid.

    Each kernel is placed exactly where :func:`~wslgraph.to_graph` would have
    put it had the graph's largest kernel been ``kernel_grid``; the graph's
    ``layout`` is updated, so :func:`~wslgraph.to_state_dict` stays exact.
    ``scalars`` are zero-padded to ``num_scalars`` columns when given.

    Args:
        kernel_grid: Target grid, e.g. ``(5, 5)``; lower-rank kernels gain
            leading singleton dims.
        num_scalars: Width to pad ``scalars`` to (default: ``None``, keep).
    """

    def __init__(self, kernel_grid: Sequence[int], num_scalars: int | None = None) -> None:
        self.kernel_grid = tuple(int(k) for k in kernel_grid)
        self.num_scalars = num_scalars

    def forward(self, data: ParamGraph) -> ParamGraph:
        layout = data.layout
        if len(layout.kernel_grid) > len(self.kernel_grid) or any(
                k > g for k, g in zip(expand_kernel_shape(layout.kernel_grid, len(self.kernel_grid)),
                                      self.kernel_grid)):
            raise ShapeMismatchError(f"cannot pad kernel grid {layout.kernel_grid} to the smaller "
                                     f"{self.kernel_grid}; use wslgraph.graph.common_kernel_grid")
        data = data.clone()
        if self.kernel_grid != layout.kernel_grid:
            target = layout.with_kernel_grid(self.kernel_grid)
            parts = [pad_kernels(crop_kernels(data.edge_attr.narrow(0, b.offset, b.num_edges),
                                              b, layout), b, target)
                     for b in layout.edge_blocks]
            data.edge_attr = torch.cat(parts) if parts else data.edge_attr.new_zeros(0, target.edge_dim)
            data.layout = target
        if self.num_scalars is not None and data.scalars.shape[1] < self.num_scalars:
            data.scalars = F.pad(data.scalars, (0, self.num_scalars - data.scalars.shape[1]))
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_grid={self.kernel_grid}, num_scalars={self.num_scalars})"


def collate(graphs: Sequence[ParamGraph]) -> Batch:
    """Batch parameter graphs of any architectures (usable as a DataLoader ``collate_fn``).

    Edge features are re-padded to the common kernel grid and ``scalars`` to
    the widest, then the graphs are batched with
    :meth:`Batch.from_data_list <torch_geometric.data.Batch.from_data_list>`.
    """
    if not graphs:
        raise ShapeMismatchError("collate() needs at least one graph")
    transform = PadEdgeFeatures(common_kernel_grid(graphs), max(g.scalars.shape[1] for g in graphs))
    return Batch.from_data_list([transform(g) for g in graphs])
