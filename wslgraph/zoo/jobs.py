"""Zoo-generation jobs: what ``wslgraph zoo inr`` and ``wslgraph zoo cnn`` run, shard by shard."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import OptionError
from wslgraph.zoo.architectures import siren
from wslgraph.zoo.cnn import ACTIVATIONS, INITS, OPTIMIZERS, CNNZooSpec, ZooCNN, ZooSchedule, train_cnn_zoo
from wslgraph.zoo.data import ImageSet, load_images
from wslgraph.zoo.inr import FitOptions, INRRecipe, fit_inrs, resolve_recipe, split_fit_overrides
from wslgraph.zoo.meshes import KICAD_ROOT, load_kicad_shapes, load_mesh_folder
from wslgraph.zoo.modelzoos import CATEGORICAL, GRID, model_zoo_split, model_zoo_template, train_model_zoo
from wslgraph.zoo.resnets import RESNET_GRID, resnet_zoo_model, train_resnet_zoo
from wslgraph.zoo.shapes3d import (
    SHAPE_CLASSES,
    ShapeRecipe,
    default_chunk_size,
    fit_shape_inrs,
    inr_chamfer,
    make_shapes,
    shape_siren,
)
from wslgraph.zoo.storage import SPLIT_CODES, ZooJob

__all__ = ["inr_zoo_job", "shapes3d_zoo_job", "mesh_zoo_job", "cnn_zoo_job", "model_zoo_job", "resnet_zoo_job",
           "VAL_EVERY"]

VAL_EVERY = 12  # train image i is a validation image when i % 12 == 11 (DWS: 5k of 60k)
SPLIT_VOCAB = list(SPLIT_CODES)


def _images(source: str, split: str, root: str | None, count: int | None) -> ImageSet:
    images = load_images(source, split, root)
    if count is not None and count > len(images):
        raise OptionError(f"{count:,} {split} images asked for, but {source} has {len(images):,} {split} images; "
                          f"ask for at most {len(images):,} (or leave --{split}-images out for all of them)")
    return images if count is None else images.evenly_spaced(count)


def inr_zoo_job(source: str = "mnist5k", *, recipe: str | INRRecipe = "dws", options: FitOptions | None = None,
                train_images: int | None = None, test_images: int | None = None, shard_size: int = 256,
                data_root: str | None = None, **overrides: object) -> ZooJob:
    """A job fitting ``options.views`` INRs to each image of ``source`` (train images first, then test images).

    Each model's ``split`` is ``test`` for test images, ``val`` for train
    images with ``index % 12 == 11`` and ``train`` otherwise. Columns:
    ``label``, ``psnr``, ``steps``, ``image_index`` (in its source split),
    ``view`` and ``split``.

    Args:
        source: An image source of :mod:`wslgraph.zoo.data`.
        recipe: Fitting recipe (name or :class:`INRRecipe`).
        options: How to fit (:class:`~wslgraph.zoo.inr.FitOptions`; default: no progress bar per shard), given
            to :func:`fit_inrs` unchanged.
        train_images, test_images: Use only this many images of each split,
            evenly spaced through it (so class-sorted sources keep every class).
        shard_size: Models per shard (a multiple of ``views``).
        data_root: ``root`` for :func:`~wslgraph.zoo.data.load_images`.
        **overrides: Fields of the recipe or of the options to change (``steps=``, ``seed=``...).
    """
    options, overrides = split_fit_overrides(options, overrides, FitOptions(progress=False))
    recipe = resolve_recipe(recipe, **overrides)
    seed, views = options.seed, options.views
    if shard_size < 1 or shard_size % views:
        raise ValueError(f"shard_size must be a positive multiple of views={views}, got {shard_size}")
    train = _images(source, "train", data_root, train_images)
    test = _images(source, "test", data_root, test_images)
    if len(train) + len(test) == 0:
        raise ValueError("an INR zoo needs at least one image: train_images and test_images are both 0")
    images = torch.cat([train.images, test.images])
    labels = torch.cat([train.labels, test.labels])
    image_index = torch.cat([torch.arange(len(train)), torch.arange(len(test))])
    split = torch.cat([torch.where(torch.arange(len(train)) % VAL_EVERY == VAL_EVERY - 1, SPLIT_CODES["val"],
                                   SPLIT_CODES["train"]), torch.full((len(test),), SPLIT_CODES["test"])])
    channels = images.shape[1]
    layout = GraphTemplate.from_module(siren(2, recipe.hidden, channels, recipe.w0)).layout

    def make_shard(first: int, count: int) -> dict[str, Tensor]:
        rows = slice(first // views, (first + count) // views)
        fit = fit_inrs(images[rows], recipe, options, index_offset=first)
        image = fit.image_index + first // views
        return {"params": fit.params, "label": labels[image], "psnr": fit.psnr.float(), "steps": fit.steps,
                "image_index": image_index[image], "view": fit.view, "split": split[image].to(torch.uint8)}

    description = {"source": source, "recipe": recipe.to_dict(), "seed": seed, "views": views,
                   "train_images": len(train), "test_images": len(test), "chunk_size": options.chunk_size,
                   "compile": options.compile, "image_shape": list(images.shape[1:]),
                   "split_rule": f"test images -> test; train image i -> val if i % {VAL_EVERY} == "
                                 f"{VAL_EVERY - 1}, else train",
                   "output_offset": recipe.output_offset}
    columns = {"label": {}, "psnr": {}, "steps": {}, "image_index": {}, "view": {}, "split": {"vocab": SPLIT_VOCAB}}
    return ZooJob("inr", description, layout, len(images) * views, shard_size, make_shard, columns)


def _shape_shard(shapes, recipe: ShapeRecipe, seed: int, chunk_size: int, device: str | None, first: int,
                 count: int) -> dict[str, Tensor]:
    rows = slice(first, first + count)
    params, iou = fit_shape_inrs(shapes[rows], recipe, seed=seed, index_offset=first, chunk_size=chunk_size,
                                 device=device)
    return {"params": params, "label": shapes.labels[rows], "iou": iou,
            "chamfer": inr_chamfer(params, shapes[rows], recipe, seed=seed).float(),
            "shape_index": torch.arange(first, first + count)}


_OUTPUT = {"occupancy": "occupancy logit (inside: positive)", "sdf": "signed distance (inside: negative)"}
_QUALITY = {"iou": "on 16,384 uniform points of [-1, 1]^3 per shape (from its own generator)",
            "chamfer": "symmetric Chamfer distance (mean L2 both ways, [-1, 1]^3 frame) between 4,096 area-uniform "
                       "points on the INR's marching-cubes surface (64^3 grid) and on the true surface; nan when the "
                       "INR has no surface"}


def shapes3d_zoo_job(per_class: int = 100, *, recipe: ShapeRecipe | None = None, seed: int = 0,
                     shard_size: int = 256, chunk_size: int | None = None, device: str | None = None,
                     **overrides: object) -> ZooJob:
    """A job fitting one occupancy SIREN (:func:`~wslgraph.zoo.shapes3d.fit_shape_inrs`) to each of ``per_class``
    procedural shapes of each of the ten classes of :func:`~wslgraph.zoo.shapes3d.make_shapes` (seeded).

    Shape ``i`` of a class is ``val`` when ``i % 10 == 8``, ``test`` when ``i % 10 == 9``, else ``train``.
    Columns: ``label`` (the class, in :data:`~wslgraph.zoo.shapes3d.SHAPE_CLASSES` order), ``iou`` (on fresh
    uniform points), ``chamfer`` (:func:`~wslgraph.zoo.shapes3d.inr_chamfer`), ``shape_index`` and ``split``.
    ``overrides`` change fields of the recipe (``steps=``...).
    """
    recipe = replace(recipe or ShapeRecipe(), **{k: tuple(v) if k == "hidden" else v for k, v in overrides.items()})
    chunk_size = chunk_size or default_chunk_size(recipe, device)
    shapes = make_shapes(per_class, seed)
    within = torch.arange(len(shapes)) % per_class
    split = torch.where(within % 10 == 8, SPLIT_CODES["val"],
                        torch.where(within % 10 == 9, SPLIT_CODES["test"], SPLIT_CODES["train"]))
    layout = GraphTemplate.from_module(shape_siren(recipe)).layout

    def make_shard(first: int, count: int) -> dict[str, Tensor]:
        shard = _shape_shard(shapes, recipe, seed, chunk_size, device, first, count)
        return {**shard, "split": split[first:first + count].to(torch.uint8)}

    description = {"source": "shapes3d", "recipe": recipe.to_dict(), "seed": seed, "per_class": per_class,
                   "classes": list(SHAPE_CLASSES), "chunk_size": chunk_size, "input": "xyz in [-1, 1]^3",
                   "output": _OUTPUT[recipe.target], "quality": _QUALITY,
                   "split_rule": "shape i of a class -> val if i % 10 == 8, test if i % 10 == 9, else train"}
    columns = {"label": {}, "iou": {}, "chamfer": {}, "shape_index": {}, "split": {"vocab": SPLIT_VOCAB}}
    return ZooJob("inr", description, layout, len(shapes), shard_size, make_shard, columns)


def mesh_zoo_job(data_root: str | None, *, source: str = "mesh", per_class: int | None = None,
                 recipe: ShapeRecipe | None = None, seed: int = 0, shard_size: int = 256,
                 chunk_size: int | None = None,
                 device: str | None = None, **overrides: object) -> ZooJob:
    """A job fitting one occupancy SIREN to each mesh of a folder (``source="mesh"``:
    :func:`~wslgraph.zoo.meshes.load_mesh_folder`, ``ROOT/<class>/<mesh>``, labels from the class folders,
    ModelNet's ``train``/``test`` folders kept) or of Debian's ``kicad-packages3d`` (``source="kicad"``:
    :func:`~wslgraph.zoo.meshes.load_kicad_shapes`, ``per_class`` default 60), with the recipe, columns and storage
    of :func:`shapes3d_zoo_job` plus ``watertight`` (1 when trimesh found the mesh closed; occupancy is the
    generalised winding number either way). Every mesh is read and checked before the first INR is fitted, so a bad
    file stops the job before anything is written."""
    recipe = replace(recipe or ShapeRecipe(), **{k: tuple(v) if k == "hidden" else v for k, v in overrides.items()})
    chunk_size = chunk_size or default_chunk_size(recipe, device)
    if source == "kicad":
        root = Path(data_root) if data_root is not None else KICAD_ROOT
        per_class = per_class or 60
        meshes = load_kicad_shapes(root, per_class=per_class)
    elif source == "mesh":
        if data_root is None:
            raise OptionError("the mesh source needs data_root, a folder with one subfolder of meshes per class")
        root = Path(data_root)
        meshes = load_mesh_folder(root, per_class=per_class)
    else:
        raise OptionError(f"source must be 'mesh' or 'kicad', got {source!r}")
    layout = GraphTemplate.from_module(shape_siren(recipe)).layout

    def make_shard(first: int, count: int) -> dict[str, Tensor]:
        shard = _shape_shard(meshes, recipe, seed, chunk_size, device, first, count)
        rows = meshes[first:first + count]
        return {**shard, "split": rows.split, "watertight": torch.tensor([m.watertight for m in rows.meshes],
                                                                          dtype=torch.uint8)}

    description = {"source": source, "recipe": recipe.to_dict(), "seed": seed, "per_class": per_class,
                   "classes": list(meshes.classes), "chunk_size": chunk_size, "input": "xyz in [-1, 1]^3",
                   "output": _OUTPUT[recipe.target], "inside": "|generalised winding number| > 1/2",
                   "quality": _QUALITY,
                   "normalisation": "bounding-box centre at the origin, farthest vertex at distance 0.8",
                   "files": [str(Path(m.path).relative_to(root)) for m in meshes.meshes],
                   "data_root": str(root.resolve()),
                   "split_rule": "ROOT/<class>/{train,test}/ when present (every 10th train mesh, i % 10 == 8, is "
                                 "val), else mesh i of a class -> val if i % 10 == 8, test if i % 10 == 9, else train"}
    columns = {"label": {}, "iou": {}, "chamfer": {}, "shape_index": {}, "watertight": {},
               "split": {"vocab": SPLIT_VOCAB}}
    return ZooJob("inr", description, layout, len(meshes), shard_size, make_shard, columns)


def cnn_zoo_job(source: str = "digits", *, count: int = 64, seed: int = 0, schedule: ZooSchedule | None = None,
                models_per_shard: int = 32, spec: CNNZooSpec | None = None, train_images: int | None = None,
                test_images: int | None = None, data_root: str | None = None, **overrides: object) -> ZooJob:
    """A job training ``count`` CNNs with sampled hyperparameters (``models_per_shard`` trained together).

    Rows are (model, checkpoint epoch). Model ``i``'s split: ``test`` when
    ``i % 2 == 1``, ``val`` when ``i % 10 == 8``, else ``train`` (interleaved,
    so any prefix of the zoo is balanced). Columns: ``test_accuracy``,
    ``train_loss``, ``epoch``, ``model_index``, ``split`` and every
    hyperparameter (``activation``, ``optimizer`` and ``init`` as codes). ``schedule`` (default: 2 epochs at
    batch size 32, no progress bar per shard; ``overrides`` change its fields) goes to :func:`train_cnn_zoo`
    unchanged.
    """
    schedule = (schedule or ZooSchedule(progress=False)).with_overrides(overrides)
    epochs = schedule.epochs
    if count < 1 or epochs < 1:
        raise ValueError(f"a CNN zoo needs count >= 1 and epochs >= 1, got count={count}, epochs={epochs}")
    train = _images(source, "train", data_root, train_images)
    test = _images(source, "test", data_root, test_images)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"a CNN zoo trains on train images and scores on test images; got {len(train)} and "
                         f"{len(test)}")
    if spec is None:
        small = train.images.shape[-1] < 16  # 8x8 digits: stride 1 keeps three 3x3 convolutions valid
        spec = CNNZooSpec(in_channels=train.images.shape[1], stride=1 if small else 2)
    checkpoints = schedule.checkpoint_epochs((0, epochs))
    schedule = replace(schedule, checkpoints=checkpoints)
    per_model = len(checkpoints)
    layout = GraphTemplate.from_module(ZooCNN(spec)).layout

    def make_shard(first: int, rows: int) -> dict[str, Tensor]:
        result = train_cnn_zoo(train, test, rows // per_model, schedule, spec=spec, seed=seed,
                               index_offset=first // per_model)
        model = result.model_index
        hps = [result.hyperparameters[i // per_model] for i in range(rows)]
        split = torch.where(model % 2 == 1, SPLIT_CODES["test"],
                            torch.where(model % 10 == 8, SPLIT_CODES["val"], SPLIT_CODES["train"]))
        columns = {"test_accuracy": result.test_accuracy.float(), "train_loss": result.train_loss.float(),
                   "epoch": result.epoch, "model_index": model, "split": split.to(torch.uint8)}
        for name, vocab in (("activation", ACTIVATIONS), ("optimizer", OPTIMIZERS), ("init", INITS)):
            columns[name] = torch.tensor([vocab.index(hp[name]) for hp in hps])
        for name in ("init_std", "learning_rate", "l2", "dropout", "train_fraction"):
            columns[name] = torch.tensor([hp[name] for hp in hps], dtype=torch.float32)
        return {"params": result.params, **columns}

    description = {"source": source, "seed": seed, "count": count, "epochs": epochs, "checkpoints": list(checkpoints),
                   "batch_size": schedule.batch_size, "steps_per_epoch": schedule.steps_per_epoch,
                   "spec": spec.to_dict(),
                   "train_images": len(train), "test_images": len(test), "models_per_shard": models_per_shard,
                   "split_rule": "model i -> test if i % 2 == 1, val if i % 10 == 8, else train"}
    columns = {name: {} for name in ("test_accuracy", "train_loss", "epoch", "model_index", "init_std",
                                     "learning_rate", "l2", "dropout", "train_fraction")}
    columns.update({"split": {"vocab": SPLIT_VOCAB}, "activation": {"vocab": ACTIVATIONS},
                    "optimizer": {"vocab": OPTIMIZERS}, "init": {"vocab": INITS}})
    return ZooJob("cnn", description, layout, count * per_model, models_per_shard * per_model, make_shard, columns)


def model_zoo_job(source: str = "mnist5k", *, count: int = 256, seed: int = 0, schedule: ZooSchedule | None = None,
                  models_per_shard: int = 128, train_images: int | None = None, test_images: int | None = None,
                  eval_images: int = 1000, data_root: str | None = None, **overrides: object) -> ZooJob:
    """A job training ``count`` Model Zoos CNNs over :data:`~wslgraph.zoo.modelzoos.GRID` with a checkpoint at
    every epoch (``wslgraph zoo cnn --grid model-zoos``).

    Rows are (model, checkpoint epoch). Columns: ``epoch``, ``model_index``,
    ``test_accuracy``, ``test_loss``, ``train_accuracy``, ``train_loss``,
    ``ggap`` (train minus test accuracy), the grid's hyperparameters
    (``activation``, ``init``, ``optimizer`` as codes; ``dropout``,
    ``learning_rate``, ``weight_decay``), ``repetition`` and ``split``
    (by model: :func:`~wslgraph.zoo.modelzoos.model_zoo_split`). ``schedule`` (default: 25 epochs at batch
    size 10, no progress bar per shard; ``overrides`` change its fields) goes to :func:`train_model_zoo` unchanged.
    """
    schedule = (schedule or ZooSchedule(epochs=25, batch_size=10, progress=False)).with_overrides(overrides)
    epochs = schedule.epochs
    if count < 1 or epochs < 1:
        raise ValueError(f"a Model Zoos zoo needs count >= 1 and epochs >= 1, got count={count}, epochs={epochs}")
    train = _images(source, "train", data_root, train_images)
    test = _images(source, "test", data_root, test_images)
    if tuple(train.images.shape[-2:]) != (28, 28):
        raise ValueError(f"the Model Zoos CNN takes 28x28 images; {source} has {tuple(train.images.shape[-2:])} "
                         "(use mnist5k, mnist or fashion-mnist)")
    checkpoints = schedule.checkpoint_epochs(tuple(range(epochs + 1)))
    schedule = replace(schedule, checkpoints=checkpoints)
    per_model = len(checkpoints)
    layout = model_zoo_template(train.images.shape[1]).layout

    def make_shard(first: int, rows: int) -> dict[str, Tensor]:
        result = train_model_zoo(train, test, rows // per_model, schedule, seed=seed, index_offset=first // per_model,
                                 eval_images=eval_images)
        hps = [result.hyperparameters[i // per_model] for i in range(rows)]
        columns = {name: value.float() if value.is_floating_point() else value
                   for name, value in result.columns.items()}
        columns["split"] = model_zoo_split(result.columns["model_index"])
        for name in CATEGORICAL:
            columns[name] = torch.tensor([GRID[name].index(hp[name]) for hp in hps])
        for name in ("dropout", "learning_rate", "weight_decay"):
            columns[name] = torch.tensor([hp[name] for hp in hps], dtype=torch.float32)
        columns["repetition"] = torch.tensor([hp["repetition"] for hp in hps])
        return {"params": result.params, **columns}

    description = {"grid": "model-zoos", "source": source, "seed": seed, "count": count, "epochs": epochs,
                   "checkpoints": list(checkpoints), "batch_size": schedule.batch_size,
                   "steps_per_epoch": schedule.steps_per_epoch,
                   "architecture": "CNN", "train_images": len(train), "test_images": len(test),
                   "eval_images": eval_images, "models_per_shard": models_per_shard,
                   "split_rule": "model i -> test if i % 5 == 4, val if i % 10 == 3, else train"}
    names = ("epoch", "model_index", "test_accuracy", "test_loss", "train_accuracy", "train_loss", "ggap", "dropout",
             "learning_rate", "weight_decay", "repetition")
    columns = {name: {} for name in names}
    columns.update({"split": {"vocab": SPLIT_VOCAB}, **{name: {"vocab": GRID[name]} for name in CATEGORICAL}})
    return ZooJob("cnn", description, layout, count * per_model, models_per_shard * per_model, make_shard, columns)


def resnet_zoo_job(source: str = "fashion-mnist", *, count: int = 64, seed: int = 0,
                   schedule: ZooSchedule | None = None, depth: int = 8, width: int = 16, models_per_shard: int = 32,
                   train_images: int | None = None, test_images: int | None = None, eval_images: int = 1000,
                   data_root: str | None = None, **overrides: object) -> ZooJob:
    """A job training ``count`` ResNet-``depth`` models of ``width`` over
    :data:`~wslgraph.zoo.resnets.RESNET_GRID` (``wslgraph zoo cnn --grid resnet``), with a checkpoint (the full
    state dict, batch-norm statistics included) at every epoch by default.

    Rows are (model, checkpoint epoch). Columns: ``epoch``, ``model_index``, ``test_accuracy``, ``test_loss``,
    ``train_accuracy``, ``train_loss``, ``ggap``, ``optimizer`` (a code), ``learning_rate``, ``weight_decay``,
    ``repetition`` and ``split`` (by model: :func:`~wslgraph.zoo.modelzoos.model_zoo_split`). ``schedule``
    (default: 10 epochs at batch size 32, no progress bar per shard; ``overrides`` change its fields) goes to
    :func:`~wslgraph.zoo.resnets.train_resnet_zoo` unchanged.
    """
    schedule = (schedule or ZooSchedule(epochs=10, batch_size=32, progress=False)).with_overrides(overrides)
    epochs = schedule.epochs
    if count < 1 or epochs < 1:
        raise ValueError(f"a ResNet zoo needs count >= 1 and epochs >= 1, got count={count}, epochs={epochs}")
    if depth not in (8, 10, 14, 18) or width < 1:
        raise ValueError(f"ResNet zoos use depth 8 or 10 (one basic block per stage), 14 (two per stage, three "
                         f"stages) or 18 (torchvision's ResNet-18 at --width 64) and width >= 1, got depth={depth}, "
                         f"width={width}")
    train = _images(source, "train", data_root, train_images)
    test = _images(source, "test", data_root, test_images)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"a ResNet zoo trains on train images and scores on test images; got {len(train)} and "
                         f"{len(test)}")
    checkpoints = schedule.checkpoint_epochs(tuple(range(epochs + 1)))
    schedule = replace(schedule, checkpoints=checkpoints)
    per_model = len(checkpoints)
    channels, side = train.images.shape[1], train.images.shape[-1]
    layout = GraphTemplate.from_module(resnet_zoo_model(depth, width, channels),
                                       input_shape=(channels, side, side)).layout

    def make_shard(first: int, rows: int) -> dict[str, Tensor]:
        result = train_resnet_zoo(train, test, rows // per_model, schedule, depth=depth, width=width, seed=seed,
                                  index_offset=first // per_model, eval_images=eval_images)
        hps = [result.hyperparameters[i // per_model] for i in range(rows)]
        columns = {name: value.float() if value.is_floating_point() else value
                   for name, value in result.columns.items()}
        columns["split"] = model_zoo_split(result.columns["model_index"])
        columns["optimizer"] = torch.tensor([RESNET_GRID["optimizer"].index(hp["optimizer"]) for hp in hps])
        for name in ("learning_rate", "weight_decay"):
            columns[name] = torch.tensor([hp[name] for hp in hps], dtype=torch.float32)
        columns["repetition"] = torch.tensor([hp["repetition"] for hp in hps])
        return {"params": result.params, **columns}

    description = {"grid": "resnet", "source": source, "seed": seed, "count": count, "epochs": epochs,
                   "checkpoints": list(checkpoints), "batch_size": schedule.batch_size,
                   "steps_per_epoch": schedule.steps_per_epoch, "architecture": f"ResNet-{depth}", "depth": depth,
                   "width": width, "train_images": len(train), "test_images": len(test), "eval_images": eval_images,
                   "models_per_shard": models_per_shard,
                   "split_rule": "model i -> test if i % 5 == 4, val if i % 10 == 3, else train"}
    names = ("epoch", "model_index", "test_accuracy", "test_loss", "train_accuracy", "train_loss", "ggap",
             "learning_rate", "weight_decay", "repetition")
    columns = {name: {} for name in names}
    columns.update({"split": {"vocab": SPLIT_VOCAB}, "optimizer": {"vocab": RESNET_GRID["optimizer"]}})
    return ZooJob("cnn", description, layout, count * per_model, models_per_shard * per_model, make_shard, columns)
