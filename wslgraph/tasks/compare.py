"""The comparison harness behind ``wslgraph bench`` and ``benchmarks/compare.py``.

Trains every model (GNNEncoder and TransformerEncoder, each with and without
probe features, DWSNet, NFN-HNP, NFN-NP, the flat MLP and StatNN; DWSNet only
on MLP zoos, probes only on INR zoos) with the same training loop, epochs and
seeds, and writes a markdown table and JSON: the test metric (mean ± std over
seeds), parameters, training seconds per epoch, inference graphs/s, peak
memory, hardware and versions. The task follows the zoo: digit classification
for INR zoos (accuracy), generalization prediction for CNN zoos (Kendall's tau
and R² of test accuracy).

Every (model, seed) run is its own process, so its peak memory is its own:
growth of peak RSS over the loaded zoo on CPU, ``max_memory_allocated`` on CUDA.

``--option NAME:KEY=VALUE`` (:func:`parse_options`) passes a constructor option
(a JSON value) to one model; the keys ``lr``, ``batch_size``, ``weight_decay``
and ``grad_clip`` set that model's training instead. The command line itself
is ``wslgraph bench`` (:mod:`wslgraph.cli`).
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import signal
import statistics
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from wslgraph.baselines import BASELINES
from wslgraph.errors import OptionError, UnsupportedModuleError, ZooError
from wslgraph.io import atomic_write_bytes, atomic_write_json
from wslgraph.nn import ProbeFeatures
from wslgraph.runtime import peak_rss, tune_cpu_allocator
from wslgraph.tasks.editing import EDITABLE, INREditor
from wslgraph.tasks.loop import TrainConfig, build_model, train
from wslgraph.tasks.task import Task, task_for
from wslgraph.version import __version__
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.jobs import inr_zoo_job
from wslgraph.zoo.storage import generate_zoo

ENCODERS = ["gnn", "gnn-probe", "transformer", "transformer-probe"]
DEFAULT_MODELS = [*ENCODERS, *[name for name in BASELINES if name != "mlp-aug"]]
TRAINING_KEYS = ("lr", "batch_size", "weight_decay", "grad_clip", "warmup_steps")


__all__ = ["DEFAULT_MODELS", "BenchOptions", "compare", "compare_quick", "check_models", "option_value",
           "parse_options", "quick_zoo", "default_options", "check_harness_options", "harness_jobs", "make_model",
           "open_harness_zoo", "run_one", "run_pool"]


@dataclass(frozen=True)
class BenchOptions:
    """What the harness trains and how (the command line's options, checked).

    ``options`` maps a model name to its constructor options, plus the training keys ``lr``, ``batch_size``,
    ``weight_decay``, ``grad_clip`` and ``warmup_steps`` for that model alone. ``markdown`` defaults to ``json``
    with ``.md``.
    With ``runs``, each (model, seed) run keeps its checkpoints and result in ``runs/MODEL/seedN``: an
    interrupted comparison resumes there (finished runs are read back, unfinished ones resume their last epoch).
    """

    models: tuple[str, ...] = tuple(DEFAULT_MODELS)
    options: dict[str, dict[str, object]] = field(default_factory=dict)
    seeds: int = 3
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    device: str = "cpu"
    augment: str = "none"
    task: str = "auto"
    json: Path = Path("benchmarks/results/compare.json")
    markdown: Path | None = None
    quick: bool = False
    runs: Path | None = None


@contextmanager
def quick_zoo(prefix: str) -> Iterator[Path]:
    """A tiny MNIST-5k INR zoo (64 INRs, 30 steps each; seconds) in a temporary folder, removed on exit: what the
    ``--quick`` modes of the harness and the sweep train on."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        zoo = Path(folder) / "zoo"
        generate_zoo(zoo, inr_zoo_job("mnist5k", train_images=48, test_images=16, shard_size=64, steps=30),
                     progress=False)
        yield zoo


def compare_quick(args: BenchOptions) -> dict:
    """:func:`compare` on :func:`quick_zoo`, one epoch, one seed (seconds)."""
    with quick_zoo("wslgraph-compare-") as zoo:
        return compare(zoo, replace(args, seeds=1, epochs=1, quick=True))


def check_models(models: Sequence[str]) -> None:
    """``ValueError`` naming any model the harness does not know."""
    unknown = sorted({name for name in models if name.removesuffix("-probe") not in ("gnn", "transformer")
                      and name not in BASELINES and name != "gnn-windows"})
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {DEFAULT_MODELS + ['mlp-aug', 'gnn-windows']}")


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def run_pool() -> Iterator[multiprocessing.pool.Pool]:
    """A pool of one spawned worker that takes one run at a time (so each run's peak memory is its own).

    ``SIGTERM`` to this process (``kill``, a scheduler's time limit) ends the worker too: while the pool lives,
    the signal raises ``SystemExit`` here, and leaving the pool terminates its worker. Without it the worker
    survived its parent and kept training, writing into the run folder that the next attempt resumes from.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main else None
    try:
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            yield pool
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def option_value(text: str) -> object:
    """An option's value as the command line gives it: JSON where it parses (``128``, ``0.2``, ``true``,
    ``[64, 64]``), else the bare string (``layer``, ``scale``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def parse_options(items: list[str]) -> dict[str, dict[str, object]]:
    """``["gnn:hidden=128", "gnn:lr=1e-3"]`` -> ``{"gnn": {"hidden": 128, "lr": 0.001}}`` (values are JSON)."""
    options: dict[str, dict[str, object]] = {}
    for item in items:
        name, sep, assignment = item.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and name and key):
            raise ValueError(f"--option {item!r}: expected NAME:KEY=VALUE, e.g. gnn:hidden=128")
        options.setdefault(name, {})[key] = option_value(value)
    return options


