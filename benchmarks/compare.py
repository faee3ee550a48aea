"""wslgraph's encoders against the peers on one zoo, one split, one budget and the same seeds.

Trains every model (GNNEncoder, TransformerEncoder, DWSNet, NFN-HNP, NFN-NP, the
flat MLP and StatNN; DWSNet only on MLP zoos) with the same training loop,
epochs and seeds, and writes a markdown table and JSON: the test metric (mean ±
std over seeds), parameters, training seconds per epoch, inference graphs/s,
hardware and versions. The task follows the zoo: digit classification for INR
zoos, Kendall's tau of test accuracy for CNN zoos.

    .venv/bin/python benchmarks/compare.py --zoo ZOO [--seeds 3] [--epochs 30] [--models gnn dwsnet ...]
    .venv/bin/python benchmarks/compare.py --quick        # a tiny MNIST-5k INR zoo, one epoch, one seed
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from wslgraph import __version__, tune_cpu_allocator
from wslgraph.baselines import BASELINES
from wslgraph.errors import UnsupportedModuleError
from wslgraph.io import atomic_write_bytes, atomic_write_json
from wslgraph.tasks import TrainConfig, build_model, train
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.jobs import inr_zoo_job
from wslgraph.zoo.storage import generate_zoo

DEFAULT_MODELS = ["gnn", "transformer", *[name for name in BASELINES if name != "mlp-aug"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny zoo, one epoch, one seed (seconds), for tests")
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (wslgraph zoo inr/cnn)")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/compare.json"))
    parser.add_argument("--markdown", type=Path, default=None, help="default: the JSON path with .md")
    args = parser.parse_args()
    tune_cpu_allocator()
    if args.quick:
        with tempfile.TemporaryDirectory(prefix="wslgraph-compare-") as folder:
            zoo = Path(folder) / "zoo"
            generate_zoo(zoo, inr_zoo_job("mnist5k", train_images=48, test_images=16, shard_size=64, steps=30),
                         progress=False)
            args.seeds, args.epochs = 1, 1
            compare(args, zoo)
    elif args.zoo is None:
        parser.error("--zoo is required unless --quick")
    else:
        compare(args, args.zoo)


def compare(args: argparse.Namespace, zoo: Path) -> None:
    """Train every model in ``args.models`` on ``zoo`` and write the table and JSON."""
    splits = {s: ZooDataset(zoo, s) for s in ("train", "val", "test")}
    kind = splits["train"].arrays.kind
    task = "classification" if kind == "inr" else "regression"
    metric = "accuracy" if task == "classification" else "kendall_tau"
    out_dim = int(splits["train"].arrays.columns[splits["train"].target].max()) + 1 if task == "classification" else 1
    print(f"zoo {zoo}: {kind}, {len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])} models; task {task}; "
          f"{args.epochs} epochs x {args.seeds} seeds per model; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    rows = []
    for name in args.models:
        runs = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            config = TrainConfig(task=task, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
                                 warmup_steps=10, patience=0, progress=False)
            try:
                result = train(build_model(name, out_dim), splits["train"], splits["val"], config,
                               test_set=splits["test"])
            except UnsupportedModuleError as error:
                print(f"{name:<12} skipped: {error}")
                break
            runs.append(result)
        if not runs:
            continue
        scores = [r["test"][metric] for r in runs]
        row = {"model": name, "metric": metric, "mean": statistics.fmean(scores),
               "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "scores": scores,
               "parameters": runs[0]["parameters"],
               "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in runs),
               "inference_graphs_per_s": statistics.fmean(r["test"]["graphs_per_s"] for r in runs)}
        rows.append(row)
        print(f"{name:<12} {metric} {row['mean']:.4f} ± {row['std']:.4f}  {row['parameters']:>11,} params  "
              f"{row['seconds_per_epoch']:7.2f} s/epoch  {row['inference_graphs_per_s']:9.1f} graphs/s")
    hardware = {"machine": platform.machine(), "processor": platform.processor(), "threads": torch.get_num_threads(),
                "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    report = {"benchmark": "compare", "quick": args.quick, "zoo": str(zoo), "task": task, "epochs": args.epochs,
              "seeds": args.seeds, "rows": rows, "hardware": hardware,
              "versions": {"wslgraph": __version__, "torch": torch.__version__, "python": platform.python_version()}}
    atomic_write_json(args.json, report)
    lines = [f"| model | test {metric} (mean ± std, {args.seeds} seeds) | parameters | s/epoch | inference graphs/s |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['mean']:.4f} ± {r['std']:.4f} | {r['parameters']:,} | {r['seconds_per_epoch']:.2f} "
              f"| {r['inference_graphs_per_s']:.0f} |" for r in rows]
    markdown = args.markdown or args.json.with_suffix(".md")
    atomic_write_bytes(markdown, ("\n".join(lines) + "\n").encode())
    print(f"wrote {args.json} and {markdown}")


if __name__ == "__main__":
    main()
