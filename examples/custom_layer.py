"""Teach wslgraph a layer type it does not know: ``wslgraph.convert.register``.

A handler receives the conversion context, the module, its qualified name
(the state-dict prefix) and the traced input value, and describes the layer
with the context's primitives: ``ctx.linear``, ``ctx.conv``, ``ctx.norm``,
``ctx.activation``, ``ctx.pool``, ``ctx.flatten``.

    .venv/bin/python examples/custom_layer.py
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import wslgraph
from wslgraph.convert import ConversionContext, Value, register
from wslgraph.graph import Activation


class MaskedLinear(nn.Module):
    """A linear layer with a fixed binary mask on its weights (a sparse MLP layer)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / in_features**0.5)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.register_buffer("mask", (torch.rand(out_features, in_features) > 0.5).float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class Snake(nn.Module):
    """The snake activation x + sin(x)^2 (no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.sin(x) ** 2


def masked_linear(ctx: ConversionContext, module: MaskedLinear, name: str, value: Value) -> Value:
    # Weights are stored like nn.Linear's (out, in): one edge per entry.
    return ctx.linear(value, name=name, weight_key=f"{name}.weight", bias_key=f"{name}.bias")


def snake(ctx: ConversionContext, module: Snake, name: str, value: Value) -> Value:
    return ctx.activation(value, Activation.OTHER)


def main() -> None:
    model = nn.Sequential(MaskedLinear(4, 8), Snake(), MaskedLinear(8, 2))
    try:
        wslgraph.to_graph(model)
    except wslgraph.UnsupportedModuleError as error:
        print(f"before registering: {type(error).__name__}: {error}\n")
    register(MaskedLinear, masked_linear)
    register(Snake, snake)
    graph = wslgraph.to_graph(model)
    print(graph.summary())
    state = wslgraph.to_state_dict(graph)
    exact = all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    print(f"\nround trip exact: {exact}")
    if not exact:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
