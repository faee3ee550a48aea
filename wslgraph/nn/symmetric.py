r"""Symmetries beyond permutation: sign flips of odd neurons and positive scaling of ReLU neurons (ScaleGMN).

A hidden neuron :math:`i` with an odd activation (sine, tanh) computes the same network with its incoming weights
and bias negated and its outgoing weights negated; a ReLU (or leaky ReLU) neuron with its incoming weights and
bias multiplied by :math:`c > 0` and its outgoing weights divided by :math:`c`. On a parameter graph both act
per node: :math:`b_i \to q_i b_i` and :math:`w_{ji} \to q_i w_{ji} / q_j` (for a sign, :math:`q = \pm 1`, so
:math:`1/q_j = q_j`), with :math:`q = 1` on every node that has no such symmetry.

wslgraph's encoders build these in two ways (Kalogeropoulos et al., ScaleGMN, NeurIPS 2024, discuss both):

- **scale**, by canonicalisation. Each ReLU neuron is rescaled, in topological order, so that its incoming
  weights and bias have norm 1 (:func:`canonical_scales`, :func:`canonicalize`). Every rescaled copy of a network
  has the same canonical form (to float rounding), so any permutation-equivariant encoder applied to it is
  invariant; node and edge outputs are multiplied back by the norms, so they transform like the weights.
  Normalisation makes the form continuous except at dead neurons (norm 0), whose outgoing weights it zeroes: the
  function does not depend on them.
- **sign**, by equivariant layers (:class:`SignEquivariantConv`, :class:`SignRelationalAttention`). A canonical
  sign would jump where a neuron's bias crosses zero, so instead every state of a sign-symmetric node is an *odd*
  function of its inputs: node states transform as :math:`h_i \to q_i h_i` and edge states as
  :math:`e_{ji} \to q_j q_i e_{ji}`. Messages are products :math:`e_{ji} \odot W h_j` (sign :math:`q_i`), edge
  updates add :math:`P h_j \odot Q h_i` (sign :math:`q_j q_i`), nonlinearities are gates
  :math:`z \odot \sigma(g)` whose :math:`g` reads only invariants (absolute values of linear maps, spreads), layer
  norms have no bias (so they are odd), and max/min aggregation becomes :math:`(\max + \min)/2` (odd) and
  :math:`(\max - \min)/2` (invariant). Nodes without the symmetry (inputs, outputs, other activations) also get
  unconstrained terms, multiplied by :math:`1 - s_i`.

Which nodes are symmetric is read from the graph (:func:`symmetric_nodes`): hidden nodes with the activation, no
normalisation parameters (only a bias) and no residual edge (a residual addition ties two neurons' signs and
scales together).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import Linear

from wslgraph.graph.vocab import IDENTITY_EDGES, Activation, NodeFeature, NodeType
from wslgraph.nn.backend import index_count, scatter
from wslgraph.nn.conv import degree_factors, forget_delta
from wslgraph.nn.init import reset_children

__all__ = ["SYMMETRIES", "SIGN_ACTIVATIONS", "SCALE_ACTIVATIONS", "symmetric_nodes", "canonical_scales",
           "canonicalize", "SignInputEncoder", "SignEquivariantConv", "SignRelationalAttention"]

SYMMETRIES = ("permutation", "sign", "scale", "auto")
SIGN_ACTIVATIONS = (Activation.SINE, Activation.TANH, Activation.HARDTANH)  # odd functions
SCALE_ACTIVATIONS = (Activation.RELU, Activation.LEAKY_RELU)
_EPS = 1e-5


def check_symmetry(symmetry: str) -> str:
    if symmetry not in SYMMETRIES:
        raise ValueError(f"symmetry must be one of {SYMMETRIES}, got {symmetry!r}")
    return symmetry


def symmetric_nodes(batch: object, activations: Sequence[Activation]) -> Tensor:
    """Which nodes of a batch carry the sign (or scale) symmetry of ``activations``: ``[num_nodes]`` bool.

    Hidden nodes whose activation is one of ``activations``, with no parameter other than a bias and no residual
    edge in or out.
    """
    hidden = batch.node_type == int(NodeType.HIDDEN)
    kinds = torch.tensor([int(a) for a in activations], device=batch.activation.device)
    only_bias = ~batch.x_mask[:, NodeFeature.BIAS + 1:].any(-1)
    identity = torch.tensor([int(kind) for kind in IDENTITY_EDGES], device=batch.edge_type.device)
    residual = batch.edge_index[:, torch.isin(batch.edge_type, identity)]  # residual, concatenation and gate ties
    tied = index_count(residual.reshape(-1), batch.x.shape[0]) > 0
    return hidden & torch.isin(batch.activation, kinds) & only_bias & ~tied


def canonical_scales(batch: object, scalable: Tensor) -> Tensor:
    r"""The norm of each scalable neuron's incoming weights and bias, in canonical units: ``[num_nodes]``.

    With :math:`n_j = 1` for other nodes, :math:`n_i = \lVert (w_{ji} n_j)_j, b_i \rVert` for scalable ``i``,
    computed layer by layer (sources first). Rescaling neuron :math:`i` by :math:`c` multiplies :math:`n_i` by
    :math:`c`, so :math:`w_{ji} n_j / n_i` and :math:`b_i / n_i` do not change.
    """
    source, target = batch.edge_index
    squares = batch.edge_attr.pow(2).sum(-1)
    bias = batch.x[:, NodeFeature.BIAS] * batch.x_mask[:, NodeFeature.BIAS]
    norms = torch.ones_like(bias)
    if not bool(scalable.any()):
        return norms
    # a node's norm is exact once its sources' are: one round per layer of depth
    for _ in range(int(batch.layer.max()) + 1):
        incoming = scatter(squares * norms[source].pow(2), target, norms.shape[0], "sum")
        norms = torch.where(scalable, torch.sqrt(incoming + bias.pow(2)), torch.ones_like(norms))
    return norms


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` with 0 where the denominator is 0 (dead neurons)."""
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))


