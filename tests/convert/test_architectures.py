"""The CNN families beyond chains and sums: more activations, and channel concatenation (DenseNet, Inception,
SqueezeNet). Each block is built here (no torchvision), converts exactly both ways, permutes without changing its
function, and the graph encoders run on it and do not see the permutation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.models import assert_state_dicts_equal, encoder_outputs_on, randomize
from wslgraph import GraphTemplate, to_graph, to_state_dict
from wslgraph.errors import UnsupportedModuleError
from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.vocab import Activation, EdgeType
from wslgraph.tokens import detokenize, tokenize
from wslgraph.weightspace import hidden_permutations, permute_hidden


class Activations(nn.Module):
    """Every newly supported activation, as a module and as a function, one per hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(3 if i == 0 else 8, 8) for i in range(11))
        self.head = nn.Linear(8, 2)
        self.modules_ = nn.ModuleList([nn.ReLU6(), nn.Hardswish(), nn.Hardsigmoid(), nn.Hardtanh(-2.0, 2.0),
                                       nn.Mish(), nn.PReLU(8)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(self.layers[:6], self.modules_):
            x = act(layer(x))
        x = F.relu6(self.layers[6](x))
        x = F.hardswish(self.layers[7](x))
        x = F.hardsigmoid(self.layers[8](x))
        x = F.hardtanh(self.layers[9](x), -0.5, 0.5)
        x = F.mish(self.layers[10](x))
        return self.head(x)


class DenseBlock(nn.Module):
    """DenseNet's block: each layer reads the concatenation of all earlier outputs, through its own BN and ReLU."""

    def __init__(self, channels: int = 4, growth: int = 3, layers: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels + i * growth) for i in range(layers))
        self.convs = nn.ModuleList(nn.Conv2d(channels + i * growth, growth, 3, padding=1) for i in range(layers))
        self.head = nn.Linear(channels + layers * growth, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for norm, conv in zip(self.norms, self.convs):
            features.append(conv(F.relu(norm(torch.cat(features, 1)))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(torch.cat(features, dim=1), 1), 1))


class Inception(nn.Module):
    """GoogLeNet's block: 1x1, 3x3 (after a 1x1) and pooled 1x1 branches, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU())
        self.one = nn.Sequential(nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
        self.three = nn.Sequential(nn.Conv2d(6, 3, 1), nn.ReLU(), nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(6, 2, 1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(11, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(torch.cat([self.one(x), self.three(x), self.pool(x)], 1))


class Fire(nn.Module):
    """SqueezeNet's fire module twice: squeeze 1x1, expand 1x1 and 3x3, concatenated; a residual around the second."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2)
        self.squeeze = nn.ModuleList(nn.Conv2d(8, 3, 1) for _ in range(2))
        self.expand1 = nn.ModuleList(nn.Conv2d(3, 4, 1) for _ in range(2))
        self.expand3 = nn.ModuleList(nn.Conv2d(3, 4, 3, padding=1) for _ in range(2))
        self.classifier = nn.Conv2d(8, 4, 1)

    def fire(self, x: torch.Tensor, i: int) -> torch.Tensor:
        s = F.relu(self.squeeze[i](x))
        return torch.cat([F.relu(self.expand1[i](s)), F.relu(self.expand3[i](s))], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fire(F.relu(self.stem(x)), 0)
        x = x + self.fire(x, 1)
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(self.classifier(x)), 1), 1)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand 1x1, depthwise 3x3, project 1x1, with ReLU6 and a residual."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU6())
        self.block = nn.Sequential(nn.Conv2d(4, 12, 1, bias=False), nn.BatchNorm2d(12), nn.ReLU6(),
                                   nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False), nn.BatchNorm2d(12),
                                   nn.ReLU6(), nn.Conv2d(12, 4, 1, bias=False), nn.BatchNorm2d(4))
        self.head = nn.Sequential(nn.Conv2d(4, 6, 1), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(x + self.block(x))


class SqueezeExcite(nn.Module):
    """MobileNetV3's SE: pool, squeeze 1x1 + ReLU, expand 1x1 + hardsigmoid, then x * gate."""

    def __init__(self, channels: int, squeezed: int, gate: nn.Module) -> None:
        super().__init__()
        self.fc1, self.fc2, self.gate = nn.Conv2d(channels, squeezed, 1), nn.Conv2d(squeezed, channels, 1), gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return scale * x


class MBConv(nn.Module):
    """EfficientNet's block (SiLU, sigmoid SE) and MobileNetV3's (hardswish, hardsigmoid SE), each with a residual."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.SiLU())
        self.efficient = nn.Sequential(nn.Conv2d(6, 12, 1), nn.BatchNorm2d(12), nn.SiLU(),
                                       nn.Conv2d(12, 12, 3, padding=1, groups=12), nn.BatchNorm2d(12), nn.SiLU(),
                                       SqueezeExcite(12, 3, nn.Sigmoid()), nn.Conv2d(12, 6, 1), nn.BatchNorm2d(6))
        self.mobile = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.Hardswish(),
                                    SqueezeExcite(8, 2, nn.Hardsigmoid()), nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.efficient(x)
        return self.head(x + self.mobile(x))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: depthwise 7x7, channels last, LayerNorm, Linear 4x, GELU, Linear, back, layer scale,
    residual."""

    def __init__(self, channels: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 2, stride=2)
        self.dwconv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pwconv1, self.pwconv2 = nn.Linear(channels, 4 * channels), nn.Linear(4 * channels, channels)
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), 1e-1))
        self.head = nn.Linear(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        x = x + self.layer_scale * torch.permute(y, (0, 3, 1, 2))
        return self.head(x.mean((2, 3)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle, as torchvision writes it."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    return torch.transpose(x, 1, 2).contiguous().view(batch, -1, height, width)


class ShuffleUnits(nn.Module):
    """ShuffleNetV2: a stride-2 unit (two branches, one depthwise first), then two stride-1 units that chunk the
    channels, transform one half and concatenate it back; a channel shuffle after each (the last with 4 groups,
    through ``torch.split``)."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        half = channels // 2
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.branch1 = nn.Sequential(nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6), nn.BatchNorm2d(6),
                                     nn.Conv2d(6, half, 1), nn.BatchNorm2d(half), nn.ReLU())
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, half, 1), nn.BatchNorm2d(half), nn.ReLU(),
                          nn.Conv2d(half, half, 3, stride=s, padding=1, groups=half), nn.BatchNorm2d(half),
                          nn.Conv2d(half, half, 1), nn.BatchNorm2d(half), nn.ReLU())
            for c, s in ((6, 2), (half, 1), (half, 1)))
        self.head = nn.Sequential(nn.Conv2d(channels, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = channel_shuffle(torch.cat((self.branch1(x), self.branches[0](x)), dim=1), 2)
        x1, x2 = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat((x1, self.branches[1](x2)), dim=1), 2)
        x1, x2 = torch.split(x, x.shape[1] // 2, dim=1)
        return self.head(channel_shuffle(torch.cat((x1, self.branches[2](x2)), dim=1), 4))


class TinyViT(nn.Module):
    """A vision transformer: patches by a strided conv, a class token, positional embeddings, pre-norm blocks of
    multi-head self-attention and an MLP with residuals, the class token's features into the head."""

    def __init__(self, dim: int = 8, heads: int = 2, layers: int = 2, patch: int = 4, image: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "ln1": nn.LayerNorm(dim), "attn": nn.MultiheadAttention(dim, heads, batch_first=True),
            "ln2": nn.LayerNorm(dim),
            "mlp": nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))}) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            y = block["ln1"](x)
            x = x + block["attn"](y, y, y, need_weights=False)[0]
            x = x + block["mlp"](block["ln2"](x))
        return self.head(self.norm(x)[:, 0])


