"""Bit-exact round trips over randomly drawn architectures."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from tests.models import DepthwiseNet, ResidualMLP, assert_state_dicts_equal, cnns, mlps, randomize
from wslgraph import GraphTemplate, to_graph, to_state_dict
from wslgraph.zoo import BasicBlock, siren, small_cnn, tiny_resnet

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.filter_too_much])


def _check_round_trip(model: nn.Module, input_shape: tuple[int, ...] | None, seed: int) -> None:
    randomize(model, seed)
    graph = to_graph(model, input_shape=input_shape).validate()
    assert_state_dicts_equal(to_state_dict(graph), model.state_dict())
    template = GraphTemplate.from_module(model, input_shape=input_shape)
    vector = template.flatten(model.state_dict())
    assert_state_dicts_equal(template.unflatten(vector), model.state_dict())


@SETTINGS
@given(mlps(), st.integers(0, 2**16))
def test_random_mlps_round_trip_exactly(case: tuple, seed: int) -> None:
    _check_round_trip(*case, seed)


@SETTINGS
@given(cnns(), st.integers(0, 2**16))
def test_random_cnns_round_trip_exactly(case: tuple, seed: int) -> None:
    _check_round_trip(*case, seed)


def test_mixed_kernel_sizes_in_one_net() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, (5, 1), padding=(2, 0)), nn.ReLU(), nn.Conv2d(3, 3, 2), nn.ReLU(),
                          nn.Conv2d(3, 4, (1, 3)), nn.Flatten(), nn.Linear(4 * 5 * 4, 2))
    _check_round_trip(model, (2, 6, 7), 1)
    assert to_graph(model, input_shape=(2, 6, 7)).layout.kernel_grid == (5, 4)


def test_built_in_and_residual_architectures_round_trip() -> None:
    for seed, (model, shape) in enumerate([(siren(), None), (small_cnn(), None), (tiny_resnet(), None),
                                           (BasicBlock(3, 6, stride=2), None), (ResidualMLP(4, 2, True), None),
                                           (DepthwiseNet(), None)]):
        _check_round_trip(model, shape, seed)


def test_mixed_dtypes_round_trip() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    model[0].half()
    graph = to_graph(randomize(model))
    assert graph.x.dtype == torch.float32  # promoted, and cast back exactly
    assert_state_dicts_equal(to_state_dict(graph), model.state_dict())
