"""What a linear probe reads off the weight statistics s(W) depends on their units: rank normal scores or asinh.

The probes (:func:`wslgraph.represent.probe`) map every feature to the normal scores of its ranks before
standardising it. A hyper-representation's statistics branch reads s(W), and its linear read-out
(``--statistics-weight``) predicts it, as ``asinh(s(W) / median |s(W)|)`` standardised unless
``--statistics-units rank|both``. So a latent that holds s(W) linearly in asinh units holds what a linear probe
reads in *those* units, not what the probe reads off s(W) itself. This script probes s(W) of a zoo both ways
(same grouped folds and penalty grids) and prints the table, the gap per property, and JSON.

    python benchmarks/probe_units.py /work/zoos/mz-mnist --json units.json   # about 50 s on 2 cores
    python benchmarks/probe_units.py --quick                               # a 20-model zoo it trains itself

Reference: ``benchmarks/reference/probe_units_{mnist5k,fmnist}_grid.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wslgraph.baselines.models import statnn_features  # noqa: E402
from wslgraph.represent import kept_rows, probe_table  # noqa: E402
from wslgraph.zoo.dataset import ZooDataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zoo", nargs="?", help="a Model Zoos CNN zoo (wslgraph zoo cnn --grid model-zoos)")
    parser.add_argument("--max-weight", type=float, default=10.0, help="rows kept, as wslgraph probe keeps them")
    parser.add_argument("--targets", nargs="+", default=None, help="the properties to probe (default: all found)")
    parser.add_argument("--quick", action="store_true", help="train a 20-model zoo of 2 epochs and probe three "
                        "properties of it")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if (args.zoo is None) == (not args.quick):
        parser.error("give a ZOO or --quick")
    if args.quick and args.targets is None:
        args.targets = ["test_accuracy", "init", "optimizer"]
    with tempfile.TemporaryDirectory() as scratch:
        zoo = args.zoo
        if args.quick:
            from wslgraph.zoo.jobs import model_zoo_job
            from wslgraph.zoo.storage import generate_zoo

            zoo = Path(scratch) / "zoo"
            generate_zoo(zoo, model_zoo_job("mnist5k", count=20, epochs=2, steps_per_epoch=8, train_images=300,
                                            test_images=100, eval_images=100, models_per_shard=20),
                         progress=False)
        arrays = ZooDataset(zoo, None).arrays
        keep = kept_rows(arrays.params, args.max_weight, arrays.layout)
        columns = {name: values[keep] for name, values in arrays.columns.items()
                   if args.targets is None or name in args.targets or name == "model_index"}
        statistics = statnn_features(arrays.params[keep], arrays.layout)
        print(f"{int(keep.sum())} rows, {statistics.shape[1]} statistics; folds grouped by model", flush=True)
        started = time.perf_counter()
        rows = probe_table({"rank": statistics, "asinh": statistics}, columns, scalings={"asinh": "asinh"})
        print("| property | metric | rank units (the probes') | asinh units | rank - asinh |")
        print("|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['target']} | {row['metric']} | {row['rank']:.3f} | {row['asinh']:.3f} | "
                  f"{row['rank'] - row['asinh']:+.3f} |")
        print(f"{time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"zoo": str(args.zoo) if args.zoo else "quick", "rows": rows,
                                               "max_weight": args.max_weight}, indent=1))


if __name__ == "__main__":
    main()