class PreActivation(nn.Module):
    """A pre-activation residual block (BN and ReLU before each conv, the skip reading the block's input)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1, self.conv1 = nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1)
        self.bn2, self.conv2 = nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return self.head(x + y)


CASES = {
    "activations": (Activations, (3,)),
    "dense-block": (DenseBlock, (1, 6, 6)),
    "inception": (Inception, (2, 7, 7)),
    "fire": (Fire, (3, 9, 9)),
    "inverted-residual": (InvertedResidual, (3, 6, 6)),
    "squeeze-excitation": (MBConv, (3, 6, 6)),
    "convnext-block": (ConvNeXtBlock, (3, 8, 8)),
    "shuffle-units": (ShuffleUnits, (3, 8, 8)),
    "vision-transformer": (TinyViT, (3, 8, 8)),
    "pre-activation": (PreActivation, (3, 6, 6)),
}


def _randomized(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    factory, shape = CASES[name]
    model = randomize(factory(), seed).eval()
    return model, shape


@pytest.mark.parametrize("name", CASES)
def test_each_construct_converts_exactly_both_ways(name: str) -> None:
    model, shape = _randomized(name)
    graph = to_graph(model).validate()
    assert_state_dicts_equal(to_state_dict(graph), model.state_dict())
    template = GraphTemplate.from_module(model)
    rows = torch.stack([template.flatten(model.state_dict())] * 2)
    batch = template.batch(rows)
    assert torch.equal(batch.get_example(1).edge_attr, graph.edge_attr) and torch.equal(batch.get_example(0).x,
                                                                                        graph.x)
    assert torch.equal(template.unbatch(batch), rows)


@pytest.mark.parametrize("name", CASES)
def test_each_construct_round_trips_through_tokens(name: str) -> None:
    model, _ = _randomized(name)
    assert_state_dicts_equal(detokenize(tokenize(model)), model.state_dict())


@pytest.mark.parametrize("name", CASES)
def test_permuting_hidden_neurons_keeps_the_function_and_the_encoders_do_not_see_it(name: str) -> None:
    model, shape = _randomized(name, seed=1)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
    permuted = permute_hidden(model, torch.Generator().manual_seed(3)).eval()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, permuted.state_dict()[k])]
    assert changed, "the permutation moved nothing"
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), model(x), rtol=1e-4, atol=1e-5)
    outputs = encoder_outputs_on([to_graph(m) for m in (model, permuted)])
    torch.testing.assert_close(outputs[0][0], outputs[1][0], rtol=1e-4, atol=1e-5)  # dense == message passing


def test_activations_have_their_own_ids_and_parameters() -> None:
    layout = to_graph(Activations()).layout
    hidden = [g for g in layout.groups if g.node_type == 1]
    assert [g.activation for g in hidden] == [
        Activation.RELU6, Activation.HARDSWISH, Activation.HARDSIGMOID, Activation.HARDTANH, Activation.MISH,
        Activation.PRELU, Activation.RELU6, Activation.HARDSWISH, Activation.HARDSIGMOID, Activation.HARDTANH,
        Activation.MISH]
    assert hidden[3].activation_param == 2.0 and hidden[9].activation_param == 0.5
    prelu = to_graph(Activations()).layout.groups.index(hidden[5])
    assert [p.key for p in layout.node_params if p.group == prelu] == ["layers.5.bias", "modules_.5.weight"]


def test_concatenation_nodes_receive_one_identity_edge_per_channel() -> None:
    layout = to_graph(Inception()).layout
    cat = next(g for g in layout.groups if g.name.startswith("cat"))
    assert cat.size == 11
    into = [b for b in layout.edge_blocks if layout.groups[b.dst] is cat]
    assert [(layout.groups[b.src].size, b.dst_start) for b in into] == [(4, 0), (5, 4), (2, 9)]
    src, dst = layout.endpoints(into[1])
    assert (dst - cat.offset).tolist() == [4, 5, 6, 7, 8]


def test_a_gate_is_a_product_node_with_one_gate_edge_from_each_factor() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3), SqueezeExcite(4, 2, nn.Sigmoid()), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 2, 5, 5))
    layout = to_graph(model, input_shape=(2, 5, 5)).layout
    names = [g.name for g in layout.groups]
    product = names.index("mul")  # named after the traced call
    gates = [b for b in layout.edge_blocks if b.kind == EdgeType.GATE]
    assert [b.dst for b in gates] == [product] * 2, names
    assert sorted(layout.groups[b.src].name for b in gates) == ["0", "1.fc2"]
    assert layout.groups[names.index("1.fc2")].activation == Activation.SIGMOID
    assert layout.groups[product].size == 4 and not layout.groups[product].activation


def test_channels_last_layers_act_on_channels_and_layer_scale_is_a_node_feature() -> None:
    layout = to_graph(ConvNeXtBlock()).layout
    by_name = {g.name: i for i, g in enumerate(layout.groups)}
    kinds = {(layout.groups[b.src].name, layout.groups[b.dst].name): b.kind for b in layout.edge_blocks}
    assert kinds[("dwconv", "pwconv1")] == EdgeType.LINEAR and kinds[("pwconv1", "pwconv2")] == EdgeType.LINEAR
    features = {(p.key, layout.groups[p.group].name, p.column.name) for p in layout.node_params}
    assert ("norm.weight", "dwconv", "NORM_WEIGHT") in features
    assert ("layer_scale", "pwconv2", "LAYER_SCALE") in features
    assert kinds[("stem", "pwconv2")] == EdgeType.RESIDUAL and by_name["pwconv2"] > by_name["pwconv1"]


def test_a_concatenation_is_permuted_as_its_parts() -> None:
    layout = to_graph(DenseBlock()).layout
    perms = hidden_permutations(layout, torch.Generator().manual_seed(0))
    for block in layout.edge_blocks:
        if block.kind == 3 and layout.groups[block.dst].size != layout.groups[block.src].size:
            size = layout.groups[block.src].size
            assert torch.equal(perms[block.dst][block.dst_start:block.dst_start + size],
                               perms[block.src] + block.dst_start)


def test_a_channel_shuffle_is_strided_identity_blocks_and_a_chunk_takes_a_slice() -> None:
    layout = to_graph(ShuffleUnits()).layout
    groups = {g.name: i for i, g in enumerate(layout.groups)}
    shuffle = groups["view_1"]  # the first shuffle: 8 channels as 2 x 4, transposed
    into = [b for b in layout.edge_blocks if b.dst == shuffle]
    assert [(b.src_start, b.length, b.dst_start, b.dst_stride) for b in into] == [(0, 4, 0, 2), (4, 4, 1, 2)]
    sources = torch.cat([layout.endpoints(b)[0] for b in into]) - layout.groups[groups["cat"]].offset
    targets = torch.cat([layout.endpoints(b)[1] for b in into]) - layout.groups[shuffle].offset
    assert sources[targets.argsort()].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]  # channel j * 2 + i <- i * 4 + j
    last = [b for b in layout.edge_blocks if b.dst == groups["head.0"] - 1]  # 4 groups of 2 before the head
    assert [(b.src_start, b.dst_start, b.dst_stride) for b in last] == [(0, 0, 4), (2, 1, 4), (4, 2, 4), (6, 3, 4)]
    pieces = [b for b in layout.edge_blocks if layout.groups[b.dst].name.startswith("chunk")]
    assert [(layout.groups[b.src].name, b.src_start, b.length) for b in pieces] == [("view_1", 0, 4),
                                                                                 ("view_1", 4, 4)]
    assert all(layout.is_copy(b) for b in into + pieces)
    assert GraphLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout


def test_copies_are_permuted_as_the_channels_they_copy() -> None:
    layout = to_graph(ShuffleUnits()).layout
    perms = hidden_permutations(layout, torch.Generator().manual_seed(0))
    copies: dict[int, dict[tuple[int, int], int]] = {}  # target group -> (source group, channel) -> its channel
    for block in layout.edge_blocks:
        if layout.is_copy(block):
            sources = torch.arange(layout.groups[block.src].size)[layout.copy_sources(block)].tolist()
            targets = torch.arange(layout.groups[block.dst].size)[layout.copy_targets(block)].tolist()
            copies.setdefault(block.dst, {}).update({(block.src, s): t for s, t in zip(sources, targets)})
    for target, held in copies.items():  # new channel t copies new channel s: old perm[t] copies old perm[s]
        assert {(g, int(perms[g][s])): int(perms[target][t]) for (g, s), t in held.items()} == held
    moving = [layout.groups[i].name for i, p in enumerate(perms) if not torch.equal(p, torch.arange(len(p)))]
    assert {"branches.1.0", "branches.2.5", "view_5"} <= set(moving), moving


def test_attention_and_token_embeddings_are_hand_counted_blocks() -> None:
    layout = to_graph(TinyViT(dim=8, heads=2, layers=1)).layout
    names = [g.name for g in layout.groups]
    qkv, heads, out = (names.index(f"blocks.0.attn.{n}") for n in ("in_proj", "heads", "attention"))
    assert [layout.groups[i].size for i in (qkv, heads, out)] == [24, 2, 8]
    offset = {i: layout.groups[i].offset for i in (qkv, heads, out)}
    edges = {}
    for block in layout.edge_blocks:
        if block.kind in (EdgeType.ATTENTION_QK, EdgeType.ATTENTION_HEAD, EdgeType.ATTENTION_VALUE):
            src, dst = layout.endpoints(block)
            edges[block.kind, block.src, block.dst] = sorted(zip((src - offset[block.src]).tolist(),
                                                                 (dst - offset[block.dst]).tolist()))
    assert edges == {
        (EdgeType.ATTENTION_QK, qkv, qkv): [(i, 8 + i) for i in range(8)],  # query dim i -> key dim i
        (EdgeType.ATTENTION_HEAD, qkv, heads): [(8 + i, i // 4) for i in range(8)],  # key dim -> its head
        (EdgeType.ATTENTION_HEAD, heads, out): [(i // 4, i) for i in range(8)],  # head -> its outputs
        (EdgeType.ATTENTION_VALUE, qkv, out): [(16 + i, i) for i in range(8)],  # value dim c -> output c
    }
    embeddings = {layout.groups[b.dst].name: (b.key, b.num_edges) for b in layout.edge_blocks
                  if b.kind == EdgeType.EMBEDDING}
    assert embeddings == {"cls": ("cls", 8), "pos": ("pos", 5 * 8)}  # 4 patches and the class token
    assert {layout.groups[names.index(n)].node_type for n in ("cls", "pos")} == {0}  # constant inputs: ordered
    assert {b.kind for b in layout.edge_blocks if b.dst == names.index("blocks.0.ln1.input")} == {EdgeType.RESIDUAL}


def test_attention_permutes_heads_and_queries_with_keys() -> None:
    layout = to_graph(TinyViT(dim=8, heads=2, layers=1)).layout
    names = [g.name for g in layout.groups]
    swapped = 0
    for seed in range(6):
        perms = hidden_permutations(layout, torch.Generator().manual_seed(seed))
        qkv, sigma, out = (perms[names.index(f"blocks.0.attn.{n}")] for n in ("in_proj", "heads", "attention"))
        query, key, value = qkv.view(3, 8)
        assert torch.equal(key - 8, query) and torch.equal(value - 16, out)  # queries with keys, values with outputs
        for permuted in (query, out):  # heads move whole, as the head nodes do
            assert torch.equal(permuted.view(2, 4) // 4, sigma.view(2, 1).expand(2, 4))
        swapped += int(sigma[0] == 1)
    assert 0 < swapped < 6


class Lambda(nn.Module):
    """A conv, then ``function``, then a 1x1 conv."""

    def __init__(self, function) -> None:
        super().__init__()
        self.a, self.b, self.function = nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 1), function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.function(self.a(x)))


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.Linear(3, 4), nn.PReLU(), nn.Linear(4, 2)), "one slope shared by 4 neurons"),
    (nn.Sequential(nn.Linear(3, 4), nn.Hardtanh(0.0, 3.0), nn.Linear(4, 2)), "Hardtanh"),
    (Lambda(lambda y: torch.cat([y, y], dim=2)), "concatenates along dim 2"),
    (Lambda(lambda y: y.permute(0, 3, 2, 1)), "permutes dims"),
    (Lambda(lambda y: y.permute(0, 2, 3, 1)), "channels-last tensor"),
    (Lambda(lambda y: y * y), "multiplies a tensor by itself"),
    (Lambda(lambda y: y.view(y.size(0), 2, 2, y.size(2), y.size(3))), "only as part of a channel shuffle"),
    (Lambda(lambda y: y.transpose(2, 3)), "transposes dims"),
    (Lambda(lambda y: y.view(y.size(0), 2, -1)), "reshapes to"),
    (Lambda(lambda y: y.chunk(2, dim=2)[0]), "splits along dim 2"),
])
def test_what_still_has_no_conversion_is_named(model: nn.Module, message: str) -> None:
    with pytest.raises(UnsupportedModuleError, match=message):
        to_graph(model)


class Attend(nn.Module):
    """Tokens from a 1x1 Conv1d (channels moved last), then ``attend(attention, x)``."""

    def __init__(self, attend, **options) -> None:
        super().__init__()
        self.embed, self.attention, self.attend = nn.Conv1d(3, 4, 1), nn.MultiheadAttention(4, 2, **options), attend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(self.attention, self.embed(x).transpose(1, 2))


@pytest.mark.parametrize("model, message", [
    (Attend(lambda a, x: a(x, x, x)[0]), "batch_first=False"),
    (Attend(lambda a, x: a(x, x, x * 2)[0], batch_first=True), "cross-attention"),
    (Attend(lambda a, x: a(x, x, x)[0], batch_first=True, kdim=2, vdim=2), "separate query, key and value"),
    (Attend(lambda a, x: a(x, x, x)[1], batch_first=True), "returns NoneType"),
])
def test_attention_that_has_no_conversion_is_named(model: nn.Module, message: str) -> None:
    with pytest.raises(UnsupportedModuleError, match=message):
        to_graph(model)
