"""Layer handlers: how each module type maps onto graph primitives.

A handler is ``handler(ctx, module, name, value) -> Value``: it receives the
:class:`~wslgraph.convert.context.ConversionContext`, the module instance, its
qualified name (the state-dict prefix) and the traced input value, and
describes the layer with the context's primitives. Built-in layers are
registered here through the same :func:`register` users call.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from wslgraph.convert.context import ConversionContext, Value, join
from wslgraph.errors import UnsupportedModuleError
from wslgraph.graph.activations import ACTIVATIONS, hardtanh_activation
from wslgraph.graph.vocab import Activation
from wslgraph.layers import Sine

__all__ = ["Handler", "register", "handler_for"]

Handler = Callable[[ConversionContext, nn.Module, str, Value], Value]

_HANDLERS: dict[type[nn.Module], Handler] = {}
# Layers of libraries wslgraph does not import, by qualified class name.
_HANDLERS_BY_NAME: dict[str, Handler] = {}


def register(module_type: type[nn.Module], handler: Handler) -> None:
    """Teach the converter a new layer type.

    Registered types are treated as leaves by ``torch.fx`` (their forward is
    not traced into), and every instance is converted by ``handler``.

    Args:
        module_type: The ``nn.Module`` subclass (subclasses of it match too,
            unless they are registered themselves).
        handler: ``handler(ctx, module, name, value) -> Value``; see
            :class:`~wslgraph.convert.context.ConversionContext` for the
            primitives and ``examples/custom_layer.py`` for a worked example.

    Example:
        >>> from wslgraph.graph.vocab import Activation
        >>> class Snake(nn.Module):
        ...     def forward(self, x):
        ...         return x + torch.sin(x) ** 2
        >>> register(Snake, lambda ctx, module, name, value: ctx.activation(value, Activation.OTHER))
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"register() needs an nn.Module subclass, got {module_type!r}")
    if not callable(handler):
        raise TypeError(f"register() needs a callable handler(ctx, module, name, value), got {handler!r}")
    _HANDLERS[module_type] = handler


def handler_for(module_type: type) -> Handler | None:
    """The handler of ``module_type`` or of its nearest registered base class."""
    for cls in module_type.__mro__:
        if cls in _HANDLERS:
            return _HANDLERS[cls]
        by_name = _HANDLERS_BY_NAME.get(f"{cls.__module__}.{cls.__qualname__}")
        if by_name is not None:
            return by_name
    return None


def _key(module: nn.Module, name: str, attr: str) -> str | None:
    return join(name, attr) if getattr(module, attr, None) is not None else None


def _linear(ctx: ConversionContext, module: nn.Linear, name: str, value: Value) -> Value:
    return ctx.linear(value, name=name, weight_key=join(name, "weight"), bias_key=_key(module, name, "bias"))


def _conv(ctx: ConversionContext, module: nn.modules.conv._ConvNd, name: str, value: Value) -> Value:
    return ctx.conv(value, name=name, weight_key=join(name, "weight"), bias_key=_key(module, name, "bias"),
                    groups=module.groups)


def _batch_norm(ctx: ConversionContext, module: nn.modules.batchnorm._BatchNorm, name: str, value: Value) -> Value:
    return ctx.norm(value, name=name, num_channels=module.num_features,
                    weight_key=_key(module, name, "weight"), bias_key=_key(module, name, "bias"),
                    mean_key=_key(module, name, "running_mean"), var_key=_key(module, name, "running_var"),
                    scalar_keys=tuple(k for k in [_key(module, name, "num_batches_tracked")] if k))


def _layer_norm(ctx: ConversionContext, module: nn.LayerNorm, name: str, value: Value) -> Value:
    if len(module.normalized_shape) != 1:
        raise _unsupported_norm(name, f"normalized_shape={tuple(module.normalized_shape)}")
    return ctx.norm(value, name=name, num_channels=module.normalized_shape[0], vector_only=True,
                    weight_key=_key(module, name, "weight"), bias_key=_key(module, name, "bias"))


def _group_norm(ctx: ConversionContext, module: nn.GroupNorm, name: str, value: Value) -> Value:
    return ctx.norm(value, name=name, num_channels=module.num_channels, num_groups=module.num_groups,
                    weight_key=_key(module, name, "weight"), bias_key=_key(module, name, "bias"))


