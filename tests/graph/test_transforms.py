"""Mixed-architecture batching: padding edge features to a common width."""

import pytest
import torch
from torch import nn

from tests.models import assert_state_dicts_equal, randomize
from wslgraph import ShapeMismatchError, collate, to_graph, to_state_dict
from wslgraph.graph import PadEdgeFeatures, common_kernel_grid
from wslgraph.zoo import BasicBlock, siren, small_cnn


def _models() -> list[tuple[nn.Module, tuple[int, ...] | None]]:
    return [
        (siren(), None),
        (siren(hidden=(8, 8, 8)), None),
        (small_cnn(kernel_size=3), None),
        (small_cnn(kernel_size=5, channels=4), None),
        (nn.Sequential(nn.Conv1d(2, 3, 4), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5, 2)), (2, 8)),
        (BasicBlock(3, 4, stride=2), None),
    ]


def test_mixed_architectures_batch_and_round_trip_per_graph() -> None:
    models = [(randomize(m, i), shape) for i, (m, shape) in enumerate(_models())]
    graphs = [to_graph(m, input_shape=shape) for m, shape in models]
    assert common_kernel_grid(graphs) == (5, 5)
    batch = collate(graphs)
    assert batch.num_graphs == len(graphs)
    assert batch.edge_attr.shape[1] == 25
    assert batch.scalars.shape == (len(graphs), 3)
    for state, (model, _) in zip(to_state_dict(batch), models):
        assert_state_dicts_equal(state, model.state_dict())


def test_padding_is_central_in_the_new_grid() -> None:
    graph = to_graph(nn.Sequential(nn.Conv2d(1, 1, 1, bias=False)))  # grid (1, 1)
    padded = PadEdgeFeatures((3, 3))(graph)
    expected = torch.zeros(9)
    expected[4] = graph.edge_attr[0, 0]
    assert torch.equal(padded.edge_attr[0], expected)
    # a 1-d kernel of size 2 into a (3, 4) grid: row 1, columns 1..2, as to_graph would place it
    conv1d = to_graph(nn.Sequential(nn.Conv1d(1, 1, 2, bias=False)))
    out = PadEdgeFeatures((3, 4))(conv1d).edge_attr[0].view(3, 4)
    assert out.count_nonzero() <= 2 and torch.equal(out[1, 1:3], conv1d.edge_attr[0])
    assert graph.edge_attr.shape == (1, 1)  # the transform does not modify its input


def test_padding_to_a_smaller_grid_is_an_error() -> None:
    with pytest.raises(ShapeMismatchError, match="smaller"):
        PadEdgeFeatures((1, 1))(to_graph(small_cnn()))
