"""Fitting populations of SIRENs to images as one batched tensor program.

:func:`fit_inrs` fits thousands of INRs at once: the parameters of a chunk of
INRs are stacked (``W1 [N, H, 2]``, ``b1 [N, H]``, ...), the forward pass is a
chain of ``baddbmm`` calls over the shared pixel grid, the backward pass is
written out by hand (three ``bmm`` per layer, the sine derivative fused into
one in-place chain), and Adam runs on the stacked tensors, so INR ``i`` follows
exactly the optimisation a lone ``nn.Module`` + ``torch.optim.Adam`` would. An
INR that reaches the recipe's early-stop PSNR is frozen at that step and
leaves the working set (the batch is compacted), so finished INRs cost nothing.

Initialisation is per INR, from a seed derived from ``(seed, global index)``:
INR ``i`` gets the same start whatever the chunk or shard it is fitted in,
which makes sharded generation reproducible byte for byte.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ShapeMismatchError
from wslgraph.weightspace.functional import INRArchitecture, inr_forward, pixel_grid, siren_layer_init
from wslgraph.zoo.architectures import siren
from wslgraph.zoo.data import ImageSet

__all__ = ["INRRecipe", "RECIPES", "resolve_recipe", "FitOptions", "split_fit_overrides", "INRFit", "fit_inrs",
           "fit_inr_reference", "render_inrs", "init_siren_params", "inr_seed", "inr_targets", "psnr",
           "fit_flops_per_step"]


@dataclass(frozen=True)
class INRRecipe:
    """How to fit one SIREN to one image.

    Args:
        name: Recipe name (recorded in zoo manifests).
        hidden: Hidden widths (default: ``(32, 32)``).
        w0: Sine frequency of every hidden layer (default: ``30.0``).
        first_init: ``"siren"``: first layer ``U(±1/n_in)`` (Sitzmann et al.);
            ``"uniform"``: every layer ``U(±sqrt(6/n_in)/w0)`` (the DWS quirk).
        bias_init: ``"zero"`` or ``"torch"`` (PyTorch's ``U(±1/sqrt(n_in))``).
        output_offset: Constant added to the INR's output (DWS: ``0.5``); not
            a parameter, so not in the parameter graph: recorded in the manifest.
        target_range: Pixel values ``[0, 1]`` are mapped to this range before fitting.
        lr: Adam learning rate.
        steps: Adam steps (full-image batches).
        early_stop_psnr: Freeze an INR once its PSNR (dB) reaches this (``None``: never).
    """

    name: str
    hidden: tuple[int, ...] = (32, 32)
    w0: float = 30.0
    first_init: Literal["siren", "uniform"] = "siren"
    bias_init: Literal["zero", "torch"] = "torch"
    output_offset: float = 0.0
    target_range: tuple[float, float] = (0.0, 1.0)
    lr: float = 5e-4
    steps: int = 1000
    early_stop_psnr: float | None = None

    def __post_init__(self) -> None:
        if self.first_init not in ("siren", "uniform") or self.bias_init not in ("zero", "torch"):
            raise ValueError(f"first_init must be 'siren' or 'uniform' and bias_init 'zero' or 'torch'; got "
                             f"{self.first_init!r}, {self.bias_init!r}")
        if not self.hidden or min(self.hidden) < 1 or self.steps < 0 or self.lr <= 0:
            raise ValueError(f"recipe {self.name!r} needs hidden widths >= 1, steps >= 0 and lr > 0")

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden), "target_range": list(self.target_range)}

    @classmethod
    def from_dict(cls, data: dict) -> INRRecipe:
        return cls(**{**data, "hidden": tuple(data["hidden"]), "target_range": tuple(data["target_range"])})


RECIPES: dict[str, INRRecipe] = {
    # Navon et al. 2023: every layer U(±sqrt(6/n)/30), zero biases, output + 0.5, Adam 5e-4, 1,000 steps, 40 dB stop
    "dws": INRRecipe("dws", first_init="uniform", bias_init="zero", output_offset=0.5, target_range=(0.0, 1.0),
                     lr=5e-4, steps=1000, early_stop_psnr=40.0),
    # Zhou et al. 2023: standard SIREN init, images in [-1, 1]
    "nfn": INRRecipe("nfn", first_init="siren", bias_init="torch", output_offset=0.0, target_range=(-1.0, 1.0),
                     lr=5e-4, steps=1000, early_stop_psnr=None),
}


def resolve_recipe(recipe: str | INRRecipe, **overrides: object) -> INRRecipe:
    """A recipe by name (of :data:`RECIPES`) or as given, with ``overrides`` (field values) applied."""
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown INR recipe {recipe!r}; choose one of {sorted(RECIPES)} or pass an INRRecipe")
        recipe = RECIPES[recipe]
    unknown = sorted(set(overrides) - set(INRRecipe.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown recipe fields {unknown}; INRRecipe has {sorted(INRRecipe.__dataclass_fields__)}")
    return replace(recipe, **overrides) if overrides else recipe


@dataclass(frozen=True)
class FitOptions:
    """How to run a fit (not what is fitted: that is the :class:`INRRecipe`). One object, passed unchanged from the
    CLI through :func:`~wslgraph.zoo.jobs.inr_zoo_job` to :func:`fit_inrs`.

    Attributes:
        seed: Run seed; INR ``k`` (global index) is initialised from :func:`inr_seed`.
        views: Independent fits per image (new random inits: NFN's augmentation).
        chunk_size: INRs fitted together (bounds memory: about ``9 * H * W * width`` floats per INR).
        compact_every: Steps between drops of early-stopped INRs from the batch.
        device: Where to fit (default: CPU).
        compile: Run each step through ``torch.compile`` (fused elementwise kernels; faster, see
            ``benchmarks/zoo_fit.py``; a few seconds of compilation per process; results agree with eager to
            ~1e-5). Falls back to eager, with a warning, where compilation fails.
        progress: Show a progress bar.
    """

    seed: int = 0
    views: int = 1
    chunk_size: int = 256
    compact_every: int = 25
    device: str | None = None
    compile: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.views < 1 or self.chunk_size < 1 or self.compact_every < 1:
            raise ValueError(f"views, chunk_size and compact_every must be >= 1, got {self.views}, "
                             f"{self.chunk_size}, {self.compact_every}")


def split_fit_overrides(options: FitOptions | None, overrides: dict[str, object],
                        default: FitOptions | None = None) -> tuple[FitOptions, dict[str, object]]:
    """``options`` (or ``default``) with the :class:`FitOptions` fields among ``overrides`` applied, and the
    remaining overrides (recipe fields, for :func:`resolve_recipe`)."""
    fields = set(FitOptions.__dataclass_fields__)
    chosen = {k: v for k, v in overrides.items() if k in fields}
    options = options or default or FitOptions()
    return (replace(options, **chosen) if chosen else options), {k: v for k, v in overrides.items()
                                                                   if k not in fields}


@dataclass
class INRFit:
    """The result of :func:`fit_inrs`: one row per INR (image-major, then view).

    ``params`` is ``[num_inrs, P]`` in :attr:`template`'s flatten order (the
    ``state_dict`` order of :func:`~wslgraph.zoo.siren`), so
    ``template.batch(params)`` gives the parameter graphs.
    """

    params: Tensor
    psnr: Tensor  # [num_inrs] final PSNR (dB)
    steps: Tensor  # [num_inrs] Adam steps taken
    image_index: Tensor  # [num_inrs] row of the fitted image
    view: Tensor  # [num_inrs] which random init of that image
    recipe: INRRecipe
    template: GraphTemplate
    seed: int
    image_shape: tuple[int, int, int]
    labels: Tensor | None = field(default=None)


# ------------------------------------------------------------------- helpers
def inr_seed(seed: int, index: int) -> int:
    """The initialisation seed of INR ``index`` of a run seeded with ``seed`` (a fixed 63-bit mix)."""
    mixed = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (1 << 64)
    return (mixed ^ (mixed >> 31)) % (1 << 63)


def psnr(mse: Tensor, recipe: INRRecipe) -> Tensor:
    """PSNR (dB) of a mean squared error in the recipe's target range."""
    peak = recipe.target_range[1] - recipe.target_range[0]
    return 10 * torch.log10(peak**2 / mse.clamp(min=1e-20))


def _widths(recipe: INRRecipe, channels: int) -> list[tuple[int, int]]:
    sizes = [2, *recipe.hidden, channels]
    return list(zip(sizes[:-1], sizes[1:]))


def init_siren_params(recipe: INRRecipe, channels: int, seed: int, index: int) -> list[Tensor]:
    """The initial ``[W1, b1, W2, b2, ...]`` of one INR (float32), drawn from its own generator."""
    sizes = [2, *recipe.hidden, channels]
    return siren_layer_init(sizes, [recipe.w0] * (len(sizes) - 1), torch.Generator().manual_seed(
        inr_seed(seed, index)), recipe.first_init, recipe.bias_init)


def fit_flops_per_step(recipe: INRRecipe, pixels: int, channels: int) -> int:
    """Matrix-product FLOPs of one fitting step of one INR (forward + backward; elementwise work not counted)."""
    forward = sum(2 * pixels * fan_in * fan_out for fan_in, fan_out in _widths(recipe, channels))
    first = 2 * pixels * 2 * recipe.hidden[0]  # no input gradient for the first layer
    return 3 * forward - first


def inr_targets(images: Tensor, recipe: INRRecipe) -> Tensor:
    """What an INR of ``recipe`` fits: images ``[N, C, H, W]`` in [0, 1] as ``[N, H * W, C]`` in its target range."""
    low, high = recipe.target_range
    return (images.flatten(2).transpose(1, 2) * (high - low) + low).contiguous()  # [N, H*W, C]


# ------------------------------------------------------ the batched program
def _forward(params: list[Tensor], coords: Tensor, w0: float, offset: float,
             keep: list[Tensor] | None = None) -> Tensor:
    """Outputs ``[N, P, C]`` of stacked SIRENs; ``keep`` collects ``w0 * z`` and activations for backward."""
    layers = len(params) // 2
    h = coords.expand(params[0].shape[0], *coords.shape)
    for layer in range(layers):
        weight, bias = params[2 * layer], params[2 * layer + 1]
        if layer == layers - 1:
            out = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            return out.add_(offset) if offset else out
        z = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2), beta=w0, alpha=w0)  # w0 * (W h + b)
        h = torch.sin(z)
        if keep is not None:
            keep += [z, h]
    raise AssertionError("unreachable")


