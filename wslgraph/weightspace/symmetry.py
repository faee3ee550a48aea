"""The symmetries of weight space: function-preserving permutations of hidden neurons, and sign flips.

:func:`hidden_permutations` draws a random element of an architecture's
permutation group (residual ties, normalization groups and grouped
convolutions kept); :func:`permute_state_dict` applies one to a state dict.
:func:`permute_hidden` makes a permuted, functionally equivalent copy of a
model. :func:`sign_flip_groups` lists the neurons whose sign may flip (odd
activations). Augmentation (:mod:`wslgraph.weightspace.augment`), the
equivariance tests and the editing task's checks all use these.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from wslgraph.convert.trace import trace
from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.vocab import IDENTITY_EDGES, TIE_EDGES, Activation, EdgeType, NodeFeature, NodeType

__all__ = ["hidden_permutations", "permute_state_dict", "permute_hidden", "sign_flip_groups"]


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def hidden_permutations(layout: GraphLayout, generator: torch.Generator | None = None) -> list[Tensor]:
    """A random function-preserving permutation of every node group.

    ``result[g][p]`` is the old channel that moves to position ``p`` of group
    ``g``. Input and output groups keep the identity. Groups tied by a
    residual addition share one permutation; a ``GroupNorm`` with ``G`` groups
    or a grouped convolution with ``G`` groups restricts a group to permuting
    its ``G`` blocks (shared by both sides of the convolution) and channels
    within blocks.

    Groups made of copies (a concatenation, a chunk of a group, a channel
    shuffle) are permuted as the channels they copy move: each copied group
    is permuted freely where a copy holds all of it, and within the pieces
    that copies take of it otherwise (ShuffleNet's chunks); a group copied
    several times over (Swin's patch merging) moves each copy alike. Where a
    group of copies is tied to another whose parts do not line up with its
    own, holds some channels more often than others, feeds a grouped
    convolution or a ``GroupNorm``, or is the output, the groups it copies keep
    their order (a smaller subgroup of the symmetries, still exact).
    Attention's groups take a random symmetry of attention (heads, queries
    with keys within a head, values within a head).
    """
    groups = layout.groups
    origins = _origins(layout)
    own = [bool((origin[:, 0] == i).all()) for i, origin in enumerate(origins)]
    full, blocks = _UnionFind(len(groups)), _UnionFind(len(groups))
    counts: list[set[int]] = [set() for _ in groups]
    frozen: set[int] = set()  # base groups that must keep their order

    def bases(index: int) -> set[int]:
        return set(origins[index][:, 0].tolist())

    def constrain(index: int, count: int) -> None:
        if count == 1:
            return
        if own[index]:
            counts[index].add(count)
        else:  # its own order is then fixed too: what it is tied to (a grouped convolution's output) keeps it
            frozen.update(bases(index) | {index})

    for i, group in enumerate(groups):
        constrain(i, group.norm_groups)
        if group.node_type != NodeType.HIDDEN:
            frozen.update(bases(i))
    for block in layout.edge_blocks:
        if block.kind in TIE_EDGES and not layout.is_copy(block):
            left, right = _runs(layout, origins[block.src]), _runs(layout, origins[block.dst])
            if left is not None and right is not None and \
                    [(groups[b].size, s) for b, s in left] == [(groups[b].size, s) for b, s in right]:
                for (a, _), (b, _) in zip(left, right):
                    full.union(a, b)
            else:
                frozen.update(bases(block.src) | bases(block.dst))
        elif block.kind == EdgeType.CONV and block.groups > 1:
            constrain(block.src, block.groups)
            constrain(block.dst, block.groups)
            blocks.union(block.src, block.dst)
    pieces = _pieces(layout, origins, frozen)
    for i in range(len(groups)):  # a full tie is also a block tie
        blocks.union(i, full.find(i))
    class_counts: dict[int, set[int]] = {}
    block_counts: dict[int, set[int]] = {}
    class_pieces: dict[int, list[Tensor]] = {}
    fixed_full, fixed_block = set(), set()
    for i in range(len(groups)):
        class_counts.setdefault(full.find(i), set()).update(counts[i])
        block_counts.setdefault(blocks.find(i), set()).update(counts[i])
        if i in pieces:
            class_pieces.setdefault(full.find(i), []).append(pieces[i])
        if i in frozen:
            fixed_full.add(full.find(i))
            fixed_block.add(blocks.find(i))
    fixed_full.update(root for root in class_pieces if class_counts[root])  # pieces and channel blocks: keep order
    sigmas: dict[int, Tensor] = {}
    perms: dict[int, Tensor] = {}
    heads_of = {b.src: b for b in layout.edge_blocks if b.kind == EdgeType.ATTENTION_HEAD
                and layout.groups[b.dst].size == b.groups}
    for block in layout.edge_blocks:  # attention: heads, and within heads queries with keys, values on their own
        if block.kind == EdgeType.ATTENTION_VALUE:
            into_heads = heads_of[block.src]
            roots = [full.find(g) for g in (block.src, into_heads.dst, block.dst)]
            if not (set(roots) & fixed_full or any(class_counts[r] for r in roots)
                    or {block.src, into_heads.dst, block.dst} & set(pieces)):
                qkv, sigma, out = _attention_permutation(into_heads.groups, into_heads.length, generator)
                perms.update(zip(roots, (qkv, sigma, out)))
    base_perms = []
    for i, group in enumerate(groups):
        root, block_root = full.find(i), blocks.find(i)
        if root in fixed_full or not own[i]:
            base_perms.append(torch.arange(group.size))
            continue
        if root not in perms:
            if root in class_pieces:
                perms[root] = _within_pieces(class_pieces[root], generator)
            else:
                shared = block_counts[block_root]
                num_blocks = math.lcm(*class_counts[root]) if class_counts[root] else 1
                size = group.size // num_blocks
                if len(shared) <= 1 and block_root not in fixed_block:
                    if block_root not in sigmas:
                        sigmas[block_root] = torch.randperm(num_blocks, generator=generator)
                    sigma = sigmas[block_root]
                else:
                    sigma = torch.arange(num_blocks)
                tau = torch.rand(num_blocks, size, generator=generator).argsort(dim=1)
                perms[root] = (sigma.view(-1, 1) * size + tau).view(-1)
        base_perms.append(perms[root])
    offsets = torch.tensor([g.offset for g in groups])
    moved = torch.cat(base_perms) + torch.repeat_interleave(  # node -> the node whose channel moves there
        offsets, torch.tensor([g.size for g in groups]))
    result = []
    for i, group in enumerate(groups):
        if own[i]:
            result.append(base_perms[i])
            continue
        keys = offsets[origins[i][:, 0]] + origins[i][:, 1]
        rank = _occurrence(keys)  # a channel copied several times (Swin's patch merging): the k-th copy moves
        copies = int(rank.max()) + 1  # to the k-th copy of where its channel moves
        position = torch.full((layout.num_nodes * copies,), -1, dtype=torch.long)
        position[keys * copies + rank] = torch.arange(group.size)
        result.append(position[moved[keys] * copies + rank])
    return result


def _attention_permutation(heads: int, size: int, generator: torch.Generator | None
                           ) -> tuple[Tensor, Tensor, Tensor]:
    """A random symmetry of multi-head attention: the permutation of its ``3 d`` query/key/value nodes (one
    permutation of heads for all three, one within each head shared by queries and keys, another for values), of
    its head nodes, and of its ``d`` attention outputs (as the values)."""
    per_head = size // heads
    sigma = torch.randperm(heads, generator=generator)
    start = sigma.view(-1, 1) * per_head
    query_key = (start + torch.rand(heads, per_head, generator=generator).argsort(dim=1)).view(-1)
    value = (start + torch.rand(heads, per_head, generator=generator).argsort(dim=1)).view(-1)
    return torch.cat([query_key, query_key + size, value + 2 * size]), sigma, value


def _occurrence(keys: Tensor) -> Tensor:
    """For each entry, how many equal entries come before it."""
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    starts = torch.cummax(torch.where(first, torch.arange(len(keys)), 0), dim=0).values
    rank = torch.empty_like(keys)
    rank[order] = torch.arange(len(keys)) - starts
    return rank


def _origins(layout: GraphLayout) -> list[Tensor]:
    """For each group, the ``(group, channel)`` that each of its channels copies, through any chain of copies
    (concatenations, chunks, channel shuffles); a group that copies nothing holds its own channels."""
    copies: dict[int, list] = {}
    for block in layout.edge_blocks:
        if layout.is_copy(block):
            copies.setdefault(block.dst, []).append(block)
    origins: list[Tensor] = []
    for i, group in enumerate(layout.groups):  # trace order: what a group copies comes before it
        origin = torch.stack([torch.full((group.size,), i), torch.arange(group.size)], dim=1)
        for block in copies.get(i, ()):
            origin[layout.copy_targets(block)] = origins[block.src][layout.copy_sources(block)]
        origins.append(origin)
    return origins


def _runs(layout: GraphLayout, origin: Tensor) -> list[tuple[int, int]] | None:
    """A group's channels as whole groups copied in order, ``[(group, first channel)]``, or ``None`` where they
    are not (a chunk, a shuffle)."""
    runs, start = [], 0
    while start < len(origin):
        base = int(origin[start, 0])
        size = layout.groups[base].size
        if start + size > len(origin) or not torch.equal(origin[start:start + size],
                                                         torch.stack([torch.full((size,), base),
                                                                      torch.arange(size)], dim=1)):
            return None
        runs.append((base, start))
        start += size
    return runs


def _pieces(layout: GraphLayout, origins: list[Tensor], frozen: set[int]) -> dict[int, Tensor]:
    """For each group of which some copy holds only part (or holds a channel twice: then it is frozen), a label
    per channel: channels with equal labels are held by the same copies, and may be permuted among themselves."""
    labels: dict[int, Tensor] = {}
    for i, origin in enumerate(origins):
        if bool((origin[:, 0] == i).all()):
            continue
        for base in set(origin[:, 0].tolist()):
            held = origin[origin[:, 0] == base, 1]
            size = layout.groups[base].size
            counts = torch.bincount(held, minlength=size)
            if int(counts.max()) != int(counts.min()):  # some channels copied more often than others
                frozen.add(base)
                continue
            held = held.unique()
            if held.numel() == size:
                continue
            mask = torch.zeros(size, dtype=torch.long)
            mask[held] = 1
            label = labels.get(base, torch.zeros(size, dtype=torch.long))
            labels[base] = torch.unique(torch.stack([label, mask], dim=1), dim=0, return_inverse=True)[1]
    return labels


def _within_pieces(labels: list[Tensor], generator: torch.Generator | None) -> Tensor:
    """A random permutation that keeps every channel among those with the same labels (in every list)."""
    joint = torch.unique(torch.stack(labels, dim=1), dim=0, return_inverse=True)[1]
    perm = torch.arange(len(joint))
    for piece in joint.unique():
        where = (joint == piece).nonzero().view(-1)
        perm[where] = where[torch.randperm(len(where), generator=generator)]
    return perm


def permute_state_dict(layout: GraphLayout, state_dict: dict[str, Tensor],
                       perms: Sequence[Tensor]) -> dict[str, Tensor]:
    """Apply per-group channel permutations to every tensor tied to them."""
    state = dict(state_dict)
    for block in layout.edge_blocks:
        if block.kind in IDENTITY_EDGES:
            continue
        weight, src, dst = state[block.key], perms[block.src], perms[block.dst]
        if block.kind == EdgeType.CONV:
            out_per_group = weight.shape[0] // block.groups
            fan_in = weight.shape[1]
            rows = torch.arange(weight.shape[0]) // out_per_group * fan_in
            local = src[rows.unsqueeze(1) + torch.arange(fan_in)] % fan_in
            state[block.key] = weight[dst.unsqueeze(1), local]
        elif block.kind == EdgeType.EMBEDDING:  # (..., tokens, channels): the tokens keep their order
            state[block.key] = weight.reshape(-1, weight.shape[-1])[dst][:, src].reshape(weight.shape)
        elif block.kind == EdgeType.FLATTEN_LINEAR:
            channels = layout.groups[block.src].size
            view = weight.view(weight.shape[0], channels, -1)
            state[block.key] = view[dst][:, src].reshape(weight.shape)
        else:
            state[block.key] = weight[dst][:, src]
    for param in layout.node_params:
        state[param.key] = state[param.key][perms[param.group]]
    return state


def permute_hidden(module: nn.Module, generator: torch.Generator | None = None, *,
                   input_shape: Sequence[int] | None = None) -> nn.Module:
    """A functionally equivalent copy of ``module`` with hidden neurons permuted.

    Hidden neurons/channels are permuted at random (see
    :func:`hidden_permutations` for the ties kept: residual additions,
    normalization layers, grouped convolutions). Inputs and outputs keep
    their order, so the copy computes the same function.

    Args:
        module: A model :func:`~wslgraph.to_graph` can convert.
        generator: Source of randomness (default: torch's global one).
        input_shape: As for :func:`~wslgraph.to_graph`.
    """
    layout, state_dict = trace(module, input_shape)
    permuted = copy.deepcopy(module)
    state = OrderedDict(permute_state_dict(layout, state_dict, hidden_permutations(layout, generator)))
    state._metadata = getattr(state_dict, "_metadata", None)  # versions some modules' loaders read (MNASNet)
    permuted.load_state_dict(state)
    return permuted


_ODD = (Activation.SINE, Activation.TANH, Activation.HARDTANH)  # activations with f(-x) = -f(x)


def sign_flip_groups(layout: GraphLayout) -> list[tuple[int, list, list, list[str]]]:
    """The sign symmetries of an architecture: for each hidden group whose neurons may flip sign, ``(size,
    incoming (key, shape), outgoing (key, shape), bias keys)``.

    A neuron with an odd activation (sine, tanh, symmetric hardtanh) computes the same function with its incoming
    weights and bias negated and its outgoing weights negated (ScaleGMN's sign symmetry). Eligible: hidden groups
    with such an activation, fed and read by Linear or ungrouped convolution weights only, with no normalisation
    parameters or residual ties.
    """
    eligible = []
    for index, group in enumerate(layout.groups):
        if group.node_type != NodeType.HIDDEN or group.activation not in _ODD:
            continue
        blocks = [b for b in layout.edge_blocks if index in (b.src, b.dst)]
        params = [p for p in layout.node_params if p.group == index]
        plain = all(b.kind in (EdgeType.LINEAR, EdgeType.CONV) and b.groups == 1 and b.key is not None
                    and (b.kind == EdgeType.CONV or not b.kernel_shape) for b in blocks)
        if not plain or any(p.column != NodeFeature.BIAS for p in params):
            continue
        incoming = [(b.key, b.weight_shape) for b in blocks if b.dst == index]
        outgoing = [(b.key, b.weight_shape) for b in blocks if b.src == index]
        if incoming and outgoing:
            eligible.append((group.size, incoming, outgoing, [p.key for p in params]))
    return eligible
