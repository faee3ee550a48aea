"""Tasks and training: one loop for every model, metrics of the field's tasks."""

from wslgraph.tasks.loop import MODELS, TrainConfig, build_model, evaluate, train
from wslgraph.tasks.metrics import accuracy, kendall_tau, r2_score

__all__ = ["accuracy", "kendall_tau", "r2_score", "TrainConfig", "MODELS", "build_model", "train", "evaluate"]
