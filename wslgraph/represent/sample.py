"""Sampling new models from a hyper-representation (Schürholt et al. 2022; SANE's variants).

A kernel density is fitted to the embeddings of a zoo's best models (top-k by
test accuracy), samples are drawn from it and decoded into parameters of the
zoo's architecture. Variants (SANE): ``"kde"`` fits all top-k embeddings,
``"subsample"`` fits a random half of them for each sample, ``"bootstrap"`` a
bootstrap resample. The bandwidth is Scott's rule on the standardised
embeddings unless given.

:func:`wslgraph.tasks.sample_zoo` runs the Model Zoos comparison: sampled
models with no training against the zoo's models, then fine-tuning from the
samples, from a fresh initialisation and from the zoo's best model, on the
zoo's data or on another data set (transfer).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from wslgraph.errors import ZooError
from wslgraph.represent.model import HyperRepresentation, TokenRepresentation

__all__ = ["SAMPLERS", "select_top", "sample_embeddings", "sample_models", "format_sampling_table", "plot_sampling",
           "plot_embeddings"]

SAMPLERS = ("kde", "subsample", "bootstrap")


def select_top(columns: dict[str, Tensor], k: int, *, by: str = "test_accuracy",
               where: Tensor | None = None) -> Tensor:
    """Row indices of the ``k`` best rows by ``by`` (among rows where ``where`` holds), best first."""
    if by not in columns:
        raise ZooError(f"the zoo has no {by!r} column to rank models by; sampling needs a zoo with accuracies "
                       "(wslgraph zoo cnn --grid model-zoos)")
    score = columns[by].double().clone()
    if where is not None:
        score[~where] = -math.inf
    available = int(torch.isfinite(score).sum())
    if available < 2:
        raise ZooError(f"only {available} rows to fit a density to; need at least 2")
    return score.argsort(descending=True)[: min(k, available)]


def _kde(points: np.ndarray, bandwidth: float | None, seed: int) -> object:
    from sklearn.neighbors import KernelDensity

    if bandwidth is None:  # Scott's rule, on standardised coordinates
        bandwidth = points.shape[0] ** (-1.0 / (points.shape[1] + 4))
    return KernelDensity(bandwidth=bandwidth).fit(points)


def sample_embeddings(embeddings: Tensor, count: int, *, method: str = "kde", bandwidth: float | None = None,
                      seed: int = 0) -> Tensor:
    """``count`` new latent vectors from a kernel density over ``embeddings`` ``[k, latent]`` (see module docs)."""
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {SAMPLERS}, got {method!r}")
    data = embeddings.double().numpy()
    mean, std = data.mean(0), data.std(0) + 1e-8
    scaled = (data - mean) / std
    rng = np.random.default_rng(seed)
    if method == "kde":
        draws = _kde(scaled, bandwidth, seed).sample(count, random_state=seed)
    else:
        draws = []
        for index in range(count):
            if method == "subsample":
                rows = rng.choice(len(scaled), size=max(2, len(scaled) // 2), replace=False)
            else:
                rows = rng.integers(0, len(scaled), size=len(scaled))
            draws.append(_kde(scaled[rows], bandwidth, seed).sample(1, random_state=seed + index)[0])
        draws = np.stack(draws)
    return torch.from_numpy(draws * std + mean).float()


@torch.no_grad()
def sample_models(model: HyperRepresentation | TokenRepresentation, embeddings: Tensor, count: int, *,
                  method: str = "kde", bandwidth: float | None = None, seed: int = 0) -> Tensor:
    """Decoded parameters ``[count, P]`` of models sampled around ``embeddings`` (the top models'
    ``sampling_latents``)."""
    model.eval()
    latents = sample_embeddings(embeddings, count, method=method, bandwidth=bandwidth, seed=seed)
    device = next(model.parameters()).device
    return model.decode(latents.to(device)).cpu()


def format_sampling_table(report: dict) -> str:
    """Markdown: mean ± std test accuracy per start and fine-tuning epoch (epoch 0: no training)."""
    top = report["top_accuracy"]
    lines = [f"{report['count']} {report['activation']} models sampled ({report['method']}) around the top "
             f"{report['top_k']} (their mean test accuracy {sum(top) / len(top):.3f}; the zoo's "
             f"{report['activation']} models at their last epoch: {report['zoo_last_epoch_accuracy']:.3f})", ""]
    groups = [("", report["finetune"])]
    if "transfer" in report:
        groups.append((f" → {report['transfer']['source']}", report["transfer"]["curves"]))
    epochs = len(report["finetune"]["sampled"]["mean"])
    lines += ["| start | " + " | ".join(f"epoch {e}" for e in range(epochs)) + " |", "|---|" + "---|" * epochs]
    for suffix, curves in groups:
        for name, curve in curves.items():
            cells = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(curve["mean"], curve["std"]))
            lines.append(f"| {name}{suffix} | {cells} |")
    return "\n".join(lines)


def plot_sampling(report: dict, path: str | Path) -> Path:
    """Mean test accuracy against fine-tuning epoch, one line per start (and per transfer start)."""
    from wslgraph.plotting import line_plot, save_figure

    series = {name: curve["mean"] for name, curve in report["finetune"].items()}
    if "transfer" in report:
        source = report["transfer"]["source"]
        series |= {f"{name} → {source}": curve["mean"] for name, curve in report["transfer"]["curves"].items()}
    epochs = len(report["finetune"]["sampled"]["mean"])
    figure = line_plot(series, f"sampled {report['activation']} models vs fresh and zoo models",
                       "fine-tuning epoch", "test accuracy", x=range(epochs))
    figure.axes[0].set_xticks(range(epochs))
    return save_figure(figure, path)


def plot_embeddings(embeddings: Tensor, columns: dict[str, Tensor], path: str | Path,
                    names: tuple[str, ...] = ("test_accuracy", "epoch")) -> Path:
    """The embeddings' first two principal components, one panel per column in ``names`` that the zoo has."""
    from wslgraph.plotting import save_figure, scatter_panels

    centred = embeddings.double() - embeddings.double().mean(0)
    _, _, basis = torch.linalg.svd(centred, full_matrices=False)
    points = (centred @ basis[:2].T).float()
    colours = {name: columns[name] for name in names if name in columns}
    title = f"{embeddings.shape[0]} checkpoints' embeddings, first two principal components"
    figure = scatter_panels(points, colours, title, "PC 1", "PC 2")
    return save_figure(figure, path)
