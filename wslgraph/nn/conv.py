"""Message passing with edge updates on parameter graphs (NG-GNN style)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from wslgraph.nn.backend import index_count, scatter
from wslgraph.nn.dense import DenseEdgeUpdate, DensePlan, FiLMMessageStats, at_least_float32

__all__ = ["EdgeUpdateConv", "AGGREGATORS", "SCALERS"]

AGGREGATORS = ("mean", "max", "min", "std", "sum")
SCALERS = ("identity", "amplification", "attenuation")
_EPS = 1e-5
_COMBINE = {"sum": torch.add, "squares": torch.add, "max": torch.maximum, "min": torch.minimum}  # partial stats
CHUNK_EDGES = 2**18  # edges of one dense block processed at once (their FiLM projections: 256 MiB at width 64)


def forget_delta(module: nn.Module, incompatible_keys: object) -> None:
    """After ``load_state_dict`` the loaded ``avg_log_degree`` may be NaN (an unfitted model's): look again."""
    module._delta_known = False


def degree_factors(layer: nn.Module, degree: Tensor, dtype: torch.dtype) -> Tensor:
    """PNA's degree scalers per node, ``[num_nodes, len(layer.scalers)]``.

    ``layer`` holds the buffer ``avg_log_degree`` (PNA's delta, NaN until the first batch sets it), the Python flag
    ``_delta_known`` (checking the buffer would sync CUDA every step) and ``scalers``.
    """
    log_degree = torch.log(degree.clamp(min=1).to(dtype) + 1)
    if not layer._delta_known:
        if torch.isnan(layer.avg_log_degree):  # lazily, from the first batch: PNA's delta
            layer.avg_log_degree.fill_(float(log_degree[degree > 0].mean()) if bool((degree > 0).any()) else 1.0)
        layer._delta_known = True
    delta = layer.avg_log_degree.to(dtype)
    factors = {"identity": torch.ones_like(log_degree), "amplification": log_degree / delta,
               "attenuation": delta / log_degree}
    return torch.stack([factors[s] for s in layer.scalers], dim=-1)


class FiLMProjection(nn.Linear):
    """Edge state to ``[gamma, beta]`` per direction; gamma starts at 0, beta does not.

    The zero gamma (unmodulated messages at the start) belongs to this
    module's own ``reset_parameters``, so any reset of the model keeps it; beta,
    the edge term of the messages, starts random so that weights reach the
    node states from the first step.
    """

    def __init__(self, channels: int, directions: int) -> None:
        self.channels = channels
        super().__init__(channels, directions * 2 * channels)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            self.weight.view(-1, 2, self.channels, self.channels)[:, 0].zero_()
            self.bias.view(-1, 2, self.channels)[:, 0].zero_()


class EdgeUpdateConv(MessagePassing):
    r"""Message passing with edge updates, PNA aggregation and FiLM messages.

    The layer of NG-GNN (Kofinas et al., ICLR 2024): edges are updated from
    their endpoints, messages are modulated by the updated edges (FiLM), and
    nodes aggregate them with several aggregators and degree scalers (PNA,
    Corso et al., 2020). For a message from :math:`j` to :math:`i`:

    .. math::
        e'_{ij} &= \mathrm{LN}\big(e_{ij} + W_2\,\sigma(A h_j + B h_i + C e_{ij})\big) \\
        m_{ij} &= (1 + \gamma(e'_{ij})) \odot W h_j + \beta(e'_{ij}) \\
        a_i &= \big\Vert_{s \in S} s(d_i) \big\Vert_{\rho \in R} \rho_{j \to i}(m_{ij}) \\
        h'_i &= \mathrm{LN}\big(h_i + \mathrm{MLP}([h_i, a_i])\big)

    With ``bidirectional``, nodes also aggregate messages along reversed
    edges (with their own :math:`W, \gamma, \beta`), concatenated to
    :math:`a_i`. Every operation commutes with permutations of nodes, so
    the layer is permutation equivariant.

    The layer runs either generically (gather and scatter over
    ``edge_index``, via :mod:`wslgraph.nn.backend`) or, for a batch of one
    architecture, on the :mod:`~wslgraph.nn.dense` fast path; both compute
    the same function.

    Args:
        channels: Width of node and edge states.
        aggregators: Subset of ``("mean", "max", "min", "std", "sum")``
            (default: all).
        scalers: Subset of ``("identity", "amplification", "attenuation")``
            (default: all).
        bidirectional: Also pass messages along reversed edges (default: ``True``).
        dropout: Dropout in the node MLP (default: ``0.0``).
        node_bias: Learn a bias in the node states' layer norm (default:
            ``True``). An encoder's last layer has none: the invariant readout
            and the batch-normalised head cancel a shift shared by all nodes,
            so its gradient would be rounding noise that Adam turns into steps.

    Shapes:
        node states ``[num_nodes, channels]``, edge states
        ``[num_edges, channels]``, ``edge_index`` ``[2, num_edges]``; returns
        updated node and edge states of the same shapes.
    """

    def __init__(self, channels: int, aggregators: Sequence[str] = AGGREGATORS, scalers: Sequence[str] = SCALERS,
                 bidirectional: bool = True, dropout: float = 0.0, node_bias: bool = True) -> None:
        super().__init__(aggr="sum", node_dim=0)
        unknown = set(aggregators) - set(AGGREGATORS) or set(scalers) - set(SCALERS)
        if unknown or not aggregators or not scalers:
            raise ValueError(f"aggregators must be a non-empty subset of {AGGREGATORS} and scalers of {SCALERS}; "
                             f"got {tuple(aggregators)}, {tuple(scalers)}")
        self.channels, self.aggregators, self.scalers = channels, tuple(aggregators), tuple(scalers)
        self.bidirectional, self.dropout = bidirectional, dropout
        directions = 2 if bidirectional else 1
        self.lin_nodes = nn.Linear(channels, 2 * channels)  # A (sources) and B (targets)
        self.lin_edge = nn.Linear(channels, channels, bias=False)  # C
        self.edge_out = nn.Linear(channels, channels)  # W_2
        self.edge_norm = nn.LayerNorm(channels)
        self.lin_message = nn.Linear(channels, directions * channels)  # W (and W for reversed edges)
        self.film = FiLMProjection(channels, directions)  # gamma, beta (per direction)
        aggregated = directions * len(self.aggregators) * len(self.scalers) * channels
        self.node_mlp = nn.Sequential(nn.Linear(channels + aggregated, channels), nn.SiLU(), nn.Dropout(dropout),
                                      nn.Linear(channels, channels))
        self.node_norm = nn.LayerNorm(channels, bias=node_bias)
        self.register_buffer("avg_log_degree", torch.tensor(float("nan")))
        # whether avg_log_degree is known to be set (a Python flag: checking the buffer would sync CUDA every step)
        self._delta_known = False
        self.register_load_state_dict_post_hook(forget_delta)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for module in (self.lin_nodes, self.lin_edge, self.edge_out, self.lin_message, self.node_mlp[0],
                       self.node_mlp[3], self.edge_norm, self.node_norm):
            module.reset_parameters()
        self.film.reset_parameters()
        self.avg_log_degree.fill_(float("nan"))
        self._delta_known = False

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor, plan: DensePlan | None = None) -> tuple[Tensor, Tensor]:
        """Update node and edge states; ``plan`` selects the dense fast path."""
        if plan is not None:
            num_graphs = h.shape[0] // plan.num_nodes
            h, blocks = self.forward_dense(h, plan.split_edges(e, num_graphs), plan)
            return h, plan.join_edges(blocks)
        num_nodes = h.shape[0]
        p, q = self.lin_nodes(h).chunk(2, dim=-1)
        e = self.edge_updater(edge_index, p=p, q=q, e=e)
        messages = self.lin_message(h).chunk(2 if self.bidirectional else 1, dim=-1)
        films = self.film(e).chunk(2 if self.bidirectional else 1, dim=-1)
        in_degree = index_count(edge_index[1], num_nodes)
        parts = [(self.propagate(edge_index, w=messages[0], film=films[0]), in_degree)]
        if self.bidirectional:
            out_degree = index_count(edge_index[0], num_nodes)
            parts.append((self.propagate(edge_index.flip(0), w=messages[1], film=films[1]), out_degree))
        return self._update_nodes(h, parts), e

    # --------------------------------------------------- MessagePassing hooks
    def edge_update(self, p_j: Tensor, q_i: Tensor, e: Tensor) -> Tensor:
        return self.edge_norm(e + self.edge_out(nn.functional.silu(p_j + q_i + self.lin_edge(e))))

    def message(self, w_j: Tensor, film: Tensor) -> Tensor:
        gamma, beta = film.chunk(2, dim=-1)
        return (1 + gamma) * w_j + beta

    def aggregate(self, inputs: Tensor, index: Tensor, ptr: Tensor | None = None,
                  dim_size: int | None = None) -> Tensor:
        stats = {key: scatter(inputs * inputs if key == "squares" else inputs, index, dim_size,
                              "sum" if key == "squares" else key) for key in self._stat_keys}
        stats["count"] = index_count(index, dim_size, inputs.dtype).unsqueeze(-1)
        return self._finish(stats)

    # ------------------------------------------------------------- dense path
    def forward_dense(self, h: Tensor, edges: list[Tensor], plan: DensePlan) -> tuple[Tensor, list[Tensor]]:
        """The same layer with edge states kept per block, ``[graphs, groups, m, k, channels]``.

        Endpoint gathers become broadcasts and aggregations reductions over a
        block axis; edge states stay split by block across layers (see
        :meth:`DensePlan.split_edges`), so no edge-sized tensor is sliced or
        concatenated per layer.

        Under ``torch.autocast`` the layer runs with autocast off, in float32
        (half-precision states are cast up): its fused autograd functions
        compute their backward by hand, in their inputs' precision.
        """
        if torch.is_autocast_enabled(h.device.type):
            with torch.autocast(h.device.type, enabled=False):
                return self.forward_dense(at_least_float32(h), [at_least_float32(e) for e in edges], plan)
        num_graphs, hidden = h.shape[0] // plan.num_nodes, self.channels
        directions = 2 if self.bidirectional else 1
        p, q = (plan.by_group(t) for t in self.lin_nodes(h).view(num_graphs, plan.num_nodes, -1).chunk(2, dim=-1))
        messages = [plan.by_group(t.squeeze(2)) for t in
                    self.lin_message(h).view(num_graphs, plan.num_nodes, directions, hidden).chunk(directions, dim=2)]
        received: list[dict[int, list[tuple[int, dict[str, Tensor]]]]] = [{} for _ in range(directions)]
        keys = tuple(self._stat_keys)
        updated = []
        for b, e in zip(plan.blocks, edges):
            sources = [messages[0][b.src][:, b.sources].reshape(num_graphs, b.groups, 1, b.k, hidden)]
            if self.bidirectional:
                sources.append(messages[1][b.dst][:, b.targets].reshape(num_graphs, b.groups, b.m, 1, hidden))
            e, stats = self._dense_block(e, b, p[b.src][:, b.sources].reshape(num_graphs, b.groups, 1, b.k, hidden),
                                         q[b.dst][:, b.targets].reshape(num_graphs, b.groups, b.m, 1, hidden),
                                         sources, keys)
            updated.append(e)
            for direction, (start, within) in enumerate(((b.dst, b.targets), (b.src, b.sources))[:directions]):
                received[direction].setdefault(start, []).append(
                    (within, {key: stats[direction * len(keys) + i].reshape(num_graphs, -1, hidden)
                              for i, key in enumerate(keys)}))
        parts = []
        for direction in range(directions):
            degree = plan.on(h.device)[direction]  # in-degree for direction 0, out-degree for 1
            stats = self._assemble(received[direction], plan, degree, num_graphs, h)
            parts.append((self._finish(stats), stats["count"].squeeze(-1)))
        return self._update_nodes(h, parts), updated

    def _dense_block(self, e: Tensor, b: object, source: Tensor, target: Tensor, messages: list[Tensor],
                     keys: tuple[str, ...]) -> tuple[Tensor, list[Tensor]]:
        """One block's edge update and message statistics (direction 0 per target row, direction 1 per source
        column). A block of more than ``CHUNK_EDGES`` edges goes in chunks of target rows: its edge-sized
        temporaries (the FiLM projections of both directions) then exist for one chunk at a time; per-target
        statistics are concatenated and per-source ones combined across chunks, as across blocks."""
        rows = max(1, CHUNK_EDGES // max(1, e.shape[0] * b.groups * b.k))
        args = (self.lin_edge.weight, self.edge_out.weight, self.edge_out.bias, self.edge_norm.weight,
                self.edge_norm.bias, self.edge_norm.eps)
        if rows >= b.m:
            e = DenseEdgeUpdate.apply(e, source, target, *args)
            return e, list(FiLMMessageStats.apply(e, self.film.weight, self.film.bias, keys, *messages))
        edges, per_target, per_source = [], [], []
        for start in range(0, b.m, rows):
            part = slice(start, min(start + rows, b.m))
            chunk = DenseEdgeUpdate.apply(e[:, :, part], source, target[:, :, part], *args)
            stats = FiLMMessageStats.apply(chunk, self.film.weight, self.film.bias, keys, messages[0],
                                           *[m[:, :, part] for m in messages[1:]])
            edges.append(chunk)
            per_target.append(stats[:len(keys)])
            per_source.append(stats[len(keys):])
        stats = [torch.cat([chunk[i] for chunk in per_target], dim=2) for i in range(len(keys))]
        if len(messages) > 1:
            stats += [functools.reduce(_COMBINE[key], [chunk[i] for chunk in per_source]) for i, key in enumerate(keys)]
        return torch.cat(edges, dim=2), stats

    @property
    def _stat_keys(self) -> list[str]:
        needed = {"sum": {"mean", "sum", "std"}, "squares": {"std"}, "max": {"max"}, "min": {"min"}}
        return [key for key, aggregators in needed.items() if aggregators & set(self.aggregators)]

    def _assemble(self, received: dict[int, list[tuple[slice, dict[str, Tensor]]]], plan: DensePlan,
                  degree: Tensor, num_graphs: int, like: Tensor) -> dict[str, Tensor]:
        """Per-node statistics in node order from per-group contributions (no in-place writes).

        Blocks send to whole node groups, but for the identity blocks of copies (a concatenation's parts, a
        chunk's pieces, a channel shuffle's strided rows), which reach a slice of their group: parts that tile
        their group in order are joined first; other pieces are scattered into place. Contributions are then
        combined per receiving group; groups that receive nothing get zeros.
        """
        stats: dict[str, Tensor] = {}
        for key in self._stat_keys:
            columns = []
            for start, size in plan.groups:
                contributions = received.get(start, [])
                parts = [part[key] for _, part in contributions if part[key].shape[1] == size]
                pieces = sorted(((where, part[key]) for where, part in contributions if part[key].shape[1] != size),
                                key=lambda piece: piece[0].start)
                if pieces and _tiles([where for where, _ in pieces], size):
                    parts.append(torch.cat([piece for _, piece in pieces], dim=1))
                elif pieces:
                    columns.append(self._scatter(key, pieces, parts, size, num_graphs, like))
                    continue
                columns.append(functools.reduce(_COMBINE[key], parts) if parts
                               else like.new_zeros(num_graphs, size, self.channels))
            stats[key] = torch.cat(columns, dim=1).reshape(-1, self.channels)
        stats["count"] = degree.to(like.dtype).repeat(num_graphs).unsqueeze(-1)
        return stats

    def _scatter(self, key: str, pieces: list[tuple[slice, Tensor]], parts: list[Tensor], size: int,
                 num_graphs: int, like: Tensor) -> Tensor:
        """Statistics ``key`` of a group from whole-group parts and pieces that reach arbitrary slices of it."""
        index = torch.cat([torch.arange(size, device=like.device)[where] for where, _ in pieces])
        values = torch.cat([piece for _, piece in pieces], dim=1)
        base = functools.reduce(_COMBINE[key], parts) if parts else like.new_zeros(num_graphs, size, self.channels)
        if key in ("sum", "squares"):
            return base.index_add(1, index, values)
        return base.scatter_reduce(1, index.view(1, -1, 1).expand_as(values), values,
                                   "amax" if key == "max" else "amin", include_self=bool(parts))

    # ---------------------------------------------------------------- shared
    def _finish(self, stats: dict[str, Tensor]) -> Tensor:
        """PNA aggregators from per-node message statistics (identical for both paths)."""
        count = stats["count"].clamp(min=1)
        out = []
        for name in self.aggregators:
            if name == "sum":
                out.append(stats["sum"])
            elif name == "mean":
                out.append(stats["sum"] / count)
            elif name == "std":
                mean = stats["sum"] / count
                out.append(torch.sqrt((stats["squares"] / count - mean * mean).clamp(min=0) + _EPS))
            else:
                out.append(stats[name])
        return torch.cat(out, dim=-1)

    def _degree_factors(self, degree: Tensor, dtype: torch.dtype) -> Tensor:
        return degree_factors(self, degree, dtype)

    def _update_nodes(self, h: Tensor, parts: list[tuple[Tensor, Tensor]]) -> Tensor:
        r"""``LN(h + MLP([h, s_1 a, s_2 a, ...]))`` for the aggregations ``a`` and degree scalers ``s``.

        The scalers are per-node numbers, so the first linear map of the
        MLP is applied to ``a`` once per scaler block of its weight and the
        results are combined with the scalers, instead of materialising the
        ``len(scalers)`` times wider scaled copies of ``a``; the function
        (and the parameter layout) is that of the concatenation.
        """
        first, hidden = self.node_mlp[0], self.channels
        out = nn.functional.linear(h, first.weight[:, :hidden], first.bias)
        column = hidden
        for aggregated, degree in parts:
            width, scalers = aggregated.shape[-1], len(self.scalers)
            weight = first.weight[:, column:column + scalers * width]  # [hidden, scalers * width], scaler-major
            column += scalers * width
            per_scaler = nn.functional.linear(aggregated, weight.reshape(hidden * scalers, width) if scalers == 1 else
                                              weight.view(hidden, scalers, width).transpose(0, 1)
                                              .reshape(scalers * hidden, width))
            factors = self._degree_factors(degree, aggregated.dtype)
            out = out + torch.bmm(factors.unsqueeze(1), per_scaler.view(-1, scalers, hidden)).squeeze(1)
        return self.node_norm(h + self.node_mlp[3](self.node_mlp[2](self.node_mlp[1](out))))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.channels}, aggregators={self.aggregators}, scalers={self.scalers}, "
                f"bidirectional={self.bidirectional})")


def _tiles(slices: list[slice], size: int) -> bool:
    """Whether slices (sorted by start) cover ``0 .. size`` in order, contiguously, once."""
    position = 0
    for where in slices:
        if where.start != position or (where.step or 1) != 1:
            return False
        position = where.stop
    return position == size
