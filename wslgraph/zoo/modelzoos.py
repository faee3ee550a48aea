"""The Model Zoos dataset (Schürholt et al., NeurIPS 2022 datasets track): its CNN, its grid, its files.

* :class:`ModelZooCNN` is the zoos' small CNN for 28x28 images (``CNN``: 2,464
  parameters with one input channel, the MNIST, Fashion-MNIST, SVHN, USPS and
  small CIFAR-10 zoos; ``CNN2``, wider), with the published state-dict keys
  (``module_list.N.weight``; dropout layers shift ``N``). The large zoos'
  ``CNN3`` (32x32) and ResNet-18 are not supported.
* :data:`GRID` is the hyperparameter grid of the "hyperparameter" zoos
  (activation, dropout, initialisation, optimizer, learning rate, weight
  decay; 256 combinations, each repeated over seeds).
* :func:`train_model_zoo` trains models of that grid all at once (one grouped
  convolution per layer, each model its own optimizer) and records every
  epoch's checkpoint with train and test accuracy and loss.
* :func:`load_model_zoos` reads the published format: one folder per model
  (a ray-tune trial) holding ``params.json`` (its configuration),
  ``result.json`` (one JSON object per line and training iteration:
  ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ``val_*``,
  ``training_iteration``) and ``checkpoint_<e>/checkpoints`` (or
  ``checkpoint_<e:06d>/checkpoints``), the state dict after iteration ``e``
  (``checkpoint_0`` before any). Checkpoint ``e`` is matched with the result
  line whose ``training_iteration`` is ``e``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ZooError
from wslgraph.zoo.cnn import ZooSchedule, _update, channel_dropout, evaluate_models
from wslgraph.zoo.data import ImageSet
from wslgraph.zoo.inr import inr_seed
from wslgraph.zoo.published import load_state_dict_file
from wslgraph.zoo.storage import SPLIT_CODES, ZooArrays

__all__ = ["ModelZooCNN", "GRID", "grid_hyperparameters", "train_model_zoo", "ModelZooResult", "load_model_zoos",
           "model_zoo_split", "checkpoint_result"]

GRID = {
    "activation": ["tanh", "relu", "sigmoid", "gelu"],
    "dropout": [0.0, 0.5],
    "init": ["uniform", "normal", "kaiming_uniform", "kaiming_normal"],
    "optimizer": ["adam", "sgd"],
    "learning_rate": [1e-3, 1e-4],
    "weight_decay": [1e-3, 1e-4],
}
CATEGORICAL = ("activation", "init", "optimizer")
_NONLINEARITIES = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
                   "leakyrelu": nn.LeakyReLU, "silu": nn.SiLU}
_ARCHITECTURES = {  # kind: (conv widths, kernels, linear widths, image side)
    "CNN": ((8, 6, 4), (5, 5, 2), (36, 20), 28),
    "CNN2": ((6, 9, 6), (5, 5, 2), (54, 20), 28),
}


class ModelZooCNN(nn.Module):
    """The Model Zoos CNN: three convolutions (the first two max-pooled), two linear layers.

    ``module_list`` holds the layers in the published order, so published
    checkpoints load with ``load_state_dict`` when ``dropout`` matches theirs
    (a dropout layer follows the first, second and fourth activation when
    ``dropout > 0``).
    """

    def __init__(self, channels_in: int = 1, activation: str = "tanh", dropout: float = 0.0, kind: str = "CNN",
                 num_classes: int = 10) -> None:
        super().__init__()
        if kind not in _ARCHITECTURES:
            raise ValueError(f"unknown Model Zoos architecture {kind!r}; choose one of {sorted(_ARCHITECTURES)}")
        if activation not in _NONLINEARITIES:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(_NONLINEARITIES)}")
        widths, kernels, (flat, hidden), _ = _ARCHITECTURES[kind]
        act = _NONLINEARITIES[activation]
        layers: list[nn.Module] = []
        ins = (channels_in,) + widths[:-1]
        for i, (a, b, k) in enumerate(zip(ins, widths, kernels)):
            layers.append(nn.Conv2d(a, b, k))
            if i < 2:
                layers.append(nn.MaxPool2d(2, 2))
            layers.append(act())
            if i < 2 and dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers += [nn.Flatten(), nn.Linear(flat, hidden), act()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, num_classes))
        self.module_list = nn.ModuleList(layers)
        self.kind, self.image_side = kind, _ARCHITECTURES[kind][3]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.module_list:
            x = layer(x)
        return x


def model_zoo_template(channels_in: int = 1, kind: str = "CNN", activation: str = "tanh") -> GraphTemplate:
    """The parameter layout of a Model Zoos CNN (the same for every dropout rate: it has no parameters)."""
    side = _ARCHITECTURES[kind][3] if kind in _ARCHITECTURES else 28
    return GraphTemplate.from_module(ModelZooCNN(channels_in, activation, 0.0, kind),
                                     input_shape=(channels_in, side, side))


def grid_hyperparameters(seed: int, index: int) -> dict:
    """Model ``index``'s point of :data:`GRID` and its repetition.

    Models ``0 .. 255`` visit every combination once, in an order fixed by
    ``seed`` (so any prefix of the zoo spreads over the grid), then the next
    256 repeat it with new initialisations; ``repetition = index // 256``.
    """
    combos = list(itertools.product(*GRID.values()))
    order = torch.randperm(len(combos), generator=torch.Generator().manual_seed(seed))
    values = combos[int(order[index % len(combos)])]
    return dict(zip(GRID, values)) | {"repetition": index // len(combos)}


def _init_model(hp: dict, channels_in: int, kind: str, seed: int) -> ModelZooCNN:
    """The published initialisation: the weights by ``init`` (``uniform_``, ``normal_``, Kaiming), biases 0.01."""
    generator = torch.Generator().manual_seed(seed)
    model = ModelZooCNN(channels_in, hp["activation"], hp["dropout"], kind)
    with torch.no_grad():
        for module in model.module_list:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                weight = module.weight
                if hp["init"] == "uniform":
                    weight.uniform_(0, 1, generator=generator)
                elif hp["init"] == "normal":
                    weight.normal_(0, 1, generator=generator)
                else:
                    fan_in = nn.init._calculate_fan_in_and_fan_out(weight)[0]
                    std = math.sqrt(2 / fan_in)  # kaiming_*_ with a=0 (PyTorch's default gain for leaky_relu, a=0)
                    if hp["init"] == "kaiming_normal":
                        weight.normal_(0, std, generator=generator)
                    else:
                        bound = math.sqrt(3) * std
                        weight.uniform_(-bound, bound, generator=generator)
                module.bias.fill_(0.01)
    return model


def _stacked_state(models: list[ModelZooCNN]) -> list[Tensor]:
    """Parameters of ``models`` in layer order (weight, bias, ...), stacked along a first model axis."""
    per_model = [[p for p in m.module_list.parameters()] for m in models]
    return [torch.stack(group) for group in zip(*per_model)]


def _activate(x: Tensor, code: Tensor, channels: int) -> Tensor:
    """Each model's own activation on ``x`` ``[B, M * channels, ...]`` (codes index ``GRID["activation"]``)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    code = code.repeat_interleave(channels).view(shape)
    out = torch.tanh(x)
    for i, function in enumerate((torch.relu, torch.sigmoid, F.gelu)[: int(code.max()) if code.numel() else 0], 1):
        out = torch.where(code == i, function(x), out)
    return out


