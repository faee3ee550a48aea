"""Encoder speed and memory: the dense fast path vs the generic scatter path, and both encoders.

1. Forward+backward time of a 4-layer GNNEncoder (hidden 64) on a batch of 256
   SIRENs (2-32-32-1) and of 256 Small-CNN-Zoo CNNs, dense fast path vs
   generic scatter path, and their ratio (targets: >= 3x and >= 2x). The two
   paths are timed in alternation, so drift in the machine's speed hits both.
   With ``--compile [MODE]`` the same encoder under ``torch.compile`` too
   (inductor, in ``MODE``: default, reduce-overhead, max-autotune), on both
   paths, with its compile time.
2. Graphs/s (forward+backward) and peak memory of GNNEncoder and
   TransformerEncoder vs batch size and SIREN hidden width. Each configuration
   runs in a fresh process; peak memory is the growth of peak RSS on CPU and
   ``max_memory_allocated`` on CUDA.

    .venv/bin/python benchmarks/encoders.py [--quick] [--device cpu|cuda] [--tune-allocator] [--compile [MODE]]
        [--compile-backend NAME] [--json PATH]
"""

from __future__ import annotations

import torch

# benchmarks/timing.py (the script's folder is on sys.path)
from timing import alternating_best_times, best_time, encoder_benchmark_args, wall_time

from wslgraph import GraphTemplate
from wslgraph.io import atomic_write_json
from wslgraph.nn import GNNEncoder, TransformerEncoder
from wslgraph.runtime import peak_rss, tune_cpu_allocator
from wslgraph.tasks.compare import run_pool
from wslgraph.zoo import siren, small_cnn

ENCODERS = {"GNNEncoder": GNNEncoder, "TransformerEncoder": TransformerEncoder}


def step_time(encoder: torch.nn.Module, batch: object, repeats: int, device: torch.device) -> float:
    """Best forward+backward time over ``repeats`` (after one warm-up)."""
    return best_time(lambda: encoder(batch).square().mean().backward(), repeats, device)


def make_batch(factory: object, size: int, device: torch.device) -> object:
    template = GraphTemplate.from_module(factory())
    params = torch.randn(size, template.num_params, generator=torch.Generator().manual_seed(0)) * 0.1
    return template.batch(params.to(device))


def dense_vs_generic(name: str, factory: object, size: int, repeats: int, device: torch.device,
                     compile_mode: str | None, backend: str = "inductor") -> dict:
    torch.manual_seed(0)
    batch = make_batch(factory, size, device)
    encoder = GNNEncoder(10, hidden=64, num_layers=4).to(device)
    encoder(batch)  # lazy initialisation

    def step(model: torch.nn.Module, dense: bool) -> None:
        encoder.dense = dense
        model(batch).square().mean().backward()

    variants = {"": encoder}
    compile_s = {}
    if compile_mode is not None:
        variants["compiled_"] = compiled = torch.compile(
            encoder, mode=None if backend != "inductor" else compile_mode, backend=backend)
        for dense in (True, False):  # compile each path once (its own graph), outside the timings
            compile_s["dense" if dense else "generic"] = wall_time(lambda d=dense: step(compiled, d), device)

    calls = {f"{prefix}{'dense' if dense else 'generic'}": (lambda m=model, d=dense: step(m, d))
             for prefix, model in variants.items() for dense in (True, False)}
    timings = alternating_best_times(calls, repeats, device)
    encoder.dense = None
    row = {"architecture": name, "batch": size, **{f"{key}_s": value for key, value in timings.items()},
           "ratio": timings["generic"] / timings["dense"]}
    print(f"{name:<9} {size} graphs, 4 layers, fwd+bwd: dense {timings['dense'] * 1e3:8.1f} ms | generic "
          f"{timings['generic'] * 1e3:8.1f} ms | ratio {row['ratio']:.2f}x")
    if compile_mode is not None:
        row["compiled_ratio"] = timings["compiled_generic"] / timings["compiled_dense"]
        row["compiled_dense_vs_eager_generic"] = timings["generic"] / timings["compiled_dense"]
        row["compile_s"] = compile_s
        how = compile_mode if backend == "inductor" else backend
        print(f"{'':<9} torch.compile ({how}): dense {timings['compiled_dense'] * 1e3:8.1f} ms | generic "
              f"{timings['compiled_generic'] * 1e3:8.1f} ms | ratio {row['compiled_ratio']:.2f}x (compiling took "
              f"{compile_s['dense']:.0f} s and {compile_s['generic']:.0f} s); compiled dense vs eager generic "
              f"{row['compiled_dense_vs_eager_generic']:.2f}x")
    return row


def _measure(args: tuple[str, int, int, int, str, bool]) -> dict:
    """One configuration, in its own process so its peak memory is its own."""
    encoder_name, batch_size, width, repeats, device_name, tuned = args
    if tuned:
        tune_cpu_allocator()
    device = torch.device(device_name)
    torch.manual_seed(0)
    batch = make_batch(lambda: siren(hidden=(width, width)), batch_size, device)
    encoder = ENCODERS[encoder_name](10, hidden=64, num_layers=4).to(device)
    baseline = peak_rss()  # batch built, nothing run yet
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    encoder(batch)  # lazy initialisation
    seconds = step_time(encoder, batch, repeats, device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = peak_rss() - baseline
    return {"encoder": encoder_name, "batch": batch_size, "siren_width": width, "step_s": seconds,
            "graphs_per_s": batch_size / seconds, "peak_bytes": peak}


def main() -> None:
    args, device, tuned = encoder_benchmark_args(__doc__.split("\n")[0], "encoders")
    size, repeats = (16, 1) if args.quick else (256, 3)
    # --quick compiles the SIREN row only: tracing the CNN's dense path alone takes about 40 s on 2 cores
    ratios = [dense_vs_generic(name, factory, size, repeats, device,
                               None if args.quick and name != "SIREN" else args.compile, args.compile_backend)
              for name, factory in (("SIREN", siren), ("SmallCNN", small_cnn))]
    grid = [(e, b, w, 1 if args.quick else 2, args.device, tuned) for e in ENCODERS
            for b in ((8,) if args.quick else (16, 64)) for w in ((8,) if args.quick else (16, 32, 64))]
    with run_pool() as pool:  # a kill ends the measuring worker too
        scaling = pool.map(_measure, grid, chunksize=1)
    for row in scaling:
        print(f"{row['encoder']:<18} batch {row['batch']:>4} SIREN width {row['siren_width']:>3}: "
              f"{row['graphs_per_s']:>9.1f} graphs/s (fwd+bwd), peak memory {row['peak_bytes'] / 2**20:8.1f} MiB")
    report = {"benchmark": "encoders", "quick": args.quick, "device": str(device), "torch": torch.__version__,
              "allocator": "tuned" if tuned else "default", "compile_mode": args.compile,
              "compile_backend": args.compile_backend if args.compile else None,
              "threads": torch.get_num_threads(), "dense_vs_generic": ratios, "scaling": scaling}
    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