def canonicalize(batch: object, norms: Tensor) -> object:
    """A shallow copy of ``batch`` with weights and biases in canonical units (``x`` and ``edge_attr`` replaced)."""
    source, target = batch.edge_index
    out = copy.copy(batch)
    out.edge_attr = batch.edge_attr * _ratio(norms[source], norms[target]).unsqueeze(-1).to(batch.edge_attr.dtype)
    scale = torch.ones_like(batch.x)
    scale[:, NodeFeature.BIAS] = _ratio(torch.ones_like(norms), norms)
    out.x = batch.x * scale.to(batch.x.dtype)
    return out


def restore_scales(h: Tensor, e: Tensor, edge_index: Tensor, norms: Tensor) -> tuple[Tensor, Tensor]:
    """Node and edge states of the canonical graph, transformed back like biases and weights (equivariant)."""
    source, target = edge_index
    return h * norms.unsqueeze(-1).to(h.dtype), e * _ratio(norms[target], norms[source]).unsqueeze(-1).to(e.dtype)


def _rms(normalizer: nn.Module) -> tuple[Tensor, Tensor]:
    """Per-layer root mean squares of weights and node features from a fitted :class:`ParamNormalizer`."""
    edge = torch.sqrt(normalizer.edge_mean.pow(2) + normalizer.edge_std.pow(2))
    node = torch.sqrt(normalizer.node_mean.pow(2) + normalizer.node_std.pow(2))
    return edge.clamp(min=1e-8), node.clamp(min=1e-8)


def _odd_even(values: Tensor, frequencies: Tensor) -> tuple[Tensor, Tensor]:
    """Odd ``[v, sin(2 pi b v)]`` and even ``[|v|, cos(2 pi b v)]`` features of every entry of the last dim."""
    angles = 2 * math.pi * values.unsqueeze(-1) * frequencies.to(values.dtype)
    odd = torch.cat([values.unsqueeze(-1), torch.sin(angles)], dim=-1).flatten(-2)
    even = torch.cat([values.abs().unsqueeze(-1), torch.cos(angles)], dim=-1).flatten(-2)
    return odd, even


