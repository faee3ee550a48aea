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

__all__ = ["ActivationSpec", "ACTIVATIONS", "apply_activation", "hardtanh_activation"]


@dataclass(frozen=True)
class ActivationSpec:
    """How one activation is written in PyTorch and evaluated (see the module docstring)."""

    apply: Callable[[Tensor, float], Tensor]  # (pre-activation, parameter) -> activation
    module: type[nn.Module] | None = None
    functions: tuple[Callable, ...] = ()
    methods: tuple[str, ...] = ()
    param: tuple[str, float] | None = None  # (module attribute and functional keyword, torch's default)


def _per_neuron(x: Tensor, p: float) -> Tensor:
    raise UnsupportedModuleError("PReLU's slope is a per-neuron weight (the ACTIVATION_PARAM node feature), not one "
                                 "parameter of the architecture; evaluate PReLU networks with their modules "
                                 "(wslgraph.weightspace.BatchedModule)")


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
    Activation.RELU6: ActivationSpec(lambda x, p: F.relu6(x), nn.ReLU6, (F.relu6,)),
    Activation.HARDSWISH: ActivationSpec(lambda x, p: F.hardswish(x), nn.Hardswish, (F.hardswish,)),
    Activation.HARDSIGMOID: ActivationSpec(lambda x, p: F.hardsigmoid(x), nn.Hardsigmoid, (F.hardsigmoid,)),
    # Hardtanh(min, max) is converted by its own rules (symmetric bounds, or ReLU6's 0..6); the parameter is max
    Activation.HARDTANH: ActivationSpec(lambda x, p: F.hardtanh(x, -p, p)),
    Activation.MISH: ActivationSpec(lambda x, p: F.mish(x), nn.Mish, (F.mish,)),
    Activation.PRELU: ActivationSpec(_per_neuron),  # converted by its module handler: the slope is a weight
}


def apply_activation(kind: Activation, param: float, x: Tensor, what: str = "this evaluator") -> Tensor:
    """``kind`` (with its parameter) applied to ``x``; :class:`UnsupportedModuleError` for activations with no rule."""
    spec = ACTIVATIONS.get(kind)
    if spec is None:
        raise UnsupportedModuleError(f"{what} cannot evaluate activation {kind.name}; the supported ones are "
                                     f"{sorted(a.name for a in ACTIVATIONS)}")
    return spec.apply(x, param)


def hardtanh_activation(low: float, high: float, where: str) -> tuple[Activation, float]:
    """``(kind, parameter)`` of ``Hardtanh(low, high)``: ReLU6 for 0..6, HARDTANH for symmetric bounds."""
    if (low, high) == (0.0, 6.0):
        return Activation.RELU6, 0.0
    if low == -high and high > 0:
        return Activation.HARDTANH, float(high)
    raise UnsupportedModuleError(f"{where}: Hardtanh({low:g}, {high:g}) has asymmetric bounds; wslgraph converts "
                                 "Hardtanh(-m, m) and ReLU6 (0, 6). Register a handler for another clamp")
