"""The dense fast path: same-architecture batches as tensors, not scatters; its plan and its fused functions.

In a batch of graphs of one architecture (built by
:class:`~wslgraph.GraphTemplate` or :func:`~wslgraph.collate`), the edges of
each layer form a dense block. Every block is a grid ``[groups, m, k]``:
edge ``(g, i, j)`` runs from source node ``g * k + j`` to target node
``g * m + i`` of its groups, in the graph's edge order. A linear layer is
``[1, out, in]``, a grouped convolution ``[groups, out / groups, in / groups]``
and a residual addition ``[channels, 1, 1]``. Gathering endpoint features
becomes broadcasting and aggregation a reduction over a tensor axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.param_graph import structure_tensors

__all__ = ["DenseBlock", "DensePlan", "dense_plan", "DenseEdgeUpdate", "FiLMMessageStats", "sum_of_squares",
           "at_least_float32"]


@dataclass(frozen=True)
class DenseBlock:
    """One edge block as a ``[groups, m, k]`` grid (see the module docstring)."""

    src: int  # first source node
    dst: int  # first target node
    edges: int  # first edge
    groups: int
    m: int  # targets per group
    k: int  # sources per group (fan-in)
    dst_start: int = 0  # first target within the target group (a concatenation's later parts)
    src_start: int = 0  # first source within the source group (a chunk's later pieces)
    dst_stride: int = 1  # step between targets (a channel shuffle)

    @property
    def targets(self) -> slice:
        """The block's target nodes within its target group (all of it, but for the identity blocks of copies:
        a concatenation's part, a chunk, a channel shuffle's strided rows)."""
        count = self.groups * self.m
        return slice(self.dst_start, self.dst_start + self.dst_stride * (count - 1) + 1, self.dst_stride)

    @property
    def sources(self) -> slice:
        """The block's source nodes within its source group (all of it, but for a chunk's pieces)."""
        return slice(self.src_start, self.src_start + self.groups * self.k)

    @property
    def num_edges(self) -> int:
        return self.groups * self.m * self.k


@dataclass(frozen=True)
class DensePlan:
    """The dense blocks of one architecture, and the tensors needed to check a batch against it."""

    blocks: tuple[DenseBlock, ...]
    groups: tuple[tuple[int, int], ...]  # (first node, size) of every node group, in node order
    num_nodes: int
    num_edges: int
    in_degree: Tensor  # [num_nodes]
    out_degree: Tensor  # [num_nodes]
    edge_index: Tensor  # [2, num_edges] of one graph
    _copies: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``(in_degree, out_degree, edge_index)`` on ``device``, copied there once (no per-step transfers)."""
        device = torch.device(device)
        if device not in self._copies:
            self._copies[device] = tuple(t.to(device) for t in (self.in_degree, self.out_degree, self.edge_index))
        return self._copies[device]

    @property
    def block_sizes(self) -> list[int]:
        return [b.num_edges for b in self.blocks]

    def by_group(self, tensor: Tensor) -> dict[int, Tensor]:
        """Split ``[N, num_nodes, C]`` into its node groups, keyed by each group's first node."""
        parts = tensor.split([size for _, size in self.groups], dim=1)
        return {start: part for (start, _), part in zip(self.groups, parts)}

    def split_edges(self, edges: Tensor, num_graphs: int) -> list[Tensor]:
        """Edge states ``[num_graphs * num_edges, C]`` as one ``[N, groups, m, k, C]`` tensor per block."""
        channels = edges.shape[-1]
        parts = edges.view(num_graphs, self.num_edges, channels).split(self.block_sizes, dim=1)
        return [part.reshape(num_graphs, b.groups, b.m, b.k, channels) for b, part in zip(self.blocks, parts)]

    def join_edges(self, blocks: list[Tensor]) -> Tensor:
        """Inverse of :meth:`split_edges`: ``[num_graphs * num_edges, C]`` in edge order."""
        num_graphs, channels = blocks[0].shape[0], blocks[0].shape[-1]
        return torch.cat([b.reshape(num_graphs, -1, channels) for b in blocks], dim=1).reshape(-1, channels)

    def matches(self, edge_index: Tensor, num_graphs: int) -> bool:
        """Whether a batch's ``edge_index`` is this plan's, graph after graph (exact check)."""
        if edge_index.shape != (2, num_graphs * self.num_edges):
            return False
        base = self.on(edge_index.device)[2]
        offsets = torch.arange(num_graphs, device=edge_index.device) * self.num_nodes
        expected = base.unsqueeze(1) + offsets.view(1, -1, 1)
        return torch.equal(edge_index.view(2, num_graphs, self.num_edges), expected)


_PLANS: dict[GraphLayout, DensePlan] = {}


def dense_plan(layout: GraphLayout) -> DensePlan:
    """The (cached) dense plan of an architecture."""
    if layout not in _PLANS:
        blocks = []
        for block in layout.edge_blocks:
            src, dst = layout.groups[block.src], layout.groups[block.dst]
            blocks.append(DenseBlock(src.offset, dst.offset, block.offset, *block.grid, block.dst_start,
                                     block.src_start, block.dst_stride))
        in_degree = torch.zeros(layout.num_nodes, dtype=torch.long)
        out_degree = torch.zeros(layout.num_nodes, dtype=torch.long)
        for b in blocks:
            in_degree[b.dst:][b.targets] += b.k
            out_degree[b.src:][b.sources] += b.m
        edge_index = structure_tensors(layout)["edge_index"]
        groups = tuple((g.offset, g.size) for g in layout.groups)
        _PLANS[layout] = DensePlan(tuple(blocks), groups, layout.num_nodes, sum(b.num_edges for b in blocks), in_degree,
                                   out_degree, edge_index)
    return _PLANS[layout]


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
                    outputs.append(sum_of_squares(message, axis))
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


def sum_of_squares(x: Tensor, axis: int, slice_bytes: int = 4 << 20) -> Tensor:
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


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is in a narrower floating type (float16, bfloat16), else unchanged."""
    return x.float() if x.is_floating_point() and torch.finfo(x.dtype).bits < 32 else x
