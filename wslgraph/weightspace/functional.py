"""Many networks of one architecture evaluated at once from flat rows; what INRs need: pixel grids, SIREN inits.

:class:`BatchedModule` evaluates ``B`` networks of any architecture given as flat parameter rows ``[B, P]``, with
:mod:`torch.func` (``functional_call`` under ``vmap``). :func:`inr_forward` is its fast case for MLP INRs, at
shared or per-network coordinates, as batched matrix products; the activations come from the one activation table
(:mod:`wslgraph.graph.activations`). The hypernetwork head, the auto-encoder and the editors use it;
:class:`INRArchitecture` reads the architecture from a :class:`~wslgraph.GraphTemplate`. INR fitting
(:mod:`wslgraph.zoo.inr`) uses the pixel grid and the SIREN initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ShapeMismatchError, UnsupportedModuleError
from wslgraph.graph.activations import ACTIVATIONS, apply_activation
from wslgraph.graph.vocab import Activation
from wslgraph.weightspace.views import WeightSpaceSpec, from_weight_space, to_weight_space, weight_space_spec

__all__ = ["BatchedModule", "INRArchitecture", "inr_forward", "pixel_grid", "siren_layer_init"]


def pixel_grid(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """Pixel coordinates ``[H * W, 2]`` in ``[-1, 1]``, row-major, ``(row, column)`` per pixel."""
    rows = torch.linspace(-1, 1, height, device=device)
    cols = torch.linspace(-1, 1, width, device=device)
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)


def siren_layer_init(sizes: Sequence[int], w0s: Sequence[float], generator: torch.Generator,
                     first_init: str = "siren", bias_init: str = "torch") -> list[Tensor]:
    """``[W1, b1, W2, b2, ...]`` of an MLP with widths ``sizes``, SIREN-initialised from ``generator``.

    Layer ``i`` draws ``W ~ U(±sqrt(6/n)/w0s[i])`` (the first ``U(±1/n)`` with
    ``first_init="siren"``), then its bias (``U(±1/sqrt(n))``, or zeros with
    ``bias_init="zero"``); ``n`` is the layer's fan-in.
    """
    params = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1 / fan_in if layer == 0 and first_init == "siren" else math.sqrt(6 / fan_in) / w0s[layer]
        weight = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=generator)
        if bias_init == "zero":
            bias = torch.zeros(fan_out)
        else:
            bias = torch.empty(fan_out).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=generator)
        params += [weight, bias]
    return params


@dataclass(frozen=True)
class INRArchitecture:
    """An MLP INR read from a template: layer sizes, and each layer's activation (kind, parameter)."""

    template: GraphTemplate
    spec: WeightSpaceSpec  # the weight-space view of the template (sizes, where each tensor sits)
    activations: tuple[tuple[Activation, float], ...]  # after each layer

    @classmethod
    def from_template(cls, template: GraphTemplate) -> INRArchitecture:
        spec = weight_space_spec(template.layout)
        if not spec.is_mlp:
            raise UnsupportedModuleError("inr_forward evaluates MLP INRs (Linear layers with biases); "
                                         "this template has convolutions")
        groups = template.layout.groups[1:]
        activations = tuple((g.activation, g.activation_param) for g in groups)
        unsupported = {a.name for a, _ in activations if a not in ACTIVATIONS}
        if unsupported:
            raise UnsupportedModuleError(f"INR activations {sorted(unsupported)} are not supported by inr_forward; "
                                         f"use one of {sorted(a.name for a in ACTIVATIONS)}")
        return cls(template, spec, activations)

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.spec.sizes

    @property
    def num_params(self) -> int:
        return self.template.num_params

    def siren_init(self, generator: torch.Generator) -> Tensor:
        """A flat SIREN initialisation (:func:`siren_layer_init`; each hidden layer's w0
        is that of the sine before it, 30 where there is none)."""
        w0s = [30.0] + [parameter or 30.0 for _, parameter in self.activations[:-1]]
        params = siren_layer_init(self.sizes, w0s, generator)
        weights = [w.view(1, 1, *w.shape) for w in params[::2]]
        biases = [b.view(1, 1, -1) for b in params[1::2]]
        return from_weight_space(weights, biases, self.spec)[0]


def inr_forward(params: Tensor, coords: Tensor, architecture: INRArchitecture, output_offset: float = 0.0
                ) -> Tensor:
    """Outputs ``[B, points, out]`` of ``B`` INRs (flat weights ``[B, P]``) at ``coords`` ``[points, in]``.

    ``coords`` may also be ``[B, points, in]`` (per-INR coordinates).
    """
    if params.dim() != 2 or params.shape[1] != architecture.num_params:
        raise ShapeMismatchError(f"expected INR weights [B, {architecture.num_params}], got {tuple(params.shape)}")
    weights, biases = to_weight_space(params, architecture.spec)
    coords = coords.to(params.dtype)
    h = coords if coords.dim() == 3 else coords.expand(params.shape[0], *coords.shape)
    for (weight, bias), (activation, parameter) in zip(zip(weights, biases), architecture.activations):
        h = apply_activation(activation, parameter, torch.baddbmm(bias[:, 0].unsqueeze(1), h,
                                                                   weight[:, 0].transpose(1, 2)))
    return h + output_offset if output_offset else h


