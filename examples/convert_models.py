"""Convert a custom CNN and a ResNet-style model, inspect the graphs, and go back.

    .venv/bin/python examples/convert_models.py
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import wslgraph
from wslgraph.weightspace import permute_hidden
from wslgraph.zoo import tiny_resnet


class CustomCNN(nn.Module):
    """A CNN with a non-Sequential forward: mixed kernel sizes, BatchNorm, pooling, a flatten head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.head = nn.Linear(16 * 12 * 12, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.relu(self.conv2(x))
        return self.head(torch.flatten(x, 1))


def show(title: str, model: nn.Module, input_shape: tuple[int, ...] | None) -> None:
    graph = wslgraph.to_graph(model, input_shape=input_shape).validate()
    print(f"== {title}\n{graph.summary()}")
    state = wslgraph.to_state_dict(graph)
    exact = all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    permuted = permute_hidden(model.eval(), torch.Generator().manual_seed(0), input_shape=input_shape)
    inputs = torch.randn(4, *(input_shape or (3, 16, 16)))
    same = torch.allclose(model(inputs), permuted(inputs), atol=1e-5)
    print(f"round trip exact: {exact}; hidden-permuted copy computes the same function: {same}\n")
    if not (exact and same):
        raise SystemExit(1)


def main() -> None:
    torch.manual_seed(0)
    # The head reads a flattened 16 x 12 x 12 map: input_shape lets wslgraph see 12 x 12.
    show("custom CNN (flatten head: one edge per channel with a 12x12 block)", CustomCNN().eval(), (1, 28, 28))
    show("ResNet-style model (identity and 1x1-conv skips)", tiny_resnet().eval(), None)
    graph = wslgraph.to_graph(tiny_resnet())
    nxg = wslgraph.to_networkx(graph)
    print(f"networkx view: {nxg.number_of_nodes()} nodes, {nxg.number_of_edges()} edges")


if __name__ == "__main__":
    main()
