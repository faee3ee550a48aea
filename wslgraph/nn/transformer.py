"""Relational attention over parameter graphs (NG-T style), on dense padded tensors."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from wslgraph.nn.init import reset_children

__all__ = ["RelationalAttention"]


class RelationalAttention(nn.Module):
    r"""A relational transformer layer: attention modulated by edge states, and edge updates.

    Every node attends to every node of its graph. The logit of the pair
    :math:`(i, j)` gets a per-head bias from the edge state
    :math:`e_{ij}` (the state of edge :math:`j \to i`, or a learned "no
    edge" state), and the edge state adds to the value:

    .. math::
        \alpha_{ij} &= \mathrm{softmax}_j\big(q_i^\top k_j / \sqrt{d} + b(e_{ij})\big) \\
        h'_i &= \mathrm{LN}\big(h_i + O \textstyle\sum_j \alpha_{ij} (v_j + U e_{ij})\big),
        \quad h''_i = \mathrm{LN}(h'_i + \mathrm{FFN}(h'_i)) \\
        e'_{ij} &= \mathrm{LN}\big(e_{ij} + W_2\,\sigma(A h''_i + B h''_j + C e_{ij})\big)

    Padding is masked properly (NG-T's public code leaves its mask commented
    out): padded nodes are never attended to, their own rows are zeroed, and
    padded pairs keep zero edge states, so padded content cannot change real
    outputs.

    Args:
        channels: Width of node and edge states.
        heads: Attention heads; must divide ``channels`` (default: ``4``).
        dropout: Dropout on attention weights and in the FFN (default: ``0.0``).
        node_bias: Learn a bias in the last node layer norm (default: ``True``;
            an encoder's last layer has none, see :class:`~wslgraph.nn.EdgeUpdateConv`).

    Shapes:
        ``h`` ``[B, n, C]``, ``e`` ``[B, n, n, C]`` (``e[b, i, j]`` belongs to
        the pair target ``i``, source ``j``), ``node_mask`` ``[B, n]`` (bool);
        returns updated ``h`` and ``e``.
    """

    def __init__(self, channels: int, heads: int = 4, dropout: float = 0.0, node_bias: bool = True) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"heads ({heads}) must divide channels ({channels})")
        self.channels, self.heads, self.dropout = channels, heads, dropout
        self.qkv = nn.Linear(channels, 3 * channels)
        self.edge_bias = nn.Linear(channels, heads)
        self.edge_value = nn.Linear(channels, channels, bias=False)
        self.out = nn.Linear(channels, channels)
        self.norm1, self.edge_norm = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels, bias=node_bias)
        self.ffn = nn.Sequential(nn.Linear(channels, 2 * channels), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(2 * channels, channels))
        self.edge_nodes = nn.Linear(channels, 2 * channels)
        self.edge_in = nn.Linear(channels, channels, bias=False)
        self.edge_out = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_children(self)

    def forward(self, h: Tensor, e: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
        batch, n, channels = h.shape
        heads, head_dim = self.heads, channels // self.heads
        q, k, v = self.qkv(h).view(batch, n, 3, heads, head_dim).unbind(2)
        logits = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(head_dim)
        logits = logits + self.edge_bias(e).permute(0, 3, 1, 2)
        keys = node_mask.view(batch, 1, 1, n)
        logits = logits.masked_fill(~keys, float("-inf"))
        rows = node_mask.view(batch, 1, n, 1)
        # a padded row has no real key: give it a finite row, then zero its output
        weights = torch.softmax(logits.masked_fill(~rows, 0.0), dim=-1) * rows
        weights = nn.functional.dropout(weights, self.dropout, self.training)
        values = torch.einsum("bhij,bjhd->bihd", weights, v).reshape(batch, n, channels)
        edge_values = torch.einsum("bhij,bijhd->bihd", weights,
                                   self.edge_value(e).view(batch, n, n, heads, head_dim)).reshape(batch, n, channels)
        real = node_mask.unsqueeze(-1)
        h = self.norm1(h + self.out(values + edge_values)) * real
        h = self.norm2(h + self.ffn(h)) * real
        target, source = self.edge_nodes(h).chunk(2, dim=-1)
        update = self.edge_out(nn.functional.silu(target.unsqueeze(2) + source.unsqueeze(1) + self.edge_in(e)))
        pairs = (node_mask.unsqueeze(2) & node_mask.unsqueeze(1)).unsqueeze(-1)
        return h, self.edge_norm(e + update) * pairs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, heads={self.heads})"