class SignInputEncoder(nn.Module):
    r"""Initial node and edge states that flip sign with their nodes (see the module docstring).

    Weights and node features are divided by their per-layer root mean square (a constant, so signs survive; the
    permutation encoders also subtract the mean). A node starts at
    :math:`h_i = A\,o_i \odot (1 + g_i) + (1 - s_i)(F o_i + g_i)` with odd features :math:`o_i` (the bias, its sines,
    probe activations) and the invariant gate :math:`g_i` (cosines, absolute values, activation and position
    embeddings); an edge at :math:`e_{ji} = A' o_{ji} \odot (1 + g_{ji})` likewise, with the edge-type
    embedding in its gate.
    """

    def __init__(self, dim: int, fourier: nn.Module, position: nn.Module, num_activations: int,
                 num_edge_types: int) -> None:
        super().__init__()
        self.fourier, self.position = fourier, position
        self.node_odd = Linear(-1, dim, bias=False)
        self.node_even = Linear(-1, dim)
        self.node_free = Linear(-1, dim)
        self.activation = nn.Embedding(num_activations, dim)
        self.edge_odd = Linear(-1, dim, bias=False)
        self.edge_even = Linear(-1, dim)
        self.edge_type = nn.Embedding(num_edge_types, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.node_odd, self.node_even, self.node_free, self.edge_odd, self.edge_even):
            lin.reset_parameters()
        for table in (self.activation, self.edge_type):
            nn.init.normal_(table.weight, std=0.02)
        self.position.reset_parameters()

    def forward(self, batch: object, normalizer: nn.Module, sign: Tensor,
                extra: Tensor | None = None) -> tuple[Tensor, Tensor]:
        edge_rms, node_rms = _rms(normalizer)
        x = batch.x / node_rms[batch.layer].to(batch.x.dtype) * batch.x_mask
        edge_attr = batch.edge_attr / edge_rms[batch.layer[batch.edge_index[1]]].unsqueeze(-1).to(batch.x.dtype)
        frequencies = self.fourier.frequencies
        odd, even = _odd_even(x, frequencies)
        if extra is not None:  # probe activations: odd in the node's sign
            odd, even = torch.cat([odd, extra], dim=-1), torch.cat([even, extra.abs()], dim=-1)
        gate = (self.node_even(torch.cat([even, batch.x_mask.to(x.dtype)], dim=-1)) + self.activation(batch.activation)
                + self.position(batch.node_type, batch.io_position, batch.layer))
        free = (~sign).unsqueeze(-1).to(x.dtype)
        h = self.node_odd(odd) * (1 + gate) + free * (self.node_free(odd) + gate)
        edge_odd, edge_even = _odd_even(edge_attr, frequencies)
        e = self.edge_odd(edge_odd) * (1 + self.edge_even(edge_even) + self.edge_type(batch.edge_type))
        return h, e


