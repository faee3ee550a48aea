"""Trace a module with ``torch.fx`` and describe it as a :class:`GraphLayout`."""

from __future__ import annotations

import builtins
import contextlib
import copy
import functools
import io
import math
import operator
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from wslgraph.convert.context import ConversionContext, Value
from wslgraph.convert.registry import adaptive_output, handler_for
from wslgraph.errors import ShapeInferenceError, ShapeMismatchError, TracingError, UnsupportedModuleError
from wslgraph.graph.activations import ACTIVATIONS, hardtanh_activation
from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.vocab import Activation

__all__ = ["trace"]


class _Tracer(fx.Tracer):
    """Treats every module with a registered handler as a leaf."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return handler_for(type(m)) is not None or super().is_leaf_module(m, module_qualified_name)


def _refuse_shared_tensors(module: nn.Module) -> None:
    """Tied weights (one tensor under two names) have no place in a parameter graph: each edge holds its own."""
    owners: dict[int, str] = {}
    tensors = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    for name, tensor in tensors:
        first = owners.setdefault(id(tensor), name)
        if first != name:
            raise UnsupportedModuleError(f"'{first}' and '{name}' are the same tensor (weight sharing); a parameter "
                                         "graph gives every weight its own edge: give each module its own "
                                         "nn.Parameter (e.g. a clone) before converting")


def _refuse_reparametrized(module: nn.Module) -> None:
    """A weight computed at call time (weight_norm, spectral_norm, pruning masks) is not the stored tensor the
    graph would hold; forward hooks change the function the graph describes (warned, not refused)."""
    from torch.nn.utils import parametrize

    for name, child in module.named_modules():
        where = f"'{name}'" if name else "the model"
        if parametrize.is_parametrized(child):
            tensors = ", ".join(child.parametrizations.keys())
            raise UnsupportedModuleError(f"{where} computes {tensors} through a parametrization (weight_norm, "
                                         "spectral_norm, ...); bake it in first: torch.nn.utils.parametrize."
                                         f"remove_parametrizations({name or 'model'}, name) for each of {tensors}")
        pruned = [key[:-len("_orig")] for key, _ in child.named_parameters(recurse=False) if key.endswith("_orig")]
        if pruned:
            raise UnsupportedModuleError(f"{where} is pruned ({', '.join(pruned)} = *_orig * *_mask at call time); "
                                         f"bake the masks in first: torch.nn.utils.prune.remove({name or 'model'}, "
                                         "name) for each")
        if {"weight_g", "weight_v"} <= {key for key, _ in child.named_parameters(recurse=False)}:
            raise UnsupportedModuleError(f"{where} uses the old weight_norm (weight_g, weight_v); bake it in first: "
                                         f"torch.nn.utils.remove_weight_norm({name or 'model'})")
        if child._forward_hooks or child._forward_pre_hooks:
            warnings.warn(f"{where} has forward hooks; the parameter graph describes the module without them",
                          UserWarning, stacklevel=3)


def trace(module: nn.Module, input_shape: Sequence[int] | None = None) -> tuple[GraphLayout, dict[str, Tensor]]:
    """Trace ``module`` into its :class:`GraphLayout`; also return its state dict.

    Args:
        module: The network.
        input_shape: Shape of one input without the batch dim, needed only
            where shapes cannot be inferred (a Linear after Flatten of a
            feature map of unknown size).

    Raises:
        TracingError: ``torch.fx`` cannot trace the model.
        UnsupportedModuleError: The model uses a layer or pattern with no
            graph conversion.
        ShapeInferenceError: A needed shape is unknown, or ``input_shape``
            does not fit the model.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    _refuse_shared_tensors(module)
    _refuse_reparametrized(module)
    ctx = ConversionContext(module.state_dict())
    root_handler = handler_for(type(module))
    if root_handler is not None:
        return ctx.finish(root_handler(ctx, module, "", ctx.input())), ctx.state_dict
    try:
        graph = _Tracer().trace(module)
    except Exception as error:  # fx raises many types; all mean "cannot trace"
        raise TracingError(f"torch.fx cannot trace {type(module).__name__}: {error}. Models with data-dependent "
                           "control flow must be rewritten so fx can trace them") from error
    graph_module = fx.GraphModule(module, graph)
    if input_shape is not None:
        _propagate_shapes(graph_module, tuple(input_shape))
    return ctx.finish(_walk(ctx, graph_module)), ctx.state_dict