def _loss_and_grads(params: list[Tensor], coords: Tensor, targets: Tensor, recipe: INRRecipe
                    ) -> tuple[Tensor, list[Tensor]]:
    """Per-INR MSE ``[N]`` and the gradients of their sum w.r.t. every stacked parameter (hand-written backward)."""
    keep: list[Tensor] = []
    out = _forward(params, coords, recipe.w0, recipe.output_offset, keep)
    residual = out.sub_(targets)
    mse = residual.square().mean(dim=(1, 2))
    grad = residual.mul_(2.0 / (residual.shape[1] * residual.shape[2]))  # d sum(mse) / d out
    layers = len(params) // 2
    grads: list[Tensor] = [torch.empty(0)] * len(params)
    for layer in reversed(range(layers)):
        if layer > 0:
            grads[2 * layer] = torch.bmm(grad.transpose(1, 2), keep[2 * layer - 1])
        else:  # the shared pixel grid: one product with the grid broadcast, not a batch of thin ones
            grads[0] = torch.matmul(coords.T, grad).transpose(1, 2)
        grads[2 * layer + 1] = grad.sum(1)
        if layer > 0:
            weight, z = params[2 * layer], keep[2 * layer - 2]
            grad_z = torch.cos(z, out=z)  # reuses z's memory; d sin(z) / d(pre-activation) = w0 cos(z)
            if weight.shape[1] <= 4:  # few outputs: broadcast products instead of a bmm with inner size <= 4
                upstream = grad[..., :1] * weight[:, None, 0]
                for column in range(1, weight.shape[1]):
                    upstream.addcmul_(grad[..., column:column + 1], weight[:, None, column])
            else:
                upstream = torch.bmm(grad, weight)
            grad = grad_z.mul_(upstream).mul_(recipe.w0)
    return mse, grads


