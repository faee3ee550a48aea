"""Aggregation backends: native torch vs torch_scatter vs PyG's ``torch_geometric.utils.scatter``, per reduction.

Prints the time of each reduction for a message tensor the size of a 4-layer
GNNEncoder's on 256 SIRENs (286,720 edges x 64 channels) and which backend is
faster, and writes JSON. ``AUTO_TORCH_SCATTER`` in ``wslgraph/nn/backend.py``
lists the (device, reduction) pairs where torch_scatter won. The PyG row is what a
user would call instead (``torch_geometric.utils.scatter``, which dispatches to
torch's own scatter kernels or to torch_scatter itself); the ``vs_pyg`` column is
the native backend's time over PyG's.

    .venv/bin/python benchmarks/scatter.py [--quick] [--device cpu|cuda] [--json PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch_geometric.utils
from timing import best_time  # benchmarks/timing.py (the script's folder is on sys.path)

from wslgraph.io import atomic_write_json
from wslgraph.nn.backend import REDUCTIONS, WITH_TORCH_SCATTER, scatter, set_scatter_backend


def time_reduction(src: torch.Tensor, index: torch.Tensor, size: int, reduce: str, repeats: int,
                   backward: bool, pyg: bool = False) -> float:
    def run() -> None:
        values = src if backward else src.detach()
        if pyg:
            out = torch_geometric.utils.scatter(values, index, 0, size, reduce=reduce)
        else:
            out = scatter(values, index, size, reduce)
        if backward:
            out.sum().backward()

    return best_time(run, repeats, src.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small tensor, for tests")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/scatter.json"))
    args = parser.parse_args()
    edges, channels, nodes = (20_000, 16, 2_000) if args.quick else (286_720, 64, 17_152)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(0, nodes, (edges,), generator=generator).to(device)
    src = torch.randn(edges, channels, generator=generator).to(device).requires_grad_()
    backends = ["native"] + (["torch_scatter"] if WITH_TORCH_SCATTER else [])
    rows = []
    for backward in (False, True):
        for reduce in REDUCTIONS:
            row = {"reduce": reduce, "pass": "fwd+bwd" if backward else "fwd"}
            for backend in backends:
                set_scatter_backend(backend)
                row[backend] = time_reduction(src, index, nodes, reduce, 2 if args.quick else 5, backward)
            set_scatter_backend("auto")
            row["pyg"] = time_reduction(src, index, nodes, reduce, 2 if args.quick else 5, backward, pyg=True)
            row["faster"] = min([*backends, "pyg"], key=lambda b: row[b])
            row["native_vs_pyg"] = row["native"] / row["pyg"]
            rows.append(row)
            cells = " | ".join(f"{b} {1e3 * row[b]:8.1f} ms" for b in [*backends, "pyg"])
            print(f"{reduce:<5} {row['pass']:<8}: {cells} | faster: {row['faster']} | native/pyg "
                  f"{row['native_vs_pyg']:.2f}")
    if not WITH_TORCH_SCATTER:
        print("torch_scatter is not installed: only native was measured (pip install 'wslgraph[scatter]')")
    report = {"benchmark": "scatter", "device": str(device), "edges": edges, "channels": channels,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
    atomic_write_json(args.json, report)


if __name__ == "__main__":
    main()