def _channel_layer_norm(ctx: ConversionContext, module: nn.LayerNorm, name: str, value: Value) -> Value:
    """torchvision's ``LayerNorm2d``: LayerNorm over the channels of an (N, C, H, W) map at each position."""
    return ctx.norm(value, name=name, num_channels=module.normalized_shape[0],
                    weight_key=_key(module, name, "weight"), bias_key=_key(module, name, "bias"))


def _attention(ctx: ConversionContext, module: nn.MultiheadAttention, name: str, value: Value) -> tuple:
    """``nn.MultiheadAttention`` (batch first, one packed input projection); returns ``(output, None)``, as the
    module returns ``(output, weights)`` (only the output may be used)."""
    if not module._qkv_same_embed_dim or module.in_proj_weight is None:
        raise UnsupportedModuleError(f"'{name}' has separate query, key and value projections (kdim/vdim); "
                                     "wslgraph converts MultiheadAttention with one packed in_proj_weight")
    if module.bias_k is not None or module.add_zero_attn:
        raise UnsupportedModuleError(f"'{name}' uses add_bias_kv or add_zero_attn, which have no graph conversion")
    if not module.batch_first:
        raise UnsupportedModuleError(f"'{name}' has batch_first=False (tokens first); wslgraph converts token "
                                     "sequences laid out (N, tokens, channels): use batch_first=True")
    out = ctx.attention(value, name=name, heads=module.num_heads, in_weight_key=join(name, "in_proj_weight"),
                        in_bias_key=_key(module, name, "in_proj_bias"),
                        out_weight_key=join(name, "out_proj.weight"),
                        out_bias_key=_key(module.out_proj, join(name, "out_proj"), "bias"))
    return out, None


def _shifted_window_attention(ctx: ConversionContext, module: nn.Module, name: str, value: Value) -> Value:
    """torchvision's Swin attention (``ShiftedWindowAttention``): multi-head self-attention within windows of a
    channels-last map, with a learned relative position bias per head; windows and shifts move positions only, so
    the parameter graph is attention's."""
    if type(module).__name__ != "ShiftedWindowAttention":
        raise UnsupportedModuleError(f"'{name}' is a {type(module).__name__} (Swin V2: a learned logit scale and a "
                                     "continuous position MLP), which has no graph conversion; Swin V1 converts")
    return _relative_position_attention(ctx, module, name, value, module.num_heads, "qkv", "proj")


def _relative_attention(ctx: ConversionContext, module: nn.Module, name: str, value: Value) -> Value:
    """torchvision's MaxViT attention (``RelativePositionalMultiHeadAttention``): multi-head self-attention within
    each window or grid cell of a channels-last ``[B, G, P, C]`` tensor, with a relative position bias per head."""
    return _relative_position_attention(ctx, module, name, value, module.n_heads, "to_qkv", "merge")


def _relative_position_attention(ctx: ConversionContext, module: nn.Module, name: str, value: Value, heads: int,
                                 qkv: str, out: str) -> Value:
    """Attention with packed projections ``module.<qkv>`` and ``module.<out>`` (Linear layers) and a relative
    position bias table with its index buffer."""
    return ctx.attention(value, name=name, heads=heads, in_weight_key=join(name, f"{qkv}.weight"),
                         in_bias_key=_key(getattr(module, qkv), join(name, qkv), "bias"),
                         out_weight_key=join(name, f"{out}.weight"),
                         out_bias_key=_key(getattr(module, out), join(name, out), "bias"),
                         position_bias_key=join(name, "relative_position_bias_table"),
                         index_key=join(name, "relative_position_index"))


def _window_partition(ctx: ConversionContext, module: nn.Module, name: str, value: Value) -> Value:
    """MaxViT's ``WindowPartition``: ``[B, C, H, W]`` to windows ``[B, G, P * P, C]``, channels last."""
    return ctx.move_positions(value, name=name, channels_last=True, rank=2)


def _window_departition(ctx: ConversionContext, module: nn.Module, name: str, value: Value) -> Value:
    """MaxViT's ``WindowDepartition``: windows ``[B, G, P * P, C]`` back to ``[B, C, H, W]``."""
    return ctx.move_positions(value, name=name, channels_last=False, rank=2)


