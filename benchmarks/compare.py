"""wslgraph's encoders against the peers on one zoo, one split, one budget and the same seeds.

The harness lives in :mod:`wslgraph.tasks.compare` (also ``wslgraph bench``);
see its docstring for what is trained and reported.

    .venv/bin/python benchmarks/compare.py --zoo ZOO [--seeds 3] [--epochs 30] [--models gnn dwsnet ...]
        [--option gnn:hidden=128 --option gnn:lr=1e-3 ...] [--device cuda]
    .venv/bin/python benchmarks/compare.py --quick        # a tiny MNIST-5k INR zoo, one epoch, one seed
"""

from __future__ import annotations

import argparse

from wslgraph.tasks.compare import add_arguments, parse_options, run_from_args

__all__ = ["parse_options"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    run_from_args(parser, parser.parse_args())


if __name__ == "__main__":
    main()