def default_options(name: str, options: dict[str, object], kind: str, task: str) -> dict[str, object]:
    """A model's options with the harness's defaults for this kind of zoo filled in (the user's options win).

    The GNN and the transformer classify INR zoos with ``symmetry="sign"``: on the 3,000-INR Fashion-MNIST zoo
    gnn-probe gave 72.9 ± 1.0 % against 67.6 ± 2.5 % with ``"permutation"`` (3 seeds x 5 epochs), transformer-probe
    72.9 ± 0.4 % against 67.6 ± 0.3 % (2 seeds x 2 epochs; README, "Symmetries beyond permutation").

    The GNN reads CNN zoos with ``statistics=True`` (the weight statistics s(W) beside its pooled states) and
    ``dropout=0.2``: on the 1,000-CNN Fashion-MNIST zoo its validation Kendall τ went from 0.692 ± 0.019 to
    0.718 ± 0.013 with the statistics, and to 0.747 ± 0.003 with dropout as well (3 seeds x 20 epochs; README,
    "Sweeps"). CNN zoos keep ``symmetry="permutation"``: "scale" gave 0.648 on the first seed against 0.698. The
    transformer reads CNN zoos the same way: 0.661 ± 0.030 at its old defaults, 0.703 ± 0.033 with the statistics,
    0.718 ± 0.005 with dropout as well (same zoo and protocol).

    ``gnn-probe`` classifies INR zoos with 64 probes, each layer's projected to 64 with a LayerNorm (Neural
    Graphs' configuration): validation accuracy 0.769 ± 0.017 against 0.708 ± 0.007 with 16 raw probes on the
    3,000-INR Fashion-MNIST zoo (3 seeds x 2 epochs; README, "Sweeps"). So does ``transformer-probe``: 0.805 ±
    0.016 against 0.728 ± 0.022 there.
    """
    options = dict(options)
    if name.removesuffix("-probe") in ("gnn", "transformer", "gnn-windows") and kind == "inr" and \
            task == "classification":
        options.setdefault("symmetry", "sign")
    if name in ("gnn-probe", "transformer-probe") and kind == "inr" and task == "classification":
        options.setdefault("probe_options", {"num_probes": 64, "projection": 64})
    if name in ("gnn", "transformer") and kind == "cnn" and \
            options.get("symmetry", "permutation") in ("permutation", "scale"):
        options.setdefault("statistics", True)
        options.setdefault("dropout", 0.2)
    return options


def make_model(name: str, out_dim: int, options: dict[str, object], train_set: ZooDataset,
               task: str = "classification") -> torch.nn.Module:
    """``gnn``/``transformer`` (``-probe``: with probe features of the zoo's INR template) or a baseline.

    For ``task="editing"`` the model is an :class:`~wslgraph.tasks.editing.INREditor` around it,
    rendering at the zoo's image size with its recipe's output offset.
    """
    base = name.removesuffix("-probe")
    options = dict(options)
    if name.endswith("-probe"):
        options["probe"] = ProbeFeatures(train_set.template, **options.pop("probe_options", {}))
    if task == "editing":
        if base not in EDITABLE:
            raise UnsupportedModuleError(f"{base} has no per-weight readout for editing; editable: {EDITABLE}")
        description = train_set.arrays.description
        return INREditor(base, tuple(description["image_shape"][-2:]), description.get("output_offset", 0.0),
                         **options)
    return build_model(base, out_dim, **options)


