"""Message passing with edge updates on parameter graphs (NG-GNN style)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from wslgraph.nn.backend import index_count, scatter
from wslgraph.nn.dense import DensePlan

__all__ = ["EdgeUpdateConv", "FiLMMessageStats", "AGGREGATORS", "SCALERS"]

AGGREGATORS = ("mean", "max", "min", "std", "sum")
SCALERS = ("identity", "amplification", "attenuation")
_EPS = 1e-5


def _forget_delta(module: nn.Module, incompatible_keys: object) -> None:
    """After ``load_state_dict`` the loaded ``avg_log_degree`` may be NaN (an unfitted model's): look again."""
    module._delta_known = False


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
        self.register_load_state_dict_post_hook(_forget_delta)
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
                return self.forward_dense(_at_least_float32(h), [_at_least_float32(e) for e in edges], plan)
        num_graphs, hidden = h.shape[0] // plan.num_nodes, self.channels
        directions = 2 if self.bidirectional else 1
        p, q = (plan.by_group(t) for t in self.lin_nodes(h).view(num_graphs, plan.num_nodes, -1).chunk(2, dim=-1))
        messages = [plan.by_group(t.squeeze(2)) for t in
                    self.lin_message(h).view(num_graphs, plan.num_nodes, directions, hidden).chunk(directions, dim=2)]
        received: list[dict[int, list[dict[str, Tensor]]]] = [{} for _ in range(directions)]
        keys = tuple(self._stat_keys)
        updated = []
        for b, e in zip(plan.blocks, edges):
            e = DenseEdgeUpdate.apply(e, p[b.src].view(num_graphs, b.groups, 1, b.k, hidden),
                                      q[b.dst].view(num_graphs, b.groups, b.m, 1, hidden), self.lin_edge.weight,
                                      self.edge_out.weight, self.edge_out.bias, self.edge_norm.weight,
                                      self.edge_norm.bias, self.edge_norm.eps)
            updated.append(e)
            # direction 0: messages from source j to target i, reduced over j (axis 3);
            # direction 1: from target i to source j, reduced over i (axis 2)
            sources = [messages[0][b.src].view(num_graphs, b.groups, 1, b.k, hidden)]
            if self.bidirectional:
                sources.append(messages[1][b.dst].view(num_graphs, b.groups, b.m, 1, hidden))
            stats = FiLMMessageStats.apply(e, self.film.weight, self.film.bias, keys, *sources)
            for direction, start in enumerate((b.dst, b.src)[:directions]):
                received[direction].setdefault(start, []).append(
                    {key: stats[direction * len(keys) + i].reshape(num_graphs, -1, hidden)
                     for i, key in enumerate(keys)})
        parts = []
        for direction in range(directions):
            degree = plan.on(h.device)[direction]  # in-degree for direction 0, out-degree for 1
            stats = self._assemble(received[direction], plan, degree, num_graphs, h)
            parts.append((self._finish(stats), stats["count"].squeeze(-1)))
        return self._update_nodes(h, parts), updated

    @property
    def _stat_keys(self) -> list[str]:
        needed = {"sum": {"mean", "sum", "std"}, "squares": {"std"}, "max": {"max"}, "min": {"min"}}
        return [key for key, aggregators in needed.items() if aggregators & set(self.aggregators)]

    def _assemble(self, received: dict[int, list[dict[str, Tensor]]], plan: DensePlan, degree: Tensor,
                  num_graphs: int, like: Tensor) -> dict[str, Tensor]:
        """Per-node statistics in node order from per-group contributions (no in-place writes).

        Every block sends to whole node groups, so contributions are combined
        per receiving group; groups that receive nothing get zeros.
        """
        combine = {"sum": torch.add, "squares": torch.add, "max": torch.maximum, "min": torch.minimum}
        stats: dict[str, Tensor] = {}
        for key in self._stat_keys:
            columns = []
            for start, size in plan.groups:
                parts = [part[key] for part in received.get(start, [])]
                columns.append(functools.reduce(combine[key], parts) if parts
                               else like.new_zeros(num_graphs, size, self.channels))
            stats[key] = torch.cat(columns, dim=1).reshape(-1, self.channels)
        stats["count"] = degree.to(like.dtype).repeat(num_graphs).unsqueeze(-1)
        return stats

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
        """PNA's degree scalers per node, ``[num_nodes, len(scalers)]``."""
        log_degree = torch.log(degree.clamp(min=1).to(dtype) + 1)
        if not self._delta_known:
            if torch.isnan(self.avg_log_degree):  # lazily, from the first batch: PNA's delta
                self.avg_log_degree.fill_(float(log_degree[degree > 0].mean()) if bool((degree > 0).any()) else 1.0)
            self._delta_known = True
        delta = self.avg_log_degree.to(dtype)
        factors = {"identity": torch.ones_like(log_degree), "amplification": log_degree / delta,
                   "attenuation": delta / log_degree}
        return torch.stack([factors[s] for s in self.scalers], dim=-1)

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



class DenseEdgeUpdate(torch.autograd.Function):
    r"""The edge update of one dense block, :math:`\mathrm{LN}(e + W_2\,\sigma(C e + a_j + b_i))`, fused.

    ``edges`` ``[graphs, groups, m, k, channels]``; ``sources`` (:math:`a_j`)
    broadcast over the target axis ``m`` and ``targets`` (:math:`b_i`) over
    the source axis ``k``. The function of the generic path's
    :meth:`EdgeUpdateConv.edge_update`, with fewer edge-sized temporaries:
    on CPU each is a fresh ``mmap``, page-faulted in, which costs more than
    the arithmetic. The forward writes :math:`C e` into the broadcast sum in
    place and the residual is the second product's addend; the backward adds
    the residual's gradient into the layer norm's in place and lets the
    activation's gradient overwrite its input. Composed from autograd
    primitives, the same step allocated 5 edge-sized tensors forward and 5
    backward; here 4 and 2. First-order only (``once_differentiable``).
    """

    @staticmethod
    def forward(ctx, edges: Tensor, sources: Tensor, targets: Tensor, lin_weight: Tensor, out_weight: Tensor,
                out_bias: Tensor, norm_weight: Tensor, norm_bias: Tensor, eps: float) -> Tensor:
        channels = edges.shape[-1]
        flat = edges.reshape(-1, channels)
        pre = torch.add(sources, targets).view(-1, channels).addmm_(flat, lin_weight.T)
        activated = nn.functional.silu(pre)
        update = torch.addmm(flat, activated, out_weight.T).add_(out_bias)
        out, mean, rstd = torch.native_layer_norm(update, (channels,), norm_weight, norm_bias, eps)
        ctx.save_for_backward(flat, sources, targets, pre, activated, update, mean, rstd, lin_weight, out_weight,
                              norm_weight, norm_bias)
        ctx.edge_shape = edges.shape
        return out.view(edges.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        flat, sources, targets, pre, activated, update, mean, rstd, lin_weight, out_weight, norm_weight, norm_bias \
            = ctx.saved_tensors
        channels = flat.shape[-1]
        grad_update, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_layer_norm_backward(
            grad.reshape(-1, channels), update, (channels,), mean, rstd, norm_weight, norm_bias, [True, True, True])
        grad_out_weight, grad_out_bias = grad_update.T @ activated, grad_update.sum(0)
        grad_activated = grad_update @ out_weight
        grad_pre = torch.ops.aten.silu_backward.grad_input(grad_activated, pre, grad_input=grad_activated)
        grad_lin_weight = grad_pre.T @ flat
        grad_edges = grad_update.addmm_(grad_pre, lin_weight)  # the residual's gradient plus C's
        block = grad_pre.view(ctx.edge_shape)
        return (grad_edges.view(ctx.edge_shape), block.sum_to_size(sources.shape), block.sum_to_size(targets.shape),
                grad_lin_weight, grad_out_weight, grad_out_bias, grad_norm_weight, grad_norm_bias, None)


class FiLMMessageStats(torch.autograd.Function):
    r"""FiLM messages of one dense block and their statistics, with a fused backward.

    ``film_weight`` and ``film_bias`` are those of :class:`FiLMProjection`:
    the ``2 * directions`` blocks of ``channels`` rows give
    :math:`\gamma_d, \beta_d` of the edge states ``edges``
    ``[graphs, groups, m, k, channels]``. For every direction ``d`` (source
    tensor ``sources[d]``, broadcastable to the block; reduced over axis 3
    for ``d = 0`` and axis 2 for ``d = 1``) the messages are
    :math:`m = (1 + \gamma_d) \odot s_d + \beta_d`; the outputs are, per
    direction, the statistics named by ``keys`` (``sum``, ``squares``,
    ``max``, ``min``) reduced over the block axis.

    Composed from autograd primitives, this step's backward would
    materialise a full-size gradient per statistic (zeros plus a scatter
    for ``max`` and ``min``), add them up, and concatenate the gradients of
    the ``[..., 4 * channels]`` projection's slices, which are strided (slow)
    views. Here each of :math:`\gamma_d, \beta_d` is its own contiguous
    matrix product and the message gradient is built once, in place.
    First-order gradients only (``once_differentiable``); for higher-order
    derivatives run the encoder with ``dense=False``.
    """

    @staticmethod
    def forward(ctx, edges: Tensor, film_weight: Tensor, film_bias: Tensor, keys: tuple[str, ...],
                *sources: Tensor) -> tuple[Tensor, ...]:
        channels = edges.shape[-1]
        flat_edges = edges.reshape(-1, channels)
        weights, biases = film_weight.split(channels), film_bias.split(channels)
        outputs, saved = [], []
        for direction, source in enumerate(sources):
            axis = 3 - direction
            # (1 + gamma) * s + beta with the biases folded into the small source term:
            # gamma_0 * s + beta_0 + (1 + b_gamma) * s + b_beta, gamma_0 and beta_0 without bias
            gamma = (flat_edges @ weights[2 * direction].T).view(edges.shape)
            message = (flat_edges @ weights[2 * direction + 1].T).view(edges.shape)
            message.add_(torch.addcmul(biases[2 * direction + 1], source, 1 + biases[2 * direction]))
            message.addcmul_(gamma, source)
            saved += [gamma, message]
            for key in keys:
                if key == "sum":
                    outputs.append(message.sum(axis))
                elif key == "squares":
                    outputs.append(_sum_of_squares(message, axis))
                else:  # amax/amin: a plain reduction, several times faster than max/min with indices
                    values = message.amax(axis) if key == "max" else message.amin(axis)
                    outputs.append(values)
                    saved.append(values)
        ctx.keys, ctx.directions = keys, len(sources)
        ctx.save_for_backward(edges, film_weight, film_bias, *sources, *saved)
        return tuple(outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Tensor) -> tuple[Tensor | None, ...]:
        keys, directions = ctx.keys, ctx.directions
        edges, film_weight, film_bias, *rest = ctx.saved_tensors
        sources, saved = rest[:directions], iter(rest[directions:])
        channels = edges.shape[-1]
        flat_edges = edges.reshape(-1, channels)
        gamma_bias = film_bias.split(channels)[::2]
        grads = iter(grads)
        grad_weight, grad_bias, grad_sources = [], [], []
        grad_edges = None
        for direction, source in enumerate(sources):
            axis = 3 - direction
            gamma, message = next(saved), next(saved)  # gamma without its bias
            stat_grads = {key: next(grads).unsqueeze(axis) for key in keys}
            # the gradient of the messages (and of beta), built once
            if "sum" in stat_grads and "squares" in stat_grads:
                grad_message = torch.addcmul(stat_grads["sum"], message, stat_grads["squares"], value=2)
            elif "sum" in stat_grads:
                grad_message = stat_grads["sum"].expand_as(message).clone(memory_format=torch.contiguous_format)
            elif "squares" in stat_grads:
                grad_message = message * stat_grads["squares"] * 2
            else:
                grad_message = torch.zeros_like(message)
            # one message-sized scratch tensor per direction serves the tie masks, the source gradient's
            # product and finally gamma's gradient (fresh allocations are page faults on CPU)
            scratch = torch.empty_like(message)
            for key in keys:
                if key in ("max", "min"):
                    # to every message equal to the extreme, shared evenly between ties (as scatter_reduce's
                    # amax/amin backward on the generic path)
                    hit = torch.eq(message, next(saved).unsqueeze(axis), out=scratch)  # 1.0 / 0.0
                    grad_message.addcmul_(hit, stat_grads[key] / hit.sum(axis, keepdim=True))
            # sources: sum over the broadcast axes of grad * (1 + gamma_0 + b_gamma)
            summed = grad_message.sum_to_size(source.shape)
            grad_sources.append(torch.addcmul(grad_message, grad_message, gamma, out=scratch)
                                .sum_to_size(source.shape) + summed * gamma_bias[direction])
            grad_gamma = torch.mul(grad_message, source, out=scratch)
            for index, grad, bias_grad in ((2 * direction, grad_gamma, (summed * source).sum_to_size(channels)),
                                           (2 * direction + 1, grad_message, summed.sum_to_size(channels))):
                flat = grad.reshape(-1, channels)
                weight = film_weight[index * channels:(index + 1) * channels]
                grad_edges = flat @ weight if grad_edges is None else grad_edges.addmm_(flat, weight)
                grad_weight.append(flat.T @ flat_edges)
                grad_bias.append(bias_grad)
        return (grad_edges.view_as(edges), torch.cat(grad_weight), torch.cat(grad_bias), None, *grad_sources)


def _sum_of_squares(x: Tensor, axis: int, slice_bytes: int = 4 << 20) -> Tensor:
    """``(x * x).sum(axis)`` without an ``x``-sized temporary on CPU.

    On CPU a fresh tensor of tens of MiB is a new ``mmap``, page-faulted in
    on first touch, which costs several times the product itself; there the
    squares go through one small buffer, a slice of the leading axis at a
    time. Other devices (with caching allocators) take the direct form.
    """
    if x.device.type != "cpu" or axis == 0:
        return (x * x).sum(axis)
    rows = max(1, slice_bytes // max(1, x[0].numel() * x.element_size()))
    out = x.new_empty(x.shape[:axis] + x.shape[axis + 1:])
    buffer = x.new_empty((min(rows, x.shape[0]),) + x.shape[1:])
    for start in range(0, x.shape[0], rows):
        part = x[start:start + rows]
        torch.sum(torch.mul(part, part, out=buffer[:part.shape[0]]), axis, out=out[start:start + rows])
    return out


def _at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is in a narrower floating type (float16, bfloat16), else unchanged."""
    return x.float() if x.is_floating_point() and torch.finfo(x.dtype).bits < 32 else x
