"""EdgeUpdateConv: the dense fast path equals the generic scatter path, values and gradients."""

import pytest
import torch

from tests.models import DepthwiseNet, ResidualMLP
from wslgraph import GraphTemplate
from wslgraph.nn import EdgeUpdateConv, dense_plan
from wslgraph.zoo import BasicBlock, siren, small_cnn


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm() / b.norm().clamp(min=1e-30)).detach())


@pytest.mark.parametrize("factory", [siren, small_cnn, lambda: BasicBlock(3, 4, 2), DepthwiseNet,
                                     lambda: ResidualMLP(4, 2, True)])
@pytest.mark.parametrize("options", [{}, {"bidirectional": False}, {"aggregators": ("max", "std"),
                                                                     "scalers": ("identity",)}])
def test_dense_path_equals_generic_path(factory, options) -> None:
    torch.manual_seed(0)
    template = GraphTemplate.from_module(factory())
    batch = template.batch(torch.randn(3, template.num_params))
    plan = dense_plan(template.layout)
    assert plan.matches(batch.edge_index, 3)
    layer = EdgeUpdateConv(8, **options).double()
    torch.nn.init.normal_(layer.film.weight, std=0.3)  # non-trivial FiLM
    h = torch.randn(batch.num_nodes, 8, dtype=torch.float64, requires_grad=True)
    e = torch.randn(batch.num_edges, 8, dtype=torch.float64, requires_grad=True)
    results = []
    for path in (plan, None):
        h_out, e_out = layer(h, e, batch.edge_index, path)
        loss = (h_out.sin().sum() + e_out.cos().sum())
        grads = torch.autograd.grad(loss, [h, e, *layer.parameters()])
        results.append((h_out, e_out, grads))
    (hd, ed, gd), (hg, eg, gg) = results
    assert _relative(hd, hg) <= 1e-5 and _relative(ed, eg) <= 1e-5
    for dense_grad, generic_grad in zip(gd, gg):
        assert _relative(dense_grad, generic_grad) <= 1e-5


def test_plan_rejects_a_reordered_batch() -> None:
    template = GraphTemplate.from_module(siren())
    batch = template.batch(torch.randn(2, template.num_params))
    plan = dense_plan(template.layout)
    assert not plan.matches(batch.edge_index.flip(1), 2)
    assert not plan.matches(batch.edge_index, 3)


def test_conv_repr_and_bad_options() -> None:
    assert repr(EdgeUpdateConv(8, bidirectional=False)).startswith("EdgeUpdateConv(8, aggregators=")
    with pytest.raises(ValueError, match="subset"):
        EdgeUpdateConv(8, aggregators=("median",))
