"""symmetry="sign" | "scale" | "auto": invariance to sign flips and positive scaling, equivariance, sensitivity."""

import copy

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from tests.models import assert_memorises, randomize
from tests.nn.test_encoders import _permuted
from wslgraph import GraphTemplate, collate, to_graph
from wslgraph.graph import PadEdgeFeatures
from wslgraph.nn import GNNEncoder, ProbeFeatures, TransformerEncoder
from wslgraph.nn.symmetric import SCALE_ACTIVATIONS, SIGN_ACTIVATIONS, canonical_scales, symmetric_nodes
from wslgraph.zoo import BasicBlock, siren, small_cnn

ENCODERS = {
    "gnn": lambda symmetry, probe=None: GNNEncoder(3, hidden=16, num_layers=2, symmetry=symmetry, probe=probe),
    "transformer": lambda symmetry, probe=None: TransformerEncoder(3, hidden=16, num_layers=2, symmetry=symmetry,
                                                                   probe=probe),
}
# (architecture, the group it has): SIRENs and tanh nets flip signs, ReLU nets scale; CNNs per channel
CASES = {
    "siren": (lambda: siren(hidden=(6, 5)), "sign"),
    "tanh-mlp": (lambda: nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)),
                 "sign"),
    "tanh-cnn": (lambda: small_cnn(channels=4, num_layers=2, activation="tanh"), "sign"),
    "relu-mlp": (lambda: nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.LeakyReLU(0.1),
                                       nn.Linear(5, 2)), "scale"),
    "relu-cnn": (lambda: small_cnn(channels=4, num_layers=2), "scale"),
}


def _act(model: nn.Module, group: str, seed: int) -> tuple[nn.Module, torch.Tensor]:
    """A copy with every hidden neuron (channel) flipped or rescaled at random, and the factor of each node."""
    generator = torch.Generator().manual_seed(seed)
    acted = copy.deepcopy(model)
    layers = [m for m in acted.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    factors = [torch.ones(layers[0].weight.shape[1])]
    with torch.no_grad():
        for a, b in zip(layers[:-1], layers[1:]):
            size = a.weight.shape[0]
            if group == "sign":
                q = torch.where(torch.rand(size, generator=generator) < 0.5, -1.0, 1.0)
            else:
                q = torch.rand(size, generator=generator) * 4 + 0.25
            a.weight.mul_(q.view(-1, *[1] * (a.weight.dim() - 1)))
            a.bias.mul_(q)
            b.weight.div_(q.view(1, -1, *[1] * (b.weight.dim() - 2)))
            factors.append(q)
    factors.append(torch.ones(layers[-1].weight.shape[0]))
    return acted, torch.cat(factors)


def _fitted(name: str, symmetry: str, batch: Batch) -> nn.Module:
    torch.manual_seed(0)
    encoder = ENCODERS[name](symmetry)
    encoder(batch)  # lazy initialisation
    return encoder.fit_statistics(batch).eval()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(ENCODERS))
def test_outputs_are_invariant_and_states_equivariant_under_sign_flips_and_scaling(name: str, case: str) -> None:
    make, group = CASES[case]
    models = [randomize(make(), seed) for seed in range(3)]
    acted, factors = zip(*(_act(m, group, 10 + seed) for seed, m in enumerate(models)))
    original, moved = collate([to_graph(m) for m in models]), collate([to_graph(m) for m in acted])
    x = torch.randn(4, 1, 8, 8) if "cnn" in case else torch.randn(4, models[0][0].in_features)
    for model, other in zip(models, acted):  # the actions preserve the function
        assert torch.allclose(model(x), other(x), atol=1e-4)
    q = torch.cat(factors)
    source, target = original.edge_index
    for symmetry in (group, "auto"):
        encoder = _fitted(name, symmetry, original)
        with torch.no_grad():
            out, out_acted = encoder(original), encoder(moved)
            (h, e), (h_acted, e_acted) = encoder.encode(original), encoder.encode(moved)
        if group == "sign":  # negation is exact in floating point, and so is every step of the sign layers
            assert torch.equal(out, out_acted), symmetry
        assert (out - out_acted).abs().max() <= 1e-5 * out.abs().max() + 1e-6, symmetry
        assert torch.allclose(h_acted, h * q.unsqueeze(-1), atol=1e-4, rtol=1e-4)
        edge_factor = q[source] * q[target] if group == "sign" else q[target] / q[source]
        assert torch.allclose(e_acted, e * edge_factor.unsqueeze(-1), atol=1e-4, rtol=1e-4)
    # the permutation-only encoder is not invariant: the test above can fail
    encoder = _fitted(name, "permutation", original)
    with torch.no_grad():
        assert (encoder(original) - encoder(moved)).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(ENCODERS))
def test_sign_and_scale_combine_with_permutations_and_mixed_batches(name: str) -> None:
    models = [randomize(CASES[case][0](), seed) for seed, case in enumerate(CASES)]
    acted = []
    for seed, (model, case) in enumerate(zip(models, CASES)):
        other, _ = _act(model, CASES[case][1], 20 + seed)
        acted.append(_permuted(other, seed)[0])
    pad = PadEdgeFeatures((3, 3))
    original, moved = (Batch.from_data_list([pad(to_graph(m)) for m in ms]) for ms in (models, acted))
    encoder = _fitted(name, "auto", original)
    with torch.no_grad():
        out, out_moved = encoder(original), encoder(moved)
        alone = torch.cat([encoder(Batch.from_data_list([pad(to_graph(m))])) for m in models])
    assert torch.allclose(out, out_moved, atol=1e-4)
    assert torch.allclose(out, alone, atol=1e-4)


