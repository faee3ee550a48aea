"""The weight-space tasks as objects: what a task trains on, how it is scored, and what size of output it needs.

A :class:`Task` holds everything that depends on the task: the loss, the metrics of an evaluation, the score the
training loop keeps the best epoch by (higher is better), the model's output size for a zoo, and the metric the
harness reports. :func:`task_for` picks one for a zoo (``"auto"``: classification for INR zoos, regression of the
test accuracy for CNN zoos); the training loop, ``wslgraph train``/``eval`` and ``wslgraph bench`` all use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from wslgraph.errors import ZooError
from wslgraph.tasks.metrics import accuracy, kendall_tau, r2_score

if TYPE_CHECKING:
    from wslgraph.zoo.dataset import ZooDataset

__all__ = ["Task", "Classification", "Regression", "Editing", "SelfSupervised", "TASKS", "get_task", "task_for"]


class Task:
    """One task (see the module docstring). Subclasses define :meth:`loss`, :meth:`metrics` and :attr:`metric`."""

    name: str = ""
    metric: str = ""  #: the metrics key the harness reports and the loop selects by

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        """The task's metrics of one evaluation (``loss`` included)."""
        raise NotImplementedError

    def score(self, metrics: dict[str, float]) -> float:
        """Higher is better: the training loop keeps the epoch with the best validation score."""
        return metrics[self.metric]

    def out_dim(self, dataset: ZooDataset) -> int:
        """The model's output size for ``dataset``."""
        return 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Classification(Task):
    """Cross-entropy on the zoo's class column (the image label of an INR); metric: accuracy."""

    name, metric = "classification", "accuracy"

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target.long())

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        return {"loss": float(self.loss(output, target)), "accuracy": accuracy(output, target)}

    def out_dim(self, dataset: ZooDataset) -> int:
        return int(dataset.arrays.columns[dataset.target].max()) + 1


class Regression(Task):
    """Mean squared error on a scalar column (a CNN's test accuracy); metrics: Kendall's tau (selected by) and R²."""

    name, metric = "regression", "kendall_tau"

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(output.squeeze(-1), target.float())

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        prediction = output.squeeze(-1)
        return {"loss": float(self.loss(output, target)), "kendall_tau": kendall_tau(prediction, target),
                "r2": r2_score(prediction, target)}


class Editing(Task):
    """The model returns each input's loss (:class:`~wslgraph.tasks.editing.INREditor`); metric: its mean, ``mse``
    (lower is better)."""

    name, metric = "editing", "mse"

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return output.mean()

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        mse = float(output.mean())
        return {"loss": mse, "mse": mse}

    def score(self, metrics: dict[str, float]) -> float:
        return -metrics["mse"]


class SelfSupervised(Task):
    """The model returns each input's self-supervised loss (:class:`~wslgraph.represent.HyperRepresentation`);
    metric: its mean, ``loss`` (lower is better). The zoo's target column is not used."""

    name, metric = "represent", "loss"

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return output.mean()

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        return {"loss": float(output.mean())}

    def score(self, metrics: dict[str, float]) -> float:
        return -metrics["loss"]


TASKS: dict[str, Task] = {task.name: task for task in (Classification(), Regression(), Editing(), SelfSupervised())}


def get_task(name: str | Task) -> Task:
    """The task called ``name`` (a :class:`Task` passes through)."""
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {name!r}")
    return TASKS[name]


def task_for(dataset: ZooDataset, name: str = "auto") -> Task:
    """The task ``name`` for a zoo split, ``"auto"`` resolved by the zoo's kind; editing needs an INR zoo."""
    kind = dataset.arrays.kind
    if name == "auto":
        return TASKS["classification" if kind == "inr" else "regression"]
    task = get_task(name)
    if task.name == "editing" and kind != "inr":
        raise ZooError(f"this is a {kind} zoo; the editing task needs an INR zoo")
    return task
