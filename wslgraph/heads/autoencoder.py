"""Encoder-decoder mode: a wslgraph encoder reads an INR's graph, the hypernetwork head rebuilds its weights.

weights -> z -> weights, trained in function space (the rebuilt INR must draw
what the input INR draws). The latent also lets INRs be edited:
:class:`LatentEditor` learns ``z -> z'`` so that the decoded INR draws an
edited image (e.g. :func:`dilate`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from wslgraph.errors import ShapeMismatchError
from wslgraph.heads.hypernetwork import HypernetworkHead
from wslgraph.weightspace import batch_params
from wslgraph.weightspace.functional import inr_forward, pixel_grid

__all__ = ["WeightSpaceAutoencoder", "LatentEditor", "dilate"]


class WeightSpaceAutoencoder(nn.Module):
    """``encoder`` (graph batch -> ``[B, l]``, e.g. ``GNNEncoder(l)``) followed by a :class:`HypernetworkHead`.

    Args:
        encoder: Any model with the encoder interface and ``out_dim == head.latent_dim``.
        head: The decoder.
        image_shape: ``(C, H, W)`` of the images the INRs draw (defines the function-space loss grid).
        input_offset: Output offset of the *input* INRs (DWS INRs: ``0.5``).
    """

    def __init__(self, encoder: nn.Module, head: HypernetworkHead, image_shape: tuple[int, int, int],
                 input_offset: float = 0.0) -> None:
        super().__init__()
        if getattr(encoder, "out_dim", head.latent_dim) != head.latent_dim:
            raise ShapeMismatchError(f"the encoder gives {encoder.out_dim} features but the head expects "
                                     f"latent_dim={head.latent_dim}")
        self.encoder, self.head = encoder, head
        self.image_shape, self.input_offset = tuple(image_shape), input_offset
        self.register_buffer("coords", pixel_grid(image_shape[1], image_shape[2]))

    def forward(self, batch: object) -> Tensor:
        """Latents ``[B, l]``."""
        return self.encoder(batch)

    def images(self, params: Tensor, offset: float) -> Tensor:
        """INRs with the head's architecture (flat weights) drawn as images ``[B, C, H, W]``."""
        out = inr_forward(params, self.coords, self.head.architecture, offset)
        return out.transpose(1, 2).reshape(-1, *self.image_shape)

    def target_images(self, batch: object) -> Tensor:
        """What the input INRs draw."""
        params, layout = batch_params(batch)
        if layout != self.head.template.layout:
            raise ShapeMismatchError("the input INRs must have the head's architecture")
        return self.images(params, self.input_offset)

    def decode(self, z: Tensor) -> Tensor:
        return self.images(self.head(z), self.head.output_offset)

    def loss(self, batch: object) -> Tensor:
        """Function-space reconstruction error (mean squared pixel error)."""
        with torch.no_grad():
            target = self.target_images(batch)
        return F.mse_loss(self.decode(self(batch)), target)


def dilate(images: Tensor, size: int = 3) -> Tensor:
    """Grey-level morphological dilation (a ``size x size`` max filter), the field's INR-editing task."""
    return F.max_pool2d(images, size, stride=1, padding=size // 2)


class LatentEditor(nn.Module):
    """``z -> z + MLP(z)``: an edit in the latent space of a :class:`WeightSpaceAutoencoder`."""

    def __init__(self, latent_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, z: Tensor) -> Tensor:
        return z + self.mlp(z)