def batched_model_zoo_logits(params: list[Tensor], x: Tensor, activation: Tensor, dropout: Tensor | None = None,
                             generator: torch.Generator | None = None, training: bool = False) -> Tensor:
    """Logits ``[B, M, classes]`` of ``M`` Model Zoos CNNs on ``x`` ``[B, C, H, W]`` (the same images for all)
    or ``[B, M, C, H, W]`` (each model its own); ``params`` as :func:`_stacked_state` gives them."""
    models = params[0].shape[0]
    if x.dim() == 4:
        x = x.unsqueeze(1).expand(-1, models, *x.shape[1:])
    batch = x.shape[0]
    h = x.reshape(batch, -1, *x.shape[3:])
    for layer in range(3):
        weight, bias = params[2 * layer], params[2 * layer + 1]
        h = F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), bias.reshape(-1), groups=models)
        if layer < 2:
            h = F.max_pool2d(h, 2, 2)
        h = _activate(h, activation, weight.shape[1])
        if training and dropout is not None and layer < 2:
            h = channel_dropout(h, dropout, weight.shape[1], generator)
    h = h.reshape(batch, models, -1)  # each model's channels x positions, in nn.Flatten's order
    h = torch.einsum("bmi,moi->bmo", h, params[6]) + params[7]
    h = _activate(h.reshape(batch, -1), activation, params[6].shape[1]).view(batch, models, -1)
    if training and dropout is not None:
        h = channel_dropout(h.reshape(batch, -1), dropout, params[6].shape[1], generator).view(batch, models, -1)
    return torch.einsum("bmi,moi->bmo", h, params[8]) + params[9]


