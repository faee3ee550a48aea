"""Training a hyper-representation (:mod:`wslgraph.represent`) with the one training loop, and sampling new
models from it with their evaluation on a Model Zoos zoo."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from wslgraph.errors import ManifestError, ZooError
from wslgraph.io import atomic_write_bytes, atomic_write_json
from wslgraph.represent.run import (
    RepresentOptions,
    build_representation,
    embed_zoo,
    kept_rows,
    load_representation,
)
from wslgraph.represent.sample import plot_sampling, sample_models, select_top
from wslgraph.tasks.loop import TrainConfig, train
from wslgraph.zoo.data import load_images
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.modelzoos import GRID, train_model_zoo

__all__ = ["train_representation", "finetune_curves", "sample_zoo"]


def train_representation(zoo: str | Path, out: str | Path, options: RepresentOptions | None = None,
                         config: TrainConfig | None = None) -> dict:
    """Train a hyper-representation on ``zoo``'s train split (validation loss on its val split) into ``out``.

    ``config.task`` is set to ``"represent"``; the run resumes from ``out`` like :func:`~wslgraph.tasks.train`.
    Returns the training result (``test``: the self-supervised loss on the test split).
    """
    options = options or RepresentOptions()
    config = TrainConfig(**(asdict(config or TrainConfig()) | {"task": "represent", "augment": "none"}))
    splits = {s: ZooDataset(zoo, s) for s in ("train", "val", "test")}
    keep = kept_rows(splits["train"].arrays.params, options.max_weight)
    splits = {name: split.where(keep) for name, split in splits.items()}
    layout = splits["train"].arrays.layout
    model = build_representation(layout, options, config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"zoo": str(zoo), "options": asdict(options), "seed": config.seed, "layout": layout.to_dict()}
    if (out / "represent.json").exists():
        saved = json.loads((out / "represent.json").read_text())
        if {k: saved.get(k) for k in ("options", "seed", "layout")} != {k: meta[k] for k in ("options", "seed",
                                                                                             "layout")}:
            raise ManifestError(f"{out} holds a representation with other options or of another architecture; "
                                "use a new --out or the same settings")
    atomic_write_json(out / "represent.json", meta)
    result = train(model, splits["train"], splits["val"], config, test_set=splits["test"], out_dir=out)
    atomic_write_json(out / "represent.json", meta | {"result": {k: v for k, v in result.items() if k != "history"}})
    return result


def finetune_curves(starts: dict[str, Tensor], train: object, test: object, hyperparameters: dict, *, epochs: int,
                    steps_per_epoch: int, batch_size: int = 10, seed: int = 0, device: str = "cpu") -> dict:
    """Test accuracy after each of ``epochs`` fine-tuning epochs (0: before any) from each start.

    ``starts`` maps a name to parameter rows ``[n, P]`` of the Model Zoos CNN, or to ``None`` for a fresh
    initialisation of ``n`` models (``hyperparameters["init"]``; give the count as ``hyperparameters["fresh"]``).
    All models train with ``hyperparameters`` (activation, optimizer, learning rate, weight decay, dropout) on
    their own minibatches. Returns ``{name: {"mean": [...], "std": [...], "per_model": [[...]]}}``.
    """
    point = {k: hyperparameters[k] for k in GRID} | {"repetition": 0}
    curves = {}
    for offset, (name, rows) in enumerate(starts.items()):
        count = int(hyperparameters.get("fresh", 8)) if rows is None else rows.shape[0]
        result = train_model_zoo(train, test, count, seed=seed + offset, epochs=epochs, batch_size=batch_size,
                                 steps_per_epoch=steps_per_epoch, eval_images=min(len(train), 500),
                                 hyperparameters=[point] * count, initial=rows, device=device, progress=False)
        accuracy = result.columns["test_accuracy"].view(count, epochs + 1)
        curves[name] = {"mean": accuracy.mean(0).tolist(),
                        "std": (accuracy.std(0) if count > 1 else torch.zeros(epochs + 1)).tolist(),
                        "per_model": accuracy.tolist()}
    return curves


def sample_zoo(run: str | Path, out: str | Path, *, zoo: str | Path | None = None, count: int = 10, top_k: int = 30,
               method: str = "kde", activation: str | None = None, finetune_epochs: int = 2,
               transfer: str | None = None, data_root: str | None = None, evaluate: bool = True, seed: int = 0,
               device: str = "cpu") -> dict:
    """Sample ``count`` models from the run's embedding space, write them to ``out`` and evaluate them.

    The density is fitted to the ``top_k`` rows by test accuracy among models of one activation (``activation``,
    default: the best row's), since the decoder's weights are only meaningful with the activation they are run
    with. Writes ``sample-NNN.safetensors`` (state dicts of the zoo's architecture), ``samples.json`` (the report)
    and, for Model Zoos zoos, ``sampling.png``. On a Model Zoos zoo the report holds fine-tuning curves
    (:func:`finetune_curves`) from the samples, from fresh Kaiming-uniform models and from the zoo's best models
    (Adam, lr 1e-3, weight decay 1e-4, no dropout, the zoo's batch size and steps per epoch), and with
    ``transfer`` the same for samples and fresh models on another image source.
    """
    from safetensors.torch import save

    run = Path(run)
    if not (run / "represent.json").exists():
        raise ManifestError(f"{run} is not a representation run (no represent.json); train one with "
                            "`wslgraph represent ZOO --out RUN`")
    dataset = ZooDataset(zoo or json.loads((run / "represent.json").read_text())["zoo"], None)
    arrays = dataset.arrays
    model = load_representation(run, arrays.layout).to(device)
    embeddings = embed_zoo(model, dataset, device=device, for_sampling=True)
    columns, where = arrays.columns, None
    if "activation" in columns:
        vocab = arrays.vocab["activation"]
        best = int(columns["test_accuracy"].argmax()) if "test_accuracy" in columns else 0
        activation = activation or vocab[int(columns["activation"][best])]
        if activation not in vocab:
            raise ZooError(f"activation {activation!r} is not in this zoo; it has {vocab}")
        where = columns["activation"] == vocab.index(activation)
    top = select_top(columns, top_k, where=where)
    rows = sample_models(model, embeddings[top], count, method=method, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for index, row in enumerate(rows):
        state = {k: v.contiguous() for k, v in dataset.template.unflatten(row).items()}
        atomic_write_bytes(out / f"sample-{index:03d}.safetensors", save(state))
    report = {"run": str(run), "zoo": str(dataset.root), "method": method, "count": count, "top_k": len(top),
              "activation": activation, "seed": seed, "top_rows": top.tolist(),
              "top_accuracy": columns["test_accuracy"][top].tolist() if "test_accuracy" in columns else None}
    description = arrays.description
    if description.get("grid") == "model-zoos" and evaluate:
        source = description["source"]
        train = load_images(source, "train", data_root)
        test = load_images(source, "test", data_root).evenly_spaced(description["test_images"])
        point = {"activation": activation, "dropout": 0.0, "init": "kaiming_uniform", "optimizer": "adam",
                 "learning_rate": 1e-3, "weight_decay": 1e-4, "fresh": count}
        steps = description.get("steps_per_epoch") or len(train) // description["batch_size"]
        options = {"epochs": finetune_epochs, "steps_per_epoch": steps, "batch_size": description["batch_size"],
                   "seed": seed, "device": device}
        starts = {"sampled": rows, "random init": None, "zoo's top models": arrays.params[top[:count]]}
        report["finetune"] = finetune_curves(starts, train, test, point, **options)
        final = columns["epoch"] == int(columns["epoch"].max())
        chosen = final & where if where is not None else final
        report["zoo_last_epoch_accuracy"] = float(columns["test_accuracy"][chosen].mean())
        if transfer:
            other_train = load_images(transfer, "train", data_root)
            other_test = load_images(transfer, "test", data_root).evenly_spaced(description["test_images"])
            report["transfer"] = {"source": transfer, "curves": finetune_curves(
                {"sampled": rows, "random init": None}, other_train, other_test, point, **options)}
        plot_sampling(report, out / "sampling.png")
    atomic_write_json(out / "samples.json", report)
    return report
