"""Tasks and training: one loop for every model, metrics of the field's tasks."""

from wslgraph.tasks.editing import INREditor
from wslgraph.tasks.loop import MODELS, TASKS, TrainConfig, build_model, evaluate, train
from wslgraph.tasks.metrics import accuracy, kendall_tau, r2_score
from wslgraph.tasks.represent import finetune_curves, sample_zoo, train_representation
from wslgraph.tasks.supervised import PropertyModel, supervised_scores
from wslgraph.tasks.task import Classification, Editing, Regression, SelfSupervised, Task, get_task, task_for

__all__ = ["accuracy", "kendall_tau", "r2_score", "TrainConfig", "MODELS", "TASKS", "build_model", "train", "evaluate",
           "INREditor", "Task", "Classification", "Regression", "Editing", "SelfSupervised", "get_task", "task_for",
           "train_representation", "sample_zoo", "finetune_curves", "PropertyModel", "supervised_scores"]