@dataclass
class ModelZooResult:
    """Checkpoints of a Model Zoos grid: rows are (model, checkpoint epoch), model-major."""

    params: Tensor  # [models * checkpoints, P] in the template's flatten order
    columns: dict[str, Tensor]  # per row: epoch, model_index, test/train accuracy and loss, ggap
    hyperparameters: list[dict]  # per model
    template: GraphTemplate


def train_model_zoo(train: ImageSet, test: ImageSet, count: int, schedule: ZooSchedule | None = None, *,
                    seed: int = 0, index_offset: int = 0, eval_images: int = 1000, kind: str = "CNN",
                    hyperparameters: list[dict] | None = None, initial: Tensor | None = None,
                    **overrides: object) -> ModelZooResult:
    """Train ``count`` Model Zoos CNNs of :data:`GRID` at once; keep a checkpoint at each epoch in ``checkpoints``.

    Args:
        train, test: Image sets in ``[0, 1]``; both are standardised with the
            training images' mean and standard deviation (as the published
            zoos do with MNIST's).
        count: Models (indices ``index_offset ..``; hyperparameters from
            :func:`grid_hyperparameters`, initialisation from ``(seed, index)``).
        schedule: Epochs, checkpoints (default: every epoch, 0 to ``epochs``), batch size, steps per epoch
            (default: a pass over ``train``), device (:class:`~wslgraph.zoo.cnn.ZooSchedule`; default: 25
            epochs at batch size 10; the published zoos train 50 epochs at batch size 10).
        eval_images: Training images (evenly spaced) on which ``train_accuracy``
            and ``train_loss`` are measured at each checkpoint, without dropout;
            test metrics use all of ``test``.
        hyperparameters: Each model's point of the grid (``count`` dicts with
            :data:`GRID`'s keys) instead of :func:`grid_hyperparameters`'s.
        initial: Starting parameters ``[count, P]`` (in the template's order)
            instead of each ``init``'s draw: fine-tuning sampled or trained models.
        **overrides: :class:`~wslgraph.zoo.cnn.ZooSchedule` fields to change (``epochs=``, ``device=``...).
    """
    schedule = (schedule or ZooSchedule(epochs=25, batch_size=10)).with_overrides(overrides)
    if count < 1:
        raise ValueError(f"need count >= 1, got {count}")
    checkpoints = schedule.checkpoint_epochs(tuple(range(schedule.epochs + 1)))
    epochs, batch_size = schedule.epochs, schedule.batch_size
    side = _ARCHITECTURES[kind][3]
    if tuple(train.images.shape[-2:]) != (side, side):
        raise ValueError(f"the Model Zoos {kind} takes {side}x{side} images, got {tuple(train.images.shape[-2:])}")
    device = torch.device(schedule.device)
    channels = train.images.shape[1]
    indices = range(index_offset, index_offset + count)
    hps = [grid_hyperparameters(seed, i) for i in indices] if hyperparameters is None else list(hyperparameters)
    if len(hps) != count or (initial is not None and initial.shape[0] != count):
        raise ValueError(f"need {count} hyperparameter sets and initial rows, got {len(hps)} and "
                         f"{None if initial is None else initial.shape[0]}")
    template = model_zoo_template(channels, kind)
    _check_layer_order(template)
    if initial is None:
        stacked = _stacked_state([_init_model(hp, channels, kind, inr_seed(seed + 1, i))
                                  for hp, i in zip(hps, indices)])
    else:  # no initialisation to draw: the rows are the starting points
        if initial.shape[1] != template.num_params:
            raise ValueError(f"initial rows have {initial.shape[1]} parameters, the architecture {template.num_params}")
        stacked = list(template.stacked_state(initial).values())  # layer order: _check_layer_order
    params = [p.to(device).requires_grad_(True) for p in stacked]
    code = {name: torch.tensor([GRID[name].index(hp[name]) for hp in hps], device=device) for name in CATEGORICAL}
    rate = torch.tensor([hp["dropout"] for hp in hps], device=device)
    lr = torch.tensor([hp["learning_rate"] for hp in hps], device=device)
    decay = torch.tensor([hp["weight_decay"] for hp in hps], device=device)
    kind_code = torch.where(code["optimizer"] == GRID["optimizer"].index("adam"), 1, 0)  # _update: 0 SGD, 1 Adam
    mean, std = train.images.mean(), train.images.std()
    images = ((train.images - mean) / std).to(device)
    labels = train.labels.to(device)
    test_set = ImageSet((test.images - mean) / std, test.labels, test.name, test.split)
    probe = train.evenly_spaced(min(eval_images, len(train)))
    probe_set = ImageSet((probe.images - mean) / std, probe.labels, probe.name, probe.split)
    generator = torch.Generator().manual_seed(inr_seed(seed + 2, index_offset))  # minibatches
    masks = torch.Generator().manual_seed(inr_seed(seed + 3, index_offset))  # dropout
    state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    steps = schedule.steps(len(train))
    rows, step_count = [], 0
    bar = tqdm(total=epochs * steps, desc=f"training {count} Model Zoos CNNs", unit="step",
               disable=not schedule.progress)
    for epoch in range(epochs + 1):
        if epoch in checkpoints:
            test_acc, test_loss = _evaluate(params, test_set, code["activation"], device)
            train_acc, train_loss = _evaluate(params, probe_set, code["activation"], device)
            flat = torch.cat([p.detach().reshape(count, -1).float().cpu() for p in params], dim=1)
            rows.append((epoch, flat, test_acc, test_loss, train_acc, train_loss))
        if epoch == epochs:
            break
        for _ in range(steps):
            pick = torch.randint(len(train), (count, batch_size), generator=generator).to(device)
            x, y = images[pick].transpose(0, 1), labels[pick].transpose(0, 1)  # [B, M, ...]
            logits = batched_model_zoo_logits(params, x, code["activation"], rate, masks, training=True)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
            grads = torch.autograd.grad(loss.view(batch_size, count).mean(0).sum(), params)
            step_count += 1
            with torch.no_grad():
                for param, grad, moments in zip(params, grads, state):
                    grad = grad + decay.view((-1,) + (1,) * (grad.dim() - 1)) * param  # torch.optim's weight_decay
                    _update(param, grad, moments, lr, kind_code, step_count)
            bar.update(1)
    bar.close()
    return checkpoint_result(rows, indices, hps, template)


