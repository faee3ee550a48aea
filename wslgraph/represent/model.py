"""A hyper-representation: an encoder of parameter graphs, a decoder back to the zoo's parameters, and the
self-supervised objective that trains both (Schürholt et al., NeurIPS 2021/2022).

The encoder is any wslgraph graph encoder whose graph-level output is the
latent vector (``GNNEncoder``, ``TransformerEncoder``); with the
permutation-invariant encoders the embedding is exactly invariant to hidden
neuron permutations, which the token-based originals only learn from
augmentations. The decoder is an MLP from the latent to the zoo's flat
parameter vector, in per-layer standardised units.

Loss per model: ``gamma * NT-Xent(view 1, view 2) + (1 - gamma) * MSE`` of
both views' reconstructions of the original model, with each layer's values
standardised by the training zoo's per-layer mean and std (so every layer
counts by its size, not its scale). Views: Gaussian noise, random erasing of
weights and (optionally) hidden permutations, drawn from a counter kept in the
state dict, so a resumed run draws what an uninterrupted one draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wslgraph.convert.template import GraphTemplate
from wslgraph.graph.layout import GraphLayout
from wslgraph.weightspace.augment import Compose, GaussianNoise, RandomHiddenPermutation, WeightDropout
from wslgraph.weightspace.views import batch_params

__all__ = ["HyperRepresentation", "nt_xent"]


def nt_xent(a: Tensor, b: Tensor, temperature: float = 0.1) -> Tensor:
    """SimCLR's NT-Xent per pair ``[B]``: row ``i`` of ``a`` and of ``b`` are two views of one model, every other
    row of both is a negative; each pair's loss is the mean of its two anchors' cross-entropies."""
    count = a.shape[0]
    z = F.normalize(torch.cat([a, b]), dim=-1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * count, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(count, 2 * count), torch.arange(count)]).to(z.device)
    losses = F.cross_entropy(logits, target, reduction="none")
    return (losses[:count] + losses[count:]) / 2


class HyperRepresentation(nn.Module):
    """Encoder + decoder of one architecture's parameters (see the module docstring).

    Args:
        layout: The zoo's architecture (``ZooDataset.arrays.layout``).
        encoder: A graph encoder whose ``forward(batch)`` gives ``[B, latent]``
            (build it with ``out_dim=latent``).
        latent: Its output size.
        gamma: Weight of the contrastive term (the rest is reconstruction).
        temperature: NT-Xent temperature.
        noise: Gaussian noise per view, in units of each tensor's std.
        erase: Probability of zeroing each weight in a view.
        permute: Also permute hidden neurons in each view (no effect on an
            invariant encoder's latent; for encoders that are not invariant).
        decoder_hidden: Width of the decoder's two hidden layers.
        projection: Width of the contrastive projection head.
        seed: Seed of the views.
    """

    def __init__(self, layout: GraphLayout, encoder: nn.Module, latent: int, *, gamma: float = 0.5,
                 temperature: float = 0.1, noise: float = 0.05, erase: float = 0.05, permute: bool = False,
                 decoder_hidden: int = 256, projection: int = 64, seed: int = 0) -> None:
        super().__init__()
        if not 0 <= gamma <= 1 or temperature <= 0 or noise < 0 or not 0 <= erase < 1:
            raise ValueError(f"need 0 <= gamma <= 1, temperature > 0, noise >= 0 and 0 <= erase < 1; got gamma="
                             f"{gamma}, temperature={temperature}, noise={noise}, erase={erase}")
        self.layout, self.encoder, self.latent = layout, encoder, latent
        self.gamma, self.temperature, self.noise, self.erase, self.permute = gamma, temperature, noise, erase, permute
        self.seed = seed
        num_params = layout.num_params
        self.decoder = nn.Sequential(nn.Linear(latent, decoder_hidden), nn.GELU(),
                                     nn.Linear(decoder_hidden, decoder_hidden), nn.GELU(),
                                     nn.Linear(decoder_hidden, num_params))
        self.projector = nn.Sequential(nn.Linear(latent, projection), nn.GELU(), nn.Linear(projection, projection))
        self.register_buffer("param_mean", torch.zeros(num_params))
        self.register_buffer("param_std", torch.ones(num_params))
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self._template = GraphTemplate(layout)

    # --- statistics -------------------------------------------------------------------------------------------------
    def fit_statistics(self, batches: object) -> HyperRepresentation:
        """Per-layer mean and std of the training parameters (the reconstruction's units) and the encoder's own
        statistics, from a few training batches."""
        batches = list(batches)
        rows = torch.cat([batch_params(b)[0] for b in batches])
        for entry in self.layout.state:
            span = self.layout.span(entry.key)
            values = rows[:, span].float()
            self.param_mean[span] = values.mean()
            self.param_std[span] = values.std().clamp_min(1e-8) if values.numel() > 1 else 1.0
        if hasattr(self.encoder, "fit_statistics"):
            self.encoder.fit_statistics(batches)
        return self

    # --- the maps ---------------------------------------------------------------------------------------------------
    def embed(self, batch: object) -> Tensor:
        """Latent vectors ``[B, latent]`` of a batch of parameter graphs."""
        return self.encoder(batch)

    def decode(self, latent: Tensor) -> Tensor:
        """Flat parameters ``[B, P]`` (the zoo's order and units) from latent vectors."""
        return self.decoder(latent) * self.param_std + self.param_mean

    def reconstruct(self, batch: object) -> Tensor:
        """``decode(embed(batch))``."""
        return self.decode(self.embed(batch))

    def _view(self, rows: Tensor, seed: int) -> Tensor:
        parts = [GaussianNoise(self.layout, self.noise, seed)] if self.noise else []
        if self.erase:
            parts.append(WeightDropout(self.layout, self.erase, seed + 1))
        if self.permute:
            parts.append(RandomHiddenPermutation(self.layout, seed + 2))
        return Compose(parts)(rows) if parts else rows

    def forward(self, batch: object) -> Tensor:
        """Each model's loss ``[B]``: two fresh views in training mode; in eval mode both views are the models
        themselves (a deterministic validation loss)."""
        rows = batch_params(batch)[0]
        if self.training:
            base = self.seed * 1_000_003 + 4 * int(self.draws)
            self.draws += 1
            views = [self._view(rows, base), self._view(rows, base + 3)]
            graphs = [self._template.batch(v.to(rows.device)) for v in views]
            latents = [self.embed(g) for g in graphs]
        else:  # one view: the model itself, decoded and projected once
            latents = [self.embed(batch)]
        recon = sum(self._errors(z, rows) for z in latents) / len(latents)
        if self.gamma == 0 or rows.shape[0] < 2:
            return recon
        projected = [self.projector(z) for z in latents]
        contrast = nt_xent(projected[0], projected[-1], self.temperature)
        return self.gamma * contrast + (1 - self.gamma) * recon

    def _errors(self, latent: Tensor, rows: Tensor) -> Tensor:
        """Per model: MSE of the decoded ``latent`` against ``rows`` in per-layer standardised units."""
        return ((self.decoder(latent) - (rows - self.param_mean) / self.param_std) ** 2).mean(dim=1)

    def reconstruction_error(self, batch: object) -> Tensor:
        """Per model: the decoder's MSE in per-layer standardised units (the loss's reconstruction term)."""
        return self._errors(self.embed(batch), batch_params(batch)[0])

    def extra_repr(self) -> str:
        return (f"latent={self.latent}, gamma={self.gamma}, temperature={self.temperature}, noise={self.noise}, "
                f"erase={self.erase}, permute={self.permute}, params={self.layout.num_params}")
