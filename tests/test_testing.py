"""permute_hidden: same function, isomorphic graph; broken permutations are caught."""

import networkx as nx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from tests.models import DepthwiseNet, ResidualMLP, cnns, mlps, randomize
from wslgraph import to_graph, to_networkx
from wslgraph.weightspace import permute_hidden
from wslgraph.zoo import BasicBlock, siren, small_cnn, tiny_resnet


def _outputs_match(model: nn.Module, input_shape: tuple[int, ...], seed: int) -> nn.Module:
    model = model.double()  # float64: sin(30 x) of random weights amplifies float32 reordering error
    generator = torch.Generator().manual_seed(seed)
    permuted = permute_hidden(model, generator, input_shape=input_shape)
    inputs = torch.randn(5, *input_shape, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        expected, actual = model(inputs), permuted(inputs)
    assert torch.allclose(actual, expected, rtol=1e-9, atol=1e-9)
    return permuted


@pytest.mark.parametrize("factory, shape", [
    (siren, (2,)), (small_cnn, (1, 12, 12)), (tiny_resnet, (3, 12, 12)), (lambda: BasicBlock(3, 6, 2), (3, 8, 8)),
    (lambda: ResidualMLP(6, 2, True), (3,)), (DepthwiseNet, (3, 6, 6)),
])
def test_permuted_models_compute_the_same_function(factory, shape) -> None:
    for seed in range(3):
        model = randomize(factory(), seed)
        permuted = _outputs_match(model, shape, seed)
        moved = [k for k, v in model.state_dict().items() if not torch.equal(v, permuted.state_dict()[k])]
        assert moved, "the permutation left every parameter in place"



@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.one_of(mlps(), cnns()), st.integers(0, 2**16))
def test_permutation_invariance_on_random_architectures(case: tuple, seed: int) -> None:
    model, shape = case
    _outputs_match(randomize(model, seed), shape, seed)


def _isomorphic(a: nn.Module, b: nn.Module) -> bool:
    def node_match(u: dict, v: dict) -> bool:
        return u == v

    def edge_match(u: dict, v: dict) -> bool:  # multigraph: compare the bags of parallel edges
        return sorted(map(repr, u.values())) == sorted(map(repr, v.values()))

    return nx.is_isomorphic(to_networkx(to_graph(a)), to_networkx(to_graph(b)), node_match=node_match,
                            edge_match=edge_match)


@pytest.mark.parametrize("factory", [lambda: siren(hidden=(4, 5)), lambda: small_cnn(channels=3, num_layers=2),
                                     lambda: BasicBlock(2, 3, 2), lambda: ResidualMLP(3, 1, True)])
def test_permuted_graphs_are_isomorphic(factory) -> None:
    model = randomize(factory(), 7)
    permuted = permute_hidden(model, torch.Generator().manual_seed(3))
    assert _isomorphic(model, permuted)


def test_a_non_equivalent_permutation_is_not_isomorphic() -> None:
    model = randomize(siren(hidden=(4, 5)), 7)
    broken = randomize(siren(hidden=(4, 5)), 7)
    with torch.no_grad():  # permute the rows of W1 and b1 but not the columns of W2
        broken[0].weight.copy_(broken[0].weight[[1, 0, 2, 3]])
        broken[0].bias.copy_(broken[0].bias[[1, 0, 2, 3]])
    assert not _isomorphic(model, broken)
    # moving an input is not a symmetry either: inputs are ordered
    swapped = randomize(siren(hidden=(4, 5)), 7)
    with torch.no_grad():
        swapped[0].weight.copy_(swapped[0].weight[:, [1, 0]])
    assert not _isomorphic(model, swapped)
