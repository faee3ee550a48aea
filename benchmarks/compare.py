"""wslgraph's encoders against the peers on one zoo, one split, one budget and the same seeds.

The same command as ``wslgraph bench`` (its options: ``wslgraph bench --help``); the harness lives in
:mod:`wslgraph.tasks.compare`, whose docstring says what is trained and reported.

    .venv/bin/python benchmarks/compare.py --zoo ZOO [--seeds 3] [--epochs 30] [--models gnn dwsnet ...]
        [--option gnn:hidden=128 --option gnn:lr=1e-3 ...] [--device cuda]
    .venv/bin/python benchmarks/compare.py --quick        # a tiny MNIST-5k INR zoo, one epoch, one seed
"""

from __future__ import annotations

import sys

from wslgraph.cli import main
from wslgraph.tasks.compare import parse_options

__all__ = ["parse_options"]


if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
