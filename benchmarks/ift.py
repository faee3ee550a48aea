"""Does the IFT's full-rank condition hold? Hessian spectra of fitted embeddings vs latent size and coordinates.

For each latent size ``l`` an auto-decoder (HypernetworkHead + embedding
table) is trained on images, the test images' embeddings are fitted with the
head frozen, refined to exact stationary points (Newton, float64), and the
Hessian of each image's reconstruction loss w.r.t. its embedding is computed
exactly, once with every pixel and once with ``K`` sampled pixel coordinates
(the loss the paper's sampled-coordinate training sees). The script reports
how often the Hessian is full rank and positive definite, its condition
number, and a classifier's test accuracy on the embeddings, and writes JSON
plus an SVG of the median spectra.

    .venv/bin/python benchmarks/ift.py [--quick] [--source digits|mnist5k] [--out PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from wslgraph import GraphTemplate
from wslgraph.heads import (
    AutoDecoder,
    HypernetworkHead,
    fit_embedding_classifier,
    ift_report,
    image_targets,
    latent_hessians,
    solve_latents,
    spectrum_summary,
)
from wslgraph.io import atomic_write_json
from wslgraph.zoo import siren
from wslgraph.zoo.data import load_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few images and steps (seconds), for tests")
    parser.add_argument("--source", default="digits", choices=["digits", "mnist5k", "fashion-mnist"])
    parser.add_argument("--mode", default="full", choices=["full", "shift"])
    parser.add_argument("--latent-dims", type=int, nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ift"))
    args = parser.parse_args()
    latent_dims = args.latent_dims or ([2, 8] if args.quick else [2, 8, 32, 64])
    train_count, test_count, steps, analysed = (64, 16, 100, 8) if args.quick else (1000, 200, 2000, 100)
    train, test = load_images(args.source, "train"), load_images(args.source, "test")
    train, test = train.evenly_spaced(train_count), test.evenly_spaced(test_count)
    template = GraphTemplate.from_module(siren(hidden=(32, 32), out_features=train.images.shape[1]))
    coords, targets = image_targets(test.images.double())
    pixels = coords.shape[0]
    samples = sorted({4, 16, pixels // 4} - {0})
    entries, rows = {}, []
    print(f"{args.source}: {train_count} train / {test_count} test images, {pixels} pixels, head mode {args.mode}")
    for latent_dim in latent_dims:
        torch.manual_seed(0)
        head = HypernetworkHead(template, latent_dim, mode=args.mode)
        decoder = AutoDecoder(head, len(train), latent_reg=1e-4)
        start = time.perf_counter()
        losses = decoder.fit(train.images, steps=steps, lr=1e-3, batch_size=128,
                             generator=torch.Generator().manual_seed(0))
        z_test = decoder.infer(test.images, steps=steps // 2)
        classifier = fit_embedding_classifier(decoder.embeddings.weight.detach(), train.labels)
        accuracy = float((classifier(z_test).argmax(1) == test.labels).float().mean())
        head64 = head.double()
        z_star = solve_latents(head64, targets[:analysed], coords, z_test[:analysed].double(), latent_reg=1e-4)
        row = {"latent_dim": latent_dim, "train_loss_first": losses[0], "train_loss_last": losses[-1],
               "test_accuracy": accuracy, "seconds": time.perf_counter() - start}
        for count in [pixels, *samples]:
            index = torch.randperm(pixels, generator=torch.Generator().manual_seed(1))[:count]
            summary = spectrum_summary(latent_hessians(head64, z_star, targets[:analysed][:, index], coords[index],
                                                       latent_reg=1e-4))
            name = f"l={latent_dim}, {'all' if count == pixels else count} pixels"
            entries[name] = summary
            row[f"full_rank_{count}px"] = summary["fraction_full_rank"]
            row[f"positive_definite_{count}px"] = summary["fraction_positive_definite"]
            row[f"median_condition_{count}px"] = summary["median_condition_number"]
            print(f"l={latent_dim:<3} K={count:>4} pixels: full rank {100 * summary['fraction_full_rank']:5.1f} %, "
                  f"positive definite {100 * summary['fraction_positive_definite']:5.1f} %, median condition "
                  f"{summary['median_condition_number']:.3g}")
        print(f"l={latent_dim:<3} reconstruction loss {losses[0]:.4f} -> {losses[-1]:.5f}, embedding classifier "
              f"test accuracy {100 * accuracy:.1f} % ({row['seconds']:.1f} s)")
        rows.append(row)
    summary = ift_report(entries, args.out)
    summary["runs"] = rows
    summary["config"] = {"source": args.source, "mode": args.mode, "train": train_count, "test": test_count,
                         "steps": steps, "analysed": analysed, "latent_reg": 1e-4, "quick": args.quick}
    atomic_write_json(args.out.with_suffix(".json"), summary)
    print(f"wrote {args.out.with_suffix('.json')}, {args.out.with_suffix('.svg')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