class SignEquivariantConv(nn.Module):
    r"""A message-passing layer equivariant to sign flips of the nodes in ``sign`` (and to permutations).

    For a message from :math:`j` to :math:`i`, with :math:`|\cdot|` of linear maps as invariants:

    .. math::
        e'_{ji} &= \mathrm{LN}_0\big(e_{ji} + W_2[P h_j \odot Q h_i + C e_{ji} \odot
                   \sigma(G_s|R h_j| + G_t|R h_i| + G_e|T e_{ji}|)]\big) \\
        m_{ji} &= e'_{ji} \odot W h_j \odot (1 + \gamma(|T' e'_{ji}|)) \\
        z_i &= A[h_i, \textstyle\bigoplus_{s} s(d_i)\,\mathrm{odd}(m_{\cdot i})], \quad
        u_i = [|z_i|, |R h_i|, \textstyle\bigoplus_s s(d_i)\,\mathrm{inv}(m_{\cdot i})] \\
        h'_i &= \mathrm{LN}_0\big(h_i + O(z_i \odot \sigma(G u_i)) + (1 - s_i) F u_i\big)

    where :math:`\mathrm{LN}_0` is a layer norm without bias (odd), odd aggregations are mean, sum and
    :math:`(\max + \min)/2`, invariant ones std and :math:`(\max - \min)/2`, and :math:`s(d_i)` are PNA's degree
    scalers. With ``bidirectional`` nodes also receive :math:`e'_{ji} \odot W' h_i` along reversed edges.

    Args:
        channels, aggregators, scalers, bidirectional, dropout: As for :class:`~wslgraph.nn.EdgeUpdateConv`.

    Shapes:
        node states ``[num_nodes, C]``, edge states ``[num_edges, C]``, ``edge_index`` ``[2, num_edges]``,
        ``sign`` ``[num_nodes]`` (bool); returns updated node and edge states.
    """

    def __init__(self, channels: int, aggregators: Sequence[str], scalers: Sequence[str],
                 bidirectional: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.channels, self.aggregators, self.scalers = channels, tuple(aggregators), tuple(scalers)
        self.bidirectional, self.dropout = bidirectional, dropout
        directions = 2 if bidirectional else 1
        self._odd = [a for a in ("mean", "sum") if a in aggregators] + (["mid"] if {"max", "min"} & set(aggregators)
                                                                         else [])
        self._inv = (["std"] if "std" in aggregators else []) + (["spread"] if {"max", "min"} & set(aggregators)
                                                                  else [])
        c = channels
        self.invariant = nn.Linear(c, c, bias=False)  # R
        self.edge_nodes = nn.Linear(c, 2 * c, bias=False)  # P, Q
        self.edge_self = nn.Linear(c, c, bias=False)  # C
        self.edge_gate_nodes = nn.Linear(c, 2 * c)  # G_s, G_t
        self.edge_invariant = nn.Linear(c, c, bias=False)  # T
        self.edge_gate = nn.Linear(c, c, bias=False)  # G_e
        self.edge_out = nn.Linear(c, c, bias=False)  # W_2
        self.edge_norm = nn.LayerNorm(c, bias=False)
        self.message = nn.Linear(c, directions * c, bias=False)  # W (and W')
        self.message_invariant = nn.Linear(c, c, bias=False)  # T'
        self.message_gate = nn.Linear(c, directions * c)  # gamma
        scaled = directions * len(self.scalers) * c
        self.node_odd = nn.Linear(c + len(self._odd) * scaled, c, bias=False)  # A
        invariants = 2 * c + len(self._inv) * scaled
        self.node_gate = nn.Linear(invariants, c)  # G
        self.node_free = nn.Linear(invariants, c)  # F
        self.node_out = nn.Linear(c, c, bias=False)  # O
        self.node_norm = nn.LayerNorm(c, bias=False)
        self.register_buffer("avg_log_degree", torch.tensor(float("nan")))  # PNA's delta, as EdgeUpdateConv
        self._delta_known = False
        self.register_load_state_dict_post_hook(forget_delta)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_children(self)
        with torch.no_grad():
            self.message_gate.weight.zero_()  # unmodulated messages at the start
            self.message_gate.bias.zero_()
        self.avg_log_degree.fill_(float("nan"))
        self._delta_known = False

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor, sign: Tensor) -> tuple[Tensor, Tensor]:
        source, target = edge_index
        num_nodes = h.shape[0]
        node_invariants = self.invariant(h).abs()
        p, q = self.edge_nodes(h).chunk(2, dim=-1)
        gate_source, gate_target = self.edge_gate_nodes(node_invariants).chunk(2, dim=-1)
        edge_gate = torch.sigmoid(gate_source[source] + gate_target[target]
                                  + self.edge_gate(self.edge_invariant(e).abs()))
        e = self.edge_norm(e + self.edge_out(p[source] * q[target] + self.edge_self(e) * edge_gate))
        gamma = self.message_gate(self.message_invariant(e).abs()).chunk(2 if self.bidirectional else 1, dim=-1)
        messages = self.message(h).chunk(2 if self.bidirectional else 1, dim=-1)
        odd, inv = [h], [node_invariants]
        routes = [(messages[0][source], target, gamma[0])]
        if self.bidirectional:
            routes.append((messages[1][target], source, gamma[1]))
        for sent, receiver, film in routes:
            m = e * sent * (1 + film)
            degree = index_count(receiver, num_nodes)
            factors = degree_factors(self, degree, m.dtype).unsqueeze(-1)  # [N, S, 1]
            odd_parts, inv_parts = self._aggregate(m, receiver, num_nodes, degree)
            odd.append((factors * torch.cat(odd_parts, -1).unsqueeze(1)).flatten(1))
            if inv_parts:
                inv.append((factors * torch.cat(inv_parts, -1).unsqueeze(1)).flatten(1))
        z = self.node_odd(torch.cat(odd, dim=-1))
        u = torch.cat([z.abs()] + inv, dim=-1)
        update = self.node_out(nn.functional.dropout(z * torch.sigmoid(self.node_gate(u)), self.dropout,
                                                     self.training))
        free = (~sign).unsqueeze(-1).to(h.dtype)
        return self.node_norm(h + update + free * self.node_free(u)), e

    def _aggregate(self, m: Tensor, receiver: Tensor, num_nodes: int, degree: Tensor) -> tuple[list, list]:
        total = scatter(m, receiver, num_nodes, "sum")
        count = degree.clamp(min=1).to(m.dtype).unsqueeze(-1)
        odd, inv = [], []
        for name in self._odd:
            if name == "sum":
                odd.append(total)
            elif name == "mean":
                odd.append(total / count)
        if "mid" in self._odd:
            high, low = scatter(m, receiver, num_nodes, "max"), scatter(m, receiver, num_nodes, "min")
            odd.append((high + low) / 2)
        if "std" in self._inv:
            mean = total / count
            squares = scatter(m * m, receiver, num_nodes, "sum") / count
            inv.append(torch.sqrt((squares - mean * mean).clamp(min=0) + _EPS))
        if "spread" in self._inv:
            inv.append((high - low) / 2)
        return odd, inv

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.channels}, aggregators={self.aggregators}, scalers={self.scalers}, "
                f"bidirectional={self.bidirectional})")