def checkpoint_result(rows: list[tuple], indices: range, hyperparameters: list[dict],
                      template: GraphTemplate) -> ModelZooResult:
    """A zoo trainer's result from its checkpoints: ``rows`` holds, per checkpoint epoch, ``(epoch, flat
    [M, P], test accuracy [M], test loss [M], train accuracy [M], train loss [M])`` of models ``indices``."""
    epoch_, flats, test_acc, test_loss, train_acc, train_loss = zip(*rows)
    count, per_model = len(indices), len(rows)

    def by_row(values: tuple[Tensor, ...]) -> Tensor:
        return torch.stack(values, dim=1).reshape(-1)

    columns = {"epoch": torch.tensor(epoch_).repeat(count),
               "model_index": torch.tensor(list(indices)).repeat_interleave(per_model),
               "test_accuracy": by_row(test_acc), "test_loss": by_row(test_loss),
               "train_accuracy": by_row(train_acc), "train_loss": by_row(train_loss)}
    columns["ggap"] = columns["train_accuracy"] - columns["test_accuracy"]
    return ModelZooResult(torch.stack(flats, dim=1).reshape(count * per_model, -1), columns, hyperparameters,
                          template)


def _check_layer_order(template: GraphTemplate) -> None:
    """Stacked parameters are in layer order (weight, bias per layer); the template must flatten in that order."""
    keys = [e.key for e in template.layout.state]
    order = [name for name, _ in ModelZooCNN().named_parameters()]
    if keys != order:  # pragma: no cover - a converter change would make the stored rows wrong
        raise AssertionError(f"template order {keys} differs from layer order {order}")


