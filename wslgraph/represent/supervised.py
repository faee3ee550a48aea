"""Supervised encoders beside the probes: what a graph encoder trained on the labels reads off the same rows.

:func:`~wslgraph.tasks.supervised_scores` scores the properties of :func:`~wslgraph.represent.probe_table`
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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wslgraph.errors import ZooError

__all__ = ["PropertyModel", "batch_column"]


def batch_column(batch: object, name: str) -> Tensor:
    """A zoo column's values for the rows of a batch (:class:`~wslgraph.zoo.ZooDataset` attaches a column whose
    name is also a graph field as ``zoo_<name>``)."""
    for key in (f"zoo_{name}", name):
        if key != "activation" and hasattr(batch, key):  # a graph's own activation field is per node
            return getattr(batch, key)
    raise ZooError(f"the batch carries no {name!r} column; build it from a zoo with that column (ZooDataset)")


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
