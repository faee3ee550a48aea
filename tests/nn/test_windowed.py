"""A windowed graph encoder: exactly the whole-graph encoder with one window, invariant with many."""

import torch

from tests.models import randomize
from wslgraph import GraphTemplate
from wslgraph.nn import GNNEncoder, TransformerEncoder, WindowedEncoder
from wslgraph.weightspace import hidden_permutations, permute_state_dict
from wslgraph.zoo import resnet


def _zoo(count: int) -> tuple[GraphTemplate, torch.Tensor]:
    template = GraphTemplate.from_module(resnet(18, width=4, num_classes=10), input_shape=(3, 32, 32))
    rows = torch.stack([template.flatten(randomize(resnet(18, width=4, num_classes=10), s).state_dict())
                        for s in range(count)])
    floats = torch.tensor([e.dtype.is_floating_point for e in template.layout.state]).repeat_interleave(
        torch.tensor([e.numel for e in template.layout.state]))
    return template, torch.where(floats, rows * 0.2, rows)  # small weights; counters stay integers


def test_one_window_is_the_whole_graph_encoder() -> None:
    template, rows = _zoo(3)
    torch.manual_seed(0)
    encoder = GNNEncoder(4, hidden=16, num_layers=2)
    windowed = WindowedEncoder(encoder, size=100)
    batch = template.batch(rows)
    windowed.fit_statistics(batch)
    windowed.eval()
    with torch.no_grad():
        assert len(windowed.windows(template.layout)) == 1
        torch.testing.assert_close(windowed(batch), encoder(batch), atol=1e-5, rtol=1e-5)


def test_windowed_encoders_are_invariant_to_hidden_permutations() -> None:
    template, rows = _zoo(2)
    perms = hidden_permutations(template.layout, torch.Generator().manual_seed(5))
    moved = torch.stack([template.flatten(permute_state_dict(template.layout, template.unflatten(r), perms))
                         for r in rows])
    assert not torch.equal(moved, rows)
    for encoder in (GNNEncoder(4, hidden=16, num_layers=2), TransformerEncoder(4, hidden=16, num_layers=1)):
        torch.manual_seed(0)
        windowed = WindowedEncoder(encoder, size=4)
        windowed.fit_statistics(template.batch(rows))
        windowed.eval()
        with torch.no_grad():
            assert len(windowed.windows(template.layout)) == 5
            out, out_moved = windowed(template.batch(rows)), windowed(template.batch(moved))
        torch.testing.assert_close(out_moved, out, atol=1e-4, rtol=1e-4)
        assert (out[0] - out[1]).abs().max() > 1e-4  # and it still tells networks apart