class BatchedModule:
    """Many networks of one architecture as one function of their flat parameter rows, built on :mod:`torch.func`.

    ``BatchedModule(module)(rows, inputs)`` evaluates the ``B`` networks whose flat parameters (in the
    :class:`~wslgraph.GraphTemplate`'s order) are the rows of ``rows`` ``[B, P]``, with ``module`` as the
    architecture: :func:`torch.func.functional_call` under :func:`torch.vmap`, so any module the converter
    supports works (CNNs with normalisation, residual networks, INRs), in eval mode (batch norm uses each
    network's running statistics). ``inputs`` ``[batch, ...]`` are shared by all networks, or, with
    ``per_model=True``, ``[B, batch, ...]`` give each its own. Returns ``[B, batch, ...]``.

    This is the idiom a user would write; :func:`inr_forward` (MLP INRs) and the zoo trainers' grouped
    convolutions are faster special cases of it (``benchmarks/evaluator.py`` times them side by side), and the
    tests check that all of them agree with it.
    """

    def __init__(self, module: nn.Module, template: GraphTemplate | None = None, *,
                 input_shape: Sequence[int] | None = None) -> None:
        self.module = module
        self.template = template or GraphTemplate.from_module(module, input_shape=input_shape)
        buffers = dict(module.named_buffers())
        named = dict(module.named_parameters()) | buffers
        entries = self.template.layout.state
        missing = [e.key for e in entries if e.key not in named]
        if missing:
            raise ShapeMismatchError(f"the template's entries {missing[:3]} are not in {type(module).__name__}; "
                                     "build the template from this module (GraphTemplate.from_module)")
        offsets = self.template.layout.offsets
        # integer buffers (BatchNorm's num_batches_tracked) are not used in eval mode: taken from the module
        self._entries = [(e.key, offsets[e.key], e.numel, e.shape, e.key in buffers) for e in entries
                         if e.dtype.is_floating_point]

    def stacked_state(self, rows: Tensor) -> dict[str, Tensor]:
        """``{key: [B, *shape]}`` views of ``rows`` ``[B, P]`` (no copy; buffers such as running statistics are
        detached: they are constants of each network, not parameters to differentiate)."""
        if rows.dim() != 2 or rows.shape[1] != self.template.num_params:
            raise ShapeMismatchError(f"expected flat parameter rows [B, {self.template.num_params}], "
                                     f"got {tuple(rows.shape)}")
        state = {}
        for key, offset, numel, shape, buffer in self._entries:
            part = rows.narrow(1, offset, numel).reshape(rows.shape[0], *shape)
            state[key] = part.detach() if buffer else part
        return state

    def recalibrate(self, rows: Tensor, inputs: Tensor, *, batch_size: int = 64) -> Tensor:
        """``rows`` with every batch norm's running statistics recomputed on ``inputs``.

        Generated or edited weights come with running statistics that do not describe their own activations (a
        decoder reconstructs them like any other value); batch norm in eval mode then shifts and scales every
        channel wrongly. Here every network runs in train mode, without gradients, on consecutive batches of
        ``batch_size`` of ``inputs`` ``[N, ...]`` (shared by all networks), and each running mean and variance
        becomes the average over the batches of the batch statistics (unbiased variances): what
        :class:`~torch.nn.BatchNorm2d` with ``momentum=None`` holds after the same batches from reset statistics
        (tested; a last batch of a single input is left out, as batch norm cannot always normalise one).
        Parameters and step counters are unchanged; rows without batch norm come back as a copy.
        """
        state = {k: v.detach() for k, v in self.stacked_state(rows).items()}
        norms = {name: m for name, m in self.module.named_modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats}
        keys = [f"{name}.running_{stat}" for name in norms for stat in ("mean", "var")]
        out = rows.detach().clone()
        if not keys:
            return out
        if batch_size < 2 or len(inputs) < 2:
            raise ValueError(f"recalibrating batch norm needs batches of at least 2 inputs (got batch_size "
                             f"{batch_size} and {len(inputs)} inputs)")
        sums = {k: torch.zeros_like(state[k]) for k in keys}
        saved = {name: (m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
                 for name, m in norms.items()}
        was_training = self.module.training
        batches = [x for x in inputs.to(rows.dtype).split(batch_size) if len(x) > 1]
        try:
            for m in norms.values():
                m.momentum = 1.0  # the running statistics become exactly this batch's
            self.module.train()

            def call(params: dict[str, Tensor], x: Tensor) -> Tensor:
                return torch.func.functional_call(self.module, params, (x,), strict=False)

            with torch.no_grad():
                for x in batches:
                    running = {k: torch.ones_like(sums[k]) if k.endswith("var") else torch.zeros_like(sums[k])
                               for k in keys}  # written in place by batch norm
                    torch.vmap(call, in_dims=(0, None))(state | running, x)
                    for k in keys:
                        sums[k] += running[k]
        finally:
            for name, m in norms.items():
                m.momentum, counter = saved[name]
                if counter is not None:
                    m.num_batches_tracked.copy_(counter)
            self.module.train(was_training)
        offsets = self.template.layout.offsets
        for k in keys:
            out[:, offsets[k]:offsets[k] + sums[k][0].numel()] = (sums[k] / len(batches)).reshape(len(rows), -1)
        return out

    def __call__(self, rows: Tensor, inputs: Tensor, *, per_model: bool = False) -> Tensor:
        state = self.stacked_state(rows)
        if per_model and (inputs.dim() < 2 or inputs.shape[0] != rows.shape[0]):
            raise ShapeMismatchError(f"per_model inputs need a first axis of {rows.shape[0]} (one per network), "
                                     f"got {tuple(inputs.shape)}")
        was_training = self.module.training
        self.module.eval()
        try:
            def call(params: dict[str, Tensor], x: Tensor) -> Tensor:
                return torch.func.functional_call(self.module, params, (x,), strict=False)

            return torch.vmap(call, in_dims=(0, 0 if per_model else None))(state, inputs.to(rows.dtype))
        finally:
            self.module.train(was_training)
