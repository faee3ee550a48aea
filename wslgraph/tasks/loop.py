"""One training loop for every model (wslgraph's encoders and the peers), with checkpoints that resume.

:func:`train` fits a model on a :class:`~wslgraph.zoo.ZooDataset` split with
AdamW and a warm-up + cosine schedule, evaluates on the validation split
every epoch, stops early when the validation metric stalls, and keeps the
best weights. With ``out_dir`` it writes, atomically, every epoch:
``checkpoint.safetensors`` + ``checkpoint.json`` (model, optimizer,
scheduler, epoch, best metric), ``best.safetensors``, and the metrics as
``metrics.jsonl`` and ``metrics.csv``. Calling it again with the same
``out_dir`` resumes after the last finished epoch and ends where an
uninterrupted run ends (tested, CPU).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from wslgraph.baselines import BASELINES
from wslgraph.errors import ManifestError, NonFiniteError, OptionError, WSLGraphError, ZooError, check_options
from wslgraph.io import atomic_write_bytes, atomic_write_json
from wslgraph.nn import GNNEncoder, TransformerEncoder, WindowedEncoder, recompute_batch_norm
from wslgraph.tasks.task import TASKS, get_task
from wslgraph.weightspace.augment import AUGMENT_PRESETS, Augmentation, augmentation
from wslgraph.zoo.dataset import ZooDataset

__all__ = ["TrainConfig", "MODELS", "TASKS", "build_model", "train", "evaluate", "init_distributed",
           "training_augmentation"]

def windowed_gnn(out_dim: int, window_levels: int = 1, **options: object) -> WindowedEncoder:
    """``gnn-windows``: a :class:`~wslgraph.nn.GNNEncoder` (``options``) trained and run on windows of
    ``window_levels`` consecutive depth levels (:class:`~wslgraph.nn.WindowedEncoder`), as for networks whose whole
    graph does not fit in memory."""
    return WindowedEncoder(GNNEncoder(out_dim, **options), window_levels)


MODELS = {"gnn": GNNEncoder, "transformer": TransformerEncoder, "gnn-windows": windowed_gnn, **BASELINES}


def build_model(name: str, out_dim: int, **options: object) -> nn.Module:
    """A model by name: ``gnn``, ``transformer``, ``gnn-windows`` (:func:`windowed_gnn`) or a baseline
    (``dwsnet``, ``nfn-hnp``, ``nfn-np``, ``mlp``, ...)."""
    if name not in MODELS:
        raise OptionError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    check_options(name, MODELS[name], options)
    try:
        return MODELS[name](out_dim, **options)
    except WSLGraphError:
        raise
    except (TypeError, ValueError, RuntimeError) as error:  # a value the checks above cannot see
        raise OptionError(f"{name} cannot be built with the options {options}: {error}") from error


@dataclass
class TrainConfig:
    """Training settings.

    Args:
        task: A task name in :data:`~wslgraph.tasks.task.TASKS` (a string, so
            the config stays JSON): ``"classification"`` (cross-entropy;
            metric: accuracy), ``"regression"`` (MSE; metric: Kendall's tau)
            or ``"editing"`` (the model returns each input's loss, e.g.
            :class:`~wslgraph.tasks.editing.INREditor`; metric: its mean, ``mse``).
        epochs: Maximum epochs.
        batch_size: Graphs per step.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up, then cosine decay to 0 over the remaining steps.
        patience: Epochs without validation improvement before stopping (0: never stop early).
        grad_clip: Max gradient norm (0: no clipping).
        seed: Seed of initialisation, batch order and augmentation draws.
        device: Where to train.
        progress: Progress bars.
        augment: Training-time weight-space augmentation, a preset of
            :func:`wslgraph.zoo.augmentation`: ``"none"`` (the default),
            ``"auto"`` (``"inr"`` for classification on INR zoos, else
            ``"none"``), ``"permutation"`` or ``"inr"`` (permutations, sign
            flips, rotations and translations, weight dropout, noise). Off by
            default: on a 2,292-INR Fashion-MNIST zoo, 5 epochs, ``"inr"``
            lowered the GNN's test accuracy from 63.8 to 58.5 % (README). A
            training set built with its own ``augment=`` keeps it. The draws
            restart from the seed and epoch every epoch, so a resumed run draws
            what an uninterrupted one draws; under ``torchrun`` each process
            draws for its own share, so an augmented run is not the one-process
            run bit for bit.
    """

    task: str = "classification"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    patience: int = 10
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    augment: str = "none"
    norm_batches: int = 32

    def __post_init__(self) -> None:
        get_task(self.task)  # a known task name
        if self.augment not in AUGMENT_PRESETS:
            raise ValueError(f"augment must be one of {AUGMENT_PRESETS}, got {self.augment!r}")
        if self.epochs < 1 or self.batch_size < 1 or min(self.warmup_steps, self.patience, self.norm_batches) < 0:
            raise ValueError(f"epochs and batch_size must be >= 1, warmup_steps, patience and norm_batches >= 0; got "
                             f"epochs={self.epochs}, batch_size={self.batch_size}, warmup_steps={self.warmup_steps}, "
                             f"patience={self.patience}, norm_batches={self.norm_batches}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not all(math.isfinite(v) and v >= 0 for v in (self.weight_decay, self.grad_clip)):
            raise ValueError(f"weight_decay and grad_clip must be finite numbers >= 0, got {self.weight_decay}, "
                             f"{self.grad_clip}")


def init_distributed(device: str = "cpu") -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR/PORT``).

    gloo on CPU, nccl on CUDA; a no-op returning ``(0, 1)`` outside ``torchrun``.
    Returns ``(rank, world_size)``.
    """
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def evaluate(model: nn.Module, dataset: ZooDataset, config: TrainConfig) -> dict:
    """Loss and task metrics of ``model`` on a dataset (eval mode), plus inference graphs/s."""
    model.eval()
    outputs, targets = [], []
    start = time.perf_counter()
    for batch in dataset.batches(config.batch_size, device=config.device):
        outputs.append(model(batch).cpu())
        targets.append(batch.y.cpu())
    seconds = time.perf_counter() - start
    output, target = torch.cat(outputs), torch.cat(targets)
    return {**get_task(config.task).metrics(output, target), "graphs_per_s": len(target) / seconds}


def training_augmentation(config: TrainConfig, train_set: ZooDataset) -> Augmentation | None:
    """The augmentation ``config.augment`` names for ``train_set`` (``"auto"`` resolved; see :class:`TrainConfig`)."""
    preset = config.augment
    if preset == "auto":
        classification = get_task(config.task).name == "classification"
        preset = "inr" if classification and train_set.arrays.kind == "inr" else "none"
    return augmentation(preset, train_set.arrays.layout, config.seed)


def _schedule(config: TrainConfig, total_steps: int):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of a model's module tree (every submodule's options, as ``nn.Module.__repr__`` prints them) and
    its state dict's keys, shapes and dtypes: a resumed run must be the same model, not only the same settings."""
    entries = [f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in model.state_dict().items()]
    text = nn.Module.__repr__(model) + "\n" + "\n".join(entries)
    return hashlib.sha256(text.encode()).hexdigest()


