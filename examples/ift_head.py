"""The IFT hypernetwork head: auto-decode digits into embeddings and check the implicit function theorem.

Trains a HypernetworkHead with an embedding table on sklearn's 8x8 digits,
fits embeddings of new images with the head frozen, and checks, at the exact
optimum, that the Hessian of each image's reconstruction loss w.r.t. its
embedding is invertible (so the image -> embedding map is locally well
defined) and that the IFT Jacobian predicts how the embedding moves when the
image changes.

    .venv/bin/python examples/ift_head.py
"""

from __future__ import annotations

import torch

from wslgraph import GraphTemplate
from wslgraph.heads import (
    AutoDecoder,
    HypernetworkHead,
    image_targets,
    latent_hessians,
    latent_jacobian,
    solve_latents,
    spectrum_summary,
)
from wslgraph.zoo import siren
from wslgraph.zoo.data import load_images


def main() -> None:
    torch.manual_seed(0)
    train, test = load_images("digits", "train")[:256], load_images("digits", "test")[:8]
    head = HypernetworkHead(GraphTemplate.from_module(siren(hidden=(32, 32))), latent_dim=8)
    decoder = AutoDecoder(head, len(train), latent_reg=1e-4)
    losses = decoder.fit(train.images, steps=400, lr=1e-3, batch_size=128)
    print(f"reconstruction loss {losses[0]:.4f} -> {losses[-1]:.5f}")
    head = head.double()
    coords, targets = image_targets(test.images.double())
    z = solve_latents(head, targets, coords, decoder.infer(test.images, steps=200), latent_reg=1e-4)
    summary = spectrum_summary(latent_hessians(head, z, targets, coords, latent_reg=1e-4))
    print(f"Hessians full rank: {summary['fraction_full_rank']:.0%}, median condition number "
          f"{summary['median_condition_number']:.3g}")
    jacobian = latent_jacobian(head, z, targets, coords, latent_reg=1e-4)
    change = 1e-4 * torch.randn(targets.shape, dtype=targets.dtype, generator=torch.Generator().manual_seed(0))
    moved = solve_latents(head, targets + change, coords, z, latent_reg=1e-4)
    predicted = z + (jacobian * change.unsqueeze(1)).sum(dim=(2, 3))
    error = float((predicted - moved).norm() / (moved - z).norm())
    print(f"IFT prediction of the embedding change, relative error {error:.1e}; exact: {error < 1e-2}")


if __name__ == "__main__":
    main()
