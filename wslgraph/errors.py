"""Typed errors raised by wslgraph.

Every error subclasses :class:`WSLGraphError` and the builtin that matches the
kind of mistake (:class:`ValueError` for bad input), so callers can catch
either. Messages say what was wrong, where, and how to fix it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping

__all__ = [
    "check_options",
    "OptionError",
    "WSLGraphError",
    "UnsupportedModuleError",
    "TracingError",
    "ShapeInferenceError",
    "ShapeMismatchError",
    "InvalidGraphError",
    "NonFiniteError",
    "DataNotFoundError",
    "FactoryError",
    "ZooError",
    "CorruptShardError",
    "ManifestError",
    "UnsafeFileError",
    "MeshError",
]


class WSLGraphError(Exception):
    """Base class of every error wslgraph raises on purpose."""


class UnsupportedModuleError(WSLGraphError, ValueError):
    """A module, function or pattern in a model has no graph conversion.

    Register a handler with :func:`wslgraph.convert.register` to add support
    for a new layer type.
    """


class TracingError(WSLGraphError, ValueError):
    """``torch.fx`` could not trace the model (e.g. data-dependent control flow)."""


class ShapeInferenceError(WSLGraphError, ValueError):
    """A shape the graph needs cannot be inferred; pass ``input_shape``."""


class ShapeMismatchError(WSLGraphError, ValueError):
    """Tensors do not have the shape, size or dtype an architecture requires."""


class InvalidGraphError(WSLGraphError, ValueError):
    """A :class:`~wslgraph.ParamGraph` is malformed."""


class NonFiniteError(InvalidGraphError):
    """A parameter graph holds NaN or infinite parameters."""


class OptionError(WSLGraphError, ValueError):
    """A model's or a run's option has an unknown name or a value of the wrong type or range."""


class DataNotFoundError(WSLGraphError, FileNotFoundError):
    """A data source is not installed or not where it was looked for; the message says how to get it."""


class FactoryError(WSLGraphError, ValueError):
    """A ``module:factory`` spec cannot be imported or does not build an ``nn.Module``."""


class ZooError(WSLGraphError, ValueError):
    """A model zoo on disk (or a published zoo format) is malformed."""


class CorruptShardError(ZooError):
    """A zoo shard is truncated, corrupt or does not match its manifest entry."""


class ManifestError(ZooError):
    """A zoo manifest is missing, malformed, or describes a different zoo or job."""


class UnsafeFileError(ZooError):
    """A file would need unrestricted unpickling (arbitrary code execution) to load; it is refused."""


class MeshError(WSLGraphError, ValueError):
    """A mesh file cannot be read, is empty or degenerate, encloses no volume, or a mesh folder has no classes."""


def check_options(name: str, factory: Callable, options: Mapping[str, object]) -> None:
    """Refuse options ``factory`` cannot take, before anything is built (:class:`OptionError`).

    Names must be keyword parameters of ``factory`` (unless it takes ``**kwargs``). Values are checked against the
    parameter's default: a whole-number default needs a whole number (at least 1 where the default is positive, at
    least 0 where it is 0), a real-number default a finite number, a boolean default ``true``/``false``. Options
    whose default is ``None``, a string or a container are left to the factory.
    """
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check here
        return
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    known = sorted(k for k, p in parameters.items() if p.default is not inspect.Parameter.empty
                   and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))
    for key, value in options.items():
        parameter = parameters.get(key)
        if parameter is None or parameter.kind not in (inspect.Parameter.KEYWORD_ONLY,
                                                       inspect.Parameter.POSITIONAL_OR_KEYWORD):
            if open_ended:
                continue
            raise OptionError(f"{name} has no option {key!r}; its options are {', '.join(known)}")
        default = parameter.default
        if isinstance(default, bool):
            wrong = None if isinstance(value, bool) else "true or false"
        elif isinstance(default, int):
            low = 1 if default > 0 else 0 if default == 0 else None
            wrong = (None if isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)
                     else f"a whole number{'' if low is None else f' >= {low}'}")
        elif isinstance(default, float):
            wrong = (None if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                     else "a finite number")
        else:
            wrong = None
        if wrong is not None:
            raise OptionError(f"{name} option {key!r} must be {wrong} (default {default!r}), got {value!r}")
