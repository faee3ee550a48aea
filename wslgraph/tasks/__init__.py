"""Tasks and training: one loop for every model, metrics of the field's tasks."""

from wslgraph.tasks.editing import INREditor
from wslgraph.tasks.loop import MODELS, TASKS, TrainConfig, build_model, evaluate, train
from wslgraph.tasks.metrics import accuracy, kendall_tau, r2_score
from wslgraph.tasks.task import Classification, Editing, Regression, Task, get_task, task_for

__all__ = ["accuracy", "kendall_tau", "r2_score", "TrainConfig", "MODELS", "TASKS", "build_model", "train", "evaluate",
           "INREditor", "Task", "Classification", "Regression", "Editing", "get_task", "task_for"]
