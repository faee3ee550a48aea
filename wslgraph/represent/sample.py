"""Sampling new models from a hyper-representation (Schürholt et al. 2022; SANE's variants).

A kernel density is fitted to the embeddings of a zoo's best models (top-k by
test accuracy), samples are drawn from it and decoded into parameters of the
zoo's architecture. Variants (SANE): ``"kde"`` fits all top-k embeddings,
``"subsample"`` fits a random half of them for each sample, ``"bootstrap"`` a
bootstrap resample. The kernel's covariance is a fraction of the anchors' own
(see :func:`sample_embeddings`).

:func:`wslgraph.tasks.sample_zoo` runs the Model Zoos comparison: sampled
models with no training against the zoo's models, then fine-tuning from the
samples, from a fresh initialisation and from the zoo's best model, on the
zoo's data or on another data set (transfer).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from wslgraph.errors import ZooError
from wslgraph.represent.model import HyperRepresentation, TokenRepresentation

__all__ = ["SAMPLERS", "SEQUENTIAL", "DEFAULT_BANDWIDTH", "sample_sequences", "select_top", "sample_embeddings",
           "sample_models", "format_sampling_table", "plot_sampling", "plot_embeddings"]

SAMPLERS = ("kde", "subsample", "bootstrap")
SEQUENTIAL = "sequential"


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


DEFAULT_BANDWIDTH = 0.2


def _bandwidth(anchors: Tensor, bandwidth: float | str | None) -> float:
    if bandwidth is None:
        return DEFAULT_BANDWIDTH
    if bandwidth == "scott":  # Scott's factor in the anchors' span (rank <= k - 1)
        rank = int(torch.linalg.matrix_rank(anchors - anchors.mean(0)))
        return anchors.shape[0] ** (-1.0 / (max(rank, 1) + 4))
    if isinstance(bandwidth, str) or not bandwidth >= 0:
        raise ValueError(f"bandwidth must be a number >= 0, 'scott' or None, got {bandwidth!r}")
    return float(bandwidth)


def _jitter(points: Tensor, centred: Tensor, size: float, generator: torch.Generator) -> Tensor:
    """``points`` ``[n, d]`` plus Gaussian noise of covariance ``size**2`` times that of the anchors whose centred
    values are ``centred`` ``[k, d]``: a random mixture of their deviations, so the noise stays in their span."""
    mixing = torch.randn(points.shape[0], centred.shape[0], generator=generator, dtype=centred.dtype)
    return points + size * (mixing @ centred) / math.sqrt(max(centred.shape[0] - 1, 1))


def sample_embeddings(embeddings: Tensor, count: int, *, method: str = "kde", bandwidth: float | str | None = None,
                      seed: int = 0) -> Tensor:
    """``count`` new latent vectors from a Gaussian kernel density over ``embeddings`` ``[k, latent]``.

    Each draw is an anchor plus Gaussian noise whose covariance is ``bandwidth**2`` times the anchors' covariance
    (the kernel of :class:`scipy.stats.gaussian_kde`), so draws stay in the anchors' span: at most ``k - 1``
    directions, where an isotropic kernel in a latent of thousands of coordinates (SANE's token sequences) would
    push every draw off the models the decoder knows. ``method``: ``"kde"`` takes the anchor and covariance from
    all ``k``; ``"subsample"`` from a random half for each draw and ``"bootstrap"`` from a bootstrap resample
    (SANE's variants). ``bandwidth`` (default :data:`DEFAULT_BANDWIDTH`, 0.2; ``"scott"``: Scott's factor
    ``k ** (-1 / (rank + 4))``, about 0.9 for 30 anchors): around the Model Zoos MNIST zoo's top 30 tanh
    checkpoints, with README's generation run, decoded samples scored 0.772 at bandwidth 0 (the anchors' own
    reconstructions), 0.731 at 0.2, 0.621 at 0.4 and 0.419 at Scott's factor, against the anchors' 0.871
    (``benchmarks/sampling.py``).
    """
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {SAMPLERS}, got {method!r}")
    anchors = embeddings.double()
    size = _bandwidth(anchors, bandwidth)
    generator = torch.Generator().manual_seed(seed)
    total = anchors.shape[0]
    draws = []
    for _ in range(count):
        if method == "kde":
            rows = torch.arange(total)
        elif method == "subsample":
            rows = torch.randperm(total, generator=generator)[: max(2, total // 2)]
        else:
            rows = torch.randint(0, total, (total,), generator=generator)
        chosen = anchors[rows]
        anchor = chosen[torch.randint(0, len(rows), (1,), generator=generator)]
        draws.append(_jitter(anchor, chosen - chosen.mean(0), size, generator))
    return torch.cat(draws).float()


def sample_sequences(latents: Tensor, count: int, windows: list[slice], *, bandwidth: float | str | None = None,
                     seed: int = 0) -> Tensor:
    """``count`` token-latent sequences ``[count, T, latent]`` generated window by window around ``latents``
    ``[k, T, latent]`` (the top models' token latents; SANE's sequential generation).

    The first window is drawn as :func:`sample_embeddings` draws (an anchor's window plus ``bandwidth`` times the
    anchors' covariance of that window). Each next window is conditioned on what was generated before it: its
    anchor is drawn with probability proportional to a Gaussian kernel between the window just generated and each
    anchor's same window (width ``bandwidth`` times the anchors' RMS spread there), so consecutive windows come
    from anchors that agree with the sequence so far, and a sequence can change anchor where they agree, which a
    whole-sequence draw cannot. Bandwidth 0 conditions on the nearest anchors (equally likely where several
    tie) and adds no noise.
    """
    anchors = latents.double()
    if anchors.dim() != 3:
        raise ValueError(f"latents must be [k, T, latent], got {list(latents.shape)}")
    size = _bandwidth(anchors.flatten(1), bandwidth)
    generator = torch.Generator().manual_seed(seed)
    total = anchors.shape[0]
    out = torch.empty(count, *anchors.shape[1:], dtype=torch.float64)
    previous: slice | None = None
    for part in windows:
        window = anchors[:, part].flatten(1)  # [k, n * latent]
        centred = window - window.mean(0)
        if previous is None:
            chosen = torch.randint(0, total, (count,), generator=generator)
        else:
            before = anchors[:, previous].flatten(1)
            spread = float((before - before.mean(0)).square().sum(1).mean().sqrt()) + 1e-12
            distance = torch.cdist(out[:, previous].flatten(1), before).square()  # [count, k]
            if size > 0:
                weights = torch.softmax(-distance / (2 * (size * spread) ** 2), dim=1)
            else:  # a kernel of width 0: the nearest anchors, equally
                weights = (distance <= distance.min(1, keepdim=True).values + 1e-9 * spread ** 2).double()
            chosen = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        out[:, part] = _jitter(window[chosen], centred, size, generator).view(count, part.stop - part.start, -1)
        previous = part
    return out.float()


@torch.no_grad()
def sample_models(model: HyperRepresentation | TokenRepresentation, embeddings: Tensor, count: int, *,
                  method: str = "kde", bandwidth: float | str | None = None, seed: int = 0) -> Tensor:
    """Decoded parameters ``[count, P]`` of models sampled around ``embeddings`` (the top models'
    ``sampling_latents``). ``method="sequential"`` (token representations only) generates window by window
    (:func:`sample_sequences`); the others draw whole latents (:func:`sample_embeddings`)."""
    if method == SEQUENTIAL and not isinstance(model, TokenRepresentation):
        raise ValueError("sequential generation needs a token representation (wslgraph represent --encoder sane); "
                         "use kde, subsample or bootstrap")
    model.eval()
    if method == SEQUENTIAL:
        backbone = model.backbone
        sequences = embeddings.view(embeddings.shape[0], backbone.tokens.num_tokens, model.latent)
        latents = sample_sequences(sequences, count, backbone.windows(), bandwidth=bandwidth, seed=seed).flatten(1)
    else:
        latents = sample_embeddings(embeddings, count, method=method, bandwidth=bandwidth, seed=seed)
    device = next(model.parameters()).device
    return model.decode(latents.to(device)).cpu()


def format_sampling_table(report: dict) -> str:
    """Markdown: mean ± std test accuracy per start and fine-tuning epoch (epoch 0: no training)."""
    top = report["top_accuracy"]
    kind = report["activation"] or "zoo"  # zoos without an activation column (ResNets): the zoo's models
    lines = [f"{report['count']} {kind} models sampled ({report['method']}) around the top "
             f"{report['top_k']} (their mean test accuracy {sum(top) / len(top):.3f}; the zoo's "
             f"{kind} models at their last epoch: {report['zoo_last_epoch_accuracy']:.3f})"]
    if report.get("novelty"):
        far, near = report["novelty"]["sample_to_anchor"], report["novelty"]["anchor_to_anchor"]
        lines.append(f"samples' median relative distance to their nearest top model: {far:.3f}"
                     + (f" (top models to each other: {near:.3f})" if near is not None else ""))
    if report.get("recalibrated_images"):
        lines.append(f"samples' batch-norm statistics recomputed on {report['recalibrated_images']} training images "
                     "(forward passes only)")
    lines.append("")
    groups = [("", report["finetune"])]
    if "transfer" in report:
        groups.append((f" → {report['transfer']['source']}", report["transfer"]["curves"]))
    if "deeper" in report:
        groups.append((f", ResNet-{report['deeper']['depth']}", report["deeper"]["curves"]))
    epochs = len(report["finetune"]["sampled"]["mean"])
    lines += ["| start | " + " | ".join(f"epoch {e}" for e in range(epochs)) + " |", "|---|" + "---|" * epochs]
    for suffix, curves in groups:
        for name, curve in curves.items():
            cells = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(curve["mean"], curve["std"]))
            lines.append(f"| {name}{suffix} | {cells} |")
    return "\n".join(lines)


def plot_sampling(report: dict, path: str | Path) -> Path:
    """Mean test accuracy against fine-tuning epoch, one line per start (and per transfer or deeper start)."""
    from wslgraph.plotting import line_plot, save_figure

    series = {name: curve["mean"] for name, curve in report["finetune"].items()}
    if "transfer" in report:
        source = report["transfer"]["source"]
        series |= {f"{name} → {source}": curve["mean"] for name, curve in report["transfer"]["curves"].items()}
    if "deeper" in report:
        depth = report["deeper"]["depth"]
        series |= {f"{name}, ResNet-{depth}": curve["mean"] for name, curve in report["deeper"]["curves"].items()}
    epochs = len(report["finetune"]["sampled"]["mean"])
    figure = line_plot(series, f"sampled {report['activation'] or 'zoo'} models vs fresh and zoo models",
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