_COMPILED: dict[str, Callable] = {}


def _step_function(compile: bool) -> Callable:
    """:func:`_loss_and_grads`, compiled once per process when asked (eager where compilation fails)."""
    if not compile:
        return _loss_and_grads
    if "step" not in _COMPILED:
        compiled = torch.compile(_loss_and_grads)

        def guarded(*args: object) -> tuple[Tensor, list[Tensor]]:
            try:
                return compiled(*args)
            except Exception as error:  # noqa: BLE001 - any compiler failure: eager computes the same
                result = _loss_and_grads(*args)  # raises itself if the inputs are at fault
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {error}); fitting eagerly",
                              RuntimeWarning, stacklevel=2)
                _COMPILED["step"] = _loss_and_grads
                return result

        _COMPILED["step"] = guarded
    return _COMPILED["step"]


class _StackedAdam:
    """``torch.optim.Adam`` (default betas, eps) on stacked INR parameters, frozen per INR by a mask."""

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps, self.step_count = lr, betas, eps, 0
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def step(self, params: list[Tensor], grads: list[Tensor], active: Tensor | None) -> None:
        self.step_count += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.step_count)
        correction2 = math.sqrt(1 - beta2**self.step_count)
        for p, g, m, v in zip(params, grads, self.exp_avg, self.exp_avg_sq):
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            update = m / (v.sqrt().div_(correction2).add_(self.eps))
            if active is not None:
                update.mul_(active.view(-1, *([1] * (p.dim() - 1))))
            p.add_(update, alpha=-step_size)

    def keep(self, rows: Tensor) -> None:
        self.exp_avg = [m[rows] for m in self.exp_avg]
        self.exp_avg_sq = [v[rows] for v in self.exp_avg_sq]


