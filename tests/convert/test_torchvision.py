"""torchvision's CNN families, as users build them: exact both ways, and a random hidden permutation computes the
same function. torchvision's model files are plain Python; ``wslgraph.testing.torchvision_models`` imports them
where ``import torchvision`` itself fails (its compiled operators do not load against the CPU wheel of torch)."""

from __future__ import annotations

import importlib

import pytest
import torch

from tests.models import assert_state_dicts_equal
from wslgraph import to_graph, to_state_dict
from wslgraph.errors import ShapeInferenceError
from wslgraph.graph.vocab import EdgeType
from wslgraph.testing import torchvision_models
from wslgraph.weightspace import permute_hidden

BUILDERS = torchvision_models()
pytestmark = pytest.mark.skipif(BUILDERS is None, reason="torchvision is not installed (pip install torchvision)")

# one or two per family; the largest (ResNet-50, VGG, AlexNet, ConvNeXt) are in benchmarks/convert.py
CONVERTED = ["resnet18", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1", "densenet121",
             "googlenet", "efficientnet_b0", "regnet_y_400mf", "shufflenet_v2_x0_5"]
SHAPE = (3, 48, 48)


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    model = BUILDERS[name](num_classes=10, **kwargs)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # biases and normalisation layers away from 0 and the identity, so that permuting matters
        for key, parameter in model.named_parameters():
            if key.endswith("bias"):
                parameter.normal_(0, 0.05, generator=generator)
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model.eval()


@pytest.mark.parametrize("name", CONVERTED)
def test_torchvision_cnns_convert_exactly_and_permute_without_changing_their_function(name: str) -> None:
    model = _build(name)
    graph = to_graph(model, input_shape=SHAPE).validate()
    assert_state_dicts_equal(to_state_dict(graph), model.state_dict())
    permuted = permute_hidden(model, torch.Generator().manual_seed(2), input_shape=SHAPE).eval()
    moved = sum(not torch.equal(v, permuted.state_dict()[k]) for k, v in model.state_dict().items())
    assert moved > len(model.state_dict()) // 2, f"only {moved} tensors moved"
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x)
        assert expected.abs().max() > 1e-3
        torch.testing.assert_close(permuted(x), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_a_torchvision_vision_transformer_converts_exactly_and_permutes_without_changing_its_function() -> None:
    """torchvision's own VisionTransformer class, small (ViT-B/16 at 224 x 224 would be a 90 GB graph here: every
    edge is padded to the 16 x 16 patch kernel)."""
    vision_transformer = importlib.import_module("torchvision.models.vision_transformer")
    torch.manual_seed(0)
    model = vision_transformer.VisionTransformer(image_size=16, patch_size=4, num_layers=2, num_heads=2,
                                                 hidden_dim=8, mlp_dim=16, num_classes=10).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(parameter.numel()))
    shape = (3, 16, 16)
    graph = to_graph(model, input_shape=shape).validate()
    assert_state_dicts_equal(to_state_dict(graph), model.state_dict())
    assert sum(b.kind == EdgeType.ATTENTION_HEAD for b in graph.layout.edge_blocks) == 2
    permuted = permute_hidden(model, torch.Generator().manual_seed(2), input_shape=shape).eval()
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, permuted.state_dict()[k])]
    assert "class_token" in moved and "encoder.pos_embedding" in moved and len(moved) >= 30, moved
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(permuted(x), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    with pytest.raises(ShapeInferenceError, match="pass input_shape"):
        to_graph(model)
