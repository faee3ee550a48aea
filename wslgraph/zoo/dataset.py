"""``ZooDataset``: a zoo folder as a PyG dataset of parameter graphs, plus weight-space augmentations.

Augmentations act on flat parameter rows ``[B, P]`` (the zoo's storage
order), so the same object serves single graphs (:meth:`ZooDataset.get`) and
whole template batches (:meth:`ZooDataset.batches`). Each draws from its own
``torch.Generator`` (seeded at construction), so a seeded pipeline repeats.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch, Dataset

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ShapeMismatchError, UnsupportedModuleError
from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.param_graph import ParamGraph
from wslgraph.graph.vocab import Activation, EdgeType, NodeFeature, NodeType
from wslgraph.weightspace import attach_params, hidden_permutations, permute_state_dict
from wslgraph.zoo.storage import SPLIT_CODES, load_zoo_arrays

__all__ = ["ZooDataset", "Augmentation", "RandomHiddenPermutation", "RandomSignFlip", "GaussianNoise", "WeightDropout",
           "INRAffine", "Compose", "AUGMENT_PRESETS", "augmentation"]


class Augmentation:
    """A random, per-model map of flat parameter rows ``[B, P] -> [B, P]`` for one layout."""

    def __init__(self, layout: GraphLayout, seed: int = 0) -> None:
        self.layout = layout
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random draws from ``seed`` (the training loop does this every epoch, so a resumed run
        draws what an uninterrupted one draws)."""
        self.generator.manual_seed(seed)

    def __call__(self, params: Tensor) -> Tensor:
        if params.dim() != 2 or params.shape[1] != self.layout.num_params:
            raise ShapeMismatchError(f"{type(self).__name__} expects [B, {self.layout.num_params}] parameter rows, "
                                     f"got {tuple(params.shape)}")
        return self.apply(params)

    def apply(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Compose(Augmentation):
    """Apply augmentations in order."""

    def __init__(self, augmentations: Sequence[Augmentation]) -> None:
        self.augmentations = list(augmentations)

    def reseed(self, seed: int) -> None:
        for index, augmentation in enumerate(self.augmentations):
            augmentation.reseed(seed * 7919 + index)

    def __call__(self, params: Tensor) -> Tensor:
        for augmentation in self.augmentations:
            params = augmentation(params)
        return params

    def __repr__(self) -> str:
        return f"Compose({self.augmentations})"


class RandomHiddenPermutation(Augmentation):
    """Permute every model's hidden neurons at random (the function is unchanged).

    Uses :func:`wslgraph.weightspace.hidden_permutations`, so residual ties,
    GroupNorm groups and grouped convolutions are respected.
    """

    def apply(self, params: Tensor) -> Tensor:
        positions = torch.arange(self.layout.num_params)
        index_state = {e.key: positions[self.layout.span(e.key)].view(e.shape) for e in self.layout.state}
        rows = []
        for _ in range(params.shape[0]):
            permuted = permute_state_dict(self.layout, index_state, hidden_permutations(self.layout, self.generator))
            rows.append(torch.cat([permuted[e.key].reshape(-1) for e in self.layout.state]))
        return params.gather(1, torch.stack(rows).to(params.device))


class RandomSignFlip(Augmentation):
    """Flip the sign of random hidden neurons with an odd activation (the function is unchanged).

    For a neuron with an odd activation (sine, tanh), negating its incoming
    weights and bias negates its output, and negating its outgoing weights
    undoes that: the sign symmetry of SIRENs and tanh networks (ScaleGMN).
    Each eligible neuron of each model is flipped with probability ``p``.
    Eligible: hidden groups with a sine or tanh activation, fed and read by
    Linear or (ungrouped) convolution weights only, with no normalisation
    parameters or residual ties.

    Args:
        layout: The architecture.
        p: Probability of flipping each eligible neuron (default: ``0.5``).
        seed: Seed of the draws (default: ``0``).
    """

    def __init__(self, layout: GraphLayout, p: float = 0.5, seed: int = 0) -> None:
        super().__init__(layout, seed)
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p
        self._groups = _sign_flip_groups(layout)
        if not self._groups:
            raise UnsupportedModuleError("RandomSignFlip needs hidden neurons with an odd activation (sine, tanh) "
                                         "between Linear or convolution layers; this architecture has none")

    def apply(self, params: Tensor) -> Tensor:
        out = params.clone()
        count = params.shape[0]
        for size, incoming, outgoing, biases in self._groups:
            flip = torch.rand(count, size, generator=self.generator) < self.p
            signs = (1 - 2 * flip.to(params.dtype)).to(params.device)  # -1 where flipped
            for key, shape in incoming:  # rows of the weights into the group
                block = out[:, self.layout.span(key)].view(count, *shape)
                block.mul_(signs.view(count, size, *[1] * (len(shape) - 1)))
            for key, shape in outgoing:  # columns of the weights out of the group
                block = out[:, self.layout.span(key)].view(count, *shape)
                block.mul_(signs.view(count, 1, size, *[1] * (len(shape) - 2)))
            for key in biases:
                out[:, self.layout.span(key)] *= signs
        return out

    def __repr__(self) -> str:
        return f"RandomSignFlip(p={self.p})"


def _sign_flip_groups(layout: GraphLayout) -> list[tuple[int, list, list, list[str]]]:
    """``(size, incoming (key, shape), outgoing (key, shape), bias keys)`` of each group whose signs may flip."""
    eligible = []
    for index, group in enumerate(layout.groups):
        if group.node_type != NodeType.HIDDEN or group.activation not in (Activation.SINE, Activation.TANH):
            continue
        blocks = [b for b in layout.edge_blocks if index in (b.src, b.dst)]
        params = [p for p in layout.node_params if p.group == index]
        plain = all(b.kind in (EdgeType.LINEAR, EdgeType.CONV) and b.groups == 1 and b.key is not None
                    and (b.kind == EdgeType.CONV or not b.kernel_shape) for b in blocks)
        if not plain or any(p.column != NodeFeature.BIAS for p in params):
            continue
        incoming = [(b.key, b.weight_shape) for b in blocks if b.dst == index]
        outgoing = [(b.key, b.weight_shape) for b in blocks if b.src == index]
        if incoming and outgoing:
            eligible.append((group.size, incoming, outgoing, [p.key for p in params]))
    return eligible


class GaussianNoise(Augmentation):
    """Add fresh Gaussian noise to every parameter tensor, scaled by that tensor's std in each model.

    ``w + scale * std(w) * N(0, 1)``, a new draw per call, model and entry
    (the peers' "noise" was a constant shift ``w + 0.1 * std(w)``).
    """

    def __init__(self, layout: GraphLayout, scale: float = 0.1, seed: int = 0) -> None:
        super().__init__(layout, seed)
        self.scale = scale

    def apply(self, params: Tensor) -> Tensor:
        out = params.clone()
        for entry in self.layout.state:
            if not entry.dtype.is_floating_point or entry.numel < 2:
                continue
            block = out[:, self.layout.span(entry.key)]
            noise = torch.randn(block.shape, generator=self.generator).to(block)
            block.add_(noise * block.std(dim=1, keepdim=True) * self.scale)
        return out

    def __repr__(self) -> str:
        return f"GaussianNoise(scale={self.scale})"


class WeightDropout(Augmentation):
    """Zero each weight (edge parameter, not biases or norm parameters) with probability ``p``."""

    def __init__(self, layout: GraphLayout, p: float = 0.05, seed: int = 0) -> None:
        super().__init__(layout, seed)
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = p
        self._weight_keys = [b.key for b in layout.edge_blocks if b.key is not None]

    def apply(self, params: Tensor) -> Tensor:
        out = params.clone()
        for key in self._weight_keys:
            block = out[:, self.layout.span(key)]
            keep = torch.rand(block.shape, generator=self.generator) >= self.p
            block.mul_(keep.to(block))
        return out

    def __repr__(self) -> str:
        return f"WeightDropout(p={self.p})"


class INRAffine(Augmentation):
    """Rotate and translate the image an INR draws, by folding the map into its first layer.

    For input coordinates ``x`` (2-D), the new INR computes the old one at
    ``R x + t``: ``W1' = W1 R`` and ``b1' = b1 + W1 t``. Angles are uniform in
    ``[-max_angle, max_angle]`` (radians), translations uniform in
    ``[-max_shift, max_shift]`` per axis.
    """

    def __init__(self, layout: GraphLayout, max_angle: float = math.pi / 12, max_shift: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__(layout, seed)
        first = layout.edge_blocks[0]
        source = layout.groups[first.src]
        bias = [p for p in layout.node_params if p.group == first.dst and p.column == 0]
        if source.node_type != NodeType.INPUT or source.size != 2 or len(first.weight_shape) != 2 or not bias:
            raise UnsupportedModuleError("INRAffine needs an INR whose first layer is a Linear(2, n) with a bias")
        self.max_angle, self.max_shift = max_angle, max_shift
        self._weight, self._bias, self._out = first.key, bias[0].key, first.weight_shape[0]

    def apply(self, params: Tensor) -> Tensor:
        count = params.shape[0]
        angle = (torch.rand(count, generator=self.generator) * 2 - 1) * self.max_angle
        shift = (torch.rand(count, 2, generator=self.generator) * 2 - 1) * self.max_shift
        rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1),
                                torch.stack([angle.sin(), angle.cos()], -1)], -2).to(params)  # [B, 2, 2]
        out = params.clone()
        weight = params[:, self.layout.span(self._weight)].view(count, self._out, 2)
        out[:, self.layout.span(self._weight)] = torch.bmm(weight, rotation).reshape(count, -1)
        out[:, self.layout.span(self._bias)] += torch.bmm(weight, shift.to(params).unsqueeze(-1)).squeeze(-1)
        return out

    def __repr__(self) -> str:
        return f"INRAffine(max_angle={self.max_angle}, max_shift={self.max_shift})"


