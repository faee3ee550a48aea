"""Embedding one large network in bounded memory: graph windows vs token windows, on CPU.

For a torchvision-shaped ResNet-18 and ResNet-50 (``wslgraph.zoo.resnet``, 1,000 classes, random weights), each
configuration runs in a fresh process and reports the seconds to embed one network (after one warm-up call) and
the process's peak resident memory (VmHWM: everything, the interpreter, torch and the network's weights
included; each process's address space is capped at 14 GiB, and a configuration that needs more is reported
as failed instead of taking the machine down):

* ``graph windows, size s``: :class:`~wslgraph.nn.WindowedEncoder` around a ``GNNEncoder`` (the harness's
  defaults: hidden 64, 4 layers), windows of ``s`` depth levels built from the flat rows (no whole graph);
* ``whole graph``: the same GNNEncoder on the whole graph at once (ResNet-18 only: the reference point);
* ``token windows``: SANE's :class:`~wslgraph.tokens.TokenTransformer` with SANE's ResNet settings (tokens of
  288 values, windows of 256 tokens, width 128, 2 layers), the mean token latent.

The goal (issue 16): under 2 GiB for ResNet-18 and under 6 GiB for ResNet-50, memory growing with the window,
not with the model.

With ``--zoo DIR`` it embeds every checkpoint of a zoo instead (the scale test set: ``wslgraph zoo cnn DIR
--grid resnet --depth 18 --width 64``, trained ResNet-18s), one process per method reading one row at a time
from the shards, and reports the seconds per checkpoint, the peak and how far apart the embeddings are.

    .venv/bin/python benchmarks/scale.py [--quick] [--json PATH]
    .venv/bin/python benchmarks/scale.py --zoo /work/zoos/resnet18-fmnist --json PATH
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from pathlib import Path

import torch

from wslgraph.io import atomic_write_json
from wslgraph.runtime import peak_rss

GIB = 2**30
LIMIT_GIB = 14  # address-space cap of each configuration's process: beyond it the row says so, nothing is killed


def _network(depth: int, quick: bool) -> torch.nn.Module:
    from wslgraph.zoo import resnet

    return resnet(depth, width=4, num_classes=10) if quick else resnet(depth, num_classes=1000)


def _zoo_rows(root: str) -> tuple[object, list]:
    """A zoo's layout and, per row, a function reading that row ``[1, P]`` alone from its shard."""
    import json

    from safetensors import safe_open

    from wslgraph.graph.layout import GraphLayout

    manifest = json.loads((Path(root) / "manifest.json").read_text())

    def reader(file: str, index: int):
        def read() -> torch.Tensor:
            with safe_open(Path(root) / file, framework="pt") as shard:
                return shard.get_slice("params")[index:index + 1].float()
        return read

    readers = [reader(entry["file"], i) for entry in manifest["shards"] for i in range(entry["count"])]
    return GraphLayout.from_dict(manifest["layout"]), readers


def _encoder(method: str, layout: object, size: int | None, hidden: int, quick: bool):
    """``(embed(rows) -> [1, 32 or 16], detail)`` for one windowed method."""
    from wslgraph.nn import GNNEncoder, WindowedEncoder
    from wslgraph.tokens import TokenTransformer

    if method == "token windows":
        encoder = TokenTransformer(layout, hidden=2 * hidden, latent=32, window=256, token_width=288)
        return encoder.embedding, {"tokens": encoder.tokens.num_tokens, "windows": len(encoder.windows())}
    encoder = WindowedEncoder(GNNEncoder(16, hidden=hidden, num_layers=2 if quick else 4), size=size)
    windows = encoder.windows(layout)
    return (lambda rows: encoder.pool_rows(rows, layout)), {
        "windows": len(windows), "largest_window_edges": max(s.num_edges for s in windows.layouts)}


def run_zoo(job: dict) -> dict:
    """Every checkpoint of a zoo, one row in memory at a time, with one encoder (in this fresh process)."""
    torch.manual_seed(0)
    torch.set_num_threads(job["threads"])
    layout, readers = _zoo_rows(job["zoo"])
    embed, detail = _encoder(job["method"], layout, job["size"], 64, False)
    outputs, seconds = [], []
    with torch.no_grad():
        embed(readers[0]())  # lazy parameters, allocator warm-up
        for read in readers:
            rows = read()
            start = time.perf_counter()
            outputs.append(embed(rows)[0])
            seconds.append(time.perf_counter() - start)
            del rows
    out = torch.stack(outputs)
    assert bool(torch.isfinite(out).all())
    gaps = torch.cdist(out, out)
    spread = float(gaps[~torch.eye(len(out), dtype=torch.bool)].min() / out.norm(dim=1).mean()) if len(out) > 1 else 0
    return {**job, **detail, "checkpoints": len(readers), "seconds": sum(seconds) / len(seconds),
            "peak_rss_gib": peak_rss() / GIB, "network_params": layout.num_params,
            "network_edges": layout.num_edges, "closest_pair_relative": spread}


