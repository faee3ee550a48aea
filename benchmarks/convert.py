"""Zoo conversion speed: per-model ``to_graph`` loop vs ``GraphTemplate.batch``.

For 10,000 SIRENs (2-32-32-1) and 10,000 Small-CNN-Zoo CNNs (4,970 params) this
prints graphs/s of both paths and their ratio (target: template >= 100x), and
the template path's achieved bandwidth (bytes of the Batch it builds per
second) as a fraction of a plain tensor copy (``clone()``, allocation
included, like the template's own outputs) of the same number of bytes,
measured in the same run (target: >= 30 %). The template output is checked
against the per-model graphs before anything is timed.

    .venv/bin/python benchmarks/convert.py [--quick] [--json PATH] [--device cpu|cuda] [--count N]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from timing import best_time  # benchmarks/timing.py (the script's folder is on sys.path)
from torch import nn
from torch_geometric.data import Batch

from wslgraph import GraphTemplate, to_graph
from wslgraph.io import atomic_write_json
from wslgraph.zoo import siren, small_cnn

GRAPH_KEYS = ("x", "x_mask", "edge_index", "edge_attr", "edge_type", "node_type", "layer", "io_position",
              "activation", "scalars", "batch", "ptr")


def batch_bytes(batch: Batch) -> int:
    return sum(value.numel() * value.element_size() for _, value in batch if isinstance(value, torch.Tensor))


def bench_architecture(name: str, factory: Callable[[], nn.Module], count: int, loop_count: int,
                       repeats: int, device: torch.device) -> dict[str, object]:
    torch.manual_seed(0)
    base = factory()
    template = GraphTemplate.from_module(base)
    models = []
    for _ in range(loop_count):  # distinct models with fresh default-initialised weights
        model = copy.deepcopy(base)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        models.append(model)
    params = torch.stack([template.flatten(m.state_dict()) for m in models])
    # Correctness first: the template batch equals the per-model graphs exactly.
    reference = Batch.from_data_list([to_graph(m) for m in models[:50]])
    check = template.batch(params[:50])
    for key in GRAPH_KEYS:
        if not torch.equal(check[key], reference[key]):
            raise SystemExit(f"{name}: template batch differs from per-model to_graph in '{key}'")
    # Per-model loop (fx tracing + conversion of each model).
    start = time.perf_counter()
    for model in models:
        to_graph(model)
    loop_seconds = time.perf_counter() - start
    loop_rate = loop_count / loop_seconds
    # Template path on `count` models (the loop's models repeated as needed).
    zoo = params.repeat((count + loop_count - 1) // loop_count, 1)[:count].contiguous().to(device)
    template_seconds = best_time(lambda: template.batch(zoo), repeats, device)
    batch = template.batch(zoo)
    nbytes = batch_bytes(batch)
    del batch
    source = torch.ones(nbytes, dtype=torch.uint8, device=device)
    copy_seconds = best_time(lambda: source.clone(), repeats, device)
    unbatch_input = template.batch(zoo)
    unbatch_seconds = best_time(lambda: template.unbatch(unbatch_input), repeats, device)
    template_rate = count / template_seconds
    result = {
        "architecture": name,
        "params_per_model": template.num_params,
        "nodes_per_graph": template.layout.num_nodes,
        "edges_per_graph": template.layout.num_edges,
        "loop_models": loop_count,
        "loop_graphs_per_s": loop_rate,
        "template_models": count,
        "template_graphs_per_s": template_rate,
        "speedup": template_rate / loop_rate,
        "batch_bytes": nbytes,
        "template_GBps": nbytes / template_seconds / 1e9,
        "copy_GBps": nbytes / copy_seconds / 1e9,
        "bandwidth_fraction": copy_seconds / template_seconds,
        "unbatch_graphs_per_s": count / unbatch_seconds,
    }
    print(f"{name:<10} per-model loop {loop_rate:>9,.0f} graphs/s | template {template_rate:>11,.0f} graphs/s | "
          f"ratio {result['speedup']:>6.0f}x | template {result['template_GBps']:.2f} GB/s = "
          f"{100 * result['bandwidth_fraction']:.0f}% of clone() {result['copy_GBps']:.2f} GB/s "
          f"({nbytes / 1e6:.0f} MB) | unbatch {result['unbatch_graphs_per_s']:,.0f} graphs/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred models (seconds), for tests")
    parser.add_argument("--count", type=int, default=10_000, help="models per architecture (default: 10000)")
    parser.add_argument("--loop-count", type=int, default=None,
                        help="models in the per-model loop (default: --count); rates are per graph either way")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the template path (best is kept)")
    parser.add_argument("--device", default="cpu", help="device of the template path (default: cpu)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/convert.json"),
                        help="where to write the results")
    args = parser.parse_args()
    count = 300 if args.quick else args.count
    repeats = 2 if args.quick else args.repeats
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, {count} models each")
    loop_count = min(count, args.loop_count or count)
    results = [bench_architecture(name, factory, count, loop_count, repeats, device)
               for name, factory in (("SIREN", siren), ("SmallCNN", small_cnn))]
    report = {
        "benchmark": "convert",
        "quick": args.quick,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
