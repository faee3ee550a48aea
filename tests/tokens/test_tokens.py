"""Tokens: bit-exact round trips on every architecture family, hand-counted sizes, one gather per zoo, mixed
batches, and what a hidden-neuron permutation does to a token sequence."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from torch import nn

from tests.models import DepthwiseNet, ResidualMLP, assert_state_dicts_equal, cnns, mlps, randomize
from wslgraph import GraphTemplate, to_graph
from wslgraph.errors import ShapeMismatchError
from wslgraph.tokens import TokenTemplate, detokenize, tokenize, tokenize_batch
from wslgraph.weightspace import hidden_permutations, permute_state_dict
from wslgraph.zoo import resnet, siren, tiny_resnet


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mlps())
def test_mlps_round_trip_bit_exactly(drawn) -> None:
    model, shape = drawn
    randomize(model)
    assert_state_dicts_equal(detokenize(tokenize(model, 5, input_shape=shape)), model.state_dict())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(cnns())
def test_cnns_round_trip_bit_exactly(drawn) -> None:
    model, shape = drawn
    randomize(model)
    assert_state_dicts_equal(detokenize(tokenize(model, 7, input_shape=shape)), model.state_dict())


@pytest.mark.parametrize("make, shape", [
    (lambda: ResidualMLP(6, 2, True), (3,)), (DepthwiseNet, (3, 8, 8)), (tiny_resnet, (3, 8, 8)),
    (lambda: resnet(18, width=4, num_classes=10), (3, 32, 32)),  # ResNet-18's topology at width 4
    (lambda: resnet(50, width=2, num_classes=10), (3, 32, 32)),  # ResNet-50's (bottlenecks) at width 2
    (lambda: resnet(10, width=8, in_channels=1, small_input=True), (1, 28, 28))])
def test_residual_networks_round_trip_bit_exactly(make, shape) -> None:
    model = randomize(make())
    tokens = tokenize(model, 16, input_shape=shape)
    assert_state_dicts_equal(detokenize(tokens), model.state_dict())
    # every parameter is in exactly one token value or among the extras (num_batches_tracked)
    template = tokens.template
    assert int(template.mask.sum()) + template.extra_index.numel() == template.layout.num_params
    batch_norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert template.extra_index.numel() == batch_norms


def test_hand_counted_siren_tokens() -> None:
    """2-32-32-1 SIREN, width 16: 32 tokens of 2 weights + bias; 32 neurons x 3 chunks of 32 weights + bias;
    one output neuron x 3 chunks."""
    model = siren()
    template = TokenTemplate.from_module(model, 16)
    assert template.num_tokens == 32 + 96 + 3 and template.num_layers == 3
    assert template.mask.sum(1)[:32].tolist() == [3] * 32
    assert template.mask.sum(1)[32:35].tolist() == [16, 16, 1]
    assert int(template.mask.sum()) == 1185 and template.extra_index.numel() == 0
    layer, within = template.positions[:, 1], template.positions[:, 2]
    assert torch.equal(template.positions[:, 0], torch.arange(131))
    assert torch.bincount(layer).tolist() == [32, 96, 3]
    assert within[32:38].tolist() == [0, 1, 2, 3, 4, 5] and within[-1] == 2
    tokens = tokenize(randomize(model), 16)
    # the first hidden neuron's token is its weight row, then its bias
    state = model.state_dict()
    assert torch.equal(tokens.tokens[0, :3], torch.cat([state["0.weight"][0], state["0.bias"][:1]]))
    assert [s.stop - s.start for s in template.layer_slices()] == [32, 96, 3]


def test_resnet18_token_count_by_hand() -> None:
    """torchvision's ResNet-18 (10 classes), one token per output channel of every conv and of fc, width 288
    (SANE's): a channel with a 3x3 kernel over C inputs holds 9C weights + 4 BN values."""
    model = resnet(18, num_classes=10)
    template = TokenTemplate.from_module(model, 288, input_shape=(3, 32, 32))
    expected = 64 * math.ceil((3 * 49 + 4) / 288)  # stem
    width, channels = 64, 64
    for stage in range(4):
        planes = width * 2**stage
        for block in range(2):
            stride = stage > 0 and block == 0
            expected += planes * math.ceil((9 * channels + 4) / 288)  # conv1 + bn1
            expected += planes * math.ceil((9 * planes + 4) / 288)  # conv2 + bn2
            if stride:
                expected += planes * math.ceil((channels + 4) / 288)  # downsample conv + bn
            channels = planes
    expected += 10 * math.ceil((512 + 1) / 288)  # fc
    assert template.num_tokens == expected
    # parameters (11,181,642 with 10 classes) + running mean and variance of 4,800 BN channels, in tokens; the
    # 20 num_batches_tracked counters as extras
    assert int(template.mask.sum()) == 11_181_642 + 2 * 4_800 and template.extra_index.numel() == 20


def test_a_zoo_is_one_gather_and_agrees_with_each_model() -> None:
    models = [randomize(siren(hidden=(8, 8)), seed) for seed in range(5)]
    template = GraphTemplate.from_module(models[0])
    rows = torch.stack([template.flatten(m.state_dict()) for m in models])
    tokens = TokenTemplate(template, 4).tokenize(rows)
    assert tokens.tokens.shape == (5, 8 + 8 * 3 + 3, 4)
    for i, model in enumerate(models):
        assert torch.equal(tokens.tokens[i], tokenize(model, 4).tokens)
        assert_state_dicts_equal(tokens.state_dict()[i], model.state_dict())
    assert torch.equal(tokens.rows(), rows)
    graph_tokens = tokenize(to_graph(models[2]), 4)  # a parameter graph tokenizes like its module
    assert torch.equal(graph_tokens.tokens, tokens.tokens[2])
    batch_tokens = tokenize(template.batch(rows), 4)
    assert torch.equal(batch_tokens.tokens, tokens.tokens)


def test_mixed_architectures_batch_and_unbatch() -> None:
    models = [randomize(siren(), 0), randomize(tiny_resnet(in_channels=1), 1), randomize(siren(), 2)]
    cnn_template = GraphTemplate.from_module(models[1], input_shape=(1, 8, 8))
    cnn = (cnn_template, cnn_template.flatten(models[1].state_dict()))  # a (template, rows) pair
    batch = tokenize_batch([models[0], cnn, models[2]], 32)
    lengths = [t.num_tokens for t in batch.templates]
    assert batch.templates[0] is batch.templates[2]  # one template (and one gather) per architecture
    assert batch.valid.sum(1).tolist() == lengths and batch.tokens.shape[1] == max(lengths)
    assert not batch.mask[0, lengths[0]:].any() and bool((batch.tokens[0, lengths[0]:] == 0).all())
    for state, model in zip(batch.state_dicts(), models):
        assert_state_dicts_equal(state, model.state_dict())


def test_hidden_permutations_permute_positions_within_a_layer() -> None:
    """Permuting a hidden layer's neurons reorders that layer's tokens and nothing else; the next layer's tokens
    keep their positions and hold the same values with their incoming weights reordered."""
    model = randomize(siren(hidden=(6, 5)))
    template = TokenTemplate.from_module(model, 8)  # wide enough for one token per neuron
    layout = template.layout
    perms = hidden_permutations(layout, torch.Generator().manual_seed(3))
    permuted = permute_state_dict(layout, model.state_dict(), perms)
    before = tokenize(model, 8).tokens
    after = template.tokenize(template.graph_template.flatten(permuted)).tokens
    slices = template.layer_slices()
    first, second, output = (before[part] for part in slices)
    # the first hidden layer (fed by the inputs, which do not move): its tokens are permuted, nothing else
    assert torch.equal(after[slices[0]], first[perms[template.layer_groups[0]]])
    for layer, part in enumerate(slices):
        moved = before[part][perms[template.layer_groups[layer]]]  # the layer's own permutation of positions
        assert torch.equal(after[part].sort(dim=1).values, moved.sort(dim=1).values)  # same values per token
        if layer > 0:  # ... with the incoming weights reordered by the previous layer's permutation
            assert not torch.equal(after[part], moved)
    assert not torch.equal(after[slices[1]], second) and not torch.equal(after[slices[2]], output)


def test_bad_input_is_named() -> None:
    template = TokenTemplate.from_module(siren(), 16)
    with pytest.raises(ShapeMismatchError, match=r"\[B, 1185\]"):
        template.tokenize(torch.zeros(2, 10))
    with pytest.raises(ShapeMismatchError, match=r"131, 16"):
        template.rows(torch.zeros(2, 130, 16))
    with pytest.raises(ValueError, match="token_width"):
        TokenTemplate(template.layout, 0)
    with pytest.raises(TypeError, match="cannot tokenize"):
        tokenize("model.pt")