def run(job: dict) -> dict:
    """One configuration in this (fresh) process."""
    if job.get("zoo"):
        return run_zoo(job)
    from wslgraph import GraphTemplate
    from wslgraph.nn import GNNEncoder

    torch.manual_seed(0)
    torch.set_num_threads(job["threads"])
    model = _network(job["depth"], job["quick"])
    template = GraphTemplate.from_module(model, input_shape=(3, 32, 32) if job["quick"] else (3, 224, 224))
    rows = template.flatten(model.state_dict()).unsqueeze(0)
    del model
    hidden = 16 if job["quick"] else 64
    if job["method"] == "whole graph":
        gnn = GNNEncoder(16, hidden=hidden, num_layers=2 if job["quick"] else 4)
        batch = template.batch(rows)
        detail = {"edges": template.layout.num_edges}

        def embed() -> torch.Tensor:
            return gnn(batch)
    else:
        encode, detail = _encoder(job["method"], template.layout, job["size"], hidden, job["quick"])

        def embed() -> torch.Tensor:
            return encode(rows)
    with torch.no_grad():
        embed()  # lazy parameters, allocator warm-up
        start = time.perf_counter()
        out = embed()
        seconds = time.perf_counter() - start
    assert bool(torch.isfinite(out).all())
    return {**job, **detail, "seconds": seconds, "peak_rss_gib": peak_rss() / GIB,
            "network_edges": template.layout.num_edges, "network_params": template.num_params}


def goals_met(rows: list[dict]) -> dict:
    """Per network and windowed method, the lowest peak (GiB) and whether it is under issue 16's goal."""
    goals, met = {18: 2.0, 50: 6.0}, {}
    for row in rows:
        if row["method"] == "whole graph" or "error" in row:
            continue
        key = f"resnet{row['depth']} {row['method']}"
        best = min(met.get(key, {"peak_gib": float("inf")})["peak_gib"], row["peak_rss_gib"])
        met[key] = {"peak_gib": round(best, 2), "met": best < goals[row["depth"]]}
    return met


def _child(job: dict, queue: multiprocessing.Queue) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_GIB * GIB, LIMIT_GIB * GIB))
    try:
        queue.put(run(job))
    except (MemoryError, RuntimeError) as error:  # torch's allocator raises RuntimeError past the cap
        queue.put({**job, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:120]}",
                   "peak_rss_gib": peak_rss() / GIB})


def isolated(job: dict) -> dict:
    """``run(job)`` in a fresh process with its address space capped at ``LIMIT_GIB``."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(job, queue))
    process.start()
    process.join()
    if queue.empty():
        return {**job, "error": f"the process died (exit code {process.exitcode})", "peak_rss_gib": float("nan")}
    return queue.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNets at width 4 on 32x32 inputs, for tests")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/scale.json"))
    parser.add_argument("--zoo", default=None, help="embed every checkpoint of this ResNet zoo instead")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    if args.zoo:
        rows = [isolated({"zoo": args.zoo, "method": method, "size": size, "threads": threads, "quick": False,
                          "depth": None}) for method, size in (("graph windows", 1), ("token windows", None))]
        for row in rows:
            if "error" in row:
                print(f"{row['method']:<15} failed under the {LIMIT_GIB} GiB cap: {row['error']}", flush=True)
                continue
            print(f"{row['method']:<15} {row['checkpoints']} checkpoints of {row['network_params']:,} values: "
                  f"{row['seconds']:6.2f} s each, peak RSS {row['peak_rss_gib']:5.2f} GiB; closest two embeddings "
                  f"{row['closest_pair_relative']:.2e} of a norm apart", flush=True)
        atomic_write_json(args.json, {"benchmark": "scale", "zoo": args.zoo, "torch": torch.__version__,
                                      "threads": threads, "rows": rows})
        return
    jobs = [{"depth": 18, "method": "whole graph", "size": None}]
    for depth in (18, 50):
        jobs += [{"depth": depth, "method": "graph windows", "size": s} for s in (1, 2, 4)]
        jobs.append({"depth": depth, "method": "token windows", "size": None})
    rows = []
    for job in jobs:
        row = isolated({**job, "quick": args.quick, "threads": threads})
        rows.append(row)
        label = row["method"] + (f", size {row['size']}" if row["size"] else "")
        if "error" in row:
            print(f"ResNet-{row['depth']:<3} {label:<22} failed under the {LIMIT_GIB} GiB cap: {row['error']}",
                  flush=True)
            continue
        print(f"ResNet-{row['depth']:<3} {label:<22} {row['seconds']:8.2f} s   peak RSS {row['peak_rss_gib']:6.2f} GiB"
              f"   ({row.get('largest_window_edges', row.get('edges', row.get('tokens'))):,} "
              f"{'tokens' if 'tokens' in row else 'edges at once'})", flush=True)
    met = goals_met(rows)
    print("goals (ResNet-18 < 2 GiB, ResNet-50 < 6 GiB), lowest peak per method:", met)
    atomic_write_json(args.json, {"benchmark": "scale", "torch": torch.__version__, "threads": threads,
                                  "quick": args.quick, "rows": rows, "goals": met})


if __name__ == "__main__":
    main()