AUGMENT_PRESETS = ("auto", "none", "permutation", "inr")


def augmentation(preset: str, layout: GraphLayout, seed: int = 0) -> Augmentation | None:
    """A named training-time augmentation for ``layout`` (``None`` for ``"none"``).

    - ``"permutation"``: :class:`RandomHiddenPermutation` (any architecture).
    - ``"inr"``: the INR classification recipe of Neural Graphs (Kofinas et al., 2024), with real noise:
      hidden permutations, sign flips of odd-activation neurons (:class:`RandomSignFlip`), a rotation
      within ±45° and translation within ±0.25 folded into the first layer (:class:`INRAffine`), weight
      dropout with p = 0.01 and Gaussian noise of 0.01 of each tensor's std. Sign flips and the affine map
      are left out where the architecture has no odd activation or no 2-D input.

    ``"auto"`` is resolved by the caller (the training loop: ``"inr"`` for classification on INR zoos, else
    ``"none"``).
    """
    if preset not in AUGMENT_PRESETS or preset == "auto":
        raise ValueError(f"augmentation preset must be one of {AUGMENT_PRESETS[1:]}, got {preset!r}")
    if preset == "none":
        return None
    parts: list[Augmentation] = [RandomHiddenPermutation(layout, seed)]
    if preset == "inr":
        for build in (lambda: RandomSignFlip(layout, seed=seed + 1),
                      lambda: INRAffine(layout, max_angle=math.pi / 4, max_shift=0.25, seed=seed + 2)):
            try:
                parts.append(build())
            except UnsupportedModuleError:  # no odd activation / no 2-D input: that part does not apply
                pass
        parts += [WeightDropout(layout, p=0.01, seed=seed + 3), GaussianNoise(layout, scale=0.01, seed=seed + 4)]
    return parts[0] if len(parts) == 1 else Compose(parts)