def _state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[bytes, dict]:
    # clones: a module shared under several names (e.g. Fourier features) must not share storage on disk
    tensors = {f"model.{k}": v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta: dict = {}
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, entry in state["state"].items():
            for name, value in entry.items():
                tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value).contiguous().cpu()
        meta["param_groups"] = state["param_groups"]
    return save_safetensors(tensors), meta


def _load_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, data: bytes, meta: dict) -> None:
    tensors = load_safetensors(data)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None:
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _write_metrics(out_dir: Path, rows: list[dict]) -> None:
    atomic_write_bytes(out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    buffer = io.StringIO()
    fields = sorted({k for r in rows for k in r})
    writer = csv.DictWriter(buffer, fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out_dir / "metrics.csv", buffer.getvalue().encode())


@dataclass
class _Progress:
    """Where a run stands: what a checkpoint holds besides the weights, optimizer and schedule."""

    history: list[dict] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = -1
    stale: int = 0
    best_bytes: bytes = b""

    @property
    def next_epoch(self) -> int:
        return self.history[-1]["epoch"] + 1 if self.history else 0


def _initialise(model: nn.Module, train_set: ZooDataset, config: TrainConfig, device: torch.device) -> None:
    """Build a lazy model on the first batch (eval mode: batch norms keep their running statistics) and fit a
    peer's input statistics.

    Lazy parameters are drawn on the CPU, whatever ``device`` is: initialised on a CUDA tensor they would come from
    the CUDA generator, and one seed would give different models on the two devices.
    """
    first = next(train_set.batches(config.batch_size, device="cpu"))
    model.cpu().eval()
    with torch.no_grad():
        model(first)
    model.to(device)
    if hasattr(model, "fit_statistics"):
        model.fit_statistics(list(itertools.islice(train_set.batches(config.batch_size, device=device), 20)))
    model.to(device)


def _resume(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, config: TrainConfig) -> _Progress:
    """Load the checkpoint in ``out`` into the model, optimizer and schedule, after checking it is this run's."""
    meta = json.loads((out / "checkpoint.json").read_text())
    _settle_files(out, meta.get("files", {}))
    free = ("epochs", "progress")  # a resumed run may train longer and show or hide progress
    if {k: v for k, v in meta["config"].items() if k not in free} != \
            {k: v for k, v in asdict(config).items() if k not in free}:
        raise ManifestError(f"{out} holds a run with a different configuration ({meta['config']}); use a new "
                            "out_dir or the same settings")
    if meta.get("model", model_fingerprint(model)) != model_fingerprint(model):
        raise ManifestError(f"{out} holds a run of a different model (its structure, options or tensor shapes "
                            "differ); use a new out_dir or build the model with the run's options")
    _load_state(model, optimizer, (out / "checkpoint.safetensors").read_bytes(), meta)
    scheduler.load_state_dict(meta["scheduler"])
    return _Progress(meta["history"], meta["best_score"], meta["best_epoch"], meta["stale"],
                     (out / "best.safetensors").read_bytes())


def _checkpoint(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, config: TrainConfig, progress: _Progress) -> None:
    """Commit one checkpoint atomically across its files.

    The weights go to ``*.next`` files first; ``checkpoint.json``, naming their SHA-256, is the commit point;
    then they are renamed into place. A run killed before the JSON resumes from the previous checkpoint (its files
    are untouched); one killed after it finishes the renames on resume (:func:`_settle_files`).
    """
    data, meta = _state_bytes(model, optimizer)
    files = {"checkpoint.safetensors": data, "best.safetensors": progress.best_bytes}
    for name, blob in files.items():
        atomic_write_bytes(out / f"{name}.next", blob)
    atomic_write_json(out / "checkpoint.json", {**meta, "epoch": progress.history[-1]["epoch"],
                                                "config": asdict(config), "model": model_fingerprint(model),
                                                "scheduler": scheduler.state_dict(), "history": progress.history,
                                                "best_score": progress.best_score,
                                                "best_epoch": progress.best_epoch, "stale": progress.stale,
                                                "files": {name: hashlib.sha256(blob).hexdigest()
                                                          for name, blob in files.items()}})
    for name in files:
        os.replace(out / f"{name}.next", out / name)
    _write_metrics(out, progress.history)


def _settle_files(out: Path, digests: dict[str, str]) -> None:
    """Make the files ``checkpoint.json`` names hold what it committed (finishing an interrupted rename), or
    raise :class:`ManifestError` where neither the file nor its pending copy does."""
    for name, digest in digests.items():
        final, pending = out / name, out / f"{name}.next"
        if final.exists() and hashlib.sha256(final.read_bytes()).hexdigest() == digest:
            pending.unlink(missing_ok=True)  # a later checkpoint was being written when the run stopped
        elif pending.exists() and hashlib.sha256(pending.read_bytes()).hexdigest() == digest:
            os.replace(pending, final)
        else:
            raise ManifestError(f"{final} does not hold what {out / 'checkpoint.json'} committed (SHA-256 "
                                f"{digest[:12]}...); the run folder was changed by hand or damaged: start a new "
                                "out_dir")


def train(model: nn.Module, train_set: ZooDataset, val_set: ZooDataset, config: TrainConfig | None = None, *,
          test_set: ZooDataset | None = None, out_dir: str | os.PathLike[str] | None = None) -> dict:
    """Train ``model`` (built lazily on the first batch), early-stop on validation, report the best epoch.

    Returns a dict with the best epoch, its validation metrics, test metrics
    of the best weights (when ``test_set`` is given), parameters, seconds per
    epoch and the per-epoch history.

    Under ``torchrun`` (after :func:`init_distributed`) the model is wrapped in
    ``DistributedDataParallel``: every process takes its share of each global
    batch of ``batch_size`` models and gradients are averaged, so the result
    matches one process (tested with two gloo processes); only rank 0 writes.
    """
    config = config or TrainConfig()
    for role, dataset in (("training", train_set), ("validation", val_set)):
        if dataset.len() == 0:
            raise ZooError(f"the {role} split has no models, so there is nothing to "
                           f"{'train on' if role == 'training' else 'select the best epoch by'}; INR zoos put train "
                           "image i in validation when i % 12 == 11, so fit at least 12 train images")
    rank, world = _world()
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    _initialise(model, train_set, config, device)
    # a model whose loss can leave parameters out of a step (a representation's contrastive head at gamma 0, or
    # on a process whose share is one model) says so; DDP then marks them ready instead of waiting for them
    unused = bool(getattr(model, "may_leave_parameters_unused", False))
    runner = DistributedDataParallel(model, find_unused_parameters=unused) if world > 1 else model
    plain_train = train_set.with_augment(None)  # what the norms' statistics are recomputed on
    augment = train_set.augment or training_augmentation(config, train_set)
    if augment is not train_set.augment:
        train_set = train_set.with_augment(augment)
    task = get_task(config.task)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(train_set.len() / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, config.epochs * steps_per_epoch))
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / "checkpoint.json").exists():
        progress = _resume(out, model, optimizer, scheduler, config)
    else:
        progress = _Progress(best_bytes=_state_bytes(model)[0])
    for epoch in range(progress.next_epoch, config.epochs):
        if config.patience and progress.stale >= config.patience:
            break
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        if augment is not None:
            augment.reseed(config.seed * 100_003 + epoch)
        started, total, count = time.perf_counter(), 0.0, 0
        batches = train_set.batches(config.batch_size, shuffle=True, generator=generator, device=device, rank=rank,
                                    world_size=world)
        for step, batch in enumerate(tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}", leave=False,
                                          disable=not config.progress or rank != 0)):
            loss = task.loss(runner(batch), batch.y)
            optimizer.zero_grad()
            loss.backward()
            value = float(loss.detach())
            finite = math.isfinite(value)
            if world > 1:  # every process stops at the same step, or the others would wait for it forever
                flag = torch.tensor([0.0 if finite else 1.0], device=device)
                dist.all_reduce(flag)
                finite = float(flag) == 0
            if not finite:  # before the update: the weights stay as they were
                where = f"became {value}" if not math.isfinite(value) else "became non-finite in another process"
                raise NonFiniteError(f"the training loss {where} at epoch {epoch}, step {step} "
                                     f"(lr {config.lr}); lower the learning rate or set grad_clip, and check the "
                                     "zoo's targets")
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            total += value * batch.num_graphs
            count += batch.num_graphs
        if world > 1:
            sums = torch.tensor([total, float(count)], dtype=torch.float64)
            dist.all_reduce(sums)
            total, count = float(sums[0]), int(sums[1])
        if config.norm_batches:
            recompute_batch_norm(model, itertools.islice(plain_train.batches(
                config.batch_size, device=device, rank=rank, world_size=world), config.norm_batches))
        seconds = time.perf_counter() - started
        val = evaluate(model, val_set, config)
        progress.history.append({"epoch": epoch, "train_loss": total / count, "seconds": seconds,
                                 **{f"val_{k}": v for k, v in val.items()}})
        if task.score(val) > progress.best_score:
            progress.best_score, progress.best_epoch, progress.stale = task.score(val), epoch, 0
            progress.best_bytes = _state_bytes(model)[0]
        else:
            progress.stale += 1
        if out is not None and rank == 0:
            _checkpoint(out, model, optimizer, scheduler, config, progress)
    _load_state(model, None, progress.best_bytes, {})
    history, best_epoch = progress.history, progress.best_epoch
    result = {"best_epoch": best_epoch, "best_val": history[best_epoch] if best_epoch >= 0 else None,
              "epochs_run": len(history), "parameters": sum(p.numel() for p in model.parameters()),
              "seconds_per_epoch": sum(r["seconds"] for r in history) / max(1, len(history)), "history": history}
    if test_set is not None:
        result["test"] = evaluate(model, test_set, config)
    return result
