"""Sweep one harness model's options on a zoo, choosing on the validation split (3 seeds per setting by default).

Each ``--vary KEY=V1,V2`` changes one option of the model's harness configuration at a time; ``--combine`` (on
by default) then trains the best value of every option that beat the base together. What is trained and how it
is ranked: :mod:`wslgraph.tasks.sweep`.

    .venv/bin/python benchmarks/sweep.py --zoo ZOO --model gnn --vary dropout=0,0.2 --vary symmetry=permutation,scale
        [--base KEY=VALUE ...] [--seeds 3] [--epochs 20] [--lr 2e-3] [--runs DIR] [--json PATH]
    .venv/bin/python benchmarks/sweep.py --quick   # a tiny MNIST-5k INR zoo, one epoch, one seed (for tests)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wslgraph.errors import WSLGraphError
from wslgraph.tasks.compare import BenchOptions
from wslgraph.tasks.sweep import SweepOptions, parse_base, parse_variations, sweep, sweep_quick


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sweep.py", description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (wslgraph zoo inr/cnn)")
    parser.add_argument("--quick", action="store_true", help="a tiny INR zoo, one epoch, one seed")
    parser.add_argument("--model", default="gnn", help="a harness model (wslgraph bench --help)")
    parser.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                        help="an option and its values, JSON each (repeatable)")
    parser.add_argument("--base", action="append", default=[], metavar="KEY=VALUE",
                        help="an option every setting shares (repeatable)")
    parser.add_argument("--no-combine", dest="combine", action="store_false",
                        help="do not train the best values of all options together")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=Path, default=None, help="keep each run here; an interrupted sweep resumes")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/sweep.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.vary = args.vary or ["hidden=16"]
        args.base = args.base or ["hidden=8", "num_layers=1"]
    if args.zoo is None and not args.quick:
        parser.error("give --zoo ZOO (or --quick)")
    if not args.vary:
        parser.error("give at least one --vary KEY=V1,V2")
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be at least 1")
    try:
        harness = BenchOptions(seeds=args.seeds, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               device=args.device, json=args.json, runs=args.runs)
        options = SweepOptions(model=args.model, variations=parse_variations(args.vary), base=parse_base(args.base),
                               combine=args.combine, harness=harness)
        sweep_quick(options) if args.quick else sweep(args.zoo, options)
    except (ValueError, WSLGraphError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