def _propagate_shapes(graph_module: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
    """Record every node's tensor shape by running the model on the meta device."""
    meta_module = copy.deepcopy(graph_module).to("meta")
    dtype = next((p.dtype for p in graph_module.parameters() if p.is_floating_point()), torch.get_default_dtype())
    try:  # ShapeProp prints a traceback before raising; the error below says it better
        with contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(meta_module).propagate(torch.empty(2, *input_shape, dtype=dtype, device="meta"))
    except Exception as error:  # any failure of the forward means a wrong input_shape
        cause = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise ShapeInferenceError(
            f"running the model on input_shape={input_shape} failed: {type(cause).__name__}: {str(cause).rstrip('.')}. "
            "input_shape is one input without the batch dim, e.g. (1, 28, 28)") from error
    for meta_node, node in zip(meta_module.graph.nodes, graph_module.graph.nodes):
        if "tensor_meta" in meta_node.meta:
            node.meta["tensor_meta"] = meta_node.meta["tensor_meta"]


@dataclass(frozen=True)
class _Shape:
    """The shape of a traced tensor (``x.shape`` / ``x.size()``)."""

    value: Value


@dataclass(frozen=True)
class _Unknown:
    """A size not known while tracing (the raw input's, without ``input_shape``): usable only in checks."""

    what: str


@dataclass(frozen=True)
class _SpatialDim:
    """``x.size(d)`` for a spatial dim ``d >= 2``: kept symbolic, valid only to rebuild the same shape."""

    dim: int


class _BatchDim:
    """``x.size(0)`` / ``x.shape[0]``: the batch size."""


class _Attr:
    """A parameter or buffer read directly in ``forward`` (functional use)."""

    def __init__(self, target: str) -> None:
        self.target = target


def _walk(ctx: ConversionContext, graph_module: fx.GraphModule) -> Value:
    env: dict[fx.Node, Any] = {}
    output: Any = None
    for node in graph_module.graph.nodes:
        ctx.current = node
        args = fx.node.map_arg(node.args, env.__getitem__)
        kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
        if node.op == "placeholder":
            result: Any = ctx.input()
        elif node.op == "get_attr":
            result = _Attr(node.target)
        elif node.op == "call_module":
            result = _call_module(ctx, graph_module.get_submodule(node.target), node.target, args)
        elif node.op in ("call_function", "call_method"):
            result = _call_function(ctx, node, args, kwargs)
        else:  # output
            output = args[0]
            break
        if isinstance(result, Value):
            result = _refine(result, node)
            result.group.fx_nodes.append(node)
        env[node] = result
        ctx.processed.add(node)
    if not isinstance(output, Value):
        raise UnsupportedModuleError(f"the model returns {type(output).__name__}; wslgraph converts models "
                                     "that return a single tensor")
    return output


def _refine(value: Value, node: fx.Node) -> Value:
    """Take a value's spatial shape from shape propagation when it ran."""
    meta = node.meta.get("tensor_meta")
    if meta is None or value.flat_block is not None or value.spatial == () or not hasattr(meta, "shape") \
            or value.channel_split is not None:
        return value
    return replace(value, spatial=tuple(meta.shape[1:-1] if value.channels_last else meta.shape[2:]))


def _call_module(ctx: ConversionContext, module: nn.Module, name: str, args: tuple) -> Value:
    handler = handler_for(type(module))
    if handler is None:
        cls = type(module)
        raise UnsupportedModuleError(
            f"module '{name}' of type {cls.__module__}.{cls.__qualname__} has no graph conversion; register "
            f"one with wslgraph.convert.register({cls.__name__}, handler) (see examples/custom_layer.py)")
    if isinstance(module, nn.MultiheadAttention):
        if len(args) != 3 or not (args[0] is args[1] is args[2]):
            raise UnsupportedModuleError(f"module '{name}' attends with different query, key and value tensors "
                                         "(cross-attention); wslgraph converts self-attention, attn(x, x, x)")
        args = args[:1]
    elif type(module).__name__ in ("WindowPartition", "WindowDepartition") and len(args) > 1 and \
            all(isinstance(a, int) for a in args[1:]):
        args = args[:1]  # MaxViT's partition sizes: positions only
    if len(args) != 1 or not isinstance(args[0], Value):
        raise UnsupportedModuleError(f"module '{name}' is called with {len(args)} arguments; "
                                     "wslgraph converts modules that take one tensor")
    _whole_channels(args[0], f"module '{name}'")
    return handler(ctx, module, name, args[0])


def _whole_channels(value: Any, what: str) -> None:
    if isinstance(value, Value) and value.channel_split is not None:
        raise UnsupportedModuleError(f"{what} reads channels viewed as {value.channel_split[0]} x "
                                     f"{value.channel_split[1]}; wslgraph converts that view only as part of a "
                                     "channel shuffle: view(N, g, C // g, ...), transpose(1, 2), view(N, C, ...)")


def _function_name(node: fx.Node) -> str:
    target = node.target
    return f"method .{target}()" if isinstance(target, str) else getattr(target, "__qualname__", str(target))


def _call_function(ctx: ConversionContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    table = _METHODS if node.op == "call_method" else _FUNCTIONS
    rule = table.get(node.target)
    if rule is None and node.op == "call_function":
        target = node.target
        rule = _FUNCTIONS_BY_NAME.get(f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}")
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, _Attr) and rule not in _TAKES_PARAMETERS:  # layer scale, class token, positions
            raise UnsupportedModuleError(
                f"'{node.name}' uses the parameter '{arg.target}' functionally ({_function_name(node)}); "
                "wrap it in a module (nn.Linear, nn.Conv2d, ...) or register a handler for its module")
    if rule is None:
        raise UnsupportedModuleError(f"'{node.name}' calls {_function_name(node)}, which has no graph conversion; "
                                     "use a supported module or register a handler for a module that wraps it")
    if rule not in (_view, _transpose, _passthrough):
        for arg in (*args, *kwargs.values()):
            _whole_channels(arg, f"'{node.name}'")
    return rule(ctx, node.name, args, kwargs)


def _value(arg: Any, name: str) -> Value:
    if not isinstance(arg, Value):
        raise UnsupportedModuleError(f"'{name}' expects a traced tensor, got {type(arg).__name__}")
    return arg


def _act(kind: Activation) -> Callable[..., Value]:
    def rule(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
        param = 0.0
        if ACTIVATIONS[kind].param is not None:
            key, default = ACTIVATIONS[kind].param
            param = float(args[1] if len(args) > 1 else kwargs.get(key, default))
        return ctx.activation(_value(args[0], name), kind, param)

    return rule


def _hardtanh(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    low = float(args[1] if len(args) > 1 else kwargs.get("min_val", -1.0))
    high = float(args[2] if len(args) > 2 else kwargs.get("max_val", 1.0))
    return ctx.activation(_value(args[0], name), *hardtanh_activation(low, high, f"'{name}'"))


def _cat(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    tensors = args[0] if args else kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if isinstance(tensors, (list, tuple)) and len(tensors) == 2 and dim in (1, -2) and \
            isinstance(tensors[0], _Attr) and isinstance(tensors[1], Value) and tensors[1].channels_last:
        return ctx.embed_tokens(tensors[1], name=name, key=tensors[0].target, prepend=True)  # a class token
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, Value) for t in tensors):
        raise UnsupportedModuleError(f"'{name}' concatenates something other than traced tensors (wslgraph "
                                     "converts a learned class token only as torch.cat([token.expand(N, -1, -1), "
                                     "x], dim=1) of a token sequence)")
    ranks = {len(t.spatial) + 2 for t in tensors if t.spatial is not None and t.flat_block is None}
    rank = ranks.pop() if len(ranks) == 1 else None
    if all(t.channels_last for t in tensors):  # channels are the last dim
        channel = isinstance(dim, int) and rank is not None and dim % rank == rank - 1
    else:
        channel = dim == 1 or (rank is not None and isinstance(dim, int) and dim < 0 and dim % rank == 1)
    if not channel:
        raise UnsupportedModuleError(f"'{name}' concatenates along dim {dim}; wslgraph converts concatenation along "
                                     "channels (dim 1 of (N, C, ...), as DenseNet, Inception and SqueezeNet do)")
    return ctx.concat(list(tensors), name=name)


def _passthrough(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    return _value(args[0], name)


def _add(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    left, right = args[0], args[1] if len(args) > 1 else kwargs.get("other")
    if isinstance(left, _Attr) and isinstance(right, Value):
        left, right = right, left
    if isinstance(left, Value) and isinstance(right, _Attr) and kwargs.get("alpha", 1) == 1:
        return ctx.embed_tokens(left, name=name, key=right.target)  # a positional embedding
    if not (isinstance(left, Value) and isinstance(right, Value)) or kwargs.get("alpha", 1) != 1:
        raise UnsupportedModuleError(f"'{name}' adds a constant or scales a summand; wslgraph supports "
                                     "residual additions of two tensors (x + f(x))")
    return ctx.add(left, right, name=name)


def _mul(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    left, right = args[0], args[1] if len(args) > 1 else kwargs.get("other")
    if all(isinstance(a, int) and not isinstance(a, bool) for a in (left, right)):  # sizes (C // g * g)
        return left * right
    if isinstance(left, _Attr) and isinstance(right, Value):
        left, right = right, left
    if isinstance(left, Value) and isinstance(right, _Attr):  # a learned per-channel factor (layer scale)
        return ctx.channel_scale(left, name=name, key=right.target)
    if isinstance(left, Value) and isinstance(right, (int, float)):
        return ctx.scale(left, float(right))
    if isinstance(right, Value) and isinstance(left, (int, float)):
        return ctx.scale(right, float(left))
    if isinstance(left, Value) and isinstance(right, Value):
        return ctx.multiply(left, right, name=name)
    raise UnsupportedModuleError(f"'{name}' multiplies a tensor by {type(right).__name__}; wslgraph converts products "
                                 "of two tensors (gating) and a constant only as the frequency of a sine, "
                                 "torch.sin(w0 * x)")


def _permute(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    value = _value(args[0], name)
    dims = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
    dims = tuple(kwargs.get("dims", dims))
    rank = len(dims)
    if dims == (0, *range(2, rank), 1):
        return ctx.permute_channels(value, name=name, last=True)
    if dims == (0, rank - 1, *range(1, rank - 1)):
        return ctx.permute_channels(value, name=name, last=False)
    raise UnsupportedModuleError(f"'{name}' permutes dims {dims}; wslgraph converts moving channels last "
                                 "(0, 2, ..., 1) and back (0, r-1, 1, ...)")


def _flatten(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
    value = _value(args[0], name)
    if (start, end) == (2, -1) and value.spatial and value.flat_block is None and not value.channels_last:
        return _spatial_flatten(ctx, value, name)
    if (start, end) != (1, -1):
        raise UnsupportedModuleError(f"'{name}' flattens dims {start}..{end}; wslgraph supports flatten(x, 1) and "
                                     "flatten(x, 2) (the spatial dims of a feature map into one, as ViT's patches)")
    return ctx.flatten(value, name=name)


def _spatial_flatten(ctx: ConversionContext, value: Value, name: str) -> Value:
    known = all(s is not None for s in value.spatial)
    return ctx.pool(value, name=name, spatial=(math.prod(value.spatial) if known else None,))


def _view(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    value = _value(args[0], name)
    shape = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
    shape = tuple(kwargs.get("shape", shape))
    batch_like = bool(shape) and (isinstance(shape[0], _BatchDim) or shape[0] == -1)
    if (value.channel_split is None and len(shape) == 2 and batch_like
            and (shape[1] == -1 or isinstance(shape[1], int))):
        return ctx.flatten(value, name=name)
    rank = len(value.spatial) if value.spatial and value.flat_block is None and not value.channels_last else 0
    channels = value.group.size
    middle = shape[1:len(shape) - rank]
    kept = batch_like and rank and all(_same_dim(value, d, size) for d, size in enumerate(shape[len(shape) - rank:]))
    if kept and channels is not None:
        if value.channel_split is None and len(middle) == 2 and all(isinstance(m, int) for m in middle):
            rows, cols = (channels // middle[1] if middle[0] == -1 else middle[0],
                          channels // middle[0] if middle[1] == -1 else middle[1])
            if rows * cols == channels and rows > 0:
                return replace(value, channel_split=(rows, cols))
        if len(middle) == 1 and middle[0] in (-1, channels):
            if value.channel_split is None:
                return value
            rows, cols = value.channel_split
            plain = replace(value, channel_split=None, split_transposed=False)
            return ctx.shuffle_channels(plain, rows, cols, name=name) if value.split_transposed else plain
    if batch_like and len(shape) == 3 and rank >= 1 and value.channel_split is None and shape[1] == channels:
        size = math.prod(value.spatial) if all(isinstance(s, int) for s in value.spatial) else None
        if shape[2] == -1 or (size is not None and shape[2] == size) or isinstance(shape[2], _SpatialDim) and rank == 1:
            return _spatial_flatten(ctx, value, name)  # (N, C, H, W) -> (N, C, H * W): ViT's patches
    raise UnsupportedModuleError(f"'{name}' reshapes to {_shape_text(shape)}; wslgraph converts x.view(x.size(0), -1) "
                                 "(flatten after the batch dim) and the channel shuffle, view(N, g, C // g, H, W), "
                                 "transpose(1, 2), view(N, C, H, W)")


def _same_dim(value: Value, dim: int, size: Any) -> bool:
    """Whether a view keeps spatial dim ``dim`` of ``value`` (its symbolic size, or its known size)."""
    if isinstance(size, _SpatialDim):
        return size.dim == dim
    return isinstance(size, int) and size > 0 and value.spatial[dim] == size


def _shape_text(shape: tuple) -> str:
    names = {_BatchDim: "N"}
    return "(" + ", ".join(names.get(type(s), f"x.size({s.dim + 2})" if isinstance(s, _SpatialDim) else repr(s))
                           for s in shape) + ")"


def _transpose(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    value = _value(args[0], name)
    dims = (args[1] if len(args) > 1 else kwargs.get("dim0"), args[2] if len(args) > 2 else kwargs.get("dim1"))
    if value.channel_split is not None and set(dims) == {1, 2}:
        return replace(value, split_transposed=not value.split_transposed)
    rank = len(value.spatial) + 2 if value.spatial and value.flat_block is None else None
    if rank == 3 and {d % 3 for d in dims if isinstance(d, int)} == {1, 2}:  # (N, C, L) <-> (N, L, C): tokens
        return ctx.permute_channels(value, name=name, last=not value.channels_last)
    raise UnsupportedModuleError(f"'{name}' transposes dims {dims}; wslgraph converts moving channels last and back "
                                 "in a sequence, (N, C, L).transpose(1, 2), and transposing the two channel dims of a "
                                 "channel shuffle, view(N, g, C // g, H, W).transpose(1, 2)")


def _split(ctx: ConversionContext, name: str, args: tuple, kwargs: dict, *, chunks: bool) -> list[Value]:
    value = _value(args[0], name)
    key = "chunks" if chunks else "split_size_or_sections"
    arg = args[1] if len(args) > 1 else kwargs.get(key, kwargs.get("split_size"))
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    rank = len(value.spatial) + 2 if value.spatial is not None and value.flat_block is None else None
    if not isinstance(dim, int) or not (dim == 1 or (rank is not None and dim < 0 and dim % rank == 1)):
        raise UnsupportedModuleError(f"'{name}' splits along dim {dim}; wslgraph converts splitting along channels "
                                     "(dim 1 of (N, C, ...), as ShuffleNet's x.chunk(2, dim=1) does)")
    channels = value.group.size
    if channels is None:
        raise ShapeInferenceError(f"'{name}' splits the raw input, whose channel count no layer has fixed yet; "
                                  "pass input_shape or read the input with a layer first")
    if chunks:
        if not isinstance(arg, int) or arg < 1:
            raise UnsupportedModuleError(f"'{name}' chunks into {arg!r} pieces; give a positive int")
        step = -(-channels // arg)
        sizes = [min(step, channels - start) for start in range(0, channels, step)]
    elif isinstance(arg, int) and arg > 0:
        sizes = [min(arg, channels - start) for start in range(0, channels, arg)]
    elif isinstance(arg, (list, tuple)) and all(isinstance(a, int) for a in arg):
        sizes = list(arg)
    else:
        raise UnsupportedModuleError(f"'{name}' splits by {arg!r}; give an int or a list of ints")
    return ctx.split_channels(value, sizes, name=name)


def _size(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Any:
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    shape = _Shape(_value(args[0], name))
    return shape if dim is None else _dimension(shape, dim, name)


def _dimension(shape: _Shape, dim: Any, name: str) -> Any:
    """``x.size(dim)`` / ``x.shape[dim]``: the batch size, the channel count (known once a layer fixed it) or a
    symbolic spatial size."""
    value = shape.value
    rank = len(value.spatial) + 2 if value.spatial is not None and value.flat_block is None \
        and not value.channels_last and value.channel_split is None else None
    if isinstance(dim, int) and dim < 0 and rank is not None:
        dim += rank
    if dim == 0:
        return _BatchDim()
    if dim == 1 and value.group.size is not None and (rank is not None or value.channels_last is False):
        return value.group.size
    if dim == 1 or (value.spatial is None and isinstance(dim, int) and dim >= 2):
        return _Unknown(f"size {dim} of '{value.group.name}'")  # the raw input's channels or spatial sizes
    if isinstance(dim, int) and rank is not None and 2 <= dim < rank:
        known = value.spatial[dim - 2]
        return known if known is not None else _SpatialDim(dim - 2)
    raise UnsupportedModuleError(f"'{name}' reads size {dim!r} of a tensor; wslgraph converts reading the batch "
                                 "size, the channel count and the spatial sizes of an (N, C, ...) feature map")


def _getattr(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Any:
    if args[1] == "shape" and isinstance(args[0], Value):
        return _Shape(args[0])
    raise UnsupportedModuleError(f"'{name}' reads attribute '{args[1]}' of a tensor; only .shape is supported")


def _getitem(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Any:
    if isinstance(args[0], _Shape):
        return _dimension(args[0], args[1], name)
    if isinstance(args[0], (list, tuple)) and isinstance(args[1], int):  # a piece of x.chunk / x.split
        return args[0][args[1]]
    if isinstance(args[0], Value) and isinstance(args[1], tuple) and len(args[1]) in (2, 3) and \
            args[1][0] == slice(None) and isinstance(args[1][1], int) and args[1][2:] in ((), (slice(None),)):
        return ctx.take_token(args[0], name=name)  # x[:, 0]: a transformer's class token
    raise UnsupportedModuleError(f"'{name}' indexes a {type(args[0]).__name__} with {args[1]!r}; wslgraph converts "
                                 "reading sizes (x.shape[d]), pieces of x.chunk / x.split, and x[:, i] of a token "
                                 "sequence")


def _expand(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Any:
    """``token.expand(N, -1, -1)`` of a learned class token: the parameter itself, broadcast over the batch."""
    if isinstance(args[0], _Attr) and all(isinstance(a, _BatchDim) or a in (-1, 1) for a in args[1:]):
        return args[0]
    raise UnsupportedModuleError(f"'{name}' expands a tensor; wslgraph converts expanding a learned class token "
                                 "over the batch, token.expand(N, -1, -1)")


def _rank(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> int:
    value = _value(args[0], name)
    if value.spatial is None or value.channel_split is not None:
        raise UnsupportedModuleError(f"'{name}' reads the rank of a tensor whose rank is unknown; pass input_shape")
    return len(value.spatial) + 2 if value.flat_block is None else 2


def _compare(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Any:
    """``==`` of sizes (for ``torch._assert``): a bool where both are known, unknown (``None``) otherwise."""
    left, right = args[0], args[1]
    if isinstance(left, Value) or isinstance(right, Value):
        raise UnsupportedModuleError(f"'{name}' compares tensors; wslgraph converts comparisons of sizes only")
    if all(isinstance(a, int) for a in (left, right)):
        return left == right
    return None


def _check(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> None:
    """``torch._assert(condition, message)`` on sizes: refused where known to fail, else nothing to convert."""
    if args[0] is False:
        raise ShapeMismatchError(f"'{name}' fails for the shapes traced: {args[1] if len(args) > 1 else ''}")


def _arithmetic(op: Callable[[int, int], int]) -> Callable[..., int]:
    def rule(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> int:
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args[:2]):
            if any(isinstance(a, (_Unknown, _SpatialDim)) for a in args[:2]):
                raise ShapeInferenceError(f"'{name}' computes with a size that is unknown while tracing; pass "
                                          "input_shape (one input without the batch dim, e.g. (3, 224, 224))")
            raise UnsupportedModuleError(f"'{name}' computes with {', '.join(type(a).__name__ for a in args[:2])}; "
                                         "wslgraph evaluates arithmetic only on known sizes (the channel count)")
        return op(args[0], args[1])

    return rule


def _reduce(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    value = _value(args[0], name)
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    rank = len(value.spatial) if value.spatial is not None else None
    if rank is None or not dims:
        raise UnsupportedModuleError(f"'{name}' reduces dims {dims or 'all'}; wslgraph supports reducing "
                                     "spatial dims of a feature map (e.g. x.mean((2, 3)))")
    spatial_dims = {d % (rank + 2) for d in dims}
    if min(spatial_dims) < 2:
        raise UnsupportedModuleError(f"'{name}' reduces over the batch or channel dim; only spatial dims "
                                     "(2 and beyond) may be reduced")
    if keepdim:
        spatial = tuple(1 if d + 2 in spatial_dims else s for d, s in enumerate(value.spatial))
    else:
        spatial = tuple(s for d, s in enumerate(value.spatial) if d + 2 not in spatial_dims)
    return ctx.pool(value, name=name, spatial=spatial)


def _squeeze(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    value = _value(args[0], name)
    dims = args[1:] if len(args) > 1 else kwargs.get("dim")
    if value.spatial is None or value.flat_block is not None or not value.spatial:
        raise UnsupportedModuleError(f"'{name}' squeezes a tensor that is not a feature map")
    rank = len(value.spatial)
    if dims is None or dims == ():
        dims = tuple(range(2, rank + 2))
    dims = {d % (rank + 2) for d in (dims if isinstance(dims, (tuple, list)) else (dims,))}
    if any(d < 2 for d in dims):
        raise UnsupportedModuleError(f"'{name}' squeezes the batch or channel dim")
    if any(value.spatial[d - 2] is None for d in dims):
        raise ShapeInferenceError(f"'{name}' squeezes spatial dims of unknown size; pass input_shape")
    spatial = tuple(s for d, s in enumerate(value.spatial) if not (d + 2 in dims and s == 1))
    return ctx.pool(value, name=name, spatial=spatial)


def _pool(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    return ctx.pool(_value(args[0], name), name=name)


def _adaptive_pool(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    value = _value(args[0], name)
    size = args[1] if len(args) > 1 else kwargs["output_size"]
    return ctx.pool(value, name=name, spatial=adaptive_output(size, value))


def _sin(ctx: ConversionContext, name: str, args: tuple, kwargs: dict) -> Value:
    value = _value(args[0], name)
    if value.scale is None:
        value = ctx.scale(value, 1.0)
    return ctx.activation(value, Activation.SINE)


def _functions(*names: str, module: Any = F) -> list[Callable]:
    return [getattr(module, n) for n in names if hasattr(module, n)]


_FUNCTIONS: dict[Any, Callable[..., Any]] = {}
_METHODS: dict[str, Callable[..., Any]] = {}
# Functions of libraries wslgraph does not import, by qualified name: torchvision's stochastic depth drops whole
# residual branches while training and is the identity in eval mode, like dropout.
_FUNCTIONS_BY_NAME: dict[str, Callable[..., Any]] = {
    "torchvision.ops.stochastic_depth.stochastic_depth": lambda ctx, name, args, kwargs: _value(args[0], name),
    "torchvision.models.swin_transformer._patch_merging_pad": lambda ctx, name, args, kwargs: _patch_merging(
        ctx, name, _value(args[0], name))}


def _patch_merging(ctx: ConversionContext, name: str, value: Value) -> Value:
    """Swin's patch merging: the four 2 x 2 neighbours of a channels-last map side by side along channels (pads
    and strided slices move positions only): a concatenation of four copies of the same channels."""
    if not value.channels_last or value.spatial is None or len(value.spatial) != 2:
        raise UnsupportedModuleError(f"'{name}' merges patches of a tensor that is not a channels-last (N, H, W, C) "
                                     "map")
    merged = ctx.concat([value] * 4, name=name)
    return replace(merged, spatial=tuple(None if s is None else (s + 1) // 2 for s in value.spatial))
for _kind, _spec in ACTIVATIONS.items():
    if _spec.module is not None:
        _FUNCTIONS.update(dict.fromkeys(_spec.functions, _act(_kind)))
        _METHODS.update(dict.fromkeys(_spec.methods, _act(_kind)))
_FUNCTIONS.update(dict.fromkeys([torch.sin], _sin))
_FUNCTIONS.update(dict.fromkeys(_functions("hardtanh", "hardtanh_"), _hardtanh))
_FUNCTIONS.update(dict.fromkeys(_functions("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"),
                                _passthrough))
_FUNCTIONS.update(dict.fromkeys([operator.add, operator.iadd, torch.add], _add))
_FUNCTIONS.update(dict.fromkeys([operator.mul, operator.imul, torch.mul], _mul))
_FUNCTIONS.update(dict.fromkeys([torch.flatten], _flatten))
_FUNCTIONS.update(dict.fromkeys([torch.permute], _permute))
_FUNCTIONS.update(dict.fromkeys([torch.cat, torch.concat, torch.concatenate], _cat))
_FUNCTIONS.update(dict.fromkeys([torch.reshape], _view))
_FUNCTIONS.update(dict.fromkeys([torch.mean, torch.sum, torch.amax], _reduce))
_FUNCTIONS.update(dict.fromkeys([torch.squeeze], _squeeze))
_FUNCTIONS.update(dict.fromkeys([builtins.getattr], _getattr))
_FUNCTIONS.update(dict.fromkeys([operator.getitem], _getitem))
_FUNCTIONS[operator.floordiv] = _arithmetic(operator.floordiv)
_FUNCTIONS[operator.eq] = _compare
_FUNCTIONS[torch._assert] = _check
_FUNCTIONS.update(dict.fromkeys([torch.transpose, torch.swapaxes, torch.swapdims], _transpose))
_FUNCTIONS[torch.chunk] = functools.partial(_split, chunks=True)
_FUNCTIONS[torch.split] = functools.partial(_split, chunks=False)
_FUNCTIONS.update(dict.fromkeys(
    _functions("avg_pool1d", "avg_pool2d", "avg_pool3d", "max_pool1d", "max_pool2d", "max_pool3d",
               "_max_pool1d", "_max_pool2d", "_max_pool3d", "lp_pool1d", "lp_pool2d")
    + _functions("max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", module=torch), _pool))
_FUNCTIONS.update(dict.fromkeys(
    _functions("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
               "adaptive_max_pool2d", "adaptive_max_pool3d", "_adaptive_max_pool1d", "_adaptive_max_pool2d",
               "_adaptive_max_pool3d"), _adaptive_pool))
_METHODS.update({"sin": _sin, "add": _add, "add_": _add, "mul": _mul, "mul_": _mul, "flatten": _flatten,
                 "view": _view, "reshape": _view, "size": _size, "mean": _reduce, "sum": _reduce,
                 "amax": _reduce, "squeeze": _squeeze, "contiguous": _passthrough,
                 "permute": _permute, "transpose": _transpose, "swapaxes": _transpose, "swapdims": _transpose,
                 "chunk": functools.partial(_split, chunks=True), "split": functools.partial(_split, chunks=False),
                 "expand": _expand, "dim": _rank})
_TAKES_PARAMETERS = (_mul, _add, _cat, _expand)  # a learned vector or tensor used directly in forward
