"""Metrics of the weight-space tasks: accuracy, Kendall's tau and R² (exact, vectorized, no SciPy)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["accuracy", "kendall_tau", "r2_score"]


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose arg-max is the label."""
    return float((logits.argmax(-1) == labels).float().mean())


def kendall_tau(prediction: Tensor, target: Tensor, chunk: int = 2048) -> float:
    """Kendall's tau-b between two 1-D tensors (ties handled as in SciPy's default), in O(n²/chunk) batched passes.

    ``tau_b = (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))``
    over all pairs; the chunked pairwise comparison needs no sort-based
    bookkeeping and is exact.
    """
    x, y = prediction.detach().double().flatten(), target.detach().double().flatten()
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError(f"kendall_tau needs two 1-D tensors of the same length >= 2, got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    score = ties_x = ties_y = 0.0
    for start in range(0, x.numel(), chunk):
        dx = torch.sign(x[start:start + chunk, None] - x[None, :])
        dy = torch.sign(y[start:start + chunk, None] - y[None, :])
        score += float((dx * dy).sum())
        ties_x += float((dx == 0).sum())
        ties_y += float((dy == 0).sum())
    n = x.numel()
    pairs = n * (n - 1)  # ordered pairs; the diagonal counts as n ties on each side
    denominator = ((pairs - (ties_x - n)) * (pairs - (ties_y - n))) ** 0.5
    return score / denominator if denominator > 0 else float("nan")


def r2_score(prediction: Tensor, target: Tensor) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``."""
    prediction, target = prediction.detach().double().flatten(), target.detach().double().flatten()
    total = (target - target.mean()).square().sum()
    return float(1 - (prediction - target).square().sum() / total) if total > 0 else float("nan")
