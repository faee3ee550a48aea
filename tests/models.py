"""Model builders and helpers shared by the tests."""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import Tensor, nn

from wslgraph.nn import Sine

ACTIVATIONS = [nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.ELU, nn.Sigmoid, nn.Softplus, lambda: nn.LeakyReLU(0.1),
               lambda: Sine(3.0), nn.Identity]


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every state-dict entry random values (running stats and counters too)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(0, 10_000, (), generator=generator)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=generator, dtype=value.dtype) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=generator, dtype=value.dtype)
    model.load_state_dict(state)
    return model.eval()


def assert_state_dicts_equal(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    """Same keys in the same order, same shapes, dtypes and bits."""
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        assert actual[key].shape == value.shape, key
        assert torch.equal(actual[key], value), key


def fit_binary_labels(encoder: nn.Module, batch: object, labels: Tensor, steps: int) -> float:
    """Full-batch Adam (lr 3e-3) on BCE between the encoder's first output and ``labels``; the last loss."""
    optimizer = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = nn.functional.binary_cross_entropy_with_logits(encoder(batch)[:, 0], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def assert_memorises(encoder: nn.Module, batch: object, labels: Tensor, steps: int = 100) -> None:
    """Initialise ``encoder`` on ``batch`` (lazy sizes, then ``fit_statistics``), fit the binary ``labels`` with
    :func:`fit_binary_labels` and require a final loss below 0.1 and, in ``eval()``, 95 % of them right."""
    encoder(batch)
    encoder.fit_statistics(batch)
    assert fit_binary_labels(encoder, batch, labels, steps) < 0.1
    encoder.eval()
    with torch.no_grad():
        assert float(((encoder(batch)[:, 0] > 0).float() == labels).float().mean()) >= 0.95


@st.composite
def mlps(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """Random MLPs: widths, depth, biases, activations, LayerNorm/BatchNorm, dropout, dtype."""
    widths = draw(st.lists(st.integers(1, 6), min_size=2, max_size=5))
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1], bias=draw(st.booleans())))
        if i < len(widths) - 2:
            norm = draw(st.sampled_from(["none", "layer", "batch"]))
            if norm == "layer":
                layers.append(nn.LayerNorm(widths[i + 1], elementwise_affine=draw(st.booleans())))
            elif norm == "batch":
                layers.append(nn.BatchNorm1d(widths[i + 1], affine=draw(st.booleans()),
                                             track_running_stats=draw(st.booleans())))
            layers.append(draw(st.sampled_from(ACTIVATIONS))())
            if draw(st.booleans()):
                layers.append(nn.Dropout(0.1))
    model = nn.Sequential(*layers)
    if draw(st.booleans()):
        model = model.double()
    return model, (widths[0],)


@st.composite
def cnns(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """Random 1d/2d/3d CNNs: mixed kernel sizes, stride, padding, dilation, groups, norms, pooling, heads."""
    dims = draw(st.sampled_from([1, 2, 2, 3]))
    conv = [nn.Conv1d, nn.Conv2d, nn.Conv3d][dims - 1]
    bn = [nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d][dims - 1]
    avg = [nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d][dims - 1]
    size = {1: 16, 2: 12, 3: 7}[dims]
    channels = [draw(st.integers(1, 4))]
    layers: list[nn.Module] = []
    for _ in range(draw(st.integers(1, 3))):
        groups = draw(st.sampled_from([1, 1, 2]))
        in_ch = channels[-1]
        if in_ch % groups:
            groups = 1
        out_ch = groups * draw(st.integers(1, 3))
        kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
        layers.append(conv(in_ch, out_ch, kernel, stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, 1)),
                           dilation=draw(st.integers(1, 2)), groups=groups, bias=draw(st.booleans())))
        channels.append(out_ch)
        norm = draw(st.sampled_from(["none", "batch", "group"]))
        if norm == "batch":
            layers.append(bn(out_ch))
        elif norm == "group":
            layers.append(nn.GroupNorm(draw(st.sampled_from([g for g in (1, 2, 3) if out_ch % g == 0])), out_ch))
        layers.append(draw(st.sampled_from(ACTIVATIONS))())
    head = draw(st.sampled_from(["global", "flatten"]))
    if head == "global":
        layers += [avg(1), nn.Flatten()]
    else:
        layers.append(nn.Flatten())
    model = nn.Sequential(*layers)
    input_shape = (channels[0],) + (size,) * dims
    try:
        features = model(torch.zeros(2, *input_shape)).shape[1]
    except RuntimeError:  # spatial size shrank below a kernel: draw another net
        from hypothesis import reject

        reject()
    model.append(nn.Linear(features, draw(st.integers(1, 3))))
    return model, input_shape


class ResidualMLP(nn.Module):
    """x + f(x) blocks, including an add whose operand has an activation (sum nodes)."""

    def __init__(self, width: int, depth: int, pre_activation_sum: bool) -> None:
        super().__init__()
        self.inp = nn.Linear(3, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
                                    for _ in range(depth))
        self.side = nn.Linear(width, width)
        self.out = nn.Linear(width, 2)
        self.pre_activation_sum = pre_activation_sum

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = h + block(h)
        if self.pre_activation_sum:
            h = torch.tanh(self.side(h)) + h
        return self.out(h)


class DepthwiseNet(nn.Module):
    """Depthwise-separable convs, GroupNorm and a 1x1 skip: a stress test for permutations."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(4, 8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 8, 1)
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=2)
        self.skip = nn.Conv2d(8, 12, 1)
        self.head = nn.Linear(12, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.norm(self.stem(x)))
        h = torch.relu(self.pointwise(self.depthwise(h)))
        h = self.grouped(h) + self.skip(h)
        return self.head(torch.relu(h).mean((2, 3)))


class Diverging(nn.Module):
    """StatNN (10 classes) whose training logits turn NaN from call ``after + 1`` on (call 1 is the training
    loop's initialisation pass), in every process or only in process ``rank`` of a distributed run."""

    def __init__(self, after: int, rank: int | None = None) -> None:
        super().__init__()
        from wslgraph.tasks import build_model

        self.inner, self.after, self.rank, self.calls = build_model("statnn", 10), after, rank, 0

    def forward(self, batch):
        self.calls += 1
        out = self.inner(batch)
        here = self.rank is None or torch.distributed.get_rank() == self.rank
        return out * float("nan") if self.training and self.calls > self.after and here else out


def encoder_outputs_on(graphs: list) -> list[list[Tensor]]:
    """The outputs of a small GNN (dense path, then message passing) and transformer on each of ``graphs`` (a graph
    and its permuted twin), each encoder asserted to give the same outputs on all of them."""
    from wslgraph.nn import GNNEncoder, TransformerEncoder

    outputs = []
    for make in (lambda: GNNEncoder(4, hidden=16, num_layers=2, dense=True),
                 lambda: GNNEncoder(4, hidden=16, num_layers=2, dense=False),
                 lambda: TransformerEncoder(4, hidden=16, num_layers=1)):
        torch.manual_seed(0)
        encoder = make().eval()
        encoder.fit_statistics(graphs[0])
        with torch.no_grad():
            outputs.append([encoder(graph) for graph in graphs])
        for other in outputs[-1][1:]:
            torch.testing.assert_close(other, outputs[-1][0], rtol=1e-4, atol=1e-5)
    return outputs