def fit_inrs(images: Tensor | ImageSet, recipe: str | INRRecipe = "dws", options: FitOptions | None = None, *,
             index_offset: int = 0, **overrides: object) -> INRFit:
    """Fit ``options.views`` SIRENs to each image, all as one batched program (chunk by chunk).

    Args:
        images: ``[N, C, H, W]`` in ``[0, 1]`` or an :class:`ImageSet`.
        recipe: A name in :data:`RECIPES` or an :class:`INRRecipe`.
        options: How to run the fit (:class:`FitOptions`: seed, views, chunk size, device, compile...).
        index_offset: Global index of the first INR (shards of a larger run).
        **overrides: Fields to change, of the recipe (``steps=``, ``lr=``, ``hidden=``...) or of the options
            (``seed=``, ``chunk_size=``...).

    Returns:
        An :class:`INRFit` with the parameters, PSNRs and steps of every INR.
    """
    options, overrides = split_fit_overrides(options, overrides)
    recipe = resolve_recipe(recipe, **overrides)
    seed, views, chunk_size = options.seed, options.views, options.chunk_size
    labels = images.labels if isinstance(images, ImageSet) else None
    pixels = images.images if isinstance(images, ImageSet) else images
    if not isinstance(pixels, Tensor) or pixels.dim() != 4 or pixels.shape[0] == 0:
        raise ShapeMismatchError(f"images must be a non-empty [N, C, H, W] tensor, got "
                                 f"{getattr(pixels, 'shape', type(pixels).__name__)}")
    device = torch.device(options.device or "cpu")
    count, channels, height, width = pixels.shape
    module = siren(2, recipe.hidden, channels, recipe.w0)
    template = GraphTemplate.from_module(module)
    coords = pixel_grid(height, width, device)
    targets_all = inr_targets(pixels.float(), recipe)
    total = count * views
    out_params = torch.empty(total, template.num_params)
    out_psnr, out_steps = torch.empty(total), torch.zeros(total, dtype=torch.long)
    bar = tqdm(total=total, desc=f"fitting {recipe.name} INRs", unit="INR", disable=not options.progress)
    for start in range(0, total, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, total))
        params = [torch.stack(p).to(device) for p in
                  zip(*(init_siren_params(recipe, channels, seed, index_offset + int(r)) for r in rows))]
        targets = targets_all[rows // views].to(device)
        result = _fit_chunk(params, coords, targets, recipe, options.compact_every, options.compile)
        out_params[rows] = result[0].cpu()
        out_psnr[rows], out_steps[rows] = result[1].cpu(), result[2].cpu()
        bar.update(len(rows))
    bar.close()
    index = torch.arange(total)
    return INRFit(out_params, out_psnr, out_steps, index // views, index % views, recipe, template, seed,
                  (channels, height, width), None if labels is None else labels[index // views])


def _fit_chunk(params: list[Tensor], coords: Tensor, targets: Tensor, recipe: INRRecipe,
               compact_every: int = 25, compile: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Fit one chunk; returns flat parameters ``[N, P]``, final PSNR and steps per INR."""
    count = params[0].shape[0]
    flat = torch.empty(count, sum(p[0].numel() for p in params), device=coords.device)
    final_psnr = torch.empty(count, device=coords.device)
    steps = torch.full((count,), recipe.steps, dtype=torch.long, device=coords.device)
    alive = torch.arange(count, device=coords.device)  # original rows of the working set
    done = torch.zeros(count, dtype=torch.bool, device=coords.device)
    optimizer = _StackedAdam(params, recipe.lr)
    threshold = recipe.early_stop_psnr

    def retire(keep: Tensor) -> None:
        """Write out working rows not in ``keep`` and drop them from the batch."""
        nonlocal params, targets, alive, done
        gone = ~keep
        if bool(gone.any()):
            flat[alive[gone]] = torch.cat([p[gone].flatten(1) for p in params], dim=1)
        params, targets, alive, done = [p[keep] for p in params], targets[keep], alive[keep], done[keep]
        optimizer.keep(keep)

    for step in range(recipe.steps):
        mse, grads = _step_function(compile)(params, coords, targets, recipe)
        if threshold is not None:
            reached = ~done & (psnr(mse, recipe) >= threshold)
            if bool(reached.any()):  # frozen before this step's update: these parameters reached it
                final_psnr[alive[reached]] = psnr(mse[reached], recipe)
                steps[alive[reached]] = step
                done |= reached
            if bool(done.all()):
                retire(~done)
                break
        optimizer.step(params, grads, None if threshold is None else (~done).to(params[0].dtype))
        if threshold is not None and (step + 1) % compact_every == 0 and bool(done.any()):
            retire(~done)
    if alive.numel():
        with torch.no_grad():
            out = _forward(params, coords, recipe.w0, recipe.output_offset)
            mse = (out - targets).square().mean(dim=(1, 2))
        running = ~done
        final_psnr[alive[running]] = psnr(mse[running], recipe)
        retire(torch.zeros_like(done))
    return flat, final_psnr, steps


def render_inrs(params: Tensor, recipe: str | INRRecipe, image_shape: tuple[int, int, int]) -> Tensor:
    """Evaluate INRs (flat parameters ``[N, P]``) on the pixel grid: images ``[N, C, H, W]`` in ``[0, 1]``.

    The core's evaluator (:func:`~wslgraph.weightspace.inr_forward`) on the recipe's SIREN architecture.
    """
    recipe = resolve_recipe(recipe)
    channels, height, width = image_shape
    architecture = _siren_architecture(tuple(recipe.hidden), channels, recipe.w0)
    if params.dim() != 2 or params.shape[1] != architecture.num_params:
        raise ShapeMismatchError(f"params must be [N, {architecture.num_params}] for recipe {recipe.name!r} with "
                                 f"{channels} channels, got {tuple(params.shape)}")
    with torch.no_grad():
        out = inr_forward(params, pixel_grid(height, width, params.device), architecture, recipe.output_offset)
    low, high = recipe.target_range
    return ((out - low) / (high - low)).transpose(1, 2).reshape(-1, channels, height, width)


@functools.lru_cache(maxsize=16)
def _siren_architecture(hidden: tuple[int, ...], channels: int, w0: float) -> INRArchitecture:
    return INRArchitecture.from_template(GraphTemplate.from_module(siren(2, hidden, channels, w0)))


def fit_inr_reference(image: Tensor, recipe: str | INRRecipe = "dws", *, seed: int = 0, index: int = 0,
                      device: str | torch.device | None = None, **overrides: object) -> tuple[Tensor, float, int]:
    """One INR the plain way: an ``nn.Module``, ``torch.optim.Adam`` and a Python loop.

    The per-model baseline :func:`fit_inrs` is tested and benchmarked
    against; same recipe, same initialisation (``inr_seed(seed, index)``).
    Returns the flat parameters (on CPU), the final PSNR and the steps taken.
    """
    recipe = resolve_recipe(recipe, **overrides)
    channels, height, width = image.shape
    module = siren(2, recipe.hidden, channels, recipe.w0)
    with torch.no_grad():
        for parameter, value in zip(module.parameters(), init_siren_params(recipe, channels, seed, index)):
            parameter.copy_(value)
    device = torch.device(device or "cpu")
    module.to(device)
    coords = pixel_grid(height, width, device)
    target = inr_targets(image.unsqueeze(0).float(), recipe)[0].to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=recipe.lr)
    forward: Callable[[], Tensor] = lambda: module(coords) + recipe.output_offset  # noqa: E731
    steps = recipe.steps
    for step in range(recipe.steps):
        loss = nn.functional.mse_loss(forward(), target)
        if recipe.early_stop_psnr is not None and float(psnr(loss.detach(), recipe)) >= recipe.early_stop_psnr:
            steps = step
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = float(psnr(nn.functional.mse_loss(forward(), target), recipe))
    return torch.cat([p.detach().flatten() for p in module.parameters()]).cpu(), final, steps
