"""Sweeps of one harness model's options, chosen on a zoo's validation split (``benchmarks/sweep.py``).

A sweep starts from the harness's configuration of one model (its constructor options and
training settings as ``wslgraph bench`` would use them on this zoo, :func:`~wslgraph.tasks.compare.default_options`)
and changes one option at a time to each listed value. Every setting trains ``seeds`` times through the
harness's own run (:func:`~wslgraph.tasks.compare.run_one`: same loop, warm-up, early stopping on validation,
one fresh process per run), and is ranked by the mean over seeds of its **validation** score at the best
epoch; the test metric is reported beside it but never used to choose. With ``combine`` the best value of each
option (where it beat the base) is then trained together as one more setting. The result names the setting
with the best validation mean, and is written as JSON and a markdown table.

Option values are JSON, as for ``--option``: ``dropout=0,0.2``, ``symmetry=permutation,scale``,
``lr=1e-3`` (the training keys ``lr``, ``batch_size``, ``weight_decay``, ``grad_clip`` and ``warmup_steps``
sweep the training settings of the model), ``probe_options={"num_probes":64,"projection":64}``.
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from wslgraph.errors import OptionError
from wslgraph.io import atomic_write_bytes, atomic_write_json
from wslgraph.tasks.compare import (
    TRAINING_KEYS,
    BenchOptions,
    check_harness_options,
    check_models,
    default_options,
    harness_jobs,
    open_harness_zoo,
    option_value,
    quick_zoo,
    run_one,
    run_pool,
)
from wslgraph.tasks.task import get_task
from wslgraph.version import __version__

__all__ = ["SweepOptions", "parse_base", "parse_variations", "sweep", "sweep_quick"]


@dataclass(frozen=True)
class SweepOptions:
    """What a sweep trains: ``model`` with ``base`` options (on top of the harness defaults), and for each key of
    ``variations`` each of its values in turn. ``harness`` says how each setting trains and where results go, as
    for ``wslgraph bench`` (its ``seeds``, ``epochs``, ``batch_size``, ``lr``, ``device``, ``augment``, ``task``,
    ``json``, ``markdown``, ``runs`` and ``quick``; its ``models`` and ``options`` are not used)."""

    model: str = "gnn"
    variations: dict[str, list[object]] = field(default_factory=dict)
    base: dict[str, object] = field(default_factory=dict)
    combine: bool = True
    harness: BenchOptions = field(default_factory=lambda: BenchOptions(
        epochs=20, json=Path("benchmarks/results/sweep.json")))


def parse_variations(items: list[str]) -> dict[str, list[object]]:
    """``["dropout=0,0.2", "symmetry=permutation,scale"]`` -> ``{"dropout": [0, 0.2], "symmetry": [...]}``.

    Each value is JSON where it parses (a bare word is a string); when the whole list parses as JSON, commas
    inside objects and lists stay theirs (``probe_options={"num_probes":64,"projection":64}`` is one value).
    ``ValueError`` names a malformed item or a key given twice."""
    variations: dict[str, list[object]] = {}
    for item in items:
        key, eq, values = item.partition("=")
        key = key.strip()
        if not (eq and key and values.strip()):
            raise ValueError(f"--vary {item!r}: expected KEY=V1,V2,..., e.g. dropout=0,0.2")
        if key in variations:
            raise ValueError(f"--vary names {key!r} twice; list all its values in one --vary {key}=V1,V2")
        try:  # a JSON list's commas first (dicts and lists as values), else bare words split at commas
            parsed = json.loads(f"[{values}]")
        except json.JSONDecodeError:
            parsed = [option_value(text) for text in values.split(",")]
        variations[key] = parsed
    return variations


def parse_base(items: list[str]) -> dict[str, object]:
    """``["hidden=128", "readout_hidden=layer"]`` -> ``{"hidden": 128, "readout_hidden": "layer"}``: the options
    every setting of a sweep shares (values as :func:`~wslgraph.tasks.compare.option_value` reads them)."""
    base: dict[str, object] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not (eq and key.strip()):
            raise ValueError(f"--base {item!r}: expected KEY=VALUE, e.g. hidden=128")
        base[key.strip()] = option_value(value)
    return base


def sweep_quick(args: SweepOptions) -> dict:
    """:func:`sweep` on :func:`~wslgraph.tasks.compare.quick_zoo`, one epoch, one seed (seconds)."""
    with quick_zoo("wslgraph-sweep-") as zoo:
        return sweep(zoo, replace(args, harness=replace(args.harness, seeds=1, epochs=1, quick=True)))


def _label(change: dict[str, object]) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in change.items()) or "base"


def sweep(zoo: str | Path, args: SweepOptions | None = None) -> dict:
    """Train every setting of the sweep (see the module docstring), write the JSON and table, return the report."""
    args = args or SweepOptions()
    bench, zoo = args.harness, Path(zoo)
    check_models([args.model])
    if not args.variations:
        raise OptionError("a sweep needs at least one --vary KEY=V1,V2")
    splits, kind, chosen = open_harness_zoo(zoo, bench.task)
    task, metric, out_dim = chosen.name, chosen.metric, chosen.out_dim(splits["train"])
    sign = task_sign(task)
    base = default_options(args.model, args.base, kind, task)
    training = {"lr": bench.lr, "batch_size": bench.batch_size, "augment": bench.augment}
    # every setting is built once before any training, so a bad value ends the sweep before its first run
    settings = [{}] + [{key: value} for key, values in args.variations.items() for value in values
                       if _current(base, training, key) != value]
    for change in settings:
        check_harness_options(replace(bench, models=(args.model,), options={args.model: {**base, **change}}),
                              splits["train"], kind, task, out_dim)
    print(f"sweep {args.model} on {zoo}: {kind}, task {task}, selected by validation {metric}; "
          f"{bench.epochs} epochs x {bench.seeds} seeds per setting; base options {json.dumps(base)}", flush=True)
    rows: list[dict] = []
    with run_pool() as pool:
        def run(change: dict[str, object]) -> dict:
            folder = "".join(c if c.isalnum() or c in "._=-" else "_" for c in _label(change))
            jobs = harness_jobs(zoo, args.model, {**base, **change}, bench, task, out_dim, folder)
            row = _summarise(change, pool.map(run_one, jobs, chunksize=1), chosen)
            rows.append(row)
            print(f"{row['setting']:<40} val {metric} {row['val_mean']:.4f} ± {row['val_std']:.4f}   "
                  f"test {row['test_mean']:.4f} ± {row['test_std']:.4f}   {row['parameters']:>9,} params  "
                  f"{row['seconds_per_epoch']:6.2f} s/epoch", flush=True)
            return row

        for change in settings:
            run(change)
        winners = _winners(rows, args.variations, sign)
        if args.combine and len(winners) > 1:
            run(winners)
    best = max(rows, key=lambda r: sign * r["val_mean"])
    report = {"benchmark": "sweep", "quick": bench.quick, "zoo": str(zoo), "model": args.model, "task": task,
              "metric": metric, "selected_by": f"validation {metric} (mean over seeds)", "epochs": bench.epochs,
              "seeds": bench.seeds, "training": training, "base": base, "variations": args.variations,
              "rows": rows, "best": best["setting"], "best_change": best["change"], "winners": winners,
              "hardware": {"machine": platform.machine(), "threads": torch.get_num_threads(), "device": bench.device},
              "versions": {"wslgraph": __version__, "torch": torch.__version__, "python": platform.python_version()}}
    atomic_write_json(bench.json, report)
    lines = [f"| setting | validation {metric} (mean ± std, {bench.seeds} seeds) | test {metric} | best epochs | "
             "parameters | s/epoch |", "|---|---|---|---|---|---|"]
    for r in rows:
        mark = "**" if r is best else ""
        lines.append(f"| {mark}{r['setting']}{mark} | {r['val_mean']:.4f} ± {r['val_std']:.4f} | "
                     f"{r['test_mean']:.4f} ± {r['test_std']:.4f} | {', '.join(map(str, r['best_epochs']))} | "
                     f"{r['parameters']:,} | {r['seconds_per_epoch']:.2f} |")
    markdown = bench.markdown or bench.json.with_suffix(".md")
    atomic_write_bytes(markdown, ("\n".join(lines) + "\n").encode())
    print(f"best by validation: {best['setting']}; wrote {bench.json} and {markdown}")
    return report


def _current(base: dict[str, object], training: dict[str, object], key: str) -> object:
    """The value ``key`` has before the sweep changes it (a training key's harness setting)."""
    if key in base:
        return base[key]
    return training.get(key) if key in TRAINING_KEYS else None


def _summarise(change: dict[str, object], runs: list[dict], task: object) -> dict:
    if "skipped" in runs[0]:
        raise OptionError(f"setting {_label(change)}: {runs[0]['skipped']}")
    metric = task.metric

    def spread(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    val = [r["best_val"][f"val_{metric}"] for r in runs]
    test = [r["test"][metric] for r in runs]
    (val_mean, val_std), (test_mean, test_std) = spread(val), spread(test)
    return {"setting": _label(change), "change": change, "val_mean": val_mean, "val_std": val_std, "val": val,
            "test_mean": test_mean, "test_std": test_std, "test": test,
            **({"test_r2": [r["test"]["r2"] for r in runs]} if "r2" in runs[0]["test"] else {}),
            "best_epochs": [r["best_epoch"] for r in runs], "parameters": runs[0]["parameters"],
            "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in runs)}


def _winners(rows: list[dict], variations: dict[str, list[object]], sign: float) -> dict[str, object]:
    """For each swept key, its value with the best validation mean, where that beats the base setting."""
    base_row = rows[0]
    winners = {}
    for key in variations:
        candidates = [r for r in rows[1:] if list(r["change"]) == [key]]
        if not candidates:
            continue
        top = max(candidates, key=lambda r: sign * r["val_mean"])
        if sign * top["val_mean"] > sign * base_row["val_mean"]:
            winners[key] = top["change"][key]
    return winners


def task_sign(task_name: str) -> float:
    """+1 where a higher metric is better, -1 where lower is (editing's MSE)."""
    task = get_task(task_name)
    return 1.0 if task.score({task.metric: 1.0}) > 0 else -1.0
