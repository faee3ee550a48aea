"""GraphBatchNorm: batch normalisation of per-graph features (the encoders' head)."""

import torch
from torch import nn

from wslgraph.nn import GraphBatchNorm


def _pair(channels: int = 6) -> tuple[GraphBatchNorm, nn.BatchNorm1d]:
    ours, reference = GraphBatchNorm(channels), nn.BatchNorm1d(channels)
    with torch.no_grad():
        for module in (ours, reference):
            module.weight.copy_(torch.linspace(0.5, 2.0, channels))
            module.bias.copy_(torch.linspace(-1.0, 1.0, channels))
    return ours, reference


def test_training_and_evaluation_match_batchnorm1d() -> None:
    ours, reference = _pair()
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # values, gradients and running statistics, step by step
        x = (torch.randn(9, 6, generator=generator) * 2 + 3).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        weights = torch.randn(9, 6, generator=generator)
        out, expected = ours(x), reference(x_ref)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
        (out * weights).sum().backward()
        (expected * weights).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.running_mean, reference.running_mean)
        torch.testing.assert_close(ours.running_var, reference.running_var)
    ours.eval(), reference.eval()
    x = torch.randn(4, 6, generator=generator) + 3
    torch.testing.assert_close(ours(x), reference(x))


def test_a_spread_small_against_the_shared_part_is_normalised_as_in_float64() -> None:
    """Pooled graph features are a small spread on a large shared part: the statistics take two passes."""
    ours, _ = _pair()
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(1)) * 1e-3 + 100.0
    exact = (x.double() - x.double().mean(0)) / (x.double().var(0, unbiased=False) + ours.eps).sqrt()
    expected = exact * ours.weight.double() + ours.bias.double()
    torch.testing.assert_close(ours(x).double(), expected, rtol=0, atol=0.02)


def test_a_single_graph_in_training_uses_and_keeps_the_running_statistics() -> None:
    ours, _ = _pair()
    ours(torch.randn(5, 6) * 3 + 1)
    mean, var = ours.running_mean.clone(), ours.running_var.clone()
    x = torch.randn(1, 6)
    out = ours(x)
    assert torch.equal(ours.running_mean, mean) and torch.equal(ours.running_var, var)
    ours.eval()
    torch.testing.assert_close(out, ours(x))


def test_half_precision_input_is_normalised_in_float32() -> None:
    ours, _ = _pair()
    x = torch.randn(8, 6) + 100.0  # bfloat16 cannot resolve a spread of 1 around 100 in its own arithmetic
    out = ours(x.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ours(x.bfloat16().float()))
    assert repr(ours) == "GraphBatchNorm(6)"



def test_recompute_batch_norm_sets_the_exact_average_of_the_batch_statistics() -> None:
    from wslgraph.nn import recompute_batch_norm

    model = nn.Sequential(nn.Linear(3, 4), GraphBatchNorm(4), nn.SiLU(), nn.Linear(4, 1)).eval()
    norm = model[1]
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 3, generator=generator) * 3 + 1 for n in (7, 5, 9, 1)]  # a last batch of one graph
    assert recompute_batch_norm(model, batches) == 4
    features = [model[0](x).detach() for x in batches[:3]]  # the lone graph changes nothing, as in training
    torch.testing.assert_close(norm.running_mean, torch.stack([f.mean(0) for f in features]).mean(0))
    torch.testing.assert_close(norm.running_var, torch.stack([f.var(0) for f in features]).mean(0))
    assert not model.training and norm.momentum == 0.1  # mode and momentum restored
    # the same batches again give the same statistics: nothing of the old estimates is left
    before = norm.running_mean.clone()
    recompute_batch_norm(model, batches)
    torch.testing.assert_close(norm.running_mean, before)
    assert all(p.grad is None for p in model.parameters())
    assert recompute_batch_norm(nn.Linear(3, 1), batches) == 0  # no norm: nothing passed
