"""Input encodings: fitted normalization, positional embeddings, Fourier features."""

import pytest
import torch

from wslgraph import GraphTemplate, ShapeMismatchError
from wslgraph.graph import NodeType
from wslgraph.nn import FourierFeatures, ParamNormalizer, PositionalEmbedding
from wslgraph.zoo import small_cnn


def test_fitted_normalizer_standardises_each_layer() -> None:
    template = GraphTemplate.from_module(small_cnn(channels=4))
    params = torch.randn(64, template.num_params) * torch.linspace(0.1, 3.0, template.num_params) + 2.0
    batch = template.batch(params)
    normalizer = ParamNormalizer().fit([batch])
    assert bool(normalizer.fitted)
    x, edge_attr = normalizer(batch)
    edge_layer = batch.layer[batch.edge_index[1]]
    for layer in edge_layer.unique():
        values = edge_attr[edge_layer == layer]
        real = batch.edge_attr[edge_layer == layer] != 0
        assert abs(float(values[real].mean())) < 1e-4 and abs(float(values[real].std()) - 1) < 1e-2
        assert values[~real].abs().sum() == 0  # kernel padding stays 0
    biases = x[batch.x_mask[:, 0], 0]
    assert abs(float(biases.mean())) < 1e-3
    assert x[~batch.x_mask].abs().sum() == 0  # absent features stay 0


def test_positions_are_shared_by_hidden_nodes_of_a_layer_only() -> None:
    embedding = PositionalEmbedding(8, max_io=4, max_layers=4)
    node_type = torch.tensor([NodeType.INPUT, NodeType.INPUT, NodeType.HIDDEN, NodeType.HIDDEN, NodeType.OUTPUT])
    out = embedding(node_type, torch.tensor([0, 1, -1, -1, 0]), torch.tensor([0, 0, 1, 1, 2]))
    assert torch.equal(out[2], out[3]) and not torch.equal(out[0], out[1])
    with pytest.raises(ShapeMismatchError, match="max_layers"):
        embedding(node_type, torch.tensor([0, 1, -1, -1, 0]), torch.tensor([0, 0, 1, 9, 2]))


def test_fourier_features_shape_and_values() -> None:
    features = FourierFeatures(num_frequencies=3, scale=1.0)
    values = torch.tensor([[0.0, 0.5]])
    out = features(values)
    assert out.shape == (1, 2 * 7)
    assert out[0, 0] == 0 and torch.allclose(out[0, 4:7], torch.ones(3))  # value, sin(0)=0 x3, cos(0)=1 x3


def test_large_edge_sets_are_encoded_in_chunks_with_the_same_values_and_gradients(monkeypatch) -> None:
    """Above CHUNK_ELEMENTS Fourier values the edge encoder works chunk by chunk (recomputing under autograd):
    the outputs and the gradients are those of the one-shot encoding."""
    from wslgraph.nn import encodings

    torch.manual_seed(0)
    encoder = encodings.EdgeEncoder(8, FourierFeatures(4))
    edge_attr = torch.randn(50, 9, requires_grad=True)
    edge_type = torch.randint(0, 3, (50,))
    whole = encoder(edge_attr, edge_type)  # builds the lazy projection
    whole.square().sum().backward()
    grads = edge_attr.grad.clone(), encoder.project.weight.grad.clone()
    edge_attr.grad, encoder.project.weight.grad = None, None
    monkeypatch.setattr(encodings, "CHUNK_ELEMENTS", 9 * 9 * 7)  # 7 edges of 81 features per chunk
    chunked = encoder(edge_attr, edge_type)
    chunked.square().sum().backward()
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(edge_attr.grad, grads[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.project.weight.grad, grads[1], atol=1e-5, rtol=1e-5)
