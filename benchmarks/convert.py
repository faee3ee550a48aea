"""Zoo conversion speed: per-model ``to_graph`` loop vs ``GraphTemplate.batch``.

For 10,000 SIRENs (2-32-32-1) and 10,000 Small-CNN-Zoo CNNs (4,970 params) this
prints graphs/s of both paths and their ratio (target: template >= 100x), and
the template path's achieved bandwidth (bytes of the Batch it builds per
second) as a fraction of a plain tensor copy (``clone()``, allocation
included, like the template's own outputs) of the same number of bytes,
measured in the same run (target: >= 30 %). The template output is checked
against the per-model graphs before anything is timed.

Then torchvision's CNN families (one or two builders each, 10 classes, 3x224x224 input; ``--quick``: two small
ones): seconds of ``to_graph`` and of ``to_state_dict``, graph size, and whether the round trip is exact (goal:
every one under 10 s). A family that does not convert is listed with its error.

    .venv/bin/python benchmarks/convert.py [--quick] [--json PATH] [--device cpu|cuda] [--count N] [--no-torchvision]
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


def bench_torchvision(names: list[str]) -> list[dict[str, object]]:
    """Conversion time and size of torchvision's networks (fresh default-initialised weights)."""
    from wslgraph import to_state_dict
    from wslgraph.testing import torchvision_models

    builders = torchvision_models()
    if builders is None:
        print("torchvision is not installed: no torchvision rows (pip install torchvision)")
        return []
    rows = []
    print(f"{'model':<20} {'nodes':>7} {'edges':>11} {'edge dim':>8} {'graph MB':>9} {'to_graph s':>10} "
          f"{'back s':>7}  exact")
    for name in names:
        torch.manual_seed(0)
        kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        model = builders[name](num_classes=10, **kwargs).eval()
        start = time.perf_counter()
        try:
            graph = to_graph(model, input_shape=(3, 224, 224))
        except Exception as error:  # noqa: BLE001 - reported as the row's result
            rows.append({"model": name, "error": f"{type(error).__name__}: {error}"})
            print(f"{name:<20} does not convert: {rows[-1]['error'][:150]}")
            continue
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        state = to_state_dict(graph)
        back = time.perf_counter() - start
        exact = all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in model.state_dict().items())
        rows.append({"model": name, "nodes": graph.num_nodes, "edges": graph.num_edges,
                     "edge_dim": graph.edge_attr.shape[1], "graph_bytes": batch_bytes(graph),
                     "to_graph_s": seconds, "to_state_dict_s": back, "exact": exact})
        print(f"{name:<20} {graph.num_nodes:>7,} {graph.num_edges:>11,} {graph.edge_attr.shape[1]:>8} "
              f"{batch_bytes(graph) / 1e6:>9,.0f} {seconds:>10.2f} {back:>7.2f}  {exact}", flush=True)
        del graph, state
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred models (seconds), for tests")
    parser.add_argument("--count", type=int, default=10_000, help="models per architecture (default: 10000)")
    parser.add_argument("--loop-count", type=int, default=None,
                        help="models in the per-model loop (default: --count); rates are per graph either way")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the template path (best is kept)")
    parser.add_argument("--device", default="cpu", help="device of the template path (default: cpu)")
    parser.add_argument("--no-torchvision", action="store_true", help="skip torchvision's networks")
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
    from wslgraph.testing import TORCHVISION_FAMILIES

    names = ["squeezenet1_1", "mobilenet_v3_small"] if args.quick else [
        n for family in TORCHVISION_FAMILIES.values() for n in family]
    torchvision_rows = [] if args.no_torchvision else bench_torchvision(names)
    converted = [r for r in torchvision_rows if "error" not in r]
    report = {
        "benchmark": "convert",
        "torchvision": torchvision_rows,
        "torchvision_all_exact": all(r["exact"] for r in converted),
        "torchvision_slowest_s": max((r["to_graph_s"] for r in converted), default=None),
        "torchvision_goal_under_10s": all(r["to_graph_s"] < 10 for r in converted),
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
