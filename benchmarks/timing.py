"""Timing shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from wslgraph.runtime import tune_cpu_allocator


def wall_time(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call (on CUDA, from an idle device to the end of the call's work)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def best_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call (caches, allocator, lazy setup)."""
    return min([wall_time(fn, device) for _ in range(repeats + 1)][1:])


def alternating_best_times(calls: dict[str, Callable[[], object]], repeats: int,
                           device: torch.device) -> dict[str, float]:
    """Best wall time of each call over ``repeats`` rounds, the calls taking turns within each round.

    One warm-up round first. Taking turns spreads slow phases of a shared
    machine over every call, where timing one call after another would
    charge them to whichever ran then.
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats + 1):
        for name, fn in calls.items():
            times[name].append(wall_time(fn, device))
    return {name: min(values[1:]) for name, values in times.items()}


def encoder_benchmark_args(description: str, name: str) -> tuple[argparse.Namespace, torch.device, bool]:
    """The options the encoder benchmarks share: ``--quick``, ``--device``, ``--tune-allocator``, ``--json``.

    Returns the parsed arguments, the device and whether the allocator was tuned
    (it is tuned here, before anything is allocated).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small batches (seconds), for tests")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tune-allocator", action="store_true",
                        help="wslgraph.tune_cpu_allocator() first (glibc: reuse freed memory, no fresh mmap)")
    parser.add_argument("--json", type=Path, default=Path(f"benchmarks/results/{name}.json"))
    if name == "encoders":
        parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                            help="also time the encoder under torch.compile (inductor) on both paths, in MODE "
                                 "(default; reduce-overhead captures CUDA graphs on a GPU); with --quick, SIREN only")
        parser.add_argument("--compile-backend", default="inductor",
                            help="torch.compile backend (aot_eager checks tracing without code generation)")
    args = parser.parse_args()
    tuned = tune_cpu_allocator() if args.tune_allocator else False
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"allocator {'tuned' if tuned else 'default'}")
    return args, device, tuned