def _evaluate(params: list[Tensor], images: ImageSet, activation: Tensor,
              device: torch.device) -> tuple[Tensor, Tensor]:
    return evaluate_models(lambda x: batched_model_zoo_logits(params, x, activation), images, device)


def model_zoo_split(model_index: Tensor) -> Tensor:
    """Split codes by model, so all checkpoints of a model share one split.

    Model ``i`` is ``test`` when ``i % 5 == 4``, ``val`` when ``i % 10 == 3``,
    else ``train`` (70 / 10 / 20 %, interleaved, so any prefix is balanced).
    """
    return torch.where(model_index % 5 == 4, SPLIT_CODES["test"],
                       torch.where(model_index % 10 == 3, SPLIT_CODES["val"], SPLIT_CODES["train"])).to(torch.uint8)


# --- the published format ------------------------------------------------------------------------------------------

_CHECKPOINT = re.compile(r"checkpoint_(\d+)$")


def load_model_zoos(root: str | Path, epochs: list[int] | None = None, *, max_models: int | None = None,
                    progress: bool = False) -> ZooArrays:
    """Read a published Model Zoos folder (one sub-folder per model; see the module docstring).

    Args:
        root: The zoo folder (e.g. ``tune_zoo_mnist_hyperparameter_10_random_seeds``).
        epochs: Checkpoints to read (default: every one each model has). A model
            missing one of them is refused.
        max_models: Read only the first models (folders in sorted order).

    Rows are (model, epoch), model-major, in wslgraph's parameter order for the
    :class:`ModelZooCNN` named in the configuration. Columns: ``epoch``,
    ``model_index``, ``test_accuracy``, ``train_accuracy``, ``test_loss``,
    ``train_loss``, ``ggap`` (train minus test accuracy), ``val_accuracy``
    where present, every grid hyperparameter found in the configuration
    (``activation``, ``init``, ``optimizer`` as codes of :data:`GRID`'s
    lists; ``dropout``, ``learning_rate``, ``weight_decay``, ``seed``) and
    ``split`` (:func:`model_zoo_split`). Checkpoints are read with
    ``torch.load(weights_only=True)``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ZooError(f"{root} is not a folder; pass the folder that holds one sub-folder per model")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "params.json").is_file())
    if not folders:
        raise ZooError(f"{root} holds no model folders (sub-folders with params.json, result.json and "
                       "checkpoint_<epoch>/checkpoints); is it a Model Zoos zoo, unzipped?")
    folders = folders[:max_models] if max_models else folders
    template, reference, rows, columns = None, None, [], {}
    for index, folder in enumerate(tqdm(folders, desc="reading models", disable=not progress)):
        config = _read_json(folder / "params.json")
        results = _read_results(folder / "result.json")
        kind = str(config.get("model::type", "CNN"))
        if kind not in _ARCHITECTURES:
            raise ZooError(f"{folder}: model::type {kind!r} is not supported; supported: {sorted(_ARCHITECTURES)}")
        channels = int(config.get("model::channels_in", 1))
        shape = (kind, channels, int(config.get("model::o_dim", 10)))
        if reference is None:
            reference, template = shape, model_zoo_template(channels, kind)
        elif shape != reference:
            raise ZooError(f"{folder} is a {shape} model but the zoo's first is {reference}: one architecture per zoo")
        available = {int(m.group(1)): p for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name))}
        wanted = sorted(available) if epochs is None else list(epochs)
        missing = [e for e in wanted if e not in available]
        if missing or not wanted:
            raise ZooError(f"{folder} has no checkpoint for epochs {missing or wanted}; it has {sorted(available)}")
        for epoch in wanted:
            state = load_state_dict_file(available[epoch] / "checkpoints")
            rows.append(_state_to_row(state, template, folder / available[epoch].name))
            result = results.get(epoch)
            if result is None:
                raise ZooError(f"{folder}/result.json has no line with training_iteration {epoch}")
            values = {"epoch": epoch, "model_index": index, "test_accuracy": result.get("test_acc"),
                      "train_accuracy": result.get("train_acc"), "test_loss": result.get("test_loss"),
                      "train_loss": result.get("train_loss"), "val_accuracy": result.get("val_acc")}
            values["ggap"] = (None if values["train_accuracy"] is None or values["test_accuracy"] is None
                              else values["train_accuracy"] - values["test_accuracy"])
            for name, key in (("activation", "model::nlin"), ("init", "model::init_type"),
                              ("optimizer", "optim::optimizer"), ("dropout", "model::dropout"),
                              ("learning_rate", "optim::lr"), ("weight_decay", "optim::wd"), ("seed", "seed")):
                if key in config:
                    value = config[key]
                    values[name] = GRID[name].index(value) if name in CATEGORICAL and value in GRID[name] else (
                        -1 if name in CATEGORICAL else value)
            for name, value in values.items():
                columns.setdefault(name, []).append(value)
    count = len(rows)
    out = {}
    for name, values in columns.items():
        if len(values) != count or any(v is None for v in values):
            if name in ("val_accuracy",) or all(v is None for v in values):
                continue
            raise ZooError(f"the column {name!r} is missing for some checkpoints (result.json lines or params.json)")
        dtype = torch.int64 if name in ("epoch", "model_index", "seed", *CATEGORICAL) else torch.float32
        out[name] = torch.tensor(values, dtype=dtype)
    out["split"] = model_zoo_split(out["model_index"])
    vocab = {name: GRID[name] for name in CATEGORICAL if name in out} | {"split": list(SPLIT_CODES)}
    description = {"format": "model-zoos", "source": str(root), "architecture": reference[0],
                   "channels_in": reference[1], "models": len(folders)}
    return ZooArrays(torch.stack(rows), out, template.layout, "cnn", description, vocab)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ZooError(f"cannot read {path}: {error}") from error
    if not isinstance(value, dict):
        raise ZooError(f"{path} holds a {type(value).__name__}, not a configuration object")
    return value


def _read_results(path: Path) -> dict[int, dict]:
    """``result.json``'s lines by ``training_iteration`` (lines without one count from 1, ray-tune's convention)."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ZooError(f"cannot read {path} (one JSON object per line expected): {error}") from error
    out = {}
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise ZooError(f"{path} line {number} is not a JSON object")
        out[int(record.get("training_iteration", number))] = record
    return out


def _state_to_row(state: dict[str, Tensor], template: GraphTemplate, where: Path) -> Tensor:
    """A published state dict (keys shifted by dropout layers) → one row in the template's order, by layer order."""
    def natural(key: str) -> tuple:  # by layer (module_list.2 before module_list.10), weight before bias
        stem, _, kind = key.rpartition(".")
        return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem)) + (kind != "weight",)

    tensors = [state[k] for k in sorted(state, key=natural) if k.endswith((".weight", ".bias"))]
    expected = [e.shape for e in template.layout.state]
    if [tuple(t.shape) for t in tensors] != [tuple(s) for s in expected]:
        raise ZooError(f"{where}: parameter shapes {[tuple(t.shape) for t in tensors]} do not match the "
                       f"configured architecture's {[tuple(s) for s in expected]}")
    row = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    if not bool(torch.isfinite(row).all()):
        raise ZooError(f"{where} holds NaN or inf weights; remove the model or pass epochs before it diverged")
    return row
