"""What embeddings know: cross-validated linear probes of model properties from frozen features.

For each property of a zoo (test accuracy, generalisation gap, epoch: ridge
regression, scored by R²; each categorical or grid hyperparameter: logistic
regression, one class against the rest, scored by accuracy) and each feature
set (the hyper-representation's embeddings, the weight statistics s(W) of
:func:`~wslgraph.baselines.statnn_features`, ...), the probe is fitted and
scored with ``GroupKFold`` over models, so the checkpoints of one model never
sit on both sides of a fold. Features are mapped to normal scores by their
ranks (``QuantileTransformer``) and standardised inside each fold: weight
statistics span many orders of magnitude, and a linear probe on raw values
extrapolates wildly.

Each probe's penalty (ridge ``alpha``, logistic ``C``) is chosen inside each
outer fold by an inner ``GroupKFold`` over that fold's training models, the
same grid for every feature set. Grouping matters here too: ridge's default
leave-one-row-out choice sees the other checkpoints of the held-out row's own
model and picks a penalty that memorises models. On the Fashion-MNIST grid
zoo it cost s(W) 0.08 of accuracy R² and the latent-256 embeddings 0.06-0.11,
and read their epoch R² as 0.01 and -0.03 where the grouped choice reads 0.32.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from wslgraph.errors import ZooError

__all__ = ["REGRESSION_TARGETS", "CLASSIFICATION_TARGETS", "probe", "probe_targets", "probe_table",
           "format_probe_table"]

REGRESSION_TARGETS = ("test_accuracy", "ggap", "epoch")
CLASSIFICATION_TARGETS = ("activation", "init", "optimizer", "dropout", "learning_rate", "weight_decay")


ALPHAS = np.logspace(-2, 6, 17)  # ridge penalties tried by the inner folds
CS = np.logspace(-4, 2, 7)  # logistic inverse penalties tried by the inner folds
INNER_FOLDS = 3
SCALINGS = ("rank", "asinh", "standard")  # probe(scaling=)


def probe(features: np.ndarray, target: np.ndarray, groups: np.ndarray, kind: str, folds: int = 5,
          seed: int = 0, scaling: str = "rank") -> float:
    """Out-of-fold R² (``kind="regression"``, ridge) or accuracy (``"classification"``, logistic regression of
    each class against the rest) of ``target`` from ``features``, folds grouped by ``groups``; each fold's
    penalty chosen by grouped inner folds of its training models (``ALPHAS``, ``CS``).

    ``scaling`` maps the features before standardising them, fitted on each fold's training rows: ``"rank"``
    (normal scores of their ranks, the probes' own) or ``"asinh"`` (``asinh(x / median |x|)``, the units of a
    hyper-representation's statistics branch and read-out) or ``"standard"`` (none: standardised only, for
    features that are already of one scale, such as a network's embeddings): what a linear probe reads depends on
    them. ``"auto"`` lets each outer fold choose among the three by the score of its grouped inner folds (each
    units' best penalty), as it chooses the penalty: the probe then reads each feature set in the units it reads
    best, with no look at the held-out models."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind not in ("regression", "classification"):
        raise ValueError(f"kind must be 'regression' or 'classification', got {kind!r}")
    if scaling not in (choices := SCALINGS + ("auto",)):
        raise ValueError(f"scaling must be one of {', '.join(map(repr, choices))}, got {scaling!r}")
    if len(np.unique(groups)) < folds:
        raise ZooError(f"probing needs at least {folds} models (folds are grouped by model); got "
                       f"{len(np.unique(groups))}")
    predicted = np.empty(len(target)) if kind == "regression" else np.empty_like(target)
    for fit, held in GroupKFold(n_splits=folds).split(features, target, groups):
        inner = list(GroupKFold(n_splits=INNER_FOLDS).split(features[fit], target[fit], groups[fit]))
        best = None
        for units in (SCALINGS if scaling == "auto" else (scaling,)):
            # the scaling is fitted on the fold's training rows (no labels) and shared by its inner folds
            scale = make_pipeline(_scaler(units, features[fit], seed), StandardScaler())
            train, test = scale.fit_transform(features[fit]), scale.transform(features[held])
            if kind == "regression":
                model = RidgeCV(alphas=ALPHAS, cv=inner)
            else:
                # one against the rest: Newton steps on one class's d x d Hessian instead of the multinomial's
                # (d·K)² one for K classes; 5x faster at K = 4 and as accurate here (0.587 / 1.000 against
                # 0.571 / 1.000 on a fold)
                model = GridSearchCV(OneVsRestClassifier(LogisticRegression(solver="newton-cholesky",
                                                                            max_iter=1000)),
                                     {"estimator__C": CS}, cv=inner)
            model.fit(train, target[fit])
            if best is None or model.best_score_ > best[0]:  # auto: the units the inner folds score best
                best = (model.best_score_, model, test)
        predicted[held] = best[1].predict(best[2])
    return float(r2_score(target, predicted) if kind == "regression" else accuracy_score(target, predicted))


def _scaler(units: str, rows: np.ndarray, seed: int) -> object:
    """The unfitted first step of a fold's feature scaling in ``units`` (``rows``: its training rows)."""
    from sklearn.preprocessing import FunctionTransformer, QuantileTransformer

    if units == "rank":
        # weight statistics span many orders of magnitude (a diverged model's variance is 1e5 times a trained
        # one's), and a linear probe on standardised raw values extrapolates wildly on held-out models
        return QuantileTransformer(n_quantiles=min(1000, len(rows)), output_distribution="normal",
                                   random_state=seed)
    if units == "standard":
        return FunctionTransformer()  # identity
    median = np.maximum(np.median(np.abs(rows), axis=0), 1e-8)
    return FunctionTransformer(functools.partial(_asinh, median))


def _asinh(scale: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.arcsinh(values / scale)


def probe_targets(columns: dict[str, Tensor]) -> list[tuple[str, str, Tensor]]:
    """The properties a probe table scores, found in ``columns``: ``(target, kind, values)`` with ``kind``
    ``"regression"`` (``values`` float64) or ``"classification"`` (``values`` each row's class, ``0 .. C-1``, in
    the order of the column's sorted values). Left out: a categorical column with one level, a numeric column
    that is constant or not finite everywhere."""
    found = []
    targets = [(t, "regression") for t in REGRESSION_TARGETS] + [(t, "classification") for t in CLASSIFICATION_TARGETS]
    for target, kind in targets:
        if target not in columns:
            continue
        values = columns[target]
        if kind == "classification":
            values = torch.unique(values, return_inverse=True)[1]
            if int(values.max()) == 0:
                continue  # one level: nothing to classify
        else:
            values = values.double()
            if not bool(torch.isfinite(values).all()) or float(values.std()) == 0:
                continue
        found.append((target, kind, values))
    return found


def probe_table(feature_sets: dict[str, Tensor], columns: dict[str, Tensor], *, groups: str = "model_index",
                folds: int = 5, scores: dict[str, dict[str, float]] | None = None,
                scalings: dict[str, str] | None = None) -> list[dict]:
    """One row per property found in ``columns``: its kind, and the probe's score for each feature set.

    Args:
        feature_sets: Name -> features ``[N, d]`` (rows aligned with ``columns``).
        columns: The zoo's columns (``ZooArrays.columns``), ``N`` rows each.
        groups: The column that names each row's model (folds never split a model).
        scores: Name -> property -> a score measured elsewhere on the same rows and folds (e.g.
            :func:`~wslgraph.tasks.supervised_scores`), shown as further columns.
        scalings: Name -> the :func:`probe` ``scaling`` of that feature set (default ``"rank"``).
    """
    if groups not in columns:
        raise ZooError(f"the zoo has no {groups!r} column to group the folds by; probes need the model of each row")
    count = len(columns[groups])
    for name, features in feature_sets.items():
        if features.shape[0] != count:
            raise ZooError(f"the {name} features have {features.shape[0]} rows but the zoo has {count}; they must "
                           "come from this zoo (wslgraph embed RUN ZOO)")
    group = columns[groups].numpy()
    rows = []
    for target, kind, values in probe_targets(columns):
        row = {"target": target, "kind": kind, "metric": "R2" if kind == "regression" else "accuracy"}
        for name, features in feature_sets.items():
            row[name] = probe(features.double().numpy(), values.numpy(), group, kind, folds,
                              scaling=(scalings or {}).get(name, "rank"))
        for name, measured in (scores or {}).items():
            row[name] = measured[target]
        if kind == "classification":
            row["chance"] = float(torch.bincount(values).max()) / len(values)
        rows.append(row)
    if not rows:
        raise ZooError("the zoo has none of the probed properties (" + ", ".join(REGRESSION_TARGETS
                       + CLASSIFICATION_TARGETS) + "); probes need a CNN zoo with training metadata")
    return rows


def format_probe_table(rows: list[dict]) -> str:
    """A markdown table of :func:`probe_table`'s rows."""
    names = [k for k in rows[0] if k not in ("target", "kind", "metric", "chance")]
    lines = ["| property | metric | " + " | ".join(names) + " | chance |", "|---|---|" + "---|" * (len(names) + 1)]
    for row in rows:
        values = " | ".join(f"{row[n]:.3f}" for n in names)
        chance = f"{row['chance']:.3f}" if "chance" in row else "–"
        lines.append(f"| {row['target']} | {row['metric']} | {values} | {chance} |")
    return "\n".join(lines)