class SignRelationalAttention(nn.Module):
    r"""Relational attention equivariant to sign flips of the nodes in ``sign`` (and to permutations).

    Attention weights read invariants only; values are pair products, which carry the target's sign:

    .. math::
        \alpha_{ij} &= \mathrm{softmax}_j\big(q_i^\top k_j/\sqrt d + b(|T e_{ij}|) + [\text{no edge}]\,b_0\big),
        \quad q, k \text{ from } |R h| \\
        h'_i &= \mathrm{LN}_0\big(h_i + O \textstyle\sum_j \alpha_{ij}\, U e_{ij} \odot V h_j\big), \quad
        h''_i = \mathrm{LN}_0\big(h'_i + L_2(z \odot \sigma(G[|z|, |R h'_i|])) + (1 - s_i) F[|z|, |R h'_i|]\big),
        \ z = L_1 h'_i \\
        e'_{ij} &= \mathrm{LN}_0\big(e_{ij} + W_2[A h''_i \odot B h''_j + C e_{ij} \odot
                   \sigma(G_i|R h''_i| + G_j|R h''_j| + G_e|T e_{ij}|)]\big)

    Pairs without an edge start at zero and become products of their endpoints after the first layer.

    Shapes:
        ``h`` ``[B, n, C]``, ``e`` ``[B, n, n, C]``, ``node_mask``, ``sign`` ``[B, n]`` (bool), ``present``
        ``[B, n, n]`` (bool, an edge exists); returns updated ``h`` and ``e``.
    """

    def __init__(self, channels: int, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"heads ({heads}) must divide channels ({channels})")
        c = channels
        self.channels, self.heads, self.dropout = channels, heads, dropout
        self.invariant = nn.Linear(c, c, bias=False)
        self.qk = nn.Linear(c, 2 * c)
        self.edge_invariant = nn.Linear(c, c, bias=False)
        self.edge_bias = nn.Linear(c, heads)
        self.no_edge_bias = nn.Parameter(torch.zeros(heads))
        self.pair_value = nn.Linear(c, c, bias=False)  # U
        self.node_value = nn.Linear(c, c, bias=False)  # V
        self.out = nn.Linear(c, c, bias=False)
        self.norm1, self.norm2, self.edge_norm = (nn.LayerNorm(c, bias=False) for _ in range(3))
        self.ffn_in = nn.Linear(c, 2 * c, bias=False)
        self.ffn_gate = nn.Linear(3 * c, 2 * c)
        self.ffn_free = nn.Linear(3 * c, c)
        self.ffn_out = nn.Linear(2 * c, c, bias=False)
        self.edge_nodes = nn.Linear(c, 2 * c, bias=False)
        self.edge_self = nn.Linear(c, c, bias=False)
        self.edge_gate_nodes = nn.Linear(c, 2 * c)
        self.edge_gate = nn.Linear(c, c, bias=False)
        self.edge_out = nn.Linear(c, c, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_children(self)
        with torch.no_grad():
            self.no_edge_bias.zero_()

    def forward(self, h: Tensor, e: Tensor, node_mask: Tensor, sign: Tensor,
                present: Tensor) -> tuple[Tensor, Tensor]:
        batch, n, c = h.shape
        heads, head_dim = self.heads, c // self.heads
        q, k = self.qk(self.invariant(h).abs()).view(batch, n, 2, heads, head_dim).unbind(2)
        logits = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(head_dim)
        edge_invariants = self.edge_invariant(e).abs()
        logits = logits + self.edge_bias(edge_invariants).permute(0, 3, 1, 2) + \
            (~present).unsqueeze(1) * self.no_edge_bias.view(1, heads, 1, 1)
        logits = logits.masked_fill(~node_mask.view(batch, 1, 1, n), float("-inf"))
        rows = node_mask.view(batch, 1, n, 1)
        weights = torch.softmax(logits.masked_fill(~rows, 0.0), dim=-1) * rows
        weights = nn.functional.dropout(weights, self.dropout, self.training)
        values = (self.pair_value(e) * self.node_value(h).unsqueeze(1)).view(batch, n, n, heads, head_dim)
        attended = torch.einsum("bhij,bijhd->bihd", weights, values).reshape(batch, n, c)
        real = node_mask.unsqueeze(-1)
        h = self.norm1(h + self.out(attended)) * real
        z = self.ffn_in(h)
        u = torch.cat([z.abs(), self.invariant(h).abs()], dim=-1)
        free = (~sign).unsqueeze(-1).to(h.dtype)
        update = self.ffn_out(nn.functional.dropout(z * torch.sigmoid(self.ffn_gate(u)), self.dropout, self.training))
        h = self.norm2(h + update + free * self.ffn_free(u)) * real
        a, b = self.edge_nodes(h).chunk(2, dim=-1)
        gate_i, gate_j = self.edge_gate_nodes(self.invariant(h).abs()).chunk(2, dim=-1)
        gate = torch.sigmoid(gate_i.unsqueeze(2) + gate_j.unsqueeze(1) + self.edge_gate(edge_invariants))
        update = self.edge_out(a.unsqueeze(2) * b.unsqueeze(1) + self.edge_self(e) * gate)
        pairs = (node_mask.unsqueeze(2) & node_mask.unsqueeze(1)).unsqueeze(-1)
        return h, self.edge_norm(e + update) * pairs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, heads={self.heads})"
