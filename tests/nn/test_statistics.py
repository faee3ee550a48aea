"""``statistics=True``: the encoders' head also reads StatNN's weight statistics s(W), standardised on the
training models; invariant to permutations (and to ReLU scaling under "scale"), saved and loaded with the model."""

import pytest
import torch
from torch import nn

from tests.models import assert_memorises, randomize
from tests.nn.test_encoders import _permuted
from tests.nn.test_symmetric import _act
from wslgraph import GraphTemplate, collate, to_graph
from wslgraph.errors import ShapeMismatchError
from wslgraph.nn import GNNEncoder, TransformerEncoder
from wslgraph.weightspace import statnn_features
from wslgraph.zoo import small_cnn

ENCODERS = {
    "gnn": lambda **kw: GNNEncoder(2, hidden=16, num_layers=2, statistics=True, **kw),
    "transformer": lambda **kw: TransformerEncoder(2, hidden=16, num_layers=2, statistics=True, **kw),
}


def _cnns(count: int, seed: int = 0) -> list[nn.Module]:
    return [randomize(small_cnn(channels=4, num_layers=2), seed + i) for i in range(count)]


@pytest.mark.parametrize("name", list(ENCODERS))
def test_statistics_are_standardised_s_w_and_invariant(name: str) -> None:
    torch.manual_seed(0)
    models = _cnns(6)
    template = GraphTemplate.from_module(models[0])
    params = torch.stack([template.flatten(m.state_dict()) for m in models])
    batch = template.batch(params)
    encoder = ENCODERS[name]()
    encoder(batch)
    encoder.fit_statistics(batch)
    encoder.eval()
    by_hand = statnn_features(params, template.layout)
    expected = (by_hand - by_hand.mean(0)) / by_hand.std(0)
    torch.testing.assert_close(encoder.weight_statistics(batch), expected, atol=1e-5, rtol=1e-5)
    assert encoder.stat_mean.shape == (7 * len(template.layout.state),)
    # the head reads them: its input is the readout plus 7 features per tensor
    plain = GNNEncoder(2, hidden=16, num_layers=2) if name == "gnn" else TransformerEncoder(2, hidden=16,
                                                                                           num_layers=2)
    assert encoder.pool(batch).shape[1] == plain.pool(batch).shape[1] + expected.shape[1]
    with torch.no_grad():
        out = encoder(batch)
        permuted = collate([to_graph(_permuted(m, 7 + i)[0]) for i, m in enumerate(models)])
        torch.testing.assert_close(encoder(permuted), out, atol=1e-4, rtol=1e-4)
        # s(W) is not scale invariant, so "permutation" sees a rescaled ReLU channel; "scale" does not
        scaled = collate([to_graph(_act(m, "scale", 20 + i)[0]) for i, m in enumerate(models)])
        assert (encoder.weight_statistics(scaled) - encoder.weight_statistics(batch)).abs().max() > 1e-2
        canonical = ENCODERS[name](symmetry="scale")
        canonical(batch)
        canonical.fit_statistics(batch)
        canonical.eval()
        torch.testing.assert_close(canonical(scaled), canonical(batch), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_statistics_survive_save_and_load_and_refuse_other_architectures(name: str) -> None:
    models = _cnns(4)
    batch = collate([to_graph(m) for m in models])
    encoder = ENCODERS[name]()
    encoder(batch)
    encoder.fit_statistics(batch)
    encoder.eval()
    fresh = ENCODERS[name]()  # never run: the checkpoint sizes its statistics (and its lazy layers)
    fresh.load_state_dict(encoder.state_dict())
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(batch), encoder(batch))
    other = collate([to_graph(randomize(small_cnn(channels=4, num_layers=3), 0))])
    with pytest.raises(ShapeMismatchError, match="one architecture"):
        encoder.weight_statistics(other)
    with pytest.raises(ValueError, match="statistics=True"):
        GNNEncoder(2, hidden=8).weight_statistics(batch)
    for symmetry in ("sign", "auto"):
        with pytest.raises(ValueError, match="statistics=True with symmetry"):
            ENCODERS[name](symmetry=symmetry)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_statistics_encoders_memorise_a_weight_property(name: str) -> None:
    """32 ReLU CNNs, label: the first convolution's mean weight is above the zoo's median."""
    torch.manual_seed(0)
    models = _cnns(32)
    means = torch.stack([m[0].weight.mean() for m in models])
    labels = (means > means.median()).float()
    batch = collate([to_graph(m) for m in models])
    encoder = ENCODERS[name]()
    assert_memorises(encoder, batch, labels)


def test_column_moments_is_the_standardisation_every_fit_stores() -> None:
    from wslgraph.baselines import StatNN
    from wslgraph.convert.template import column_moments

    features = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, -2.0], [5.0, 5.0, 0.0]])
    mean, std = column_moments(features)
    torch.testing.assert_close(mean, torch.tensor([3.0, 5.0, 0.0]))
    torch.testing.assert_close(std, torch.tensor([2.0, 1e-8, 2.0]))  # a constant column divides by 1e-8, not 0
    mean, std = column_moments(features[:1])
    torch.testing.assert_close(mean, features[0])
    torch.testing.assert_close(std, torch.ones(3))  # one model: no spread to divide by
    # StatNN and the encoders' s(W) store exactly these
    models = _cnns(5)
    template = GraphTemplate.from_module(models[0])
    params = torch.stack([template.flatten(m.state_dict()) for m in models])
    batch = template.batch(params)
    expected = column_moments(statnn_features(params, template.layout))
    statnn = StatNN(2)
    statnn(batch)
    statnn.fit_statistics(batch)
    encoder = ENCODERS["gnn"]()
    encoder(batch)
    encoder.fit_statistics(batch)
    for got in ((statnn.feature_mean, statnn.feature_std), (encoder.stat_mean, encoder.stat_std)):
        torch.testing.assert_close(got[0], expected[0])
        torch.testing.assert_close(got[1], expected[1])
