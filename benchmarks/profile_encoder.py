"""Where an encoder's forward+backward spends its time: torch.profiler tables and host syncs.

Builds a batch of SIRENs or Small-CNN-Zoo CNNs, warms the encoder up, then

1. profiles a few forward+backward steps and prints the operators ranked by
   self CPU time and (on CUDA) by self device time, plus kernel-launch counts;
   on CPU also the share of the step spent in matrix products and their rate;
   with ``--allocations``, the large allocations one step makes (each is a
   fresh ``mmap``, page-faulted in, with glibc's default allocator), by the
   operator that made them;
2. on CUDA, lists every host-device synchronisation one step makes, with the
   wslgraph line that caused it (``torch.cuda.set_sync_debug_mode``).

    .venv/bin/python benchmarks/profile_encoder.py [--device cuda] [--arch siren|cnn] [--batch 256]
        [--encoder gnn|transformer] [--generic] [--tune-allocator] [--flops] [--allocations]
        [--min-bytes N] [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import traceback
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from wslgraph import GraphTemplate
from wslgraph.io import atomic_write_json
from wslgraph.nn import GNNEncoder, TransformerEncoder
from wslgraph.runtime import tune_cpu_allocator
from wslgraph.zoo import siren, small_cnn

MATRIX_PRODUCTS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="siren", choices=["siren", "cnn"])
    parser.add_argument("--encoder", default="gnn", choices=["gnn", "transformer"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--generic", action="store_true", help="the generic scatter path (GNN only)")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--tune-allocator", action="store_true", help="wslgraph.tune_cpu_allocator() first")
    parser.add_argument("--flops", action="store_true",
                        help="count the matrix products' FLOPs (records input shapes: slower, more memory)")
    parser.add_argument("--allocations", action="store_true",
                        help="also profile one step's memory: large allocations, by operator")
    parser.add_argument("--min-bytes", type=int, default=16 << 20, help="what --allocations counts (default 16 MiB)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/profile_encoder.json"))
    args = parser.parse_args()
    if args.tune_allocator:
        tune_cpu_allocator()
    device = torch.device(args.device)
    torch.manual_seed(0)
    template = GraphTemplate.from_module(siren() if args.arch == "siren" else small_cnn())
    batch = template.batch((torch.randn(args.batch, template.num_params) * 0.1).to(device))
    cls = GNNEncoder if args.encoder == "gnn" else TransformerEncoder
    encoder = cls(10, hidden=64, num_layers=4).to(device)
    if args.generic:
        encoder.dense = False

    def step() -> None:
        encoder(batch).square().mean().backward()

    for _ in range(2):  # lazy initialisation, allocator, cuBLAS handles
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, with_flops=args.flops) as prof:
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    averages = prof.key_averages()
    print(f"{args.encoder} on {args.batch} {args.arch} graphs, {device}, "
          f"{'generic' if args.generic else 'dense where possible'}; {args.steps} steps profiled")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    report = {"benchmark": "profile_encoder", "device": str(device), "arch": args.arch, "encoder": args.encoder,
              "allocator": "tuned" if args.tune_allocator else "default",
              "batch": args.batch, "generic": args.generic, "steps": args.steps,
              "cpu_ops": sorted(({"name": e.key, "calls": e.count, "self_cpu_us": e.self_cpu_time_total}
                                 for e in averages), key=lambda r: -r["self_cpu_us"])[:100]}
    if device.type == "cpu":
        products = [e for e in averages if e.key in MATRIX_PRODUCTS]
        seconds = sum(e.self_cpu_time_total for e in products) / 1e6 / args.steps
        total = sum(e.self_cpu_time_total for e in averages) / 1e6 / args.steps
        report["matrix_products"] = {"seconds_per_step": seconds, "op_seconds_per_step": total}
        rate = ""
        if args.flops:
            report["matrix_products"]["gflop_per_step"] = flops = sum(e.flops for e in products) / args.steps / 1e9
            rate = f", {flops:.1f} GFLOP at {flops / seconds:.0f} GFLOP/s"
        print(f"matrix products: {seconds:.2f} s of {total:.2f} s of operator time per profiled step "
              f"({seconds / total:.0%}){rate}")
    if device.type == "cuda":
        print(averages.table(sort_by="self_device_time_total", row_limit=args.rows))
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time_total for e in kernels) / args.steps
        print(f"{len(kernels) / args.steps:.0f} device kernels per step, {busy / 1e3:.2f} ms of device time per step")
        report["kernels_per_step"] = len(kernels) / args.steps
        report["device_ms_per_step"] = busy / 1e3
        report["syncs"] = host_syncs(step)
        print(f"{sum(report['syncs'].values())} host syncs per step:")
        for where, count in report["syncs"].items():
            print(f"  {count:4d}  {where}")
    if args.allocations:
        report["large_allocations"] = large_allocations(step, args.rows, args.min_bytes)
    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")


def large_allocations(step: object, rows: int, threshold: int = 16 << 20) -> dict:
    """One step's allocations of at least ``threshold`` bytes, by operator and the two operators around it."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    sizes: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    stack = [(event, ()) for event in prof.events() if event.cpu_parent is None]
    while stack:
        event, parents = stack.pop()
        stack.extend((child, (event.name, *parents)) for child in event.cpu_children)
        own = event.cpu_memory_usage - sum(child.cpu_memory_usage for child in event.cpu_children)
        if own >= threshold:
            where = " < ".join((event.name, *parents)[:3])
            sizes[where] += own
            counts[where] += 1
    total = sum(sizes.values())
    print(f"allocations of at least {threshold / 2**20:g} MiB in one step: {sum(counts.values())}, "
          f"{total / 2**30:.2f} GiB; by operator (MiB, count):")
    for where, size in sizes.most_common(rows):
        print(f"  {size / 2**20:9.1f} {counts[where]:4d}  {where}")
    return {"threshold_bytes": threshold, "count": sum(counts.values()), "bytes": total,
            "by_operator": [{"where": w, "bytes": b, "count": counts[w]} for w, b in sizes.most_common()]}


def host_syncs(step: object) -> dict[str, int]:
    """Count one step's host-device synchronisations by the innermost wslgraph frame that caused them."""
    counts: collections.Counter[str] = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        frames = [f for f in traceback.extract_stack()[:-1] if "/wslgraph/" in f.filename]
        where = f"{frames[-1].filename.split('/wslgraph/')[-1]}:{frames[-1].lineno} {frames[-1].line}" if frames \
            else f"{filename}:{lineno}"
        counts[where] += 1

    previous = warnings.showwarning
    warnings.showwarning = record
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step()
                torch.cuda.synchronize()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    finally:
        warnings.showwarning = previous
    return dict(counts.most_common())


if __name__ == "__main__":
    main()
