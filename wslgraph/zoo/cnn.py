"""Small-CNN-Zoo-style populations of CNNs, trained many at once as one vectorized program.

:func:`train_cnn_zoo` trains ``M`` CNNs with different hyperparameters
together: each model's convolution is one group of a grouped convolution
(input ``[B, M * C, H, W]``, weight ``[M * out, C, k, k]``, ``groups=M``), so a
step of all models is a handful of kernels. Per-model hyperparameters are
tensors broadcast over that layout: activation (ReLU or Tanh selected per
channel), dropout rate, L2, learning rate and optimizer (SGD, Adam or RMSprop,
all three updates computed and the model's own one kept). Each model draws its
minibatches from its own subset of the training set (``train_fraction``).

Each model is an :class:`ZooCNN` (a plain ``nn.Module``), so the zoo's
parameters are those of a real module: :func:`batched_logits` equals the
module's forward (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from wslgraph.convert.template import GraphTemplate
from wslgraph.zoo.data import ImageSet
from wslgraph.zoo.inr import inr_seed

__all__ = ["CNNZooSpec", "ZooSchedule", "ZooCNN", "sample_hyperparameters", "train_cnn_zoo", "batched_logits",
           "CNNZooResult", "ACTIVATIONS", "OPTIMIZERS", "INITS", "TRAIN_FRACTIONS", "channel_dropout",
           "evaluate_models"]

ACTIVATIONS = ["relu", "tanh"]
OPTIMIZERS = ["sgd", "adam", "rmsprop"]
INITS = ["normal", "truncated_normal", "he_normal", "glorot_normal"]
TRAIN_FRACTIONS = [0.1, 0.25, 0.5, 1.0]


@dataclass(frozen=True)
class CNNZooSpec:
    """The architecture of a CNN zoo (default: the Small CNN Zoo's 4,970-parameter CNN).

    Args:
        in_channels: Image channels.
        channels: Channels of every convolution.
        num_layers: Convolutions.
        kernel_size: Their kernel size.
        stride: Their stride (without ``residual``; residual blocks keep the size).
        num_classes: Outputs of the dense layer after global average pooling.
        residual: Add each convolution's input to its output where the widths match
            (stride 1, same padding).
        batch_norm: BatchNorm after every convolution.
    """

    in_channels: int = 1
    channels: int = 16
    num_layers: int = 3
    kernel_size: int = 3
    stride: int = 2
    num_classes: int = 10
    residual: bool = False
    batch_norm: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ZooSchedule:
    """How long and where a zoo of CNNs trains, and which epochs it keeps: one object, passed unchanged from the
    CLI through the zoo jobs to :func:`train_cnn_zoo` and :func:`~wslgraph.zoo.modelzoos.train_model_zoo`.

    Attributes:
        epochs: Training epochs; an epoch is ``steps_per_epoch`` minibatch steps of every model.
        checkpoints: Epochs whose parameters are recorded (``None``: the trainer's default).
        batch_size: Minibatch per model per step.
        steps_per_epoch: Default: ``len(train) // batch_size``.
        device: Where to train.
        progress: Show a progress bar.
    """

    epochs: int = 2
    checkpoints: tuple[int, ...] | None = None
    batch_size: int = 32
    steps_per_epoch: int | None = None
    device: str = "cpu"
    progress: bool = True

    def with_overrides(self, overrides: dict[str, object]) -> ZooSchedule:
        """This schedule with ``overrides`` (schedule fields) applied; an unknown name is a ``TypeError``."""
        unknown = sorted(set(overrides) - set(ZooSchedule.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown options {unknown}; ZooSchedule has {sorted(ZooSchedule.__dataclass_fields__)}")
        return replace(self, **overrides) if overrides else self

    def checkpoint_epochs(self, default: tuple[int, ...]) -> tuple[int, ...]:
        """The sorted checkpoint epochs (``default`` where none are given), checked against ``epochs``."""
        epochs = tuple(sorted(set(self.checkpoints if self.checkpoints is not None else default)))
        if self.epochs < 0 or any(not 0 <= c <= self.epochs for c in epochs):
            raise ValueError(f"need checkpoints within [0, epochs={self.epochs}], got {epochs}")
        return epochs

    def steps(self, train_images: int) -> int:
        return self.steps_per_epoch or max(1, train_images // self.batch_size)


class ZooCNN(nn.Module):
    """One model of a :class:`CNNZooSpec` zoo: conv (+BN) + activation (+ skip) layers, pooling, a dense layer."""

    def __init__(self, spec: CNNZooSpec, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.spec = spec
        stride, padding = (1, spec.kernel_size // 2) if spec.residual else (spec.stride, 0)
        widths = [spec.in_channels] + [spec.channels] * spec.num_layers
        self.convs = nn.ModuleList(nn.Conv2d(a, b, spec.kernel_size, stride=stride, padding=padding)
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm2d(spec.channels) if spec.batch_norm else nn.Identity()
                                   for _ in range(spec.num_layers))
        self.activation = nn.ReLU() if activation == "relu" else nn.Tanh()
        self.skips = [spec.residual and a == b for a, b in zip(widths[:-1], widths[1:])]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(spec.channels, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        for conv, norm, skip in zip(self.convs, self.norms, self.skips):
            y = self.activation(norm(conv(x)))
            x = x + y if skip else y
        return self.head(self.pool(x).flatten(1))


def sample_hyperparameters(seed: int, index: int) -> dict:
    """Model ``index``'s hyperparameters, from its own generator (the Small CNN Zoo's ranges)."""
    generator = torch.Generator().manual_seed(inr_seed(seed, index))

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    def choice(options: list) -> object:
        return options[int(torch.randint(len(options), (), generator=generator))]

    return {"activation": choice(ACTIVATIONS), "optimizer": choice(OPTIMIZERS), "init": choice(INITS),
            "init_std": 10 ** uniform(-3, math.log10(0.5)), "learning_rate": 10 ** uniform(math.log10(5e-4), -1.3),
            "l2": 10 ** uniform(-8, -2), "dropout": uniform(0.0, 0.5), "train_fraction": choice(TRAIN_FRACTIONS)}


def _init_model(spec: CNNZooSpec, hp: dict, seed: int) -> ZooCNN:
    generator = torch.Generator().manual_seed(seed)
    model = ZooCNN(spec, hp["activation"])
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = module.weight
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
            with torch.no_grad():
                if hp["init"] == "normal":
                    weight.normal_(0, hp["init_std"], generator=generator)
                elif hp["init"] == "truncated_normal":
                    nn.init.trunc_normal_(weight, 0, hp["init_std"], -2 * hp["init_std"], 2 * hp["init_std"],
                                          generator=generator)
                elif hp["init"] == "he_normal":
                    weight.normal_(0, math.sqrt(2 / fan_in), generator=generator)
                else:
                    weight.normal_(0, math.sqrt(2 / (fan_in + fan_out)), generator=generator)
                module.bias.zero_()
    return model


def batched_logits(params: dict[str, Tensor], x: Tensor, spec: CNNZooSpec, relu: Tensor,
                   dropout: Tensor | None = None, generator: torch.Generator | None = None,
                   training: bool = False) -> Tensor:
    """Logits ``[B, M, classes]`` of ``M`` stacked :class:`ZooCNN` on images ``x`` ``[B, M, C, H, W]``.

    ``params`` holds the models' state dicts stacked along a first axis of size
    ``M``; ``relu`` ``[M]`` says which models use ReLU (the others Tanh);
    ``dropout`` ``[M]`` rates are applied after each activation when ``training``.
    """
    batch, models = x.shape[:2]
    stride, padding = (1, spec.kernel_size // 2) if spec.residual else (spec.stride, 0)
    h = x.reshape(batch, models * x.shape[2], *x.shape[3:])
    for layer in range(spec.num_layers):
        weight = params[f"convs.{layer}.weight"]
        z = F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), params[f"convs.{layer}.bias"].reshape(-1),
                     stride=stride, padding=padding, groups=models)
        if spec.batch_norm:
            z = F.batch_norm(z, params[f"norms.{layer}.running_mean"].reshape(-1),
                             params[f"norms.{layer}.running_var"].reshape(-1),
                             params[f"norms.{layer}.weight"].reshape(-1), params[f"norms.{layer}.bias"].reshape(-1),
                             training=training)
        channel_relu = relu.repeat_interleave(spec.channels).view(1, -1, 1, 1)
        y = torch.where(channel_relu, torch.relu(z), torch.tanh(z))
        if training and dropout is not None:
            y = channel_dropout(y, dropout, spec.channels, generator)
        h = h + y if (spec.residual and (layer > 0 or spec.in_channels == spec.channels)) else y
    pooled = h.mean(dim=(2, 3)).view(batch, models, spec.channels)
    return torch.einsum("bmc,mkc->bmk", pooled, params["head.weight"]) + params["head.bias"]


def channel_dropout(x: Tensor, rate: Tensor, channels: int, generator: torch.Generator | None) -> Tensor:
    """Dropout on ``x`` ``[B, M * channels, ...]`` with each model's own ``rate`` ``[M]`` (inverted scaling)."""
    rate = rate.repeat_interleave(channels).view((1, -1) + (1,) * (x.dim() - 2)).to(x)
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= rate
    return x * keep / (1 - rate)


@torch.no_grad()
def evaluate_models(logits: Callable[[Tensor], Tensor], images: ImageSet, device: torch.device,
                    chunk: int = 500) -> tuple[Tensor, Tensor]:
    """Accuracy and mean cross-entropy ``([M], [M])`` of ``M`` models on ``images``; ``logits`` maps a chunk
    ``[B, C, H, W]`` (on ``device``) to ``[B, M, classes]``."""
    correct = loss = None
    for start in range(0, len(images), chunk):
        x = images.images[start:start + chunk].to(device)
        y = images.labels[start:start + chunk].to(device)
        out = logits(x).float()
        models = out.shape[1]
        hits = (out.argmax(-1) == y.unsqueeze(1)).sum(0).cpu()
        errors = F.cross_entropy(out.permute(0, 2, 1), y.unsqueeze(1).expand(-1, models), reduction="none").sum(0)
        correct = hits if correct is None else correct + hits
        loss = errors.cpu() if loss is None else loss + errors.cpu()
    return correct / len(images), loss / len(images)


@dataclass
class CNNZooResult:
    """Checkpoints of trained CNNs: rows are (model, checkpoint epoch), model-major."""

    params: Tensor  # [models * checkpoints, P] in the template's flatten order
    model_index: Tensor
    epoch: Tensor
    test_accuracy: Tensor
    train_loss: Tensor  # mean training loss over the epoch before the checkpoint (nan at epoch 0)
    hyperparameters: list[dict]  # per model
    template: GraphTemplate


def train_cnn_zoo(train: ImageSet, test: ImageSet, count: int, schedule: ZooSchedule | None = None, *,
                  spec: CNNZooSpec | None = None, seed: int = 0, index_offset: int = 0,
                  **overrides: object) -> CNNZooResult:
    """Train ``count`` CNNs with sampled hyperparameters, all at once.

    Args:
        train, test: Image sets (test accuracy is on all of ``test``).
        count: Models (indices ``index_offset .. index_offset + count - 1``).
        schedule: Epochs, checkpoints (default: ``(0, epochs)``), batch size, steps per epoch, device
            (:class:`ZooSchedule`; default: 2 epochs at batch size 32). An epoch is ``steps_per_epoch`` steps
            whatever the model's train fraction.
        spec: Architecture (default: :class:`CNNZooSpec()`).
        seed: Zoo seed; model ``i``'s hyperparameters and init come from ``(seed, i)``.
        **overrides: :class:`ZooSchedule` fields to change (``epochs=``, ``device=``...).
    """
    schedule = (schedule or ZooSchedule()).with_overrides(overrides)
    spec = spec or CNNZooSpec(in_channels=train.images.shape[1])
    if spec.in_channels != train.images.shape[1]:
        raise ValueError(f"spec.in_channels={spec.in_channels} but the images have {train.images.shape[1]} channels")
    if count < 1:
        raise ValueError(f"need count >= 1, got {count}")
    checkpoints = schedule.checkpoint_epochs((0, schedule.epochs))
    epochs, batch_size = schedule.epochs, schedule.batch_size
    device = torch.device(schedule.device)
    indices = range(index_offset, index_offset + count)
    hps = [sample_hyperparameters(seed, i) for i in indices]
    models = [_init_model(spec, hp, inr_seed(seed + 1, i)) for hp, i in zip(hps, indices)]
    template = GraphTemplate.from_module(models[0])
    params = {k: torch.stack([m.state_dict()[k] for m in models]).to(device) for k in models[0].state_dict()}
    trainable = [k for k in params if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for key in trainable:
        params[key].requires_grad_(True)
    column = {name: torch.tensor([hp[name] for hp in hps], device=device)
              for name in ("learning_rate", "l2", "dropout")}
    relu = torch.tensor([hp["activation"] == "relu" for hp in hps], device=device)
    optimizer = torch.tensor([OPTIMIZERS.index(hp["optimizer"]) for hp in hps], device=device)
    generator = torch.Generator().manual_seed(inr_seed(seed + 2, index_offset))
    subset_sizes = torch.tensor([max(1, int(hp["train_fraction"] * len(train))) for hp in hps])
    orders = torch.stack([torch.randperm(len(train), generator=generator) for _ in hps])
    state = {k: (torch.zeros_like(params[k]), torch.zeros_like(params[k])) for k in trainable}
    steps = schedule.steps(len(train))
    images, labels = train.images.to(device), train.labels.to(device)
    rows, losses, step_count = [], torch.full((count,), float("nan")), 0
    bar = tqdm(total=epochs * steps, desc=f"training {count} CNNs", unit="step", disable=not schedule.progress)
    for epoch in range(epochs + 1):
        if epoch in checkpoints:
            rows.append((epoch, _flat(params, template), _accuracy(params, test, spec, relu, device), losses.clone()))
        if epoch == epochs:
            break
        total = torch.zeros(count, device=device)
        for _ in range(steps):
            pick = (torch.rand(count, batch_size, generator=generator) * subset_sizes.unsqueeze(1)).long()
            batch_index = orders.gather(1, pick).to(device)  # [M, B] rows of each model's subset
            x = images[batch_index].transpose(0, 1)  # [B, M, C, H, W]
            y = labels[batch_index].transpose(0, 1)
            logits = batched_logits(params, x, spec, relu, column["dropout"], generator, training=True)
            loss = F.cross_entropy(logits.reshape(-1, spec.num_classes), y.reshape(-1), reduction="none")
            per_model = loss.view(batch_size, count).mean(0)
            penalty = sum((params[k].flatten(1) ** 2).sum(1) for k in trainable if k.endswith("weight"))
            grads = torch.autograd.grad((per_model + column["l2"] * penalty).sum(), [params[k] for k in trainable])
            step_count += 1
            with torch.no_grad():
                for key, grad in zip(trainable, grads):
                    _update(params[key], grad, state[key], column["learning_rate"], optimizer, step_count)
            total += per_model.detach()
            bar.update(1)
        losses = (total / steps).cpu()
    bar.close()
    epochs_, flats, accuracies, train_losses = zip(*rows)
    per_model = len(checkpoints)
    return CNNZooResult(
        params=torch.stack(flats, dim=1).reshape(count * per_model, -1),
        model_index=torch.tensor(list(indices)).repeat_interleave(per_model),
        epoch=torch.tensor(epochs_).repeat(count),
        test_accuracy=torch.stack(accuracies, dim=1).reshape(-1),
        train_loss=torch.stack(train_losses, dim=1).reshape(-1),
        hyperparameters=hps, template=template)


def _update(param: Tensor, grad: Tensor, state: tuple[Tensor, Tensor], lr: Tensor, optimizer: Tensor,
            step: int) -> None:
    """One step of each model's own optimizer (SGD with momentum 0.9, Adam, RMSprop; PyTorch's defaults)."""
    first, second = state
    shape = (-1,) + (1,) * (param.dim() - 1)
    lr, kind = lr.view(shape), optimizer.view(shape)
    momentum = first.mul(0.9).add_(grad)  # SGD's buffer
    adam_m = first.lerp(grad, 0.1)
    adam_v = second.mul(0.999).addcmul_(grad, grad, value=0.001)
    rms_v = second.mul(0.99).addcmul_(grad, grad, value=0.01)
    adam_step = adam_m / (1 - 0.9**step) / ((adam_v / (1 - 0.999**step)).sqrt() + 1e-8)
    rms_step = grad / (rms_v.sqrt() + 1e-8)
    first.copy_(torch.where(kind == 0, momentum, torch.where(kind == 1, adam_m, first)))
    second.copy_(torch.where(kind == 1, adam_v, torch.where(kind == 2, rms_v, second)))
    param.sub_(lr * torch.where(kind == 0, momentum, torch.where(kind == 1, adam_step, rms_step)))


def _flat(params: dict[str, Tensor], template: GraphTemplate) -> Tensor:
    return torch.cat([params[e.key].detach().reshape(params[e.key].shape[0], -1).float().cpu()
                      for e in template.layout.state], dim=1)


def _accuracy(params: dict[str, Tensor], test: ImageSet, spec: CNNZooSpec, relu: Tensor, device: torch.device,
              chunk: int = 500) -> Tensor:
    def logits(x: Tensor) -> Tensor:
        return batched_logits(params, x.unsqueeze(1).expand(-1, relu.shape[0], *x.shape[1:]), spec, relu)

    return evaluate_models(logits, test, device, chunk)[0]