_GRAPH_FIELDS = frozenset({"x", "x_mask", "edge_index", "edge_attr", "node_type", "layer", "io_position", "activation",
                           "edge_type", "scalars", "y", "batch", "ptr", "layout", "num_nodes"})


class ZooDataset(Dataset):
    """A wslgraph zoo folder as a dataset of :class:`~wslgraph.ParamGraph` objects.

    Graphs are built by the zoo's :class:`~wslgraph.GraphTemplate` (no
    tracing, no per-model conversion). ``graph.y`` is the target column
    (``label`` for INR zoos, ``test_accuracy`` for CNN zoos, or ``target=``);
    every other metadata column is attached as a ``[1]`` tensor. A column
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
            raise ValueError(f"split must be one of {list(SPLIT_CODES)} or None, got {split!r}")
        if split is not None and "split" not in self.arrays.columns:
            raise ValueError(f"the zoo at {root} has no split column; use split=None")
        if split is None:
            self.indices_ = torch.arange(len(self.arrays))
        else:
            self.indices_ = (self.arrays.columns["split"] == SPLIT_CODES[split]).nonzero().flatten()
        self.split = split
        self.template = GraphTemplate(self.arrays.layout)
        self.augment = augment
        default = {"inr": "label", "cnn": "test_accuracy"}.get(self.arrays.kind)
        self.target = target or default
        if self.target is not None and self.target not in self.arrays.columns:
            raise ValueError(f"target {self.target!r} is not a column of this zoo; columns: "
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
            else:
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

        With ``world_size > 1`` every process draws the same order and takes
        positions ``rank, rank + world_size, ...`` of each global batch of
        ``batch_size`` (distributed data parallelism without a sampler).
        """
        order = torch.randperm(self.len(), generator=generator) if shuffle else torch.arange(self.len())
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