def check_harness_options(args: BenchOptions, train_set: ZooDataset, kind: str, task: str, out_dim: int) -> None:
    """Build every model once, with its options, before any training: a bad option ends the bench before its first
    run (:class:`~wslgraph.errors.OptionError`), not inside a worker after others have trained."""
    strays = sorted(set(args.options) - set(args.models))
    if strays:
        raise OptionError(f"--option names {strays}, which are not among the models {list(args.models)}; add them "
                          "to --models or fix the name")
    for name in args.models:
        if name.endswith("-probe") and kind != "inr":
            continue
        options = default_options(name, args.options.get(name, {}), kind, task)
        training = {key: options.pop(key) for key in TRAINING_KEYS if key in options}
        try:
            TrainConfig(task=task, epochs=args.epochs, **{"lr": args.lr, "batch_size": args.batch_size, **training})
            make_model(name, out_dim, options, train_set, task)
        except (UnsupportedModuleError, NotImplementedError):
            continue  # reported as skipped when its turn comes
        except (TypeError, ValueError) as error:
            raise OptionError(f"{name}: {error}") from None


def harness_jobs(zoo: Path, name: str, options: dict[str, object], args: BenchOptions, task: str, out_dim: int,
                 folder: str) -> list[dict]:
    """One :func:`run_one` job per seed of ``args``: ``name`` with ``options`` (training keys included), kept in
    ``args.runs / folder / seedN`` when ``args.runs`` is set."""
    return [{"zoo": str(zoo), "model": name, "options": options, "seed": seed, "task": task, "out_dim": out_dim,
             "epochs": args.epochs, "device": args.device,
             "training": {"lr": args.lr, "batch_size": args.batch_size, "augment": args.augment},
             "out_dir": str(args.runs / folder / f"seed{seed}") if args.runs is not None else None}
            for seed in range(args.seeds)]


def run_one(job: dict) -> dict:
    """One model and seed, in a fresh process: the result of :func:`wslgraph.tasks.train` plus peak memory.

    With ``job["out_dir"]`` the run checkpoints there every epoch and resumes from it, and its result is kept in
    ``result.json`` next to the job that made it; a finished run of the same job is read back, not retrained.
    """
    out_dir = Path(job["out_dir"]) if job.get("out_dir") else None
    if out_dir is not None and (out_dir / "result.json").exists():
        saved = json.loads((out_dir / "result.json").read_text())
        if _same_job(saved.get("job"), job):
            return {**saved["result"], "resumed": True}
    result = _train_one(job, out_dir)
    if out_dir is not None and "skipped" not in result:
        atomic_write_json(out_dir / "result.json", {"job": job, "result": result})
    return result


def _same_job(saved: object, job: dict) -> bool:
    """Whether a kept result was made by this job, wherever its folder now is (a moved or linked ``--runs``
    folder is read back, not re-evaluated)."""
    return isinstance(saved, dict) and {**saved, "out_dir": None} == {**job, "out_dir": None}


def _train_one(job: dict, out_dir: Path | None) -> dict:
    if job["device"] == "cpu":
        tune_cpu_allocator()
    splits = {s: ZooDataset(job["zoo"], s) for s in ("train", "val", "test")}
    options = dict(job["options"])
    training = {key: options.pop(key) for key in TRAINING_KEYS if key in options}
    config = TrainConfig(task=job["task"], epochs=job["epochs"], seed=job["seed"], patience=0, progress=False,
                         device=job["device"], **{"warmup_steps": 10, **job["training"], **training})
    device = torch.device(job["device"])
    torch.manual_seed(job["seed"])
    baseline = peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        model = make_model(job["model"], job["out_dim"], options, splits["train"], job["task"])
        result = train(model, splits["train"], splits["val"], config, test_set=splits["test"], out_dir=out_dir)
    except (UnsupportedModuleError, NotImplementedError) as error:
        return {"skipped": str(error)}
    result["peak_bytes"] = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                            else peak_rss() - baseline)
    result["config"] = {"lr": config.lr, "batch_size": config.batch_size, "weight_decay": config.weight_decay,
                        "grad_clip": config.grad_clip, "augment": config.augment}
    return result


def open_harness_zoo(zoo: Path, task: str) -> tuple[dict[str, ZooDataset], str, Task]:
    """The zoo's train/val/test splits, its kind and the task the harness trains on it (a zoo that has none: a
    :class:`~wslgraph.errors.ZooError` naming the folder)."""
    splits = {s: ZooDataset(zoo, s) for s in ("train", "val", "test")}
    try:
        chosen = task_for(splits["train"], task)
    except ZooError as error:
        raise ZooError(f"{zoo}: {error}") from None
    return splits, splits["train"].arrays.kind, chosen


