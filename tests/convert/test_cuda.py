"""CUDA agrees with CPU exactly (skipped without a GPU)."""

import pytest
import torch

from tests.models import DepthwiseNet, assert_state_dicts_equal, randomize
from wslgraph import GraphTemplate, collate, to_graph, to_state_dict
from wslgraph.weightspace import permute_hidden
from wslgraph.zoo import siren, small_cnn, tiny_resnet

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
KEYS = ["x", "x_mask", "edge_index", "edge_attr", "edge_type", "node_type", "layer", "io_position", "activation",
        "scalars"]


@pytest.mark.parametrize("factory", [siren, small_cnn, tiny_resnet, DepthwiseNet])
def test_template_on_cuda_equals_cpu(factory) -> None:
    template = GraphTemplate.from_module(factory())
    params = torch.randn(64, template.num_params, generator=torch.Generator().manual_seed(0))
    cpu, gpu = template.batch(params), template.batch(params.cuda())
    for key in KEYS + ["batch", "ptr"]:
        assert gpu[key].is_cuda, key
        assert torch.equal(gpu[key].cpu(), cpu[key]), key
    assert torch.equal(template.unbatch(gpu).cpu(), params)


@pytest.mark.parametrize("factory", [small_cnn, tiny_resnet, DepthwiseNet])
def test_to_graph_of_a_cuda_model(factory) -> None:
    model = randomize(factory())
    graph = to_graph(model.cuda()).validate()
    reference = to_graph(model.cpu())
    for key in KEYS:
        assert graph[key].is_cuda and torch.equal(graph[key].cpu(), reference[key]), key
    state = to_state_dict(graph)
    assert all(v.is_cuda for v in state.values())
    assert_state_dicts_equal({k: v.cpu() for k, v in state.items()}, model.cpu().state_dict())


def test_permute_hidden_and_collate_on_cuda() -> None:
    model = randomize(tiny_resnet()).double().cuda()
    permuted = permute_hidden(model, torch.Generator().manual_seed(1))
    inputs = torch.randn(3, 3, 16, 16, dtype=torch.float64, device="cuda")
    with torch.no_grad():
        assert torch.allclose(model(inputs), permuted(inputs), atol=1e-9)
    batch = collate([to_graph(randomize(siren()).cuda()), to_graph(randomize(small_cnn()).cuda())])
    assert batch.edge_attr.is_cuda and batch.edge_attr.shape[1] == 9
