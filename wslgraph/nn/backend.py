"""How aggregation runs: one module, one decision per reduction.

Backends:

* ``"native"``: torch's ``index_add_`` / ``scatter_reduce_`` (always available,
  always correct).
* ``"torch_scatter"``: the optional ``torch_scatter`` package (``pip install
  wslgraph[scatter]``, builds from source).
* ``"auto"`` (default): per device type, reduction and whether a gradient
  flows, the backend measured faster (:data:`AUTO_TORCH_SCATTER`); native
  wherever nothing was measured.

Choose with :func:`set_scatter_backend` or the ``WSLGRAPH_SCATTER_BACKEND``
environment variable.

Why not ``torch_geometric.utils.scatter``: for mean, max and min it calls the
same torch kernels, but it sums with ``scatter_add_``, whose backward is slower
than ``index_add_``'s, and the sum is the aggregation every layer uses
(``benchmarks/scatter.py`` measures both; the README's "Performance" section
has the figures).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from wslgraph.errors import ShapeMismatchError

try:  # probed once, here; call sites branch on WITH_TORCH_SCATTER
    import torch_scatter

    WITH_TORCH_SCATTER = True
except ImportError:  # the optional dependency is absent
    torch_scatter = None
    WITH_TORCH_SCATTER = False

__all__ = ["WITH_TORCH_SCATTER", "BACKENDS", "REDUCTIONS", "AUTO_TORCH_SCATTER", "scatter", "set_scatter_backend",
           "get_scatter_backend", "scatter_backend_for", "index_count"]

BACKENDS = ("auto", "native", "torch_scatter")
REDUCTIONS = ("sum", "mean", "max", "min")

#: (device type, reduction, gradient needed) where torch_scatter measured faster than
#: native with ``benchmarks/scatter.py`` (2 CPU cores, torch 2.13, 286,720 x 64 messages;
#: benchmarks/reference/scatter_cpu_2core.json): its CPU max/min forward is ~13x slower
#: (120 vs 9 ms) but its backward is cheaper, so forward+backward wins (144 vs 157 ms).
#: Everything else, CUDA included (not measured): native.
AUTO_TORCH_SCATTER: frozenset[tuple[str, str, bool]] = frozenset({("cpu", "max", True), ("cpu", "min", True)})

_ENV = "WSLGRAPH_SCATTER_BACKEND"
_backend = "auto"


def set_scatter_backend(backend: str) -> None:
    """Choose the aggregation backend for every wslgraph layer.

    Args:
        backend: ``"auto"``, ``"native"`` or ``"torch_scatter"``.
    """
    global _backend
    if backend not in BACKENDS:
        raise ValueError(f"unknown scatter backend {backend!r}; choose one of {BACKENDS}")
    if backend == "torch_scatter" and not WITH_TORCH_SCATTER:
        raise ValueError("scatter backend 'torch_scatter' requested but torch_scatter is not installed; "
                         "pip install 'wslgraph[scatter]' (builds from source) or use 'native'")
    _backend = backend


def get_scatter_backend() -> str:
    return _backend


def scatter_backend_for(reduce: str, device: torch.device, grad: bool = False) -> str:
    """The backend ``scatter`` uses for ``reduce`` on ``device`` (with or without a gradient) right now."""
    if _backend != "auto":
        return _backend
    use = WITH_TORCH_SCATTER and (device.type, reduce, grad) in AUTO_TORCH_SCATTER
    return "torch_scatter" if use else "native"


def index_count(index: Tensor, dim_size: int, dtype: torch.dtype = torch.long) -> Tensor:
    """How often each of ``0 .. dim_size - 1`` occurs in ``index`` (``torch.bincount`` with a fixed length).

    Unlike ``bincount`` it never reads ``index`` back to the host, so on CUDA
    it does not synchronise; indices must lie in ``[0, dim_size)``.
    """
    return torch.zeros(dim_size, dtype=dtype, device=index.device).index_add_(
        0, index, torch.ones((), dtype=dtype, device=index.device).expand(index.shape[0]))


def scatter(src: Tensor, index: Tensor, dim_size: int, reduce: str = "sum") -> Tensor:
    """Reduce rows of ``src`` ``[E, ...]`` into ``dim_size`` rows by ``index`` ``[E]``.

    Rows that receive nothing are 0 for every reduction.

    Args:
        src: Values to reduce, one row per element of ``index``.
        index: Target row of each source row (``long``).
        dim_size: Number of output rows.
        reduce: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"`` (default: ``"sum"``).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduce!r}; choose one of {REDUCTIONS}")
    if index.dim() != 1 or index.shape[0] != src.shape[0]:
        raise ShapeMismatchError(f"index must have shape [{src.shape[0]}], got {list(index.shape)}")
    grad = src.requires_grad and torch.is_grad_enabled()
    if scatter_backend_for(reduce, src.device, grad) == "torch_scatter":
        return torch_scatter.scatter(src, index, dim=0, dim_size=dim_size, reduce=reduce)
    out = src.new_zeros(dim_size, *src.shape[1:])
    if reduce in ("sum", "mean"):
        out.index_add_(0, index, src)
        if reduce == "mean":
            count = index_count(index, dim_size, src.dtype).clamp_(min=1)
            out = out / count.view(-1, *([1] * (src.dim() - 1)))
        return out
    expanded = index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    return out.scatter_reduce_(0, expanded, src, reduce="amax" if reduce == "max" else "amin", include_self=False)


_requested = os.environ.get(_ENV)
if _requested:
    set_scatter_backend(_requested)