@pytest.mark.parametrize("symmetry", ["sign", "scale"])
@pytest.mark.parametrize("name", list(ENCODERS))
def test_outputs_still_see_weights_beyond_the_symmetry(name: str, symmetry: str) -> None:
    """Changing one weight, or one bias's magnitude, changes the output 100x above the symmetry's rounding."""
    case = "siren" if symmetry == "sign" else "relu-mlp"
    model = randomize(CASES[case][0](), 0)
    acted, _ = _act(model, symmetry, 1)
    one_weight, one_bias = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        one_weight[2].weight[1, 2] += 0.5
        one_bias[0].bias[3] *= 1.5
    graphs = [collate([to_graph(m)]) for m in (model, acted, one_weight, one_bias)]
    encoder = _fitted(name, symmetry, collate([to_graph(model), to_graph(one_weight)]))
    with torch.no_grad():
        out, out_acted, out_weight, out_bias = (encoder(g) for g in graphs)
    floor = max(float((out - out_acted).abs().max()), torch.finfo(out.dtype).eps * float(out.abs().max()))
    assert (out - out_weight).abs().max() > 100 * floor
    assert (out - out_bias).abs().max() > 100 * floor


def test_which_nodes_carry_the_symmetry() -> None:
    """Hand-counted: hidden nodes of the activation only; normalised or residual-tied ones are left alone."""
    graph = collate([to_graph(siren(hidden=(6, 5)))])
    assert int(symmetric_nodes(graph, SIGN_ACTIVATIONS).sum()) == 11
    assert int(symmetric_nodes(graph, SCALE_ACTIVATIONS).sum()) == 0
    mixed = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4),
                          nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    graph = collate([to_graph(mixed.eval())])
    assert int(symmetric_nodes(graph, SIGN_ACTIVATIONS).sum()) == 6
    assert int(symmetric_nodes(graph, SCALE_ACTIVATIONS).sum()) == 5  # not the 4 batch-normalised ones
    block = collate([to_graph(BasicBlock(3, 3, 1).eval())])
    assert int(symmetric_nodes(block, SCALE_ACTIVATIONS).sum()) == 0  # batch norm, residual ties


def test_canonical_scales_by_hand() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.0]]))
        model[0].bias.copy_(torch.tensor([4.0, 0.0]))  # the second neuron is dead
        model[2].weight.copy_(torch.tensor([[2.0, 7.0]]))
        model[2].bias.copy_(torch.tensor([0.0]))
    graph = collate([to_graph(model)])
    norms = canonical_scales(graph, symmetric_nodes(graph, SCALE_ACTIVATIONS))
    # inputs 1, 1; hidden 5 (= |(3, 0, 4)|) and 0; next |(2 * 5, 7 * 0, 0)| = 10; output 1
    assert norms.tolist() == [1.0, 1.0, 5.0, 0.0, 10.0, 1.0]


@pytest.mark.parametrize("symmetry", ["sign", "auto"])
@pytest.mark.parametrize("name", list(ENCODERS))
def test_symmetric_encoders_memorise_a_function_property(name: str, symmetry: str) -> None:
    """32 SIRENs 2-8-8-1 (with probes; projected ones under "auto"), label: the INR's value at the origin is
    positive (sign invariant)."""
    torch.manual_seed(0)
    models = [randomize(siren(hidden=(8, 8), w0=1.0), seed) for seed in range(32)]
    with torch.no_grad():
        labels = torch.tensor([float(m(torch.zeros(1, 2)).item() > 0) for m in models])
    assert 8 <= labels.sum() <= 24
    batch = collate([to_graph(m) for m in models])
    projection = 8 if symmetry == "auto" else None
    encoder = ENCODERS[name](symmetry, ProbeFeatures(GraphTemplate.from_module(models[0]), projection=projection))
    assert_memorises(encoder, batch, labels)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_projected_probes_keep_the_sign_invariance(name: str) -> None:
    models = [randomize(siren(hidden=(6, 5), w0=1.0), seed) for seed in range(3)]
    acted = [_permuted(_act(m, "sign", 30 + seed)[0], seed)[0] for seed, m in enumerate(models)]
    original, moved = collate([to_graph(m) for m in models]), collate([to_graph(m) for m in acted])
    torch.manual_seed(0)
    encoder = ENCODERS[name]("sign", ProbeFeatures(GraphTemplate.from_module(models[0]), projection=8))
    encoder(original)
    encoder = encoder.fit_statistics(original).eval()
    with torch.no_grad():
        out, out_moved = encoder(original), encoder(moved)
        near = collate([to_graph(randomize(siren(hidden=(6, 5), w0=1.0), seed + 3)) for seed in range(3)])
        assert (encoder(near) - out).abs().max() > 1e-3  # the output does move with the weights
    assert torch.allclose(out, out_moved, atol=1e-4)


def test_bad_symmetry_options() -> None:
    with pytest.raises(ValueError, match="symmetry must be one of"):
        GNNEncoder(2, symmetry="rotation")
    with pytest.raises(ValueError, match="generic path"):
        GNNEncoder(2, symmetry="sign", dense=True)
