"""EdgeUpdateConv: the dense fast path equals the generic scatter path, values and gradients."""

import pytest
import torch

from tests.models import DepthwiseNet, ResidualMLP
from wslgraph import GraphTemplate
from wslgraph.nn import EdgeUpdateConv, dense_plan
from wslgraph.nn.dense import DenseEdgeUpdate, FiLMMessageStats, sum_of_squares
from wslgraph.zoo import BasicBlock, siren, small_cnn


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm() / b.norm().clamp(min=1e-30)).detach())


@pytest.mark.parametrize("factory", [siren, small_cnn, lambda: BasicBlock(3, 4, 2), DepthwiseNet,
                                     lambda: ResidualMLP(4, 2, True)])
@pytest.mark.parametrize("options", [{}, {"bidirectional": False},
                                     {"aggregators": ("max", "std"), "scalers": ("identity",)},
                                     {"aggregators": ("min",), "scalers": ("attenuation", "identity")}])
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


@pytest.mark.parametrize("keys", [("sum", "squares", "max", "min"), ("max",), ("sum",), ("min", "sum")])
@pytest.mark.parametrize("shape", [(2, 1, 3, 4), (2, 3, 1, 1), (2, 2, 1, 3)])  # graphs, groups, m, k
def test_film_message_stats_gradients(keys, shape) -> None:
    """The fused backward against autograd's numerical gradients (float64)."""
    torch.manual_seed(1)
    channels = 3
    edges = torch.randn(*shape, channels, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4 * channels, channels, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4 * channels, dtype=torch.float64, requires_grad=True)
    graphs, groups, m, k = shape
    sources = (torch.randn(graphs, groups, 1, k, channels, dtype=torch.float64, requires_grad=True),
               torch.randn(graphs, groups, m, 1, channels, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(lambda e, w, b, s0, s1: FiLMMessageStats.apply(e, w, b, keys, s0, s1),
                                    (edges, weight, bias, *sources))


@pytest.mark.parametrize("shape", [(2, 1, 3, 4), (2, 3, 1, 1), (2, 2, 1, 3)])  # graphs, groups, m, k
def test_dense_edge_update_gradients_and_definition(shape) -> None:
    """The fused edge update against its autograd definition (values) and numerical gradients (float64)."""
    torch.manual_seed(4)
    channels = 3
    graphs, groups, m, k = shape
    options = {"dtype": torch.float64, "requires_grad": True}
    edges = torch.randn(*shape, channels, **options)[..., :]  # a view, as the first layer's split edge states
    sources, targets = torch.randn(graphs, groups, 1, k, channels, **options), torch.randn(graphs, groups, m, 1,
                                                                                          channels, **options)
    weights = [torch.randn(channels, channels, **options), torch.randn(channels, channels, **options),
               torch.randn(channels, **options), torch.randn(channels, **options), torch.randn(channels, **options)]
    inputs = (edges, sources, targets, *weights)
    lin, out_w, out_b, norm_w, norm_b = weights
    expected = torch.nn.functional.layer_norm(
        edges + torch.nn.functional.linear(torch.nn.functional.silu(edges @ lin.T + sources + targets), out_w, out_b),
        (channels,), norm_w, norm_b, 1e-5)
    torch.testing.assert_close(DenseEdgeUpdate.apply(*inputs, 1e-5), expected)
    assert torch.autograd.gradcheck(lambda *args: DenseEdgeUpdate.apply(*args, 1e-5), inputs)

def test_film_message_stats_forward_matches_its_definition() -> None:
    torch.manual_seed(2)
    edges, weight, bias = torch.randn(2, 1, 3, 4, 5), torch.randn(20, 5), torch.randn(20)
    sources = (torch.randn(2, 1, 1, 4, 5), torch.randn(2, 1, 3, 1, 5))
    stats = FiLMMessageStats.apply(edges, weight, bias, ("sum", "squares", "max", "min"), *sources)
    film = torch.nn.functional.linear(edges, weight, bias).split(5, dim=-1)
    for direction, source in enumerate(sources):
        message = (1 + film[2 * direction]) * source + film[2 * direction + 1]
        expected = [message.sum(3 - direction), message.square().sum(3 - direction),
                    message.amax(3 - direction), message.amin(3 - direction)]
        for got, want in zip(stats[4 * direction:4 * direction + 4], expected):
            torch.testing.assert_close(got, want)


def test_film_message_stats_split_the_gradient_of_tied_extremes_evenly() -> None:
    """Tied maxima/minima share their gradient evenly, as the generic path's scatter_reduce (and amax) do."""
    torch.manual_seed(3)
    graphs, groups, m, k, channels = 2, 1, 3, 4, 5
    edges = torch.randn(graphs, groups, m, 1, channels, dtype=torch.float64).expand(-1, -1, -1, k, -1)
    edges = edges.clone().requires_grad_()  # equal along the source axis (direction 0 reduces it)
    weight = torch.zeros(4 * channels, channels, dtype=torch.float64, requires_grad=True)  # exact ties: no products
    bias = torch.randn(4 * channels, dtype=torch.float64, requires_grad=True)
    sources = (torch.randn(graphs, groups, 1, 1, channels, dtype=torch.float64).expand(-1, -1, -1, k, -1)
               .clone().requires_grad_(),
               torch.randn(graphs, groups, m, 1, channels, dtype=torch.float64, requires_grad=True))
    inputs = (edges, weight, bias, *sources)
    upstream = [torch.randn(graphs, groups, m, channels, dtype=torch.float64) for _ in range(2)]

    def loss(stats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return sum((stat * grad).sum() for stat, grad in zip(stats, upstream))

    fused = torch.autograd.grad(loss(FiLMMessageStats.apply(edges, weight, bias, ("max", "min"), *sources)), inputs)
    film = torch.nn.functional.linear(edges, weight, bias).split(channels, dim=-1)
    message = (1 + film[0]) * sources[0] + film[1]
    assert bool((message == message.amax(3, keepdim=True)).all())  # every message ties
    reference = torch.autograd.grad(loss((message.amax(3), message.amin(3))), inputs, allow_unused=True)
    for got, want in zip(fused, reference):
        torch.testing.assert_close(got, torch.zeros_like(got) if want is None else want)

@pytest.mark.parametrize("axis", [2, 3])
def test_sum_of_squares_in_slices_equals_the_direct_form(axis: int) -> None:
    x = torch.randn(7, 2, 3, 5, 4, dtype=torch.float64)
    # one graph is 960 bytes: slices of 1 graph, of 2 (the last one short) and all 7 at once
    for slice_bytes in (1, 2000, 10**9):
        torch.testing.assert_close(sum_of_squares(x, axis, slice_bytes), (x * x).sum(axis), rtol=1e-12, atol=0)

def test_loaded_degree_statistic_is_used_and_an_unfitted_one_is_estimated_again() -> None:
    from wslgraph import GraphTemplate
    from wslgraph.nn import GNNEncoder
    from wslgraph.zoo import siren

    template = GraphTemplate.from_module(siren())
    batch = template.batch(torch.randn(4, template.num_params))
    fitted, fresh = GNNEncoder(3, hidden=8, num_layers=1), GNNEncoder(3, hidden=8, num_layers=1)
    fitted(batch)
    delta = float(fitted.layers[0].avg_log_degree)
    assert delta == delta  # estimated from the first batch
    fitted.layers[0].avg_log_degree.fill_(0.75)  # as if fitted on another zoo
    fresh(batch)
    fresh.load_state_dict(fitted.state_dict())
    fresh(batch)
    assert float(fresh.layers[0].avg_log_degree) == 0.75  # loaded, not re-estimated
    fresh.load_state_dict(GNNEncoder(3, hidden=8, num_layers=1).state_dict(), strict=False)
    fresh(batch)
    assert float(fresh.layers[0].avg_log_degree) == delta  # an unfitted (NaN) statistic is estimated again


def test_large_dense_blocks_go_in_chunks_of_target_rows_with_the_same_results(monkeypatch) -> None:
    """Above CHUNK_EDGES edges a dense block is processed in chunks of target rows: the node and edge states and
    the gradients are those of the whole block (up to the order of summation)."""
    from tests.models import randomize
    from wslgraph import GraphTemplate
    from wslgraph.nn import GNNEncoder, conv
    from wslgraph.zoo import small_cnn

    template = GraphTemplate.from_module(small_cnn(channels=8))
    rows = torch.stack([template.flatten(randomize(small_cnn(channels=8), s).state_dict()) for s in range(3)]) * 0.3
    batch = template.batch(rows)
    torch.manual_seed(0)
    encoder = GNNEncoder(3, hidden=16, num_layers=2)
    encoder.fit_statistics(batch)

    def run() -> tuple[torch.Tensor, ...]:
        encoder.zero_grad()
        out = encoder(batch)
        out.square().sum().backward()
        return out.detach(), *[p.grad.clone() for p in encoder.parameters() if p.grad is not None]

    whole = run()
    monkeypatch.setattr(conv, "CHUNK_EDGES", 40)  # 3 graphs x 8 x 3 edges per row: one target row per chunk
    chunked = run()
    assert len(whole) == len(chunked)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
