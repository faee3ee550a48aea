"""The conversion context: what layer handlers call to describe a layer.

Tracing a model walks its ``torch.fx`` graph in execution order. Each tensor
is seen *channel-wise* as a :class:`Value`: which :class:`NodeGroup` holds its
channels, at which *version* (how many channel-wise transformations have been
applied to the group so far), and its spatial shape. A handler receives the
input value of its layer and returns the output value, describing the layer
with the primitives of :class:`ConversionContext` (``linear``, ``conv``,
``norm``, ``activation``, ``pool``, ``flatten``, ``add``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from wslgraph.errors import ShapeInferenceError, ShapeMismatchError, UnsupportedModuleError
from wslgraph.graph.layout import (
    EdgeBlock,
    GraphLayout,
    NodeGroup,
    NodeParam,
    StateEntry,
    expand_kernel_shape,
)
from wslgraph.graph.vocab import Activation, EdgeType, NodeFeature, NodeType

__all__ = ["ConversionContext", "Value"]

Spatial = tuple[int | None, ...]


@dataclass(eq=False)
class _Group:
    """Mutable node group while tracing (becomes a frozen NodeGroup)."""

    name: str
    size: int | None
    layer: int
    is_input: bool = False
    is_product: bool = False  # its value is the product of its gate inputs (squeeze-excitation), or attention
    is_constant: bool = False  # a constant input: token positions or a class token (input nodes)
    activation: Activation = Activation.IDENTITY
    activation_param: float = 0.0
    norm_groups: int = 1
    has_norm: bool = False
    version: int = 0
    # (version read, reader) for every layer that consumed the group's values.
    reads: list[tuple[int, str]] = field(default_factory=list)
    # fx nodes whose value lives on this group (to know whether it may absorb a sum).
    fx_nodes: list[object] = field(default_factory=list)


@dataclass(frozen=True)
class Value:
    """A traced tensor, seen channel-wise.

    Args:
        group: The node group holding its channels.
        version: Number of channel-wise transformations (normalization,
            activation, residual sum) applied to the group when this value
            was produced.
        spatial: Spatial shape after the channel dim: ``()`` for a vector of
            features, a tuple (entries may be ``None`` when unknown) for a
            feature map, ``None`` when even the rank is unknown (the network
            input before its first layer).
        flat_block: Set when a feature map was flattened: the spatial shape
            of each channel's block of features.
        scale: A pending constant factor (``w0`` of ``sin(w0 * x)``).
        channels_last: The feature map was permuted to ``(N, *spatial, C)``
            (ConvNeXt): Linear layers and LayerNorm then act on channels.
        channel_split: The channel dim was viewed as ``(rows, cols)``
            (the first step of ShuffleNet's channel shuffle).
        split_transposed: ... and those two dims were then transposed.
    """

    group: _Group
    version: int
    spatial: Spatial | None
    flat_block: Spatial | None = None
    scale: float | None = None
    channels_last: bool = False
    channel_split: tuple[int, int] | None = None
    split_transposed: bool = False


@dataclass(frozen=True)
class _Block:
    kind: EdgeType
    key: str | None
    src: _Group
    dst: _Group
    weight_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    groups: int = 1
    dst_start: int = 0
    src_start: int = 0
    length: int = 0
    dst_stride: int = 1


def join(prefix: str, name: str) -> str:
    """State-dict key of attribute ``name`` of the module at ``prefix``."""
    return f"{prefix}.{name}" if prefix else name


class ConversionContext:
    """Collects node groups, edge blocks and node parameters while tracing.

    Handlers registered with :func:`wslgraph.convert.register` receive it as
    their first argument. Every primitive checks its input and raises a typed
    error that names the layer.
    """

    def __init__(self, state_dict: dict[str, Tensor]) -> None:
        self.state_dict = state_dict
        self._groups: list[_Group] = []
        self._blocks: list[_Block] = []
        self._node_params: list[tuple[str, _Group, NodeFeature]] = []
        self._scalars: list[str] = []
        self._used: dict[str, str] = {}
        self.processed: set[object] = set()
        self.current: object | None = None

    # ------------------------------------------------------------------ values
    def input(self) -> Value:
        """The network input: an input group whose size the first layer fixes."""
        if self._groups:
            raise UnsupportedModuleError("wslgraph converts models with exactly one tensor input")
        group = _Group("input", None, 0, is_input=True)
        self._groups.append(group)
        return Value(group, 0, None)

    def linear(self, value: Value, *, name: str, weight_key: str, bias_key: str | None = None) -> Value:
        """A dense layer ``y = x W^T + b`` with ``W`` stored as ``(out, in)``."""
        weight = self._use(weight_key, name)
        if weight.dim() != 2:
            raise UnsupportedModuleError(f"'{name}': a linear weight must be 2-D (out, in), got {list(weight.shape)}")
        out_features, in_features = weight.shape
        self._no_scale(value, name)
        kind, kernel = EdgeType.LINEAR, ()
        if value.flat_block is not None:
            block = self._flat_block(value, in_features, name)
            if math.prod(block) > 1:
                kind, kernel = EdgeType.FLATTEN_LINEAR, block
        elif value.spatial and not value.channels_last:
            raise UnsupportedModuleError(
                f"'{name}' is a Linear applied to a feature map of rank "
                f"{len(value.spatial)}: it would act on the last spatial dim, not on channels. "
                "Flatten or pool the map first, or permute channels last (x.permute(0, 2, 3, 1))")
        else:
            self._set_size(value.group, in_features, name)
        out = self._new_group(name, out_features, [value])
        self._blocks.append(_Block(kind, weight_key, value.group, out, tuple(weight.shape), kernel))
        self._bias(bias_key, out, name)
        if value.channels_last:  # a 1x1 convolution in all but layout
            return Value(out, 0, value.spatial, channels_last=True)
        return Value(out, 0, ())

    def conv(self, value: Value, *, name: str, weight_key: str, bias_key: str | None = None,
             groups: int = 1) -> Value:
        """An N-d convolution with weight ``(out, in / groups, *kernel)``."""
        weight = self._use(weight_key, name)
        rank = weight.dim() - 2
        self._no_scale(value, name)
        self._channels_first(value, name)
        if value.flat_block is not None or value.spatial == ():
            raise UnsupportedModuleError(f"'{name}' is a {rank}-d convolution applied to a flat vector; "
                                         "wslgraph needs the (N, C, *spatial) layout")
        spatial = value.spatial if value.spatial is not None else (None,) * rank
        if len(spatial) != rank:
            raise ShapeMismatchError(f"'{name}' is a {rank}-d convolution but its input has "
                                     f"{len(spatial)} spatial dims")
        self._set_size(value.group, weight.shape[1] * groups, name)
        out = self._new_group(name, weight.shape[0], [value])
        self._blocks.append(_Block(EdgeType.CONV, weight_key, value.group, out, tuple(weight.shape),
                                   tuple(weight.shape[2:]), groups))
        self._bias(bias_key, out, name)
        return Value(out, 0, (None,) * rank)

    def norm(self, value: Value, *, name: str, num_channels: int, weight_key: str | None = None,
             bias_key: str | None = None, mean_key: str | None = None, var_key: str | None = None,
             scalar_keys: tuple[str, ...] = (), num_groups: int = 1, vector_only: bool = False) -> Value:
        """A per-channel normalization; its tensors become node features."""
        value = self._channelwise(value, name)
        if self._pending(value) or self._read_already(value):  # pre-norm blocks: x + f(norm(x)) reads x too
            value = self._fork(value, name)
        if vector_only and value.spatial and not value.channels_last:
            raise UnsupportedModuleError(
                f"'{name}' normalizes the last dims of a feature map, i.e. per spatial position rather "
                "than per channel; wslgraph supports LayerNorm over features of a vector (N, C)")
        group = value.group
        self._set_size(group, num_channels, name)
        self._latest(value, name, "normalization")
        if group.has_norm:
            raise UnsupportedModuleError(f"'{name}' is a second normalization of the channels of "
                                         f"'{group.name}'; a node holds one normalization's parameters")
        columns = (NodeFeature.NORM_WEIGHT, NodeFeature.NORM_BIAS, NodeFeature.RUNNING_MEAN, NodeFeature.RUNNING_VAR)
        for key, column in zip((weight_key, bias_key, mean_key, var_key), columns):
            if key is not None:
                self._node_param(key, group, column, name)
        for key in scalar_keys:
            self._use(key, name)
            self._scalars.append(key)
        group.has_norm = True
        group.norm_groups = num_groups
        group.version += 1
        return replace(value, version=group.version)

    def activation(self, value: Value, kind: Activation, param: float = 0.0, *, weight_key: str | None = None,
                   name: str | None = None) -> Value:
        """A pointwise activation with its parameter (slope, alpha, beta).

        ``SINE`` takes its frequency ``w0`` from a pending constant factor
        (``sin(w0 * x)``) instead. ``weight_key`` names a learned parameter
        with one entry per neuron (PReLU's slopes), stored as each node's
        ``ACTIVATION_PARAM`` feature.
        """
        if value.scale is not None and kind != Activation.SINE:
            self._no_scale(value, kind.name.lower())
        value = self._channelwise(value, kind.name.lower())
        if self._read_already(value):  # a layer read these values before the activation (MaxViT's projection)
            value = self._fork(value, name or kind.name.lower())
        group = value.group
        self._latest(value, kind.name.lower(), "activation")
        if group.activation != Activation.IDENTITY:
            raise UnsupportedModuleError(
                f"two activations ({group.activation.name.lower()} then {kind.name.lower()}) act on the "
                f"neurons of '{group.name}'; a node has one activation")
        group.activation = kind
        group.activation_param = float(value.scale if kind == Activation.SINE else param)
        if weight_key is not None:
            weight = self.state_dict.get(weight_key)
            if weight is not None and group.size is not None and weight.numel() == 1 and group.size > 1:
                raise UnsupportedModuleError(
                    f"'{name}' has one slope shared by {group.size} neurons; a node holds its own slope, so give "
                    f"each neuron one: nn.PReLU(num_parameters={group.size}) (its slope copied to all)")
            self._node_param(weight_key, group, NodeFeature.ACTIVATION_PARAM, name or kind.name.lower())
        group.version += 1
        return replace(value, version=group.version, scale=None)

    def scale(self, value: Value, factor: float) -> Value:
        """Multiplication by a constant; only valid as the frequency of a sine."""
        return replace(value, scale=(value.scale or 1.0) * factor)

    def channel_scale(self, value: Value, *, name: str, key: str) -> Value:
        """Multiplication by a learned per-channel vector (ConvNeXt's layer scale): a ``LAYER_SCALE`` node feature."""
        value = self._channelwise(value, name)
        group = value.group
        self._latest(value, name, "layer scale")
        if any(p[1] is group and p[2] == NodeFeature.LAYER_SCALE for p in self._node_params):
            raise UnsupportedModuleError(f"'{name}' scales the channels of '{group.name}' a second time")
        self._node_param(key, group, NodeFeature.LAYER_SCALE, name)
        group.version += 1
        return replace(value, version=group.version)

    def permute_channels(self, value: Value, *, name: str, last: bool) -> Value:
        """``x.permute`` moving channels to the last dim (``last``) or back to dim 1."""
        self._no_scale(value, name)
        if value.flat_block is not None or not value.spatial or value.channels_last == last:
            raise UnsupportedModuleError(f"'{name}' permutes dims of a tensor that is not a channels-"
                                         f"{'first' if last else 'last'} feature map; wslgraph converts moving "
                                         "channels last and back (ConvNeXt's x.permute(0, 2, 3, 1))")
        return replace(value, channels_last=last)

    def pool(self, value: Value, *, name: str, spatial: Spatial | None = None) -> Value:
        """A per-channel spatial operation (pooling); ``spatial`` is its output shape if known."""
        self._no_scale(value, name)
        self._channels_first(value, name)
        if value.flat_block is not None or value.spatial == ():
            raise UnsupportedModuleError(f"'{name}' pools a flat vector; pool before flattening")
        if spatial is None:
            spatial = (None,) * len(value.spatial) if value.spatial is not None else None
        return replace(value, spatial=spatial)

    def flatten(self, value: Value, *, name: str) -> Value:
        """``flatten(x, 1)``: a feature map becomes channels x blocks of features."""
        self._no_scale(value, name)
        self._channels_first(value, name)
        group = value.group
        if group.is_input and group.size is None:
            # Flattening the raw input: every input feature becomes an input node.
            return replace(value, spatial=())
        if value.spatial is None or not value.spatial or value.flat_block is not None:
            return value
        return replace(value, spatial=(), flat_block=value.spatial)

    def add(self, left: Value, right: Value, *, name: str) -> Value:
        """A residual addition ``left + right``.

        The sum lives on the nodes of an operand that nothing else reads (the
        output of the residual branch's last layer): those nodes receive
        identity edges from the other operand. Otherwise a new group of sum
        nodes receives identity edges from both.
        """
        for value in (left, right):
            self._no_scale(value, name)
            if value.flat_block is not None:
                raise UnsupportedModuleError(f"'{name}' adds flattened feature maps; add before flattening")
        if left.group is right.group:
            raise UnsupportedModuleError(f"'{name}' adds two tensors living on the same neurons "
                                         f"('{left.group.name}'), e.g. x + x; this is a scaling, not a residual")
        size = left.group.size if left.group.size is not None else right.group.size
        for value in (left, right):
            self._set_size(value.group, size, name)
        spatial = left.spatial if left.spatial is not None else right.spatial
        last = self._same_layout(left, right, name)
        for target, source in ((left, right), (right, left)):
            if self._can_absorb(target):
                self._read(source, name)
                group = target.group
                group.layer = max(group.layer, source.group.layer + 1)
                self._blocks.append(_Block(EdgeType.RESIDUAL, None, source.group, group, (), ()))
                group.version += 1
                return Value(group, group.version, spatial, channels_last=last)
        out = self._new_group(name, size, [left, right])
        for value in (left, right):
            self._blocks.append(_Block(EdgeType.RESIDUAL, None, value.group, out, (), ()))
        return Value(out, 0, spatial, channels_last=last)

    def multiply(self, left: Value, right: Value, *, name: str) -> Value:
        """An elementwise product of two tensors (squeeze-excitation's ``x * gate``): a new group of product nodes,
        each with one ``GATE`` identity edge from the same channel of each factor. A factor may be pooled to a
        single position (a gate broadcast over the feature map)."""
        for value in (left, right):
            self._no_scale(value, name)
            if value.flat_block is not None:
                raise UnsupportedModuleError(f"'{name}' multiplies flattened feature maps; gate before flattening")
        if left.group is right.group:
            raise UnsupportedModuleError(f"'{name}' multiplies a tensor by itself (x * x); wslgraph converts products "
                                         "of two branches, such as squeeze-excitation's x * sigmoid(fc(pool(x)))")
        sizes = {v.group.size for v in (left, right)} - {None}
        if len(sizes) > 1:
            raise UnsupportedModuleError(f"'{name}' multiplies {left.group.size} channels by {right.group.size}; "
                                         "a gate must have one value per channel of the tensor it scales")
        size = sizes.pop() if sizes else None
        for value in (left, right):
            self._set_size(value.group, size, name)
        spatial = max((v.spatial for v in (left, right) if v.spatial is not None),
                      key=lambda s: (len(s), [d is None or d > 1 for d in s]), default=None)
        last = self._same_layout(left, right, name)
        out = self._new_group(name, size, [left, right])
        out.is_product = True
        for value in (left, right):
            self._blocks.append(_Block(EdgeType.GATE, None, value.group, out, (), ()))
        return Value(out, 0, spatial, channels_last=last)

    def concat(self, values: list[Value], *, name: str) -> Value:
        """``torch.cat`` along channels: a new group whose channels receive one identity edge each, in order, from
        the channels of the concatenated values (so each consumer of the concatenation may normalise and activate
        it on its own, as DenseNet's layers do)."""
        if not values:
            raise UnsupportedModuleError(f"'{name}' concatenates nothing")
        for value in values:
            self._copyable(value, name, "concatenates")
        ranks = {len(v.spatial) for v in values if v.spatial is not None}
        if len(ranks) > 1:
            raise ShapeMismatchError(f"'{name}' concatenates tensors of different ranks")
        layouts = {v.channels_last for v in values}
        if len(layouts) > 1:
            raise UnsupportedModuleError(f"'{name}' concatenates channels-last and channels-first tensors")
        spatial = next((v.spatial for v in values if v.spatial is not None), None)
        out = self._new_group(name, sum(v.group.size for v in values), values)
        start = 0
        for value in values:
            self._blocks.append(_Block(EdgeType.RESIDUAL, None, value.group, out, (), (), dst_start=start))
            start += value.group.size
        return Value(out, 0, spatial, channels_last=layouts.pop())

    def split_channels(self, value: Value, sizes: list[int], *, name: str) -> list[Value]:
        """``x.chunk`` / ``x.split`` along channels: one new group per piece, each of whose channels receives one
        identity edge from the channel of ``value`` it copies (as a concatenation's channels do)."""
        self._copyable(value, name)
        self._channels_first(value, name)
        if sum(sizes) != value.group.size or min(sizes) < 1:
            raise ShapeMismatchError(f"'{name}' splits {value.group.size} channels into pieces of {sizes}")
        pieces, start = [], 0
        for index, size in enumerate(sizes):
            out = self._new_group(f"{name}.{index}", size, [value])
            self._blocks.append(_Block(EdgeType.RESIDUAL, None, value.group, out, (), (), src_start=start,
                                       length=size))
            pieces.append(Value(out, 0, value.spatial))
            start += size
        return pieces

    def shuffle_channels(self, value: Value, rows: int, cols: int, *, name: str) -> Value:
        """A channel shuffle (ShuffleNet: ``view(N, rows, cols, ...)``, ``transpose(1, 2)``, ``view(N, C, ...)``):
        a new group whose channel ``j * rows + i`` receives one identity edge from channel ``i * cols + j``, as
        ``rows`` strided identity blocks."""
        self._copyable(value, name)
        self._channels_first(value, name)
        if rows * cols != value.group.size:
            raise ShapeMismatchError(f"'{name}' views {value.group.size} channels as {rows} x {cols}")
        out = self._new_group(name, value.group.size, [value])
        for row in range(rows):
            self._blocks.append(_Block(EdgeType.RESIDUAL, None, value.group, out, (), (), dst_start=row,
                                       src_start=row * cols, length=cols, dst_stride=rows))
        return Value(out, 0, value.spatial)

    def attention(self, value: Value, *, name: str, heads: int, in_weight_key: str, in_bias_key: str | None,
                  out_weight_key: str, out_bias_key: str | None, position_bias_key: str | None = None,
                  index_key: str | None = None) -> Value:
        """Multi-head self-attention over the tokens (positions) of a channels-last tensor.

        The input projection is a Linear into a group of ``3 d`` nodes (queries, keys, values, each split into
        ``heads`` heads). A group of one node per head receives an ``ATTENTION_HEAD`` edge from each key dim of
        its head and sends one to each attention output of its head; the group of ``d`` attention outputs (one
        per value dim) also receives an ``ATTENTION_VALUE`` identity edge from its value dim; an ``ATTENTION_QK``
        identity edge pairs query dim ``i`` with key dim ``i``. The output projection reads the attention outputs.
        The graph's permutation symmetries are then attention's: heads, queries with keys within a head, values
        within a head. A learned relative position bias (Swin: ``[positions, heads]``) is an ``EMBEDDING`` block
        between the head nodes and a group of constant position nodes; its integer index buffer is kept as
        graph-level scalars.
        """
        if not value.channels_last or not value.spatial:
            raise UnsupportedModuleError(f"'{name}' attends over a tensor that is not a token sequence (N, tokens, "
                                         "channels) or a channels-last map; wslgraph converts batch_first "
                                         "self-attention over tokens")
        qkv = self.linear(value, name=f"{name}.in_proj", weight_key=in_weight_key, bias_key=in_bias_key)
        size = qkv.group.size // 3
        if size % heads:
            raise ShapeMismatchError(f"'{name}' has {size} dims, not a multiple of its {heads} heads")
        head_group = self._new_group(f"{name}.heads", heads, [qkv])
        out = self._new_group(f"{name}.attention", size, [qkv])
        out.layer = head_group.layer + 1
        head_group.is_product = out.is_product = True  # they never absorb a residual sum
        source = qkv.group
        self._blocks += [
            _Block(EdgeType.ATTENTION_QK, None, source, source, (), (), src_start=0, length=size, dst_start=size),
            _Block(EdgeType.ATTENTION_HEAD, None, source, head_group, (), (), groups=heads, src_start=size,
                   length=size),
            _Block(EdgeType.ATTENTION_HEAD, None, head_group, out, (), (), groups=heads, length=size),
            _Block(EdgeType.ATTENTION_VALUE, None, source, out, (), (), src_start=2 * size, length=size)]
        if position_bias_key is not None:
            table = self._use(position_bias_key, name)
            if table.dim() != 2 or table.shape[1] != heads:
                raise ShapeMismatchError(f"'{position_bias_key}' has shape {list(table.shape)}; a relative position "
                                         f"bias table of {heads} heads is (positions, {heads})")
            self._embedding(position_bias_key, head_group, table)
        if index_key is not None:
            self.constant_buffer(index_key, name)
        attended = Value(out, 0, value.spatial, channels_last=True)
        return self.linear(attended, name=f"{name}.out_proj", weight_key=out_weight_key, bias_key=out_bias_key)

    def constant_buffer(self, key: str, name: str) -> None:
        """A buffer the architecture fixes (an index table), kept exactly as graph-level scalars, one per entry."""
        tensor = self._use(key, name)
        if tensor.is_complex() or tensor.dtype == torch.bool:
            raise UnsupportedModuleError(f"'{key}' is a {tensor.dtype} buffer; graph-level scalars hold integer "
                                         "or real values")
        self._scalars.append(key)

    def embed_tokens(self, value: Value, *, name: str, key: str, prepend: bool = False) -> Value:
        """A learned tensor of ``(..., tokens, channels)`` added to a token sequence (a positional embedding), or
        one prepended to it as a new token (``prepend``: a class token): a constant input group with one node per
        token, and an ``EMBEDDING`` edge between each token node and each channel holding the entry."""
        self._no_scale(value, name)
        if not value.channels_last or value.spatial is None or len(value.spatial) != 1:
            raise UnsupportedModuleError(f"'{name}' adds the parameter '{key}' to a tensor that is not a token "
                                         "sequence (N, tokens, channels); wslgraph converts positional embeddings "
                                         "and class tokens of a transformer's token sequence")
        tensor = self._use(key, name)
        channels = value.group.size
        if tensor.dim() < 2 or tensor.shape[-1] != channels or any(s != 1 for s in tensor.shape[:-2]) or \
                (prepend and tensor.shape[-2] != 1):
            what, tokens = ("class token", "1") if prepend else ("positional embedding", "tokens")
            raise ShapeMismatchError(f"'{key}' has shape {list(tensor.shape)}; a {what} of {channels} channels is "
                                     f"(1, {tokens}, {channels})")
        self._latest(value, name, "token embedding")
        tokens, known = tensor.shape[-2], value.spatial[0]
        if not prepend and known is not None and known != tokens:
            raise ShapeMismatchError(f"'{name}' adds '{key}' of {tokens} tokens to a sequence of {known}")
        self._embedding(key, value.group, tensor)
        value.group.version += 1
        spatial = (None if known is None else known + tokens,) if prepend else (tokens,)
        return replace(value, version=value.group.version, spatial=spatial)

    def move_positions(self, value: Value, *, name: str, channels_last: bool, rank: int) -> Value:
        """An operation that only rearranges positions (windows, grids, swapped position axes) and puts the channels
        last or first: nothing per channel changes; the positions become ``rank`` dims of unknown size."""
        self._no_scale(value, name)
        if value.flat_block is not None or not value.spatial:
            raise UnsupportedModuleError(f"'{name}' rearranges the positions of a tensor that has none")
        return replace(value, spatial=(None,) * rank, channels_last=channels_last)

    def take_token(self, value: Value, *, name: str) -> Value:
        """``x[:, i]`` of a token sequence (a transformer's class token): a vector of the same channels."""
        self._no_scale(value, name)
        if not value.channels_last or value.spatial is None or len(value.spatial) != 1:
            raise UnsupportedModuleError(f"'{name}' indexes a tensor that is not a token sequence; wslgraph converts "
                                         "x[:, i] of (N, tokens, channels)")
        return replace(value, spatial=(), channels_last=False)

    # --------------------------------------------------------------- helpers
    def _embedding(self, key: str, source: _Group, tensor: Tensor) -> None:
        """A learned ``(..., rows, channels)`` tensor as ``EMBEDDING`` edges from ``source``'s channels to a new
        group of constant input nodes, one per row, named after the parameter."""
        rows = _Group(key, tensor.shape[-2], 0, is_constant=True)
        self._groups.append(rows)
        self._blocks.append(_Block(EdgeType.EMBEDDING, key, source, rows, tuple(tensor.shape), ()))

    def _pending(self, value: Value) -> bool:
        """Whether some consumer still to come reads the group's values (so they must stay as they are)."""
        return any(user not in self.processed and user is not self.current
                   for node in value.group.fx_nodes for user in getattr(node, "users", ()))

    def _read_already(self, value: Value) -> bool:
        """Whether a layer has already read the group's current values."""
        return value.version == value.group.version and any(v == value.version for v, _ in value.group.reads)

    def _fork(self, value: Value, name: str) -> Value:
        """A new group of nodes equal to ``value`` (one identity edge each, a tie), for a normalisation that
        must not change the values another consumer reads later."""
        out = self._new_group(f"{name}.input", value.group.size, [value])
        self._blocks.append(_Block(EdgeType.RESIDUAL, None, value.group, out, (), ()))
        return replace(value, group=out, version=0)

    def _same_layout(self, left: Value, right: Value, name: str) -> bool:
        """Whether both operands are channels-last (refused when only one is)."""
        if left.channels_last != right.channels_last and left.spatial and right.spatial:
            raise UnsupportedModuleError(f"'{name}' combines a channels-last tensor with a channels-first one; "
                                         "permute one of them first")
        return left.channels_last or right.channels_last

    def _copyable(self, value: Value, name: str, what: str = "rearranges the channels of") -> None:
        """Checks for an operation that copies channels (concatenation, split, shuffle)."""
        self._no_scale(value, name)
        if value.flat_block is not None:
            raise UnsupportedModuleError(f"'{name}' {what} a flattened feature map; do it along channels before "
                                         "flattening")
        if value.group.size is None:
            raise ShapeInferenceError(f"'{name}' {what} the raw input, whose channel count no layer has fixed yet; "
                                      "pass input_shape or read the input with a layer first")

    def _can_absorb(self, value: Value) -> bool:
        group = value.group
        if group.is_input or group.is_product or group.reads or group.activation != Activation.IDENTITY:
            return False
        if value.version != group.version:
            return False
        # Earlier values of the group must have no consumer still to come.
        return all(user in self.processed or user is self.current
                   for node in group.fx_nodes for user in getattr(node, "users", ()))

    def _use(self, key: str, name: str) -> Tensor:
        if key not in self.state_dict:
            raise UnsupportedModuleError(f"'{name}' refers to '{key}', which is not in the model's state_dict")
        if key in self._used:
            raise UnsupportedModuleError(
                f"'{key}' is used by both '{self._used[key]}' and '{name}': the module is called twice "
                "(weight sharing), which a parameter graph cannot represent")
        self._used[key] = name
        return self.state_dict[key]

    def _bias(self, key: str | None, group: _Group, name: str) -> None:
        if key is not None:
            self._node_param(key, group, NodeFeature.BIAS, name)

    def _node_param(self, key: str, group: _Group, column: NodeFeature, name: str) -> None:
        tensor = self._use(key, name)
        if tensor.numel() != group.size:
            raise ShapeMismatchError(f"'{key}' has {tensor.numel()} entries but '{group.name}' "
                                     f"has {group.size} channels")
        self._node_params.append((key, group, column))

    def _new_group(self, name: str, size: int, inputs: list[Value]) -> _Group:
        for value in inputs:
            self._read(value, name)
        # A bare layer converted on its own has the empty name (its keys are "weight", "bias").
        group = _Group(name or "layer", int(size), 1 + max(v.group.layer for v in inputs))
        self._groups.append(group)
        return group

    def _read(self, value: Value, reader: str) -> None:
        value.group.reads.append((value.version, reader))

    def _set_size(self, group: _Group, size: int | None, name: str) -> None:
        if group.size is None:
            group.size = size
        elif size is not None and group.size != size:
            raise ShapeMismatchError(f"'{name}' expects {size} input channels/features but "
                                     f"'{group.name}' provides {group.size}")

    def _flat_block(self, value: Value, in_features: int, name: str) -> tuple[int, ...]:
        channels = value.group.size
        if in_features % channels:
            raise ShapeMismatchError(f"'{name}' expects {in_features} features, not a multiple of the "
                                     f"{channels} channels of '{value.group.name}' it reads after Flatten")
        numel = in_features // channels
        block = value.flat_block
        if all(s is not None for s in block):
            if math.prod(block) != numel:
                raise ShapeMismatchError(f"'{name}' expects {in_features} features but Flatten of "
                                         f"{channels} x {'x'.join(map(str, block))} gives "
                                         f"{channels * math.prod(block)}")
            return tuple(block)
        if numel == 1:
            return ()
        raise ShapeInferenceError(
            f"'{name}' reads a flattened {channels}-channel map whose spatial shape "
            f"({numel} positions) cannot be inferred; pass input_shape=(C, H, W) (without the batch dim)")

    def _channelwise(self, value: Value, name: str) -> Value:
        if value.flat_block is not None:
            if any(s != 1 for s in value.flat_block):
                raise UnsupportedModuleError(
                    f"'{name}' acts per feature on a flattened feature map; features of one channel would "
                    "need separate nodes. Apply it before Flatten, or pool to 1x1 first")
            return replace(value, flat_block=None)
        return value

    def _latest(self, value: Value, name: str, what: str) -> None:
        if value.version != value.group.version:
            raise UnsupportedModuleError(
                f"'{name}' applies a {what} to an earlier value of '{value.group.name}' that has since been "
                "transformed; a node holds a single chain of channel-wise operations")

    def _channels_first(self, value: Value, name: str) -> None:
        if value.channels_last:
            raise UnsupportedModuleError(f"'{name}' reads a channels-last tensor as (N, C, ...); permute it back "
                                         "first (x.permute(0, 3, 1, 2))")

    def _no_scale(self, value: Value, name: str) -> None:
        if value.scale is not None:
            raise UnsupportedModuleError(
                f"'{name}' reads a tensor multiplied by the constant {value.scale}; wslgraph supports "
                "constant factors only as the frequency of a sine activation, torch.sin(w0 * x)")

    # ------------------------------------------------------------------ finish
    def finish(self, output: Value) -> GraphLayout:
        """Check the traced network and freeze its :class:`GraphLayout`."""
        self._no_scale(output, "output")
        out_group = output.group
        if out_group.is_input:
            raise UnsupportedModuleError("the model returns its input unchanged: it has no parameterised layer")
        self._read(output, "output")
        for group in self._groups:
            if group.size is None:
                raise ShapeInferenceError("the model input is never read by a layer that fixes its size")
            for version, reader in group.reads:
                if version != group.version:
                    raise UnsupportedModuleError(
                        f"'{reader}' reads '{group.name}' before a later normalization, activation or residual "
                        "sum on the same neurons; a node holds a single chain of channel-wise operations")
        unused = [key for key in self.state_dict if key not in self._used]
        if unused:
            raise UnsupportedModuleError(
                f"state-dict entries {unused} are not used by any supported layer in the traced forward "
                "(a module never called, or a parameter used functionally); remove them or register a "
                "handler with wslgraph.convert.register")
        hidden = [g for g in self._groups if not g.is_input and g is not out_group]
        ordered = [self._groups[0], *hidden, out_group]
        index = {id(g): i for i, g in enumerate(ordered)}
        groups, offset = [], 0
        for group in ordered:
            node_type = NodeType.INPUT if group.is_input or group.is_constant else \
                NodeType.OUTPUT if group is out_group else NodeType.HIDDEN
            groups.append(NodeGroup(group.name, group.size, offset, node_type, group.layer,
                                    group.activation, group.norm_groups, group.activation_param))
            offset += group.size
        blocks = [EdgeBlock(block.kind, block.key, index[id(block.src)], index[id(block.dst)], 0, block.weight_shape,
                            block.kernel_shape, block.groups, block.dst_start, block.src_start, block.length,
                            block.dst_stride)
                  for block in self._blocks]  # the layout sets offsets
        node_params = tuple(NodeParam(key, index[id(g)], column) for key, g, column in self._node_params)
        state = tuple(StateEntry(k, tuple(v.shape), v.dtype) for k, v in self.state_dict.items())
        floating = [v.dtype for v in self.state_dict.values() if v.is_floating_point()]
        dtype = functools.reduce(torch.promote_types, floating, floating[0]) if floating else torch.float32
        return GraphLayout(tuple(groups), tuple(blocks), node_params, tuple(self._scalars), state,
                           _kernel_grid(blocks), dtype)


def _kernel_grid(blocks: list[EdgeBlock]) -> tuple[int, ...]:
    rank = max((len(b.kernel_shape) for b in blocks), default=0)
    grid = [1] * rank
    for block in blocks:
        for d, size in enumerate(expand_kernel_shape(block.kernel_shape, rank)):
            grid[d] = max(grid[d], size)
    return tuple(grid)
