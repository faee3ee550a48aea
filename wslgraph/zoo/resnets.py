"""Zoos of small residual networks (ResNet-8/10 at a chosen width), trained many at once with :mod:`torch.func`.

Every model is a :func:`~wslgraph.zoo.resnet` (torchvision's topology and names, the 3×3 stem for small images)
with its own optimizer, learning rate, weight decay and initialisation (:data:`RESNET_GRID`). All models take
a step together: ``vmap(grad(functional_call))`` over their stacked parameters and batch-norm buffers (each
model's running statistics update as its own module's would), on minibatches each model draws for itself, then
each model's own update (:func:`~wslgraph.zoo.cnn._update`: SGD with momentum 0.9 or Adam, torch.optim's
weight decay). A checkpoint at each chosen epoch holds the model's full state dict (running statistics
included), and is scored with :class:`~wslgraph.weightspace.BatchedModule` in eval mode.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad_and_value, vmap
from tqdm.auto import tqdm

from wslgraph.convert.template import GraphTemplate
from wslgraph.weightspace.functional import BatchedModule
from wslgraph.zoo.architectures import Bottleneck, ResNet, resnet
from wslgraph.zoo.cnn import OPTIMIZERS, ZooSchedule, _update, evaluate_models
from wslgraph.zoo.data import ImageSet
from wslgraph.zoo.inr import inr_seed
from wslgraph.zoo.modelzoos import ModelZooResult, checkpoint_result

__all__ = ["RESNET_GRID", "deepen_resnet", "resnet_hyperparameters", "resnet_zoo_model", "train_resnet_zoo"]

RESNET_GRID = {
    "optimizer": ["adam", "sgd"],
    "learning_rate": [1e-3, 1e-2],
    "weight_decay": [0.0, 5e-4],
}


def resnet_hyperparameters(seed: int, index: int) -> dict:
    """Model ``index``'s point of :data:`RESNET_GRID`: models ``0 .. 7`` visit every point once in an order fixed
    by ``seed``, the next eight repeat them with new initialisations (``repetition = index // 8``)."""
    combos = list(itertools.product(*RESNET_GRID.values()))
    order = torch.randperm(len(combos), generator=torch.Generator().manual_seed(seed))
    return dict(zip(RESNET_GRID, combos[int(order[index % len(combos)])])) | {"repetition": index // len(combos)}


def resnet_zoo_model(depth: int, width: int, channels: int, seed: int | None = None) -> ResNet:
    """A zoo member: ResNet-``depth`` with the small-image stem, 10 classes; with ``seed``, torchvision's
    initialisation drawn from it (the global generator is left as it was)."""
    if seed is None:
        return resnet(depth, width=width, in_channels=channels, num_classes=10, small_input=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return resnet(depth, width=width, in_channels=channels, num_classes=10, small_input=True)


def deepen_resnet(rows: Tensor, source: ResNet, target: ResNet, *, input_shape: tuple[int, ...] | None = None,
                  new_blocks: str = "copy", templates: tuple[GraphTemplate, GraphTemplate] | None = None) -> Tensor:
    """Flat rows ``[N, P]`` of ``source`` as rows of ``target``, a deeper ResNet of the same stages and widths
    (e.g. ResNet-8 -> ResNet-14: two blocks per stage): generating an architecture larger than a zoo's.

    Every tensor the source has (stem, its blocks, ``fc``) is taken as it is. A block the source lacks repeats
    its stage's last source block (the layer whose position it takes, as SANE's decoder reuses a known layer's
    positions for an unseen one): each tensor from the same place in that block, or, where the stage's first
    block changes width or stride, from the block's width-preserving convolution and its batch norm (``conv2``,
    ``bn2`` for ``conv1``, ``bn1``). ``new_blocks="identity"`` then sets the repeated blocks' last batch norm's
    scale and shift to 0, so that each adds nothing to its input and ``target`` computes exactly ``source``'s
    function (tested); ``"copy"`` keeps them as copied. ``input_shape``: as the rows' templates were built;
    ``templates``: the source's and target's templates where the caller has them (else traced here).
    """
    if new_blocks not in ("copy", "identity"):
        raise ValueError(f"new_blocks must be 'copy' or 'identity', got {new_blocks!r}")
    src_template, dst_template = templates or (GraphTemplate.from_module(m, input_shape=input_shape)
                                               for m in (source, target))
    state = src_template.stacked_state(rows)
    shapes = {k: v.shape for k, v in target.state_dict().items()}
    blocks = {stage: len(getattr(source, f"layer{stage + 1}")) for stage in range(source.num_stages)}
    if source.num_stages != target.num_stages or any(
            len(getattr(target, f"layer{stage + 1}")) < count for stage, count in blocks.items()):
        raise ValueError(f"target must have the source's {source.num_stages} stages with at least its blocks per stage "
                         f"({list(blocks.values())})")
    last_bn = "bn3" if isinstance(target.layer1[0], Bottleneck) else "bn2"
    out = {}
    for key, shape in shapes.items():
        if key in state and state[key].shape[1:] == shape:
            out[key] = state[key]
            continue
        stage, _, rest = key.split(".", 2) if key.count(".") >= 2 else (key, "", "")
        if not stage.startswith("layer") or not rest or int(stage[5:]) - 1 not in blocks:
            raise ValueError(f"{key} of the target has no counterpart in the source (shape {tuple(shape)}); the "
                             "target must have the source's stem, stages, widths and classifier")
        origin = f"{stage}.{blocks[int(stage[5:]) - 1] - 1}"
        same = f"{origin}.{rest}"
        if same not in state or state[same].shape[1:] != shape:
            same = f"{origin}.{rest.replace('conv1', 'conv2').replace('bn1', 'bn2')}"
        if same not in state or state[same].shape[1:] != shape:
            raise ValueError(f"{key}: no tensor of shape {tuple(shape)} in the source's {origin}")
        out[key] = state[same].clone()
        if new_blocks == "identity" and rest in (f"{last_bn}.weight", f"{last_bn}.bias"):
            out[key] = torch.zeros_like(out[key])
    return torch.cat([out[e.key].reshape(len(rows), -1).to(dst_template.layout.dtype)
                      for e in dst_template.layout.state], dim=1)


def _score(evaluator: BatchedModule, rows: Tensor, images: ImageSet, device: torch.device) -> tuple[Tensor, Tensor]:
    """Accuracy and mean cross-entropy ``([M], [M])`` of the networks ``rows`` (eval mode) on ``images``."""
    return evaluate_models(lambda x: evaluator(rows, x).transpose(0, 1), images, device)


def train_resnet_zoo(train: ImageSet, test: ImageSet, count: int, schedule: ZooSchedule | None = None, *,
                     depth: int = 8, width: int = 16, seed: int = 0, index_offset: int = 0, eval_images: int = 1000,
                     hyperparameters: list[dict] | None = None, initial: Tensor | None = None,
                     **overrides: object) -> ModelZooResult:
    """Train ``count`` small ResNets at once; keep every model's state dict at each checkpoint epoch.

    Args:
        train, test: Image sets in ``[0, 1]``, standardised with the training images' mean and std.
        count: Models (indices ``index_offset ..``; hyperparameters from :func:`resnet_hyperparameters`,
            initialisation from ``(seed, index)``).
        schedule: Epochs, checkpoints (default: every epoch), batch size, steps per epoch, device
            (:class:`~wslgraph.zoo.cnn.ZooSchedule`; default: 10 epochs at batch size 32).
        depth, width: ResNet-``depth`` (8 or 10: one basic block per stage) of ``width`` stem channels.
        eval_images: Training images (evenly spaced) for ``train_accuracy``/``train_loss`` at each checkpoint.
        hyperparameters: Each model's point (dicts with :data:`RESNET_GRID`'s keys) instead of the grid's.
        initial: Starting state dicts as flat rows ``[count, P]`` in the template's order (parameters and
            batch-norm buffers) instead of fresh initialisations: fine-tuning sampled or trained models (made
            loadable first: :meth:`~wslgraph.GraphTemplate.loadable`).
        **overrides: :class:`~wslgraph.zoo.cnn.ZooSchedule` fields to change.

    Returns:
        A :class:`~wslgraph.zoo.modelzoos.ModelZooResult` (rows: model-major, then checkpoint).
    """
    schedule = (schedule or ZooSchedule(epochs=10, batch_size=32)).with_overrides(overrides)
    if count < 1:
        raise ValueError(f"need count >= 1, got {count}")
    checkpoints = schedule.checkpoint_epochs(tuple(range(schedule.epochs + 1)))
    device, batch_size = torch.device(schedule.device), schedule.batch_size
    indices = range(index_offset, index_offset + count)
    hps = [resnet_hyperparameters(seed, i) for i in indices] if hyperparameters is None else list(hyperparameters)
    if len(hps) != count or (initial is not None and initial.shape[0] != count):
        raise ValueError(f"need {count} hyperparameter sets and initial rows, got {len(hps)} and "
                         f"{None if initial is None else initial.shape[0]}")
    channels, side = train.images.shape[1], train.images.shape[-1]
    module = resnet_zoo_model(depth, width, channels).to(device)
    template = GraphTemplate.from_module(module, input_shape=(channels, side, side))
    names = [name for name, _ in module.named_parameters()]
    if initial is None:
        models = [resnet_zoo_model(depth, width, channels, inr_seed(seed + 1, i)) for i in indices]
        states = [dict(m.named_parameters()) | dict(m.named_buffers()) for m in models]
        stacked = {k: torch.stack([state[k].detach() for state in states]) for k in states[0]}
    else:
        stacked = template.stacked_state(template.loadable(initial))
    params = {k: stacked[k].to(device) for k in names}
    buffers = {k: stacked[k].to(device) for k, _ in module.named_buffers()}
    lr = torch.tensor([hp["learning_rate"] for hp in hps], device=device)
    decay = torch.tensor([hp["weight_decay"] for hp in hps], device=device)
    kind = torch.tensor([OPTIMIZERS.index(hp["optimizer"]) for hp in hps], device=device)  # 0 SGD, 1 Adam
    state = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in params.items()}
    mean, std = train.images.mean(), train.images.std()
    images, labels = ((train.images - mean) / std).to(device), train.labels.to(device)
    test_set = ImageSet((test.images - mean) / std, test.labels, test.name, test.split)
    probe = train.evenly_spaced(min(eval_images, len(train)))
    probe_set = ImageSet((probe.images - mean) / std, probe.labels, probe.name, probe.split)
    generator = torch.Generator().manual_seed(inr_seed(seed + 2, index_offset))
    evaluator = BatchedModule(module, template)

    def loss(p: dict, b: dict, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(module, (p, b), (x,)), y)

    step_all = vmap(grad_and_value(loss), in_dims=(0, 0, 0, 0))
    steps = schedule.steps(len(train))
    rows, step_count = [], 0
    bar = tqdm(total=schedule.epochs * steps, desc=f"training {count} ResNet-{depth}s", unit="step",
               disable=not schedule.progress)
    for epoch in range(schedule.epochs + 1):
        if epoch in checkpoints:
            flat = torch.cat([(params[e.key] if e.key in params else buffers[e.key]).detach().reshape(count, -1)
                              .to(template.layout.dtype).cpu() for e in template.layout.state], dim=1)
            scored = flat.to(device)
            test_acc, test_loss = _score(evaluator, scored, test_set, device)
            train_acc, train_loss = _score(evaluator, scored, probe_set, device)
            rows.append((epoch, flat, test_acc, test_loss, train_acc, train_loss))
        if epoch == schedule.epochs:
            break
        module.train()
        for _ in range(steps):
            pick = torch.randint(len(train), (count, batch_size), generator=generator).to(device)
            grads, _ = step_all(params, buffers, images[pick], labels[pick])
            step_count += 1
            with torch.no_grad():
                for key, param in params.items():
                    grad = grads[key] + decay.view((-1,) + (1,) * (param.dim() - 1)) * param  # torch.optim's decay
                    _update(param, grad, state[key], lr, kind, step_count)
            bar.update(1)
    bar.close()
    return checkpoint_result(rows, indices, hps, template)
