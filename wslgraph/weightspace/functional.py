"""One batched evaluator of many INRs (MLPs) of one architecture, and what it needs: pixel grids and SIREN inits.

:func:`inr_forward` evaluates ``B`` networks given as flat parameter rows ``[B, P]`` at shared or per-network
coordinates, as batched matrix products; the activations come from the one activation table
(:mod:`wslgraph.graph.activations`). The hypernetwork head, the auto-encoder and the editors use it;
:class:`INRArchitecture` reads the architecture from a :class:`~wslgraph.GraphTemplate`. INR fitting
(:mod:`wslgraph.zoo.inr`) uses the pixel grid and the SIREN initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ShapeMismatchError, UnsupportedModuleError
from wslgraph.graph.activations import ACTIVATIONS, apply_activation
from wslgraph.graph.vocab import Activation
from wslgraph.weightspace.views import WeightSpaceSpec, from_weight_space, to_weight_space, weight_space_spec

__all__ = ["INRArchitecture", "inr_forward", "pixel_grid", "siren_layer_init"]


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
