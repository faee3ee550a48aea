r"""Permutation-equivariant linear maps between weight spaces (the layers of DWSNet and NFN).

Features live on a network's weight space: per layer ``i`` a weight tensor
with axes ``(n_i, n_{i-1})`` and a bias with axis ``(n_i,)``, each with
channels. Every axis carries a *label*, the layer whose neurons it indexes.
A label is permutable (hidden layers; with ``permute_io`` also the input and
output layers, NFN's NP setting) or fixed. Fixed axes and conv kernel
dimensions are folded into the channels.

For one input tensor ``x`` and one output tensor ``y``, the equivariant
linear maps are spanned by the following, for each permutable label:

* a label on both sides: identity (keep the axis), or pool over it and
  broadcast it back;
* a label only on ``x``: pool over it;
* a label only on ``y``: broadcast over it.

A channel-mixing matrix comes with each such choice. The sum over all input
tensors and all choices, plus a bias per output tensor, spans every affine
equivariant map. This is the characterisation of Navon et al. (2023,
DWSNet) and of Zhou et al. (2023, NFN: HNP with fixed input/output neurons,
NP with all neurons permutable). Each term applies its matrix to the
*pooled* tensor before broadcasting, so no large intermediate is built.
Pooling is a mean.

Features are kept in a canonical form between layers: for each tensor,
``(B, *permutable axes, channels * fixed size)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wslgraph.weightspace import WeightSpaceSpec

__all__ = ["TensorSlot", "weight_space_slots", "WeightSpaceLinear", "to_canonical", "from_canonical",
           "invariant_pool"]


@dataclass(frozen=True)
class TensorSlot:
    """One weight-space tensor: its axis labels, which of them are permutable, and the fixed size per channel."""

    name: str
    labels: tuple[int, ...]  # all neuron axes, in tensor order
    permutable: tuple[int, ...]  # the labels of the permutable axes, in tensor order
    fixed_shape: tuple[int, ...]  # sizes of fixed neuron axes and kernel dims, folded into channels

    @property
    def fixed_size(self) -> int:
        return math.prod(self.fixed_shape)


def weight_space_slots(spec: WeightSpaceSpec, permute_io: bool = False) -> list[TensorSlot]:
    """The slots ``[W_1, ..., W_L, b_1, ..., b_L]`` of an architecture."""
    last = spec.num_layers

    def movable(label: int) -> bool:
        return permute_io or 0 < label < last

    slots = []
    for layer in range(1, last + 1):
        labels = (layer, layer - 1)
        fixed = tuple(spec.sizes[label] for label in labels if not movable(label)) + spec.kernels[layer - 1]
        slots.append(TensorSlot(f"W{layer}", labels, tuple(x for x in labels if movable(x)), fixed))
    for layer in range(1, last + 1):
        fixed = () if movable(layer) else (spec.sizes[layer],)
        slots.append(TensorSlot(f"b{layer}", (layer,), (layer,) if movable(layer) else (), fixed))
    return slots


def to_canonical(weights: list[Tensor], biases: list[Tensor], slots: list[TensorSlot]) -> list[Tensor]:
    """``(B, C, n_out, n_in[, k])`` / ``(B, C, n)`` tensors to ``(B, *permutable axes, C * fixed)``."""
    out = []
    for tensor, slot in zip([*weights, *biases], slots):
        movable = [2 + slot.labels.index(label) for label in slot.permutable]
        rest = [a for a in range(2, tensor.dim()) if a not in movable]  # fixed neuron axes, then kernel dims
        moved = tensor.permute(0, *movable, 1, *rest)
        out.append(moved.reshape(*moved.shape[:1 + len(movable)], -1))
    return out


def from_canonical(features: list[Tensor], slots: list[TensorSlot], spec: WeightSpaceSpec,
                   channels: int) -> tuple[list[Tensor], list[Tensor]]:
    """The inverse of :func:`to_canonical`: per-layer ``(B, C, n_out, n_in[, k])`` weights and ``(B, C, n)`` biases."""
    tensors = []
    for feature, slot in zip(features, slots):
        kernel = spec.kernels[int(slot.name[1:]) - 1] if slot.name.startswith("W") else ()
        fixed = [label for label in slot.labels if label not in slot.permutable]
        movable = len(slot.permutable)
        shaped = feature.reshape(feature.shape[0], *[spec.sizes[x] for x in slot.permutable], channels,
                                 *[spec.sizes[x] for x in fixed], *kernel)
        # axes now: batch, permutable labels, channel, fixed labels, kernel dims
        position = {label: 1 + i for i, label in enumerate(slot.permutable)}
        position.update({label: movable + 2 + i for i, label in enumerate(fixed)})
        kernel_axes = range(movable + 2 + len(fixed), shaped.dim())
        tensors.append(shaped.permute(0, movable + 1, *[position[x] for x in slot.labels], *kernel_axes))
    half = len(tensors) // 2
    return tensors[:half], tensors[half:]


def invariant_pool(features: list[Tensor]) -> Tensor:
    """Mean over every permutable axis of every tensor, concatenated: ``[B, sum of channels]``."""
    return torch.cat([f.mean(dim=tuple(range(1, f.dim() - 1))) if f.dim() > 2 else f for f in features], dim=-1)


@dataclass(frozen=True)
class _Term:
    source: int
    target: int
    pooled: tuple[int, ...]  # labels of the source pooled over (source-only, plus shared ones chosen to pool)
    kept: tuple[int, ...]  # shared labels kept as identity, in source order


class WeightSpaceLinear(nn.Module):
    """Every affine map between weight-space features that commutes with the neuron permutations (see module doc).

    Args:
        spec: The architecture.
        in_channels: Channels per weight/bias entry of the input features.
        out_channels: Channels of the output features.
        permute_io: Treat input and output neurons as permutable too (NFN's NP).

    Shapes:
        a list of canonical tensors (see :func:`to_canonical`) in and out.
    """

    def __init__(self, spec: WeightSpaceSpec, in_channels: int, out_channels: int, permute_io: bool = False) -> None:
        super().__init__()
        self.spec, self.in_channels, self.out_channels = spec, in_channels, out_channels
        self.slots = weight_space_slots(spec, permute_io)
        self.terms: list[_Term] = []
        for target, out_slot in enumerate(self.slots):
            for source, in_slot in enumerate(self.slots):
                shared = [x for x in in_slot.permutable if x in out_slot.permutable]
                only_in = tuple(x for x in in_slot.permutable if x not in out_slot.permutable)
                # on an axis of one neuron, keeping and pooling are the same map: keep it, once
                choosable = [x for x in shared if spec.sizes[x] > 1]
                for pooled_shared in itertools.chain.from_iterable(
                        itertools.combinations(choosable, r) for r in range(len(choosable) + 1)):
                    kept = tuple(x for x in shared if x not in pooled_shared)
                    self.terms.append(_Term(source, target, only_in + pooled_shared, kept))
        self.maps = nn.ModuleList(
            nn.Linear(in_channels * self.slots[t.source].fixed_size, out_channels * self.slots[t.target].fixed_size,
                      bias=False) for t in self.terms)
        # terms that write the same target with the same kept axes share one product: their (pooled) inputs are
        # concatenated along the channels, their matrices along the input features
        groups: dict[tuple[int, frozenset[int]], list[int]] = {}
        for index, term in enumerate(self.terms):
            groups.setdefault((term.target, frozenset(term.kept)), []).append(index)
        self._groups = tuple((target, tuple(label for label in self.slots[target].permutable if label in kept),
                              tuple(members)) for (target, kept), members in groups.items())
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(out_channels * s.fixed_size)) for s in self.slots)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = [0] * len(self.slots)
        for term in self.terms:
            fan_in[term.target] += self.in_channels * self.slots[term.source].fixed_size
        for term, linear in zip(self.terms, self.maps):
            bound = math.sqrt(3.0 / fan_in[term.target])  # unit-variance outputs for unit-variance inputs
            nn.init.uniform_(linear.weight, -bound, bound)
        for bias in self.bias:
            nn.init.zeros_(bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        batch = features[0].shape[0]
        sizes = self.spec.sizes
        means: dict[tuple[int, frozenset[int]], Tensor] = {}  # each pooled mean once, whatever reads it

        def pooled(term: _Term) -> Tensor:
            key = (term.source, frozenset(term.pooled))
            if key not in means:
                slot = self.slots[term.source]
                axes = tuple(1 + slot.permutable.index(label) for label in term.pooled)
                means[key] = features[term.source].mean(dim=axes) if axes else features[term.source]
            return means[key]

        outputs: list[Tensor | None] = [None] * len(self.slots)
        for target, kept, members in self._groups:
            inputs = []
            for index in members:  # kept axes in the target's order, channels last
                term = self.terms[index]
                x = pooled(term)
                inputs.append(x.permute(0, *[1 + term.kept.index(label) for label in kept], x.dim() - 1))
            weight = torch.cat([self.maps[index].weight for index in members], dim=1) if len(members) > 1 \
                else self.maps[members[0]].weight
            y = F.linear(torch.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0], weight)
            slot = self.slots[target]
            y = y.reshape([batch] + [sizes[label] if label in kept else 1 for label in slot.permutable] + [-1])
            outputs[target] = y if outputs[target] is None else outputs[target] + y
        result = []
        for index, (slot, out) in enumerate(zip(self.slots, outputs)):
            shape = [batch] + [sizes[label] for label in slot.permutable] + [out.shape[-1]]
            result.append(out.expand(shape) + self.bias[index])
        return result

    def forward_per_term(self, features: list[Tensor]) -> list[Tensor]:
        """The same map term by term (one product and one broadcast add per term): the definition
        :meth:`forward` is tested against."""
        batch = features[0].shape[0]
        sizes = self.spec.sizes
        outputs: list[Tensor | None] = [None] * len(self.slots)
        for term, linear in zip(self.terms, self.maps):
            source, target = self.slots[term.source], self.slots[term.target]
            x = features[term.source]
            pooled_axes = tuple(1 + source.permutable.index(label) for label in term.pooled)
            if pooled_axes:
                x = x.mean(dim=pooled_axes)
            y = linear(x)  # [B, *kept axes (source order), out * fixed]
            # arrange kept axes in target order and broadcast over the target's other permutable axes
            kept_in_target = [label for label in target.permutable if label in term.kept]
            y = y.permute(0, *[1 + term.kept.index(label) for label in kept_in_target], y.dim() - 1)
            view = [batch] + [sizes[label] if label in term.kept else 1 for label in target.permutable] + [-1]
            y = y.reshape(view)
            outputs[term.target] = y if outputs[term.target] is None else outputs[term.target] + y
        result = []
        for index, (slot, out) in enumerate(zip(self.slots, outputs)):
            shape = [batch] + [sizes[label] for label in slot.permutable] + [out.shape[-1]]
            result.append(out.expand(shape) + self.bias[index])
        return result

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, tensors={len(self.slots)}, "
                f"terms={len(self.terms)})")