def compare(zoo: Path, args: BenchOptions | None = None) -> dict:
    """Train every model in ``args.models`` on ``zoo``, write the table and JSON, and return the report."""
    args = args or BenchOptions()
    splits, kind, chosen = open_harness_zoo(zoo, args.task)
    task, metric, out_dim = chosen.name, chosen.metric, chosen.out_dim(splits["train"])
    print(f"zoo {zoo}: {kind}, {len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])} models; task {task}; "
          f"{args.epochs} epochs x {args.seeds} seeds per model; augment {args.augment}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    rows = []
    reference = None
    if task == "editing":
        reference = no_edit_mse(splits["test"])
        print(f"{'no edit':<18} mse {reference:.4f} (the input INR against its dilation)")
    check_harness_options(args, splits["train"], kind, task, out_dim)
    with run_pool() as pool:
        for name in args.models:
            if name.endswith("-probe") and kind != "inr":
                print(f"{name:<18} skipped: probe features need an INR zoo")
                continue
            options = default_options(name, args.options.get(name, {}), kind, task)
            runs = pool.map(run_one, harness_jobs(zoo, name, options, args, task, out_dim, name), chunksize=1)
            if "skipped" in runs[0]:
                print(f"{name:<18} skipped: {runs[0]['skipped']}")
                continue
            rows.append(summarise(name, options, runs, metric))
            row = rows[-1]
            resumed = sum(bool(r.get("resumed")) for r in runs)
            if resumed:
                print(f"{name:<18} {resumed} of {len(runs)} runs read back from {args.runs / name}")
            print(f"{name:<18} {metric} {row['mean']:.4f} ± {row['std']:.4f}  {row['parameters']:>11,} params  "
                  f"{row['seconds_per_epoch']:7.2f} s/epoch  {row['inference_graphs_per_s']:9.1f} graphs/s  "
                  f"peak {row['peak_mib']:8.1f} MiB", flush=True)
    hardware = {"machine": platform.machine(), "processor": platform.processor(), "threads": torch.get_num_threads(),
                "device": args.device,
                "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    report = {"benchmark": "compare", "quick": args.quick, "zoo": str(zoo), "task": task, "metric": metric,
              "epochs": args.epochs, "seeds": args.seeds, "lr": args.lr, "batch_size": args.batch_size,
              "augment": args.augment,
              "rows": rows, "no_edit_mse": reference, "hardware": hardware,
              "versions": {"wslgraph": __version__, "torch": torch.__version__, "python": platform.python_version()}}
    atomic_write_json(args.json, report)
    extra = " | test R² |" if task == "regression" else " |"
    lines = [f"| model | test {metric} (mean ± std, {args.seeds} seeds){extra} parameters | s/epoch | "
             "inference graphs/s | peak memory (MiB) |",
             "|---|---|" + ("---|" if task == "regression" else "") + "---|---|---|---|"]
    for r in rows:
        r2 = f" {r['r2_mean']:.3f} ± {r['r2_std']:.3f} |" if task == "regression" else ""
        lines.append(f"| {r['model']} | {r['mean']:.4f} ± {r['std']:.4f} |{r2} {r['parameters']:,} | "
                     f"{r['seconds_per_epoch']:.2f} | {r['inference_graphs_per_s']:.0f} | {r['peak_mib']:.0f} |")
    if reference is not None:
        lines.append(f"| no edit (the input INR) | {reference:.4f} | 0 | | | |")
    markdown = args.markdown or args.json.with_suffix(".md")
    atomic_write_bytes(markdown, ("\n".join(lines) + "\n").encode())
    print(f"wrote {args.json} and {markdown}")
    return report


@torch.no_grad()
def no_edit_mse(test_set: ZooDataset) -> float:
    """Pixel MSE between each test INR's rendering and its dilation (what an editor must beat)."""
    description = test_set.arrays.description
    editor = INREditor("mlp", tuple(description["image_shape"][-2:]), description.get("output_offset", 0.0))
    errors = torch.cat([editor(batch) for batch in test_set.batches(256)])  # an untrained editor edits nothing
    return float(errors.mean())


def summarise(name: str, options: dict, runs: list[dict], metric: str) -> dict:
    """One table row: mean ± std of the test metric over seeds, and the costs."""
    def spread(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    mean, std = spread([r["test"][metric] for r in runs])
    row = {"model": name, "options": dict(options), "metric": metric, "mean": mean, "std": std,
           "scores": [r["test"][metric] for r in runs], "best_epochs": [r["best_epoch"] for r in runs],
           "parameters": runs[0]["parameters"], "training": runs[0]["config"],
           "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in runs),
           "inference_graphs_per_s": statistics.fmean(r["test"]["graphs_per_s"] for r in runs),
           "peak_mib": max(r["peak_bytes"] for r in runs) / 2**20}
    if "r2" in runs[0]["test"]:
        row["r2_mean"], row["r2_std"] = spread([r["test"]["r2"] for r in runs])
    return row