def _swap_axes(ctx: ConversionContext, module: nn.Module, name: str, value: Value) -> Value:
    """MaxViT's ``SwapAxes``: swapping two position dims of a channels-last tensor moves positions only."""
    rank = len(value.spatial) + 2 if value.spatial is not None else None
    dims = {module.a % rank, module.b % rank} if rank else set()
    if not value.channels_last or not dims or min(dims) < 1 or max(dims) > rank - 2:
        raise UnsupportedModuleError(f"'{name}' swaps axes {module.a} and {module.b}; wslgraph converts swapping "
                                     "position dims of a channels-last tensor")
    return ctx.move_positions(value, name=name, channels_last=True, rank=len(value.spatial))


def _unsupported_norm(name: str, what: str) -> Exception:
    return UnsupportedModuleError(f"'{name}': LayerNorm with {what} normalizes several dims; "
                                  "wslgraph supports LayerNorm over the feature dim of a vector (N, C)")


def _activation(kind: Activation) -> Handler:
    def handler(ctx: ConversionContext, module: nn.Module, name: str, value: Value) -> Value:
        spec = ACTIVATIONS[kind].param
        param = float(getattr(module, spec[0])) if spec is not None else 0.0
        return ctx.activation(value, kind, param)

    return handler


def _hardtanh(ctx: ConversionContext, module: nn.Hardtanh, name: str, value: Value) -> Value:
    return ctx.activation(value, *hardtanh_activation(float(module.min_val), float(module.max_val), f"'{name}'"))


def _prelu(ctx: ConversionContext, module: nn.PReLU, name: str, value: Value) -> Value:
    return ctx.activation(value, Activation.PRELU, weight_key=join(name, "weight"), name=name)


def _sine(ctx: ConversionContext, module: Sine, name: str, value: Value) -> Value:
    return ctx.activation(ctx.scale(value, module.w0), Activation.SINE)


def _passthrough(ctx: ConversionContext, module: nn.Module, name: str, value: Value) -> Value:
    return value


def _flatten(ctx: ConversionContext, module: nn.Flatten, name: str, value: Value) -> Value:
    if module.start_dim != 1 or module.end_dim != -1:
        raise UnsupportedModuleError(f"'{name}': Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}); "
                                     "wslgraph supports flattening everything after the channel dim (1, -1)")
    return ctx.flatten(value, name=name)


def _pool(ctx: ConversionContext, module: nn.Module, name: str, value: Value) -> Value:
    return ctx.pool(value, name=name)


def _adaptive_pool(ctx: ConversionContext, module: nn.Module, name: str, value: Value) -> Value:
    return ctx.pool(value, name=name, spatial=adaptive_output(module.output_size, value))


def adaptive_output(output_size: object, value: Value) -> tuple[int | None, ...] | None:
    """Spatial output shape of an adaptive pooling layer (``None`` entries keep the input's)."""
    rank = len(value.spatial) if value.spatial is not None else None
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else None
    if sizes is None:
        return None if rank is None else (output_size,) * rank
    if rank is None:
        rank = len(sizes)
    spatial = value.spatial or (None,) * rank
    return tuple(s if s is not None else old for s, old in zip(sizes, spatial))


for _type in (nn.Linear,):
    register(_type, _linear)
for _type in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register(_type, _conv)
for _type in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
    register(_type, _batch_norm)
register(nn.LayerNorm, _layer_norm)
_HANDLERS_BY_NAME["torchvision.models.convnext.LayerNorm2d"] = _channel_layer_norm
_HANDLERS_BY_NAME["torchvision.models.swin_transformer.ShiftedWindowAttention"] = _shifted_window_attention
_HANDLERS_BY_NAME["torchvision.models.maxvit.RelativePositionalMultiHeadAttention"] = _relative_attention
_HANDLERS_BY_NAME["torchvision.models.maxvit.WindowPartition"] = _window_partition
_HANDLERS_BY_NAME["torchvision.models.maxvit.WindowDepartition"] = _window_departition
_HANDLERS_BY_NAME["torchvision.models.maxvit.SwapAxes"] = _swap_axes
register(nn.GroupNorm, _group_norm)
register(nn.MultiheadAttention, _attention)
for _kind, _spec in ACTIVATIONS.items():
    if _spec.module is not None:
        register(_spec.module, _activation(_kind))
register(nn.Hardtanh, _hardtanh)  # nn.ReLU6, its subclass, has its own row in ACTIVATIONS
register(nn.PReLU, _prelu)
register(Sine, _sine)
for _type in (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout):
    register(_type, _passthrough)
register(nn.Flatten, _flatten)
for _type in (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d):
    register(_type, _pool)
for _type in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
              nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d):
    register(_type, _adaptive_pool)
