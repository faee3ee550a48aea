"""SANE's windowed token transformer: windows agree with each other's bookkeeping, and the harness model learns."""

import torch
import torch.nn.functional as F

from tests.models import randomize
from wslgraph import GraphTemplate
from wslgraph.baselines import SANE
from wslgraph.tokens import TokenTransformer
from wslgraph.zoo import siren


def _rows(count: int) -> tuple[GraphTemplate, torch.Tensor]:
    template = GraphTemplate.from_module(siren(hidden=(8, 8)))
    return template, torch.stack([template.flatten(randomize(siren(hidden=(8, 8)), s).state_dict()) * 0.3
                                  for s in range(count)])


def test_windows_cover_the_sequence_and_the_embedding_is_the_mean_token_latent() -> None:
    template, rows = _rows(3)
    torch.manual_seed(0)
    model = TokenTransformer(template.layout, hidden=32, latent=8, window=5, token_width=4).eval()
    count = model.tokens.num_tokens  # 8 + 8 * 3 + 3 = 35 tokens
    assert count == 35 and [w.stop - w.start for w in model.windows()] == [5] * 7
    with torch.no_grad():
        latents = model.token_latents(rows)
        assert latents.shape == (3, 35, 8)
        assert torch.allclose(model.embedding(rows), latents.mean(1), atol=1e-6)
        layers = model.layer_embeddings(rows)
        assert layers.shape == (3, 3, 8) and torch.allclose(layers[:, 2], latents[:, -3:].mean(1), atol=1e-6)
        assert model.decode(latents).shape == rows.shape
        # a window sees only its own tokens: changing a parameter of the last layer leaves window 0 unchanged
        moved = rows.clone()
        moved[:, -1] += 1.0
        again = model.token_latents(moved)
        assert torch.equal(again[:, :5], latents[:, :5]) and not torch.equal(again[:, -5:], latents[:, -5:])


def test_sane_fits_random_labels_of_a_small_zoo() -> None:
    """A model that cannot fit a small training set is a bug: 24 SIRENs, random labels, full batch."""
    template, rows = _rows(24)
    labels = torch.randint(0, 2, (24,), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = SANE(2, hidden=32, latent=16, window=16, token_width=8, layout=template.layout)
    model.fit_statistics(rows)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = F.cross_entropy(model(rows), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert float(loss) < 0.05 and bool((model(rows).argmax(1) == labels).all())
