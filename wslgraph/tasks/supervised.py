"""Supervised encoders beside the probes: what a graph encoder trained on the labels reads off the same rows.

:func:`supervised_scores` scores the properties of :func:`~wslgraph.represent.probe_table`
(test accuracy, generalisation gap and epoch by R², each categorical hyperparameter by accuracy) with a graph
encoder of the benchmark harness (``gnn``, ``transformer``, at the harness's defaults for the zoo's kind)
trained *with* the labels, one model for all properties at once (:class:`PropertyModel`: a regression output
per numeric property in standardised units, a block of logits per categorical one; the loss is the mean over
properties of their MSE and cross-entropy). It uses the probes' rows and their folds (``GroupKFold`` by model
over the same rows, so each row's prediction comes from a model that never saw a checkpoint of its network) and
the one training loop (:func:`wslgraph.tasks.train`; the best epoch by the loss on a tenth of the training
fold's networks). Its scores sit beside the linear probes of the self-supervised embedding and of s(W) as a
reference: what the weights tell an encoder that is told what to look for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wslgraph.errors import OptionError, ZooError
from wslgraph.represent.probe import probe_targets
from wslgraph.tasks.loop import TrainConfig, build_model, train
from wslgraph.zoo.dataset import ZooDataset, batch_column

__all__ = ["PropertyModel", "supervised_scores"]


class PropertyModel(nn.Module):
    """An encoder trained on several properties at once (see the module docstring).

    Args:
        encoder: A graph encoder whose ``forward(batch)`` gives ``[B, out]`` with ``out`` the number of numeric
            properties plus the classes of every categorical one.
        properties: ``(name, kind, levels)`` per property in output order: ``kind`` ``"regression"`` (``levels``:
            ``(mean, std)`` of the training rows, the units of its output) or ``"classification"`` (``levels``:
            the column's sorted values; class ``i`` is ``levels[i]``).

    ``forward(batch)`` is each row's loss ``[B]`` (the training loop's ``represent`` task), read from the batch's
    columns; :meth:`predict` gives each property's prediction in the column's units (classes as indices into
    ``levels``).
    """

    def __init__(self, encoder: nn.Module, properties: list[tuple[str, str, Tensor]]) -> None:
        super().__init__()
        self.encoder = encoder
        self.names = [name for name, _, _ in properties]
        self.kinds = [kind for _, kind, _ in properties]
        self.widths = [1 if kind == "regression" else len(levels) for _, kind, levels in properties]
        for index, (_, _, levels) in enumerate(properties):
            self.register_buffer(f"levels_{index}", torch.as_tensor(levels, dtype=torch.float64))

    def fit_statistics(self, batches: object) -> PropertyModel:
        if hasattr(self.encoder, "fit_statistics"):
            self.encoder.fit_statistics(batches)
        return self

    def _parts(self, batch: object) -> list[Tensor]:
        return list(self.encoder(batch).split(self.widths, dim=1))

    def forward(self, batch: object) -> Tensor:
        losses = []
        for index, (name, kind, output) in enumerate(zip(self.names, self.kinds, self._parts(batch))):
            levels, values = getattr(self, f"levels_{index}"), batch_column(batch, name).to(torch.float64)
            if kind == "regression":
                target = ((values - levels[0]) / levels[1]).to(output.dtype)
                losses.append((output.squeeze(1) - target).square())
            else:
                target = torch.searchsorted(levels, values.contiguous())
                losses.append(F.cross_entropy(output, target, reduction="none"))
        return torch.stack(losses).mean(dim=0)

    @torch.no_grad()
    def predict(self, batch: object) -> dict[str, Tensor]:
        """Each property's prediction ``[B]``: numeric ones in the column's units, categorical ones as class
        indices."""
        predictions = {}
        for index, (name, kind, output) in enumerate(zip(self.names, self.kinds, self._parts(batch))):
            levels = getattr(self, f"levels_{index}")
            predictions[name] = (output.squeeze(1).double() * levels[1] + levels[0] if kind == "regression"
                                 else output.argmax(dim=1))
        return predictions


def supervised_scores(zoo: str | Path | ZooDataset, keep: Tensor, *, encoder: str = "gnn",
                      options: dict | None = None, folds: int = 5, epochs: int = 5, batch_size: int = 32,
                      lr: float = 2e-3, seed: int = 0, device: str = "cpu", progress: bool = False) -> dict[str, float]:
    """Out-of-fold scores ``{property: R² or accuracy}`` of a supervised encoder on the rows of ``zoo`` where
    ``keep`` ``[len(zoo)]`` holds, with the folds of :func:`~wslgraph.represent.probe` (module docstring).

    Args:
        zoo: The zoo's folder, or a :class:`~wslgraph.zoo.ZooDataset` of all its rows (``split=None``) already
            opened (its arrays are shared, not read again).
        encoder: A graph model of the harness (``gnn``, ``transformer``), built with the harness's defaults for
            the zoo's kind and ``options`` over them.
        epochs, batch_size, lr, seed, device: Training of each fold's model (:class:`~wslgraph.tasks.TrainConfig`;
            the best epoch by the loss on a tenth of the fold's training networks).
    """
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import GroupKFold

    from wslgraph.tasks.compare import default_options

    if epochs < 1 or folds < 2:
        raise OptionError(f"supervised scores need epochs >= 1 and folds >= 2, got epochs={epochs}, folds={folds}")
    if isinstance(zoo, ZooDataset):
        if zoo.split is not None or len(zoo) != len(zoo.arrays):
            raise ZooError(f"supervised scores need a dataset of all the zoo's rows (split=None), got split "
                           f"{zoo.split!r} with {len(zoo)} of {len(zoo.arrays)} rows; pass the zoo's folder")
        dataset = zoo.with_augment(None)
    else:
        dataset = ZooDataset(zoo, None, target="model_index")
    arrays = dataset.arrays
    if keep.dtype != torch.bool or keep.shape != (len(arrays),):
        raise ZooError(f"keep must be a boolean mask over the zoo's {len(arrays)} rows, got {keep.dtype} "
                       f"{tuple(keep.shape)}")
    columns = {name: column[keep] for name, column in arrays.columns.items()}
    if "model_index" not in columns:
        raise ZooError("supervised scores need the model of each row (a model_index column) to group the folds by")
    targets = probe_targets(columns)
    if not targets:
        raise ZooError("the zoo has none of the probed properties; supervised scores need a CNN zoo with training "
                       "metadata")
    group = columns["model_index"].numpy()
    if len(np.unique(group)) < folds:
        raise ZooError(f"supervised scores need at least {folds} models (folds are grouped by model); got "
                       f"{len(np.unique(group))}")
    rows = keep.nonzero().flatten()
    predicted = {name: np.zeros(len(rows)) for name, _, _ in targets}
    options = default_options(encoder, dict(options or {}), arrays.kind, "regression")
    classes = {name: torch.unique(columns[name].double()) for name, kind, _ in targets if kind == "classification"}

    def mask(positions: np.ndarray) -> Tensor:
        chosen = torch.zeros(len(arrays), dtype=torch.bool)
        chosen[rows[torch.as_tensor(positions, dtype=torch.long)]] = True
        return chosen

    for fold, (fit, held) in enumerate(GroupKFold(n_splits=folds).split(np.zeros(len(rows)), groups=group)):
        networks = np.unique(group[fit])
        chosen = np.random.default_rng(seed * 1_000 + fold).choice(networks, max(1, len(networks) // 10),
                                                                   replace=False)
        validation = np.isin(group[fit], chosen)
        properties = []
        for name, target_kind, values in targets:  # numeric ones in the fold's standardised units
            if target_kind == "regression":
                train_values = values[torch.as_tensor(fit[~validation])]
                properties.append((name, target_kind, torch.stack([train_values.mean(),
                                                                   train_values.std().clamp_min(1e-12)])))
            else:
                properties.append((name, target_kind, classes[name]))
        width = sum(1 if target_kind == "regression" else len(levels) for _, target_kind, levels in properties)
        model = PropertyModel(build_model(encoder, width, **options), properties)
        config = TrainConfig(task="represent", epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + fold,
                             device=device, progress=progress, patience=0)
        train(model, dataset.where(mask(fit[~validation])), dataset.where(mask(fit[validation])), config)
        model.eval()
        outputs: dict[str, list[Tensor]] = {name: [] for name in predicted}
        for batch in dataset.where(mask(held)).batches(256, device=device):
            for name, value in model.predict(batch).items():
                outputs[name].append(value.cpu())
        for name in predicted:  # where() keeps the zoo's order, and so do the held-out positions
            predicted[name][held] = torch.cat(outputs[name]).double().numpy()
    scores = {}
    for name, target_kind, values in targets:
        truth = values.numpy()
        scores[name] = float(r2_score(truth, predicted[name]) if target_kind == "regression"
                             else accuracy_score(truth, predicted[name]))
    return scores
