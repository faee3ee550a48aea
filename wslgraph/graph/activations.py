"""The activation table: for each :class:`~wslgraph.graph.vocab.Activation`, how PyTorch spells it and how to apply it.

One row per activation says which ``nn`` module, which functions and which tensor methods the converter recognises
as it, the name and torch default of its parameter (negative slope, alpha, beta; ``w0`` for a sine, which the
converter reads from the scale before it), and how to evaluate it. The converter (module handlers and traced
functions), probe features and the batched INR evaluator all read this table, so adding an activation is one row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wslgraph.errors import UnsupportedModuleError
from wslgraph.graph.vocab import Activation

__all__ = ["ActivationSpec", "ACTIVATIONS", "apply_activation"]


@dataclass(frozen=True)
class ActivationSpec:
    """How one activation is written in PyTorch and evaluated (see the module docstring)."""

    apply: Callable[[Tensor, float], Tensor]  # (pre-activation, parameter) -> activation
    module: type[nn.Module] | None = None
    functions: tuple[Callable, ...] = ()
    methods: tuple[str, ...] = ()
    param: tuple[str, float] | None = None  # (module attribute and functional keyword, torch's default)


ACTIVATIONS: dict[Activation, ActivationSpec] = {
    Activation.IDENTITY: ActivationSpec(lambda x, p: x),
    Activation.RELU: ActivationSpec(lambda x, p: torch.relu(x), nn.ReLU, (F.relu, F.relu_, torch.relu, torch.relu_),
                                    ("relu", "relu_")),
    Activation.LEAKY_RELU: ActivationSpec(lambda x, p: F.leaky_relu(x, p), nn.LeakyReLU, (F.leaky_relu, F.leaky_relu_),
                                          param=("negative_slope", 0.01)),
    Activation.ELU: ActivationSpec(lambda x, p: F.elu(x, p), nn.ELU, (F.elu, F.elu_), param=("alpha", 1.0)),
    Activation.GELU: ActivationSpec(lambda x, p: F.gelu(x), nn.GELU, (F.gelu,)),
    Activation.SILU: ActivationSpec(lambda x, p: F.silu(x), nn.SiLU, (F.silu,)),
    Activation.TANH: ActivationSpec(lambda x, p: torch.tanh(x), nn.Tanh, (torch.tanh, F.tanh), ("tanh", "tanh_")),
    Activation.SIGMOID: ActivationSpec(lambda x, p: torch.sigmoid(x), nn.Sigmoid, (torch.sigmoid, F.sigmoid),
                                       ("sigmoid", "sigmoid_")),
    Activation.SOFTPLUS: ActivationSpec(lambda x, p: F.softplus(x, p), nn.Softplus, (F.softplus,), param=("beta", 1.0)),
    Activation.SINE: ActivationSpec(lambda x, p: torch.sin(p * x)),  # traced through wslgraph.nn.Sine / torch.sin
}


def apply_activation(kind: Activation, param: float, x: Tensor, what: str = "this evaluator") -> Tensor:
    """``kind`` (with its parameter) applied to ``x``; :class:`UnsupportedModuleError` for activations with no rule."""
    spec = ACTIVATIONS.get(kind)
    if spec is None:
        raise UnsupportedModuleError(f"{what} cannot evaluate activation {kind.name}; the supported ones are "
                                     f"{sorted(a.name for a in ACTIVATIONS)}")
    return spec.apply(x, param)
