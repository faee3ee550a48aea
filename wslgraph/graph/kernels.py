"""Central zero-padding of kernels into edge features, and its inverse."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from wslgraph.graph.layout import EdgeBlock, GraphLayout, expand_kernel_shape

__all__ = ["pad_kernels", "crop_kernels"]


def pad_kernels(kernels: Tensor, block: EdgeBlock, layout: GraphLayout) -> Tensor:
    """Kernels ``[E, *kernel_shape]`` zero-padded centrally and flattened: ``[E, edge_dim]``."""
    grid = layout.kernel_grid
    shape = expand_kernel_shape(block.kernel_shape, len(grid))
    kernels = kernels.reshape(kernels.shape[0], *shape)
    pads: list[int] = []
    for g, k, left in zip(reversed(grid), reversed(shape), reversed(layout.padding(block))):
        pads += [left, g - k - left]
    if any(pads):
        kernels = F.pad(kernels, pads)
    return kernels.reshape(kernels.shape[0], layout.edge_dim)


def crop_kernels(rows: Tensor, block: EdgeBlock, layout: GraphLayout) -> Tensor:
    """Inverse of :func:`pad_kernels`: ``[E, edge_dim]`` to ``[E, *kernel_shape]``."""
    grid = layout.kernel_grid
    shape = expand_kernel_shape(block.kernel_shape, len(grid))
    kernels = rows.reshape(rows.shape[0], *grid)
    for dim, (k, left) in enumerate(zip(shape, layout.padding(block))):
        kernels = kernels.narrow(dim + 1, left, k)
    return kernels.reshape(rows.shape[0], *block.kernel_shape)
