"""Training a hyper-representation (:mod:`wslgraph.represent`) with the one training loop, and sampling new
models from it with their evaluation on a Model Zoos zoo."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import Tensor

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ManifestError, ZooError
from wslgraph.io import atomic_write_bytes, atomic_write_json
from wslgraph.represent.run import (
    RepresentOptions,
    build_representation,
    embed_zoo,
    load_representation,
    training_rows,
)
from wslgraph.represent.sample import plot_sampling, sample_models, select_top
from wslgraph.tasks.loop import TrainConfig, train
from wslgraph.zoo.data import load_images
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.modelzoos import GRID, train_model_zoo
from wslgraph.zoo.storage import SPLIT_CODES

__all__ = ["train_representation", "representation_splits", "finetune_curves", "novelty", "sample_zoo"]


def train_representation(zoo: str | Path, out: str | Path, options: RepresentOptions | None = None,
                         config: TrainConfig | None = None) -> dict:
    """Train a hyper-representation on ``zoo``'s train split (every split with ``options.train_on="all"``;
    validation loss on its val split) into ``out``.

    ``config.task`` is set to ``"represent"``; the run resumes from ``out`` like :func:`~wslgraph.tasks.train`.
    Returns the training result (``test``: the self-supervised loss on the test split, where the selection
    leaves it rows).
    """
    options = options or RepresentOptions()
    config = TrainConfig(**(asdict(config or TrainConfig()) | {"task": "represent", "augment": "none"}))
    splits = representation_splits(zoo, options)
    for name, split in splits.items():
        if split.len() == 0 and name != "test":
            raise ZooError(f"the selection (weights within {options.max_weight}, activation "
                           f"{options.activation or 'any'}, test accuracy >= {options.min_accuracy or 0}) leaves no "
                           f"rows of the {name} split; loosen it or use a larger zoo")
    if options.positives == "model":  # several checkpoints of each model per batch: the contrastive positives
        if "model_index" not in splits["train"].arrays.columns:
            raise ZooError("positives='model' needs a zoo whose rows name their model (a model_index column, as in "
                           "CNN zoos with checkpoints); this zoo has none: use positives='views'")
        splits["train"] = splits["train"].grouped("model_index", options.per_model)
    layout = splits["train"].arrays.layout
    model = build_representation(layout, options, config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"zoo": str(zoo), "options": asdict(options), "seed": config.seed, "layout": layout.to_dict()}
    if (out / "represent.json").exists():
        saved = json.loads((out / "represent.json").read_text())
        if isinstance(saved.get("options"), dict):  # a run written before an option existed has its default
            saved["options"] = asdict(RepresentOptions()) | saved["options"]
        if {k: saved.get(k) for k in ("options", "seed", "layout")} != {k: meta[k] for k in ("options", "seed",
                                                                                             "layout")}:
            raise ManifestError(f"{out} holds a representation with other options or of another architecture; "
                                "use a new --out or the same settings")
    atomic_write_json(out / "represent.json", meta)
    test = splits["test"] if splits["test"].len() else None
    result = train(model, splits["train"], splits["val"], config, test_set=test, out_dir=out)
    atomic_write_json(out / "represent.json", meta | {"result": {k: v for k, v in result.items() if k != "history"}})
    return result


def representation_splits(zoo: str | Path, options: RepresentOptions) -> dict[str, ZooDataset]:
    """The ``train``, ``val`` and ``test`` sets a representation with ``options`` trains, validates and tests on:
    the zoo's splits within :func:`~wslgraph.represent.training_rows`; with ``options.train_on == "all"`` the
    training set holds the selected rows of every split."""
    every = options.train_on == "all"
    splits = {s: ZooDataset(zoo, None if every and s == "train" else s) for s in ("train", "val", "test")}
    keep = training_rows(splits["train"].arrays, options)
    return {name: split.where(keep) for name, split in splits.items()}


def finetune_curves(starts: dict[str, Tensor], train: object, test: object, hyperparameters: dict, *, epochs: int,
                    steps_per_epoch: int, batch_size: int = 10, seed: int = 0, device: str = "cpu",
                    architecture: dict | None = None) -> dict:
    """Test accuracy after each of ``epochs`` fine-tuning epochs (0: before any) from each start.

    ``starts`` maps a name to parameter rows ``[n, P]`` of the zoo's architecture, or to ``None`` for a fresh
    initialisation of ``n`` models (``hyperparameters["init"]`` for the Model Zoos CNN; give the count as
    ``hyperparameters["fresh"]``). ``architecture``: the zoo's description; a ``"resnet"`` grid fine-tunes its
    ResNet (``depth``, ``width``) with :func:`~wslgraph.zoo.resnets.train_resnet_zoo`, anything else the Model
    Zoos CNN. All models train with ``hyperparameters`` (the grid's keys: optimizer, learning rate, weight
    decay, and for the CNN activation, dropout, init) on their own minibatches. Returns ``{name: {"mean": [...],
    "std": [...], "per_model": [[...]]}}``.
    """
    from wslgraph.zoo.resnets import RESNET_GRID, train_resnet_zoo

    resnet = (architecture or {}).get("grid") == "resnet"
    point = {k: hyperparameters[k] for k in (RESNET_GRID if resnet else GRID)} | {"repetition": 0}
    curves = {}
    for offset, (name, rows) in enumerate(starts.items()):
        count = int(hyperparameters.get("fresh", 8)) if rows is None else rows.shape[0]
        options = {"seed": seed + offset, "epochs": epochs, "batch_size": batch_size, "steps_per_epoch":
                   steps_per_epoch, "eval_images": min(len(train), 500), "hyperparameters": [point] * count,
                   "initial": rows, "device": device, "progress": False}
        if resnet:
            result = train_resnet_zoo(train, test, count, depth=architecture["depth"], width=architecture["width"],
                                      **options)
        else:
            result = train_model_zoo(train, test, count, **options)
        accuracy = result.columns["test_accuracy"].view(count, epochs + 1)
        curves[name] = {"mean": accuracy.mean(0).tolist(),
                        "std": (accuracy.std(0) if count > 1 else torch.zeros(epochs + 1)).tolist(),
                        "per_model": accuracy.tolist()}
    return curves


def novelty(samples: Tensor, anchors: Tensor) -> dict:
    """How far sampled parameter rows are from the anchors they were drawn around: the median over samples of
    the relative L2 distance to the nearest anchor, beside the same for each anchor to its nearest other anchor
    (a sample no farther than that is a near copy)."""
    def nearest(rows: Tensor, others: Tensor, skip_self: bool) -> float:
        distance = torch.cdist(rows.double(), others.double())
        if skip_self:
            distance.fill_diagonal_(float("inf"))
        return float((distance.min(1).values / others.double().norm(dim=1).mean()).median())

    return {"sample_to_anchor": nearest(samples, anchors, False),
            "anchor_to_anchor": nearest(anchors, anchors, True) if len(anchors) > 1 else None}


def sample_zoo(run: str | Path, out: str | Path, *, zoo: str | Path | None = None, count: int = 10, top_k: int = 30,
               method: str = "kde", bandwidth: float | str | None = None, activation: str | None = None,
               finetune_epochs: int = 2, transfer: str | None = None, data_root: str | None = None,
               evaluate: bool = True, recalibrate: int = 1024, deeper: int | None = None, new_blocks: str = "copy",
               seed: int = 0, device: str = "cpu") -> dict:
    """Sample ``count`` models from the run's embedding space, write them to ``out`` and evaluate them.

    The density is fitted to the ``top_k`` rows by test accuracy among the rows the decoder learned (the train
    split, within the run's selection) of one activation (``activation``, default: the run's, else the best
    row's), since the decoder's weights are only meaningful with the activation they are run with. Writes
    ``sample-NNN.safetensors`` (state dicts of the zoo's architecture), ``samples.json`` (the report) and, for
    Model Zoos and ResNet zoos, ``sampling.png``. On those the report holds fine-tuning curves
    (:func:`finetune_curves`) from the samples, from fresh models (Kaiming-uniform for the CNN, torchvision's
    initialisation for ResNets) and from the zoo's best models (Adam, lr 1e-3, weight decay 1e-4 for the CNN
    with no dropout, 5e-4 for ResNets; the zoo's batch size and steps per epoch), and with ``transfer`` the same
    for samples and fresh models on another image source. ``method="sequential"`` generates token
    representations' samples window by window (:func:`~wslgraph.represent.sample_sequences`).
    """
    from safetensors.torch import save

    run = Path(run)
    if not (run / "represent.json").exists():
        raise ManifestError(f"{run} is not a representation run (no represent.json); train one with "
                            "`wslgraph represent ZOO --out RUN`")
    meta = json.loads((run / "represent.json").read_text())
    dataset = ZooDataset(zoo or meta["zoo"], None)
    arrays = dataset.arrays
    description = arrays.description
    if deeper is not None and description.get("grid") != "resnet":
        raise ZooError(f"--deeper generates deeper ResNets from ResNet zoos; {dataset.root} is a "
                       f"{description.get('grid') or 'custom'} zoo")
    model = load_representation(run, arrays.layout).to(device)
    options = RepresentOptions(**meta["options"])
    embeddings = embed_zoo(model, dataset, device=device, for_sampling=True)
    columns = arrays.columns
    if activation and options.activation and activation != options.activation:
        raise ZooError(f"{run} was trained on {options.activation} models only; sample {options.activation} models "
                       "or train a representation on the other activation")
    activation = activation or options.activation
    # anchors: the rows the decoder learned (the train split, within the run's selection), of one activation
    where = training_rows(arrays, replace(options, activation=None))
    if "split" in columns and options.train_on == "train":
        where &= columns["split"] == SPLIT_CODES["train"]
    if "activation" in columns:
        vocab = arrays.vocab["activation"]
        if activation is None:
            score = columns["test_accuracy"].double().masked_fill(~where, -1) if "test_accuracy" in columns else None
            activation = vocab[int(columns["activation"][int(score.argmax()) if score is not None else 0])]
        if activation not in vocab:
            raise ZooError(f"activation {activation!r} is not in this zoo; it has {vocab}")
        same = columns["activation"] == vocab.index(activation)
        where &= same
    else:
        same = torch.ones(len(arrays), dtype=torch.bool)
    top = select_top(columns, top_k, where=where)
    rows = dataset.template.loadable(sample_models(model, embeddings[top], count, method=method,
                                                   bandwidth=bandwidth, seed=seed))
    images = description.get("grid") in ("model-zoos", "resnet")
    if images and (evaluate or recalibrate or deeper is not None):
        source = description["source"]
        # the zoo's own images: its models were standardised with these training images' mean and std
        train = load_images(source, "train", data_root).evenly_spaced(description["train_images"])
        test = load_images(source, "test", data_root).evenly_spaced(description["test_images"])
    decoded, recalibrated, grown = rows, 0, None
    if description.get("grid") == "resnet" and (recalibrate or deeper is not None):
        from wslgraph.weightspace import BatchedModule
        from wslgraph.zoo.resnets import deepen_resnet, resnet_zoo_model

        channels, side = train.images.shape[1], train.images.shape[-1]
        module = resnet_zoo_model(description["depth"], description["width"], channels)
        if recalibrate:
            calibration = train.evenly_spaced(min(recalibrate, len(train))).images
            calibration = (calibration - train.images.mean()) / train.images.std()
            rows = BatchedModule(module, dataset.template).recalibrate(rows, calibration)
            recalibrated = len(calibration)
        if deeper is not None:
            try:
                target = resnet_zoo_model(deeper, description["width"], channels)
                grown_template = GraphTemplate.from_module(target, input_shape=(channels, side, side))
                grown = deepen_resnet(rows, module, target, new_blocks=new_blocks,
                                      templates=(dataset.template, grown_template))
            except ValueError as error:
                raise ZooError(f"cannot grow this zoo's ResNet-{description['depth']} into ResNet-{deeper}: {error}"
                               ) from error
            if recalibrate:
                grown = BatchedModule(target, grown_template).recalibrate(grown, calibration)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [("sample", rows, dataset.template)] + ([("deeper", grown, grown_template)] if deeper is not None else [])
    for prefix, batch, template in written:
        for index, row in enumerate(batch):
            state = {k: v.contiguous() for k, v in template.unflatten(row).items()}
            atomic_write_bytes(out / f"{prefix}-{index:03d}.safetensors", save(state))
    report = {"run": str(run), "zoo": str(dataset.root), "method": method, "count": count, "top_k": len(top),
              "bandwidth": bandwidth, "activation": activation, "seed": seed, "top_rows": top.tolist(),
              "recalibrated_images": recalibrated, "novelty": novelty(rows, arrays.params[top]),
              "top_accuracy": columns["test_accuracy"][top].tolist() if "test_accuracy" in columns else None}
    if images and evaluate:
        if description["grid"] == "resnet":  # torchvision's initialisation; the grid's best optimizer
            point = {"optimizer": "adam", "learning_rate": 1e-3, "weight_decay": 5e-4, "fresh": count}
        else:
            point = {"activation": activation, "dropout": 0.0, "init": "kaiming_uniform", "optimizer": "adam",
                     "learning_rate": 1e-3, "weight_decay": 1e-4, "fresh": count}
        steps = description.get("steps_per_epoch") or len(train) // description["batch_size"]
        options = {"epochs": finetune_epochs, "steps_per_epoch": steps, "batch_size": description["batch_size"],
                   "seed": seed, "device": device, "architecture": description}
        starts = {"sampled": rows, "random init": None, "zoo's top models": arrays.params[top[:count]]}
        if recalibrated:
            starts["sampled, decoded statistics"] = decoded
        report["finetune"] = finetune_curves(starts, train, test, point, **options)
        final = columns["epoch"] == int(columns["epoch"].max())
        report["zoo_last_epoch_accuracy"] = float(columns["test_accuracy"][final & same].mean())
        if transfer:
            other_train = load_images(transfer, "train", data_root)
            other_test = load_images(transfer, "test", data_root).evenly_spaced(description["test_images"])
            report["transfer"] = {"source": transfer, "curves": finetune_curves(
                {"sampled": rows, "random init": None}, other_train, other_test, point, **options)}
        if deeper is not None:
            report["deeper"] = {"depth": deeper, "new_blocks": new_blocks, "curves": finetune_curves(
                {"sampled": grown, "random init": None}, train, test, point,
                **(options | {"architecture": description | {"depth": deeper}}))}
        plot_sampling(report, out / "sampling.png")
    atomic_write_json(out / "samples.json", report)
    return report
