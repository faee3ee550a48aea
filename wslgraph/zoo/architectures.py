"""Built-in architectures of the field's model zoos."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from wslgraph.layers import Sine

__all__ = ["mlp", "siren", "small_cnn", "BasicBlock", "tiny_resnet", "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "silu": nn.SiLU}


def mlp(in_features: int, hidden: Sequence[int], out_features: int, activation: str = "relu",
        w0: float = 30.0) -> nn.Sequential:
    """``Linear`` layers with ``activation`` after each hidden one (``"sine"``: ``sin(w0 x)``, a SIREN)."""
    if activation != "sine" and activation not in ACTIVATIONS:
        raise ValueError(f"activation must be 'sine' or one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), Sine(w0) if activation == "sine" else ACTIVATIONS[activation]()]
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def siren(in_features: int = 2, hidden: Sequence[int] = (32, 32), out_features: int = 1,
          w0: float = 30.0) -> nn.Sequential:
    """A SIREN MLP: ``Linear`` layers with ``sin(w0 x)`` after each hidden one.

    The default is the 2 -> 32 -> 32 -> 1 INR of the DWS and NFN zoos (1,185
    parameters). Initialization is left to the zoo recipes.
    """
    return mlp(in_features, hidden, out_features, "sine", w0)


def small_cnn(in_channels: int = 1, channels: int = 16, num_layers: int = 3, kernel_size: int = 3,
              num_classes: int = 10, activation: str = "relu", stride: int = 1) -> nn.Sequential:
    """The Small CNN Zoo architecture (Unterthiner et al., 2020).

    ``num_layers`` convolutions of ``channels`` channels, global average
    pooling, a dense layer to ``num_classes``: 4,970 parameters by default.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = in_channels
    for _ in range(num_layers):
        layers += [nn.Conv2d(width, channels, kernel_size, stride=stride), ACTIVATIONS[activation]()]
        width = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """A ResNet basic block: two 3x3 conv-BN pairs and a skip connection.

    The skip is the identity, or a 1x1 convolution with BatchNorm when the
    stride or the width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def tiny_resnet(in_channels: int = 3, widths: Sequence[int] = (8, 16), num_classes: int = 10) -> nn.Sequential:
    """A small ResNet: a stem convolution, one basic block per width, pooling, a linear head."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                               nn.BatchNorm2d(widths[0]), nn.ReLU()]
    width = widths[0]
    for i, size in enumerate(widths):
        layers.append(BasicBlock(width, size, stride=1 if i == 0 else 2))
        width = size
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)
