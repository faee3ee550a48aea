"""GraphTemplate: zoo-scale conversion equals per-model conversion exactly."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch

from tests.models import DepthwiseNet, ResidualMLP, assert_state_dicts_equal, cnns, mlps, randomize
from wslgraph import GraphTemplate, ShapeMismatchError, to_graph, to_state_dict
from wslgraph.zoo import BasicBlock, siren, small_cnn, tiny_resnet

GRAPH_KEYS = ["x", "x_mask", "edge_index", "edge_attr", "edge_type", "node_type", "layer", "io_position",
              "activation", "scalars", "batch", "ptr"]


def _zoo(model: nn.Module, count: int) -> list[nn.Module]:
    import copy

    return [randomize(copy.deepcopy(model), seed) for seed in range(count)]


def _assert_batches_equal(actual: Batch, expected: Batch) -> None:
    for key in GRAPH_KEYS:
        assert actual[key].dtype == expected[key].dtype, key
        assert torch.equal(actual[key], expected[key]), key
    assert actual.layout == expected.layout
    assert actual.num_graphs == expected.num_graphs
    for key, slices in expected._slice_dict.items():
        assert torch.equal(actual._slice_dict[key], slices), key


def _check_template(model: nn.Module, input_shape: tuple[int, ...] | None, count: int = 4) -> None:
    models = _zoo(model, count)
    template = GraphTemplate.from_module(model, input_shape=input_shape)
    params = torch.stack([template.flatten(m.state_dict()) for m in models])
    batch = template.batch(params)
    graphs = [to_graph(m, input_shape=input_shape) for m in models]
    _assert_batches_equal(batch, Batch.from_data_list(graphs))
    assert torch.equal(template.unbatch(batch), params)
    for i, m in enumerate(models):  # the batch separates into the per-model graphs
        assert_state_dicts_equal(to_state_dict(batch.get_example(i)), m.state_dict())


@pytest.mark.parametrize("factory", [siren, small_cnn, tiny_resnet, lambda: BasicBlock(3, 5, 2),
                                     lambda: ResidualMLP(5, 2, True), DepthwiseNet])
def test_template_batch_equals_per_model_conversion(factory) -> None:
    _check_template(factory(), None)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.one_of(mlps(), cnns()))
def test_template_on_random_architectures(case: tuple) -> None:
    _check_template(*case, count=3)


def test_unflatten_inverts_flatten_and_dtypes_survive() -> None:
    model = randomize(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)).double())
    template = GraphTemplate.from_module(model)
    vector = template.flatten(model.state_dict())
    assert vector.dtype == torch.float64 and vector.shape == (template.num_params,)
    assert_state_dicts_equal(template.unflatten(vector), model.state_dict())


def test_template_shape_errors() -> None:
    template = GraphTemplate.from_module(siren())
    with pytest.raises(ShapeMismatchError, match=r"\[1185\]"):
        template.unflatten(torch.zeros(1184))
    with pytest.raises(ShapeMismatchError, match="unsqueeze"):
        template.batch(torch.zeros(1185))
    with pytest.raises(ShapeMismatchError, match=r"\[N, 1185\]"):
        template.batch(torch.zeros(3, 1000))
    with pytest.raises(ShapeMismatchError, match="missing"):
        template.flatten({"0.weight": torch.zeros(32, 2)})
    other = GraphTemplate.from_module(siren(hidden=(16, 16)))
    with pytest.raises(ShapeMismatchError, match="another architecture"):
        template.unbatch(other.batch(torch.zeros(2, other.num_params)))
    bad = small_cnn().state_dict()
    bad["0.weight"] = torch.zeros(16, 1, 5, 5)
    with pytest.raises(ShapeMismatchError, match="0.weight"):
        GraphTemplate.from_module(small_cnn()).flatten(bad)


def test_integer_buffer_exactness_is_checked() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    model[1].num_batches_tracked.fill_(2**30)
    template = GraphTemplate.from_module(model)
    with pytest.raises(ShapeMismatchError, match="num_batches_tracked"):
        template.flatten(model.state_dict())  # above 2**24, float32 cannot hold every integer
    vector = template.flatten(randomize(model).state_dict())
    keys = [entry.key for entry in template.layout.state]
    offset = sum(entry.numel for entry in template.layout.state[:keys.index("1.num_batches_tracked")])
    vector[offset] = 0.5
    with pytest.raises(ShapeMismatchError, match="non-integer"):
        template.unflatten(vector)
