"""Metrics of the weight-space tasks: accuracy, Kendall's tau and R².

Kendall's tau and R² are computed by SciPy (``scipy.stats.kendalltau``, O(n log n)) and scikit-learn
(``sklearn.metrics.r2_score``) where they are installed, and otherwise by exact torch code here (a chunked
pairwise count for tau); a test holds the two paths equal.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["accuracy", "kendall_tau", "r2_score"]


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose arg-max is the label."""
    return float((logits.argmax(-1) == labels).float().mean())


def kendall_tau(prediction: Tensor, target: Tensor, chunk: int = 2048, use_scipy: bool = True) -> float:
    """Kendall's tau-b between two 1-D tensors (ties as in SciPy's default); NaN where one side is constant.

    With SciPy installed (and ``use_scipy``) this is ``scipy.stats.kendalltau``. Otherwise the exact pairwise
    form ``tau_b = (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))``, in O(n²/chunk) batched
    passes.
    """
    x, y = prediction.detach().double().flatten().cpu(), target.detach().double().flatten().cpu()
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError(f"kendall_tau needs two 1-D tensors of the same length >= 2, got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    if use_scipy:
        try:
            from scipy.stats import kendalltau
        except ImportError:
            pass
        else:
            with warnings.catch_warnings():  # a constant side: SciPy warns and returns NaN, as the torch path does
                warnings.simplefilter("ignore")
                return float(kendalltau(x.numpy(), y.numpy()).statistic)
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


def r2_score(prediction: Tensor, target: Tensor, use_sklearn: bool = True) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (``sklearn.metrics.r2_score`` where installed); NaN
    for a constant target."""
    prediction, target = prediction.detach().double().flatten().cpu(), target.detach().double().flatten().cpu()
    total = (target - target.mean()).square().sum()
    if not total > 0:
        return float("nan")
    if use_sklearn:
        try:
            from sklearn.metrics import r2_score as sklearn_r2
        except ImportError:
            pass
        else:
            return float(sklearn_r2(target.numpy(), prediction.numpy()))
    return float(1 - (prediction - target).square().sum() / total)
