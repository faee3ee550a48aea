"""Typed errors raised by wslgraph.

Every error subclasses :class:`WSLGraphError` and the builtin that matches the
kind of mistake (:class:`ValueError` for bad input), so callers can catch
either. Messages say what was wrong, where, and how to fix it.
"""

from __future__ import annotations

__all__ = [
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
