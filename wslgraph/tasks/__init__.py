"""Tasks and training: one loop for every model, metrics of the field's tasks."""

from wslgraph.tasks.editing import INREditor
from wslgraph.tasks.loop import MODELS, TASKS, TrainConfig, build_model, evaluate, train
from wslgraph.tasks.metrics import accuracy, kendall_tau, r2_score

__all__ = ["accuracy", "kendall_tau", "r2_score", "TrainConfig", "MODELS", "TASKS", "build_model", "train", "evaluate",
           "INREditor"]
