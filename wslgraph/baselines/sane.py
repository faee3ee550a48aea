"""SANE (Schürholt et al., ICML 2024) as a harness model: the windowed token transformer and a head.

Rows standardised per tensor go through a :class:`~wslgraph.tokens.TokenTransformer`; the model embedding (the
mean of the token latents, window by window) goes through a head to the task's outputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from wslgraph.baselines.models import WeightSpaceModel
from wslgraph.graph.layout import GraphLayout
from wslgraph.nn.norm import GraphBatchNorm
from wslgraph.tokens.model import TokenTransformer

__all__ = ["SANE"]


class SANE(WeightSpaceModel):
    """SANE's windowed token transformer with a head; ``forward`` gives ``[B, out_dim]``.

    Args:
        out_dim: Outputs of the head.
        hidden, latent, heads, num_layers, window, token_width, dropout: Of the
            :class:`~wslgraph.tokens.TokenTransformer` (defaults ``128, 32, 4, 2, 64, 64, 0.0``).
        layout: The architecture (default: taken from the first batch).
    """

    def __init__(self, out_dim: int, hidden: int = 128, latent: int = 32, heads: int = 4, num_layers: int = 2,
                 window: int = 64, token_width: int = 64, dropout: float = 0.0,
                 layout: GraphLayout | None = None) -> None:
        self.options = {"hidden": hidden, "latent": latent, "heads": heads, "num_layers": num_layers,
                        "window": window, "token_width": token_width, "dropout": dropout}
        super().__init__(out_dim, layout)

    def build(self, layout: GraphLayout) -> None:
        self.transformer = TokenTransformer(layout, **self.options)
        hidden = self.options["hidden"]
        # batch norm over models keeps their differences at unit scale (as in the graph encoders' head: without
        # it the pooled embedding's model-to-model variation collapsed and training stalled near chance)
        self.head = nn.Sequential(nn.Linear(self.options["latent"], hidden, bias=False), GraphBatchNorm(hidden),
                                  nn.SiLU(), nn.Linear(hidden, self.out_dim))

    def compute(self, params: Tensor) -> Tensor:
        return self.head(self.transformer.embedding(params))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, " + ", ".join(f"{k}={v}" for k, v in self.options.items())
