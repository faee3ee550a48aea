"""Built-in architectures of the field's model zoos."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from wslgraph.layers import Sine

__all__ = ["mlp", "siren", "small_cnn", "BasicBlock", "Bottleneck", "ResNet", "resnet", "tiny_resnet", "ACTIVATIONS"]

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


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """A residual block's skip: ``None`` (the identity), or a 1x1 convolution with BatchNorm when the stride or the
    width changes."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


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
        self.downsample = _downsample(in_channels, out_channels, stride)

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


class Bottleneck(nn.Module):
    """A ResNet bottleneck block (1x1, 3x3 with the stride, 1x1 to ``4 * width``) with torchvision's names."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = _downsample(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


_RESNETS = {8: ("basic", (1, 1, 1)), 10: ("basic", (1, 1, 1, 1)), 14: ("basic", (2, 2, 2)), 18: ("basic", (2, 2, 2, 2)),
            34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


class ResNet(nn.Module):
    """torchvision's ResNet topology and state-dict names (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``),
    so torchvision checkpoints load with ``load_state_dict`` and no torchvision is needed.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101).
        layers: Blocks per stage (one stage per entry; widths double from stage to stage).
        width: Channels of the stem and the first stage (torchvision: 64).
        in_channels, num_classes: Input channels and classes.
        small_input: A 3x3 stride-1 stem without max pooling (the CIFAR variant, for 28x28 or 32x32 images)
            instead of torchvision's 7x7 stride-2 stem and 3x3 max pooling.
    """

    def __init__(self, block: str, layers: Sequence[int], width: int = 64, in_channels: int = 3,
                 num_classes: int = 1000, small_input: bool = False) -> None:
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if width < 1 or not layers or any(n < 1 for n in layers):
            raise ValueError(f"need width >= 1 and at least one block per stage, got width={width}, layers={layers}")
        unit = BasicBlock if block == "basic" else Bottleneck
        expansion = 1 if block == "basic" else Bottleneck.expansion
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, padding=1)
        channels = width
        for stage, count in enumerate(layers):
            planes = width * 2**stage
            blocks = []
            for i in range(count):
                blocks.append(unit(channels, planes, stride=2 if stage > 0 and i == 0 else 1))
                channels = planes * expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def resnet(depth: int = 18, *, width: int = 64, in_channels: int = 3, num_classes: int = 1000,
           small_input: bool = False) -> ResNet:
    """ResNet-``depth`` (8, 10, 14, 18, 34, 50 or 101) with torchvision's topology and names; ``width=64``,
    ``in_channels=3``, ``num_classes=1000`` is torchvision's model (ResNet-18: 11,689,512 parameters).
    ResNet-8/10 are the small residual nets of zoos: one basic block per stage, 3 or 4 stages; ResNet-14 is
    ResNet-8 with two blocks per stage."""
    if depth not in _RESNETS:
        raise ValueError(f"depth must be one of {sorted(_RESNETS)}, got {depth}")
    block, layers = _RESNETS[depth]
    return ResNet(block, layers, width, in_channels, num_classes, small_input)
