"""ParamGraph.validate(), summary() and the networkx export."""

import networkx as nx
import pytest
import torch
from torch import nn

from tests.models import DepthwiseNet
from wslgraph import InvalidGraphError, NonFiniteError, to_graph, to_networkx
from wslgraph.convert import trace
from wslgraph.graph.layout import GraphLayout
from wslgraph.zoo import BasicBlock, siren, small_cnn


def test_validate_accepts_converted_graphs() -> None:
    graph = to_graph(BasicBlock(3, 4, 2))
    assert graph.validate() is graph


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_validate_rejects_non_finite_weights_and_names_the_layer(value: float) -> None:
    model = small_cnn()
    with torch.no_grad():
        model[2].weight[3, 1, 0, 0] = value
    with pytest.raises(NonFiniteError, match="'2.weight'"):
        to_graph(model).validate()
    assert to_graph(model).validate(check_finite=False) is not None


def test_validate_rejects_non_finite_bias() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].bias[1] = float("nan")
    with pytest.raises(NonFiniteError, match="node group '0'"):
        to_graph(model).validate()


@pytest.mark.parametrize("corrupt, message", [
    (lambda g: setattr(g, "edge_index", g.edge_index + 1000), "outside"),
    (lambda g: setattr(g, "x", g.x[:, :3]), "x must have shape"),
    (lambda g: setattr(g, "edge_type", g.edge_type[:-1]), "'edge_type' must have shape"),
    (lambda g: setattr(g, "activation", g.activation + 50), "Activation vocabulary"),
    (lambda g: delattr(g, "x_mask"), "missing tensor attribute 'x_mask'"),
    (lambda g: setattr(g, "layout", None), "no 'layout'"),
    (lambda g: setattr(g, "edge_attr", g.edge_attr[:, :4]), "kernel grid"),
])
def test_validate_rejects_malformed_graphs(corrupt, message: str) -> None:
    graph = to_graph(small_cnn())
    corrupt(graph)
    with pytest.raises(InvalidGraphError, match=message):
        graph.validate()


def test_summary_lists_groups_and_blocks() -> None:
    text = to_graph(BasicBlock(3, 4, 2)).summary()
    assert text.startswith("ParamGraph: 15 nodes (8 hidden, 3 input, 4 output), 44 edges (40 conv, 4 residual)")
    assert "residual        downsample.0 -> conv2: 4 edges" in text
    assert "conv1" in text and "kernel 3x3" in text


def test_to_networkx_keeps_node_and_edge_attributes() -> None:
    graph = to_graph(BasicBlock(2, 2))
    result = to_networkx(graph)
    assert isinstance(result, nx.MultiDiGraph)
    assert result.number_of_nodes() == graph.num_nodes and result.number_of_edges() == graph.num_edges
    assert result.nodes[4]["x"] == graph.x[4].tolist() and result.nodes[4]["node_type"] == 2
    src, dst = graph.edge_index[:, 9].tolist()
    assert list(result[src][dst].values())[0]["edge_type"] == 3


@pytest.mark.parametrize("factory", [siren, small_cnn, lambda: BasicBlock(3, 4, 2), DepthwiseNet])
def test_layout_json_round_trip(factory) -> None:
    import json

    layout = trace(factory())[0]
    assert GraphLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout


def test_layout_from_malformed_dict() -> None:
    with pytest.raises(InvalidGraphError, match="GraphLayout.to_dict"):
        GraphLayout.from_dict({"groups": []})
    with pytest.raises(InvalidGraphError, match="unknown dtype"):
        GraphLayout.from_dict({**trace(siren())[0].to_dict(), "dtype": "float77"})
