"""SANE's windowed token transformer (Schürholt et al., ICML 2024), over the tokens of one architecture.

:class:`TokenTransformer` embeds each token linearly and adds its 3-D position (index in the sequence, layer,
index within the layer) as sinusoidal features; windows of ``window`` consecutive tokens go through a transformer
encoder and are compressed to a ``latent``-wide vector per token, and a decoder (another transformer) maps token
latents back to tokens. A model's embedding is the mean of its tokens' latents over all its windows, computed
window by window, so memory grows with the window, not with the model. Inputs are flat parameter rows in
standardised units (the users standardise: :class:`~wslgraph.baselines.SANE` per tensor,
:class:`~wslgraph.represent.TokenRepresentation` likewise).

Positions are sinusoidal, not learned tables: a deeper or wider network than any seen in training has positions
the model can embed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from wslgraph.graph.layout import GraphLayout
from wslgraph.tokens.sequence import TokenTemplate

__all__ = ["TokenTransformer", "SinusoidalPositions"]


class SinusoidalPositions(nn.Module):
    """Sinusoidal features of each of the ``[..., 3]`` integer position components (``frequencies`` sin/cos
    pairs each, periods from 2 to ``max_period``), mapped linearly to ``dim``."""

    def __init__(self, dim: int, frequencies: int = 16, max_period: float = 10_000.0) -> None:
        super().__init__()
        exponents = torch.arange(frequencies, dtype=torch.float64) / max(frequencies - 1, 1)
        self.register_buffer("rates", (2 * math.pi / (2 * max_period**exponents)).float())
        self.project = nn.Linear(3 * 2 * frequencies, dim)

    def forward(self, positions: Tensor) -> Tensor:
        angles = positions.unsqueeze(-1).to(self.rates.dtype) * self.rates  # [..., 3, F]
        return self.project(torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2))


def _transformer(hidden: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class TokenTransformer(nn.Module):
    """Encoder and decoder of windows of one architecture's tokens (see the module docstring).

    Args:
        layout: The architecture.
        hidden: Transformer width (default: ``128``).
        latent: Width of each token's latent (default: ``32``).
        heads: Attention heads (default: ``4``).
        num_layers: Encoder layers; the decoder has as many (default: ``2``).
        window: Tokens per window (default: ``64``; SANE: 256 for ResNets).
        token_width: Values per token (default: ``64``; SANE: 288 for ResNets).
        dropout: Transformer dropout (default: ``0.0``).

    Shapes:
        standardised rows ``[B, P]`` -> embeddings ``[B, latent]``, token latents ``[B, T, latent]``.
    """

    def __init__(self, layout: GraphLayout, hidden: int = 128, latent: int = 32, heads: int = 4, num_layers: int = 2,
                 window: int = 64, token_width: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        if window < 1 or token_width < 1 or latent < 1 or hidden % heads:
            raise ValueError(f"need window, token_width, latent >= 1 and hidden divisible by heads; got "
                             f"window={window}, token_width={token_width}, latent={latent}, hidden={hidden}, "
                             f"heads={heads}")
        self.window, self.latent = window, latent
        self.tokens = TokenTemplate(layout, token_width)
        self.embed_tokens = nn.Linear(token_width, hidden)
        self.positions = SinusoidalPositions(hidden)
        self.encoder = _transformer(hidden, heads, num_layers, dropout)
        self.to_latent = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, latent))
        self.from_latent = nn.Linear(latent, hidden)
        self.decoder = _transformer(hidden, heads, num_layers, dropout)
        self.to_tokens = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, token_width))

    def windows(self, start: int = 0, stop: int | None = None) -> list[slice]:
        """Consecutive windows of at most ``window`` tokens covering ``[start, stop)``."""
        stop = self.tokens.num_tokens if stop is None else stop
        return [slice(a, min(a + self.window, stop)) for a in range(start, stop, self.window)]

    def encode_window(self, tokens: Tensor, part: slice) -> Tensor:
        """Latents ``[B, n, latent]`` of the window ``part`` given its tokens ``[B, n, W]``."""
        positions = self.tokens.positions[part].to(tokens.device)
        return self.to_latent(self.encoder(self.embed_tokens(tokens) + self.positions(positions)))

    def decode_window(self, latents: Tensor, part: slice) -> Tensor:
        """Tokens ``[B, n, W]`` (padding values included) of the window ``part`` from its latents."""
        positions = self.tokens.positions[part].to(latents.device)
        return self.to_tokens(self.decoder(self.from_latent(latents) + self.positions(positions)))

    def token_latents(self, rows: Tensor) -> Tensor:
        """Every token's latent ``[B, T, latent]``, window by window."""
        tokens = self.tokens.tokenize(rows).tokens
        return torch.cat([self.encode_window(tokens[:, part], part) for part in self.windows()], dim=1)

    def embedding(self, rows: Tensor) -> Tensor:
        """The model embedding ``[B, latent]``: the mean of its tokens' latents. Windows are encoded one at a
        time, so peak memory is that of one window (plus the running sum) when no gradient is kept."""
        tokens = self.tokens.tokenize(rows).tokens
        total = None
        for part in self.windows():
            summed = self.encode_window(tokens[:, part], part).sum(dim=1)
            total = summed if total is None else total + summed
        return total / self.tokens.num_tokens

    def layer_embeddings(self, rows: Tensor) -> Tensor:
        """Per layer the mean of its tokens' latents: ``[B, layers, latent]``."""
        latents = self.token_latents(rows)
        return torch.stack([latents[:, part].mean(dim=1) for part in self.tokens.layer_slices()], dim=1)

    def decode(self, latents: Tensor) -> Tensor:
        """Rows ``[B, P]`` from token latents ``[B, T, latent]``, window by window."""
        tokens = torch.cat([self.decode_window(latents[:, part], part) for part in self.windows()], dim=1)
        return self.tokens.rows(tokens)
