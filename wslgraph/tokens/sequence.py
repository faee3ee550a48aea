"""Networks as token sequences (SANE, Schürholt et al., 2024): one token per neuron or channel.

A neuron's token holds everything that belongs to it: the row of every weight tensor that feeds it (its incoming
weights, kernels flattened, in the weight's memory order), then its bias and normalisation parameters. Long rows
are cut into chunks of ``token_width`` values, the last zero-padded, so every token has the same width. Each token
has a 3-D position: its index in the sequence, its layer (the index of its node group among the groups that hold
parameters) and its index within that layer (neuron-major, chunk-minor), and a mask of which of its values are
real. State-dict entries that belong to no neuron (integer buffers such as ``num_batches_tracked``) travel beside
the tokens as ``extras``.

A :class:`TokenTemplate` is computed once per architecture: a gather index ``[T, W]`` into the flat parameter
vector (the :class:`~wslgraph.GraphTemplate`'s order). Tokenizing a zoo is one gather of its rows ``[B, P]``
and detokenizing one scatter back, so the round trip is bit-exact and has no per-model Python loop.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ShapeMismatchError
from wslgraph.graph.layout import GraphLayout, common_layout

__all__ = ["TokenTemplate", "TokenSequence", "TokenBatch", "tokenize", "detokenize", "tokenize_batch"]


class TokenTemplate:
    """Where each value of each token sits in the flat parameter vector of one architecture.

    Args:
        layout: The architecture (:class:`~wslgraph.graph.GraphLayout`, or a :class:`~wslgraph.GraphTemplate`).
        token_width: Values per token (SANE uses 288 for ResNets; 64 by default).

    Attributes:
        index: ``[T, W]`` flat positions of each token's values (``-1``: padding).
        mask: ``[T, W]`` which values are real.
        positions: ``[T, 3]`` (index in the sequence, layer, index within the layer).
        node: ``[T]`` the graph node (neuron or channel) each token belongs to.
        layer_groups: the node group of each layer.
        extra_index: ``[E]`` flat positions held by no token (integer buffers).
    """

    def __init__(self, layout: GraphLayout | GraphTemplate, token_width: int = 64) -> None:
        template = layout if isinstance(layout, GraphTemplate) else GraphTemplate(layout)
        if token_width < 1:
            raise ValueError(f"token_width must be >= 1, got {token_width}")
        self.graph_template, self.layout, self.token_width = template, template.layout, token_width
        layout, offsets = self.layout, self.layout.offsets
        rows, nodes, layers, within, groups = [], [], [], [], []
        for index, group in enumerate(layout.groups):
            parts = []
            for block in layout.edge_blocks:  # node t's incoming weights: the t-th row of the weight tensor
                if block.dst == index and block.key is not None:
                    per = block.fan_in * block.kernel_numel
                    parts.append(block.param_offset + torch.arange(group.size).unsqueeze(1) * per
                                 + torch.arange(per))
            for param in layout.node_params:
                if param.group == index:
                    if layout.entries[param.key].numel != group.size:  # pragma: no cover - converter invariant
                        raise ShapeMismatchError(f"'{param.key}' is not one value per node of its group")
                    parts.append(offsets[param.key] + torch.arange(group.size).unsqueeze(1))
            if not parts:
                continue
            content = torch.cat(parts, dim=1)  # [size, L]
            chunks = math.ceil(content.shape[1] / token_width)
            padded = torch.full((group.size, chunks * token_width), -1, dtype=torch.long)
            padded[:, :content.shape[1]] = content
            rows.append(padded.view(group.size * chunks, token_width))
            nodes.append((group.offset + torch.arange(group.size)).repeat_interleave(chunks))
            layers.append(torch.full((group.size * chunks,), len(groups), dtype=torch.long))
            within.append(torch.arange(group.size * chunks))
            groups.append(index)
        self.index = torch.cat(rows) if rows else torch.empty(0, token_width, dtype=torch.long)
        self.mask = self.index >= 0
        count = self.index.shape[0]
        empty = torch.empty(0, dtype=torch.long)
        self.positions = torch.stack([torch.arange(count), torch.cat(layers) if layers else empty,
                                      torch.cat(within) if within else empty], dim=1)
        self.node = torch.cat(nodes) if nodes else empty
        self.layer_groups = tuple(groups)
        covered = torch.zeros(layout.num_params, dtype=torch.long)
        covered.index_add_(0, self.index[self.mask], torch.ones(int(self.mask.sum()), dtype=torch.long))
        if bool((covered > 1).any()):  # pragma: no cover - converter invariant
            raise ShapeMismatchError("a parameter belongs to two tokens; the layout is inconsistent")
        self.extra_index = (covered == 0).nonzero().squeeze(1)
        self._gather = self.index.clamp(min=0).view(-1)

    @classmethod
    def from_module(cls, module: nn.Module, token_width: int = 64, *,
                    input_shape: Sequence[int] | None = None) -> TokenTemplate:
        return cls(GraphTemplate.from_module(module, input_shape=input_shape), token_width)

    @property
    def num_tokens(self) -> int:
        return self.index.shape[0]

    @property
    def num_layers(self) -> int:
        return len(self.layer_groups)

    def layer_slices(self) -> list[slice]:
        """The tokens of each layer (consecutive in the sequence)."""
        counts = torch.bincount(self.positions[:, 1], minlength=self.num_layers).tolist()
        starts = [0, *itertools.accumulate(counts)]
        return [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_tokens={self.num_tokens}, token_width={self.token_width}, "
                f"num_layers={self.num_layers}, extras={self.extra_index.numel()})")

    def tokenize(self, rows: Tensor) -> TokenSequence:
        """Token sequences of ``B`` networks given as flat rows ``[B, P]`` (or one ``[P]``): one gather."""
        single = rows.dim() == 1
        rows = rows.unsqueeze(0) if single else rows
        if rows.dim() != 2 or rows.shape[1] != self.layout.num_params:
            raise ShapeMismatchError(f"expected flat parameter rows [B, {self.layout.num_params}] of this "
                                     f"architecture, got {tuple(rows.shape)}")
        mask = self.mask.to(rows.device)
        gathered = rows[:, self._gather.to(rows.device)].view(rows.shape[0], *self.index.shape)
        tokens = torch.where(mask, gathered, torch.zeros((), dtype=rows.dtype, device=rows.device))
        extras = rows[:, self.extra_index.to(rows.device)]
        return TokenSequence(tokens[0] if single else tokens, extras[0] if single else extras, self)

    def rows(self, tokens: Tensor, extras: Tensor | None = None) -> Tensor:
        """Flat rows ``[B, P]`` from tokens ``[B, T, W]`` (and extras ``[B, E]``; zeros where not given): one
        scatter. Padding values are ignored."""
        single = tokens.dim() == 2
        tokens = tokens.unsqueeze(0) if single else tokens
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != tuple(self.index.shape):
            raise ShapeMismatchError(f"expected tokens [B, {self.num_tokens}, {self.token_width}] of this "
                                     f"architecture, got {tuple(tokens.shape)}")
        count, device = tokens.shape[0], tokens.device
        mask = self.mask.to(device)
        rows = tokens.new_zeros(count, self.layout.num_params)
        rows[:, self.index.to(device)[mask]] = tokens[:, mask]
        if extras is not None:
            extras = extras.unsqueeze(0) if extras.dim() == 1 else extras
            if tuple(extras.shape) != (count, self.extra_index.numel()):
                raise ShapeMismatchError(f"expected extras [{count}, {self.extra_index.numel()}], "
                                         f"got {tuple(extras.shape)}")
            rows[:, self.extra_index.to(device)] = extras.to(rows.dtype)
        return rows[0] if single else rows


@dataclass
class TokenSequence:
    """The tokens of one network (``tokens [T, W]``) or of ``B`` networks of one architecture (``[B, T, W]``)."""

    tokens: Tensor
    extras: Tensor  # [E] or [B, E]: the values held by no token (integer buffers)
    template: TokenTemplate

    @property
    def mask(self) -> Tensor:
        return self.template.mask

    @property
    def positions(self) -> Tensor:
        return self.template.positions

    def rows(self) -> Tensor:
        """The flat parameter rows (``[P]`` or ``[B, P]``)."""
        return self.template.rows(self.tokens, self.extras)

    def state_dict(self) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        rows = self.rows()
        unflatten = self.template.graph_template.unflatten
        return unflatten(rows) if rows.dim() == 1 else [unflatten(row) for row in rows]


def _as_rows(item: object, input_shape: Sequence[int] | None) -> tuple[GraphTemplate, Tensor]:
    """(template, flat rows [B, P]) of a module, a ParamGraph/Batch of one architecture, or (template, rows)."""
    if isinstance(item, nn.Module):
        template = GraphTemplate.from_module(item, input_shape=input_shape)
        return template, template.flatten(item.state_dict()).unsqueeze(0)
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (GraphTemplate, GraphLayout)):
        template = item[0] if isinstance(item[0], GraphTemplate) else GraphTemplate(item[0])
        rows = item[1]
        return template, rows.unsqueeze(0) if rows.dim() == 1 else rows
    layout = common_layout(item) if hasattr(item, "edge_attr") else None
    if layout is None:
        raise TypeError(f"cannot tokenize {type(item).__name__}: pass an nn.Module, a ParamGraph or a Batch of one "
                        "architecture, or (GraphTemplate, rows [B, P])")
    template = GraphTemplate(layout)
    return template, template.unbatch(item)


def tokenize(item: object, token_width: int = 64, *, input_shape: Sequence[int] | None = None) -> TokenSequence:
    """The token sequence of a module or a parameter graph (``[T, W]``), or of a batch of graphs of one
    architecture or ``(template, rows)`` (``[B, T, W]``). For many calls on one architecture, build a
    :class:`TokenTemplate` once and call its :meth:`~TokenTemplate.tokenize`."""
    template, rows = _as_rows(item, input_shape)
    sequence = TokenTemplate(template, token_width).tokenize(rows)
    if isinstance(item, nn.Module) or (hasattr(item, "edge_attr") and not isinstance(item, Batch)):
        sequence = TokenSequence(sequence.tokens[0], sequence.extras[0], sequence.template)
    return sequence


def detokenize(tokens: TokenSequence) -> dict[str, Tensor] | list[dict[str, Tensor]]:
    """The state dict(s) of a token sequence (inverse of :func:`tokenize`, bit-exact)."""
    return tokens.state_dict()


@dataclass
class TokenBatch:
    """Token sequences of networks of several architectures, padded to a common length.

    ``tokens [B, T, W]``, ``positions [B, T, 3]``, ``mask [B, T, W]`` (real values), ``valid [B, T]`` (real
    tokens); ``templates[i]`` and ``extras[i]`` belong to network ``i``. :meth:`unbatch` gives the sequences back.
    """

    tokens: Tensor
    positions: Tensor
    mask: Tensor
    valid: Tensor
    extras: list[Tensor]
    templates: list[TokenTemplate]

    def unbatch(self) -> list[TokenSequence]:
        return [TokenSequence(self.tokens[i, :t.num_tokens].to(t.layout.dtype), self.extras[i], t)
                for i, t in enumerate(self.templates)]

    def state_dicts(self) -> list[dict[str, Tensor]]:
        return [sequence.state_dict() for sequence in self.unbatch()]


def tokenize_batch(items: Sequence[object], token_width: int = 64, *,
                   input_shape: Sequence[int] | None = None) -> TokenBatch:
    """One padded batch of the token sequences of ``items`` (modules, graphs, batches, ``(template, rows)``),
    of any mix of architectures. Networks of one architecture share one :class:`TokenTemplate` and one gather."""
    templates: list[TokenTemplate] = []
    by_template: dict[int, TokenTemplate] = {}
    sequences = []
    for item in items:
        graph_template, rows = _as_rows(item, input_shape)
        key = next((k for k, t in by_template.items() if t.layout == graph_template.layout), None)
        if key is None:
            key = len(by_template)
            by_template[key] = TokenTemplate(graph_template, token_width)
        template = by_template[key]
        sequence = template.tokenize(rows)
        for i in range(rows.shape[0]):
            sequences.append((sequence.tokens[i], sequence.extras[i]))
            templates.append(template)
    if not sequences:
        raise ValueError("tokenize_batch needs at least one network")
    length = max(t.num_tokens for t in templates)
    dtype = functools.reduce(torch.promote_types, [values.dtype for values, _ in sequences])  # holds each exactly
    count = len(sequences)
    tokens = torch.zeros(count, length, token_width, dtype=dtype)
    positions = torch.zeros(count, length, 3, dtype=torch.long)
    mask = torch.zeros(count, length, token_width, dtype=torch.bool)
    valid = torch.zeros(count, length, dtype=torch.bool)
    for i, ((values, _), template) in enumerate(zip(sequences, templates)):
        n = template.num_tokens
        tokens[i, :n], positions[i, :n], mask[i, :n], valid[i, :n] = values, template.positions, template.mask, True
    return TokenBatch(tokens, positions, mask, valid, [s[1] for s in sequences], templates)
