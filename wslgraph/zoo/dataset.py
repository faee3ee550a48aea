"""``ZooDataset``: a zoo folder as a PyG dataset of parameter graphs.

Batches are built from flat parameter rows with the zoo's template, after an optional augmentation
(:mod:`wslgraph.weightspace.augment`), and carry those rows for the weight-space models
(:func:`wslgraph.weightspace.attach_params`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch, Dataset

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import NonFiniteError, ZooError
from wslgraph.graph.param_graph import ParamGraph
from wslgraph.weightspace import attach_params
from wslgraph.weightspace.augment import Augmentation
from wslgraph.zoo.storage import SPLIT_CODES, load_zoo_arrays

__all__ = ["ZooDataset", "batch_column"]


_GRAPH_FIELDS = frozenset({"x", "x_mask", "edge_index", "edge_attr", "node_type", "layer", "io_position", "activation",
                           "edge_type", "scalars", "y", "batch", "ptr", "layout", "num_nodes"})


def batch_column(batch: object, name: str) -> Tensor:
    """A zoo column's values for the rows of a batch built by :class:`ZooDataset`, which attaches a column whose
    name is also a graph field as ``zoo_<name>`` (a CNN zoo's ``activation`` beside the graphs' per-node one)."""
    for key in (f"zoo_{name}", name):
        if (key != name or name not in _GRAPH_FIELDS) and hasattr(batch, key):
            return getattr(batch, key)
    raise ZooError(f"the batch carries no {name!r} column; build it from a zoo with that column (ZooDataset)")


class ZooDataset(Dataset):
    """A wslgraph zoo folder as a dataset of :class:`~wslgraph.ParamGraph` objects.

    Graphs are built by the zoo's :class:`~wslgraph.GraphTemplate` (no
    tracing, no per-model conversion). ``graph.y`` is the target column
    (``label`` for INR zoos, ``test_accuracy`` for CNN zoos, or ``target=``);
    every metadata column, the target's too, is attached under its name as a
    ``[1]`` tensor (so :func:`batch_column` reads any of them). A column
    whose name is also a graph field (a CNN zoo's ``activation``
    hyperparameter, say) is attached as ``zoo_<name>`` so the graph's own
    field is never overwritten.

    Args:
        root: The zoo folder (with ``manifest.json``).
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (all models).
        augment: An :class:`Augmentation` applied to parameter rows before
            graphs are built (training-time weight-space augmentation).
        transform: PyG transform applied to each graph in :meth:`get`.
        target: Column used as ``y`` (default: the zoo kind's natural target).
        verify: Check every shard's SHA-256 on load (default: ``True``).
    """

    def __init__(self, root: str | os.PathLike[str], split: str | None = "train", *,
                 augment: Augmentation | None = None, transform: object = None, target: str | None = None,
                 verify: bool = True) -> None:
        self.arrays = load_zoo_arrays(root, verify=verify)
        super().__init__(str(root), transform=transform, log=False)
        if split is not None and split not in SPLIT_CODES:
            raise ZooError(f"split must be one of {list(SPLIT_CODES)} or None, got {split!r}")
        if split is not None and "split" not in self.arrays.columns:
            raise ZooError(f"the zoo at {root} has no split column; use split=None")
        if split is None:
            self.indices_ = torch.arange(len(self.arrays))
        else:
            self.indices_ = (self.arrays.columns["split"] == SPLIT_CODES[split]).nonzero().flatten()
        bad = self.indices_[torch.isin(self.indices_, self.arrays.nonfinite_rows())]
        if bad.numel():
            raise NonFiniteError(f"{bad.numel()} models of the zoo at {root} ({split or 'all splits'}) hold NaN or "
                                 f"infinite weights (model indices {bad[:8].tolist()}); rewrite the zoo without them")
        self.split = split
        self.group_: tuple[str, int] | None = None
        self.template = GraphTemplate(self.arrays.layout)
        self.augment = augment
        default = {"inr": "label", "cnn": "test_accuracy"}.get(self.arrays.kind)
        self.target = target or default
        if self.target is not None and self.target not in self.arrays.columns:
            raise ZooError(f"target {self.target!r} is not a column of this zoo; columns: "
                             f"{sorted(self.arrays.columns)}")

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        return []

    def len(self) -> int:
        return int(self.indices_.numel())

    def with_augment(self, augment: Augmentation | None) -> ZooDataset:
        """The same split (sharing the loaded arrays) with another augmentation."""
        other = copy.copy(self)
        other.augment = augment
        return other

    def where(self, rows: Tensor) -> ZooDataset:
        """The same split restricted to the zoo rows where the boolean mask ``rows`` ``[len(zoo)]`` holds (sharing
        the loaded arrays), e.g. models whose weights stay below a threshold."""
        if rows.dtype != torch.bool or rows.shape != (len(self.arrays),):
            raise ZooError(f"where() takes a boolean mask over the zoo's {len(self.arrays)} rows, got "
                           f"{rows.dtype} {tuple(rows.shape)}")
        other = copy.copy(self)
        other.indices_ = self.indices_[rows[self.indices_]]
        return other

    def grouped(self, column: str, size: int) -> ZooDataset:
        """The same split whose *shuffled* batches hold runs of ``size`` rows with the same ``column`` value (the
        last run of a value may be shorter), e.g. ``grouped("model_index", 4)``: four checkpoints of one model side
        by side, the positives of a contrastive loss over training trajectories. Unshuffled batches keep the
        split's order."""
        if column not in self.arrays.columns:
            raise ZooError(f"the zoo has no {column!r} column to group batches by; columns: "
                           f"{sorted(self.arrays.columns)}")
        if size < 1:
            raise ZooError(f"a group holds at least one row, got {size}")
        other = copy.copy(self)
        other.group_ = (column, int(size))
        return other

    def _grouped_order(self, generator: torch.Generator | None) -> Tensor:
        """A random order of the split's positions in runs of equal ``column`` values (see :meth:`grouped`)."""
        column, size = self.group_
        count = self.len()
        order = torch.randperm(count, generator=generator)
        keys, by_key = torch.sort(self.arrays.columns[column][self.indices_][order], stable=True)
        order = order[by_key]  # each value's rows together, in random order
        position = torch.arange(count)
        first = torch.ones(count, dtype=torch.bool)
        first[1:] = keys[1:] != keys[:-1]
        within = position - torch.cummax(torch.where(first, position, 0), dim=0).values
        run = torch.cumsum(first | (within % size == 0), dim=0) - 1
        shuffled = torch.randperm(int(run[-1]) + 1 if count else 0, generator=generator)
        return order[torch.argsort(shuffled[run] * size + within % size)]

    def params(self, indices: Tensor | Sequence[int] | None = None) -> Tensor:
        """Flat parameter rows of this split (all, or the given positions), augmented if configured."""
        rows = self.indices_ if indices is None else self.indices_[torch.as_tensor(indices, dtype=torch.long)]
        params = self.arrays.params[rows]
        return self.augment(params) if self.augment is not None else params

    def _attach(self, graphs: ParamGraph | Batch, rows: Tensor, device: torch.device | None = None) -> None:
        for name, column in self.arrays.columns.items():
            values = column[rows] if device is None else column[rows].to(device)
            if name == self.target:
                graphs.y = values.float() if values.is_floating_point() else values.long()
            setattr(graphs, f"zoo_{name}" if name in _GRAPH_FIELDS or name in graphs else name, values)

    def get(self, idx: int) -> ParamGraph:
        rows = self.indices_[idx:idx + 1]
        graph = self.template.batch(self.params([idx])).get_example(0)
        self._attach(graph, rows)
        return graph

    def batch(self, positions: Tensor | Sequence[int], device: str | torch.device | None = None) -> Batch:
        """One template-built batch of the models at ``positions`` of this split (targets and columns on ``device``)."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        params = self.params(positions)
        device = torch.device(device) if device is not None else None
        params = params.to(device) if device is not None else params
        batch = self.template.batch(params)
        attach_params(batch, params)  # weight-space models read these rows instead of rebuilding them
        self._attach(batch, self.indices_[positions], device)
        return batch

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, device: str | torch.device | None = None, rank: int = 0,
                world_size: int = 1) -> Iterator[Batch]:
        """Template-built batches (the fast path; one strided copy per layer tensor per batch).

        With :meth:`grouped`, shuffled batches come in runs of rows of one group.
        With ``world_size > 1`` every process draws the same order and takes
        positions ``rank, rank + world_size, ...`` of each global batch of
        ``batch_size`` (distributed data parallelism without a sampler).
        """
        if shuffle:
            grouped = self.group_ is not None
            order = self._grouped_order(generator) if grouped else torch.randperm(self.len(), generator=generator)
        else:
            order = torch.arange(self.len())
        for start in range(0, self.len(), batch_size):
            chunk = order[start:start + batch_size]
            if drop_last and chunk.numel() < batch_size:
                break
            mine = chunk[rank::world_size]
            if mine.numel():
                yield self.batch(mine, device)

    def __repr__(self) -> str:
        return (f"ZooDataset({self.arrays.kind}, split={self.split!r}, models={self.len()}, "
                f"params={self.arrays.layout.num_params})")
