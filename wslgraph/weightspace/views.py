"""The per-layer weight-space view (DWSNet, NFN, the hypernetwork head, the editors read it), its exact inverse, and
the flat parameter rows of a batch.

A batch of same-architecture MLPs or CNNs (a :class:`~wslgraph.GraphTemplate`
batch or flat parameters ``[N, P]``) becomes, per layer ``i = 1..L``, weights
``(B, C, n_i, n_{i-1}[, k...])`` and biases ``(B, C, n_i)`` with ``C = 1``
channel. Only plain chains qualify: ``Linear``/``Conv`` layers, each with a
bias, each reading the previous one's outputs (pooling and activations in
between are fine); residual edges, normalisation parameters, grouped
convolutions and flatten-linear edges are rejected with a typed error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import InvalidGraphError, UnsupportedModuleError
from wslgraph.graph.layout import GraphLayout, common_layout
from wslgraph.graph.vocab import EdgeType, NodeFeature

__all__ = ["WeightSpaceSpec", "weight_space_spec", "to_weight_space", "from_weight_space", "batch_params",
           "attach_params"]


@dataclass(frozen=True)
class WeightSpaceSpec:
    """Shapes of a chain network: ``sizes = (n_0, ..., n_L)`` and each layer's kernel shape."""

    sizes: tuple[int, ...]
    kernels: tuple[tuple[int, ...], ...]
    weight_slices: tuple[tuple[int, int], ...]  # (offset, numel) in the flat parameter vector
    bias_slices: tuple[tuple[int, int], ...]
    num_params: int

    @property
    def num_layers(self) -> int:
        return len(self.kernels)

    @property
    def is_mlp(self) -> bool:
        return all(k == () for k in self.kernels)

    def weight_shape(self, layer: int) -> tuple[int, ...]:
        """``(n_out, n_in, *kernel)`` of layer ``layer`` (0-based)."""
        return (self.sizes[layer + 1], self.sizes[layer], *self.kernels[layer])


def weight_space_spec(layout: GraphLayout) -> WeightSpaceSpec:
    """The :class:`WeightSpaceSpec` of a layout, or :class:`UnsupportedModuleError` for non-chains."""
    problems = []
    if layout.scalars or any(p.column != NodeFeature.BIAS for p in layout.node_params):
        problems.append("normalisation layers")
    biases = {p.group: p.key for p in layout.node_params if p.column == NodeFeature.BIAS}
    weights, bias_keys, kernels = [], [], []
    for index, block in enumerate(layout.edge_blocks):
        if block.kind not in (EdgeType.LINEAR, EdgeType.CONV) or block.groups != 1:
            problems.append(f"{block.kind.name.lower()} edges ({block.key or 'residual'})")
        elif block.src != index or block.dst != index + 1:
            problems.append(f"layer {block.key} does not read the previous layer's outputs")
        elif block.dst not in biases:
            problems.append(f"layer {block.key} has no bias")
        else:
            weights.append((block.param_offset, math.prod(block.weight_shape)))
            bias = layout.span(biases[block.dst])
            bias_keys.append((bias.start, bias.stop - bias.start))
            kernels.append(tuple(block.weight_shape[2:]))
    if len(layout.groups) != len(layout.edge_blocks) + 1:
        problems.append("node groups that are not a chain")
    if problems:
        raise UnsupportedModuleError(f"the weight-space view (DWSNet, NFN) needs a chain of Linear/Conv layers with "
                                     f"biases; this architecture has {', '.join(dict.fromkeys(problems))}")
    sizes = tuple(g.size for g in layout.groups)
    return WeightSpaceSpec(sizes, tuple(kernels), tuple(weights), tuple(bias_keys), layout.num_params)


def to_weight_space(params: Tensor, spec: WeightSpaceSpec) -> tuple[list[Tensor], list[Tensor]]:
    """Flat parameters ``[B, P]`` to per-layer weights ``(B, 1, n_out, n_in[, k...])`` and biases ``(B, 1, n_out)``."""
    if params.dim() != 2 or params.shape[1] != spec.num_params:
        raise InvalidGraphError(f"expected parameters [B, {spec.num_params}], got {tuple(params.shape)}")
    batch = params.shape[0]
    weights = [params[:, o:o + n].reshape(batch, 1, *spec.weight_shape(i))
               for i, (o, n) in enumerate(spec.weight_slices)]
    biases = [params[:, o:o + n].reshape(batch, 1, n) for o, n in spec.bias_slices]
    return weights, biases


def from_weight_space(weights: list[Tensor], biases: list[Tensor], spec: WeightSpaceSpec) -> Tensor:
    """The inverse of :func:`to_weight_space` (channel 0): flat parameters ``[B, P]``."""
    batch = weights[0].shape[0]
    params = weights[0].new_empty(batch, spec.num_params)
    for tensor, (offset, numel) in zip([*weights, *biases], [*spec.weight_slices, *spec.bias_slices]):
        params[:, offset:offset + numel] = tensor[:, 0].reshape(batch, numel)
    return params


def attach_params(batch: object, params: Tensor) -> None:
    """Keep the flat rows ``[B, P]`` a template batch was built from on the batch, for :func:`batch_params`.

    :class:`~wslgraph.zoo.ZooDataset` does this, so a weight-space model reads
    the dataset's rows instead of rebuilding them from the graphs. The rows
    are trusted only while the graph tensors they were built into are the
    same, unmodified tensors (same storage, no in-place change since); after
    ``batch.to(...)``, a replaced or an edited ``x``/``edge_attr``,
    :func:`batch_params` rebuilds them.
    """
    batch.flat_params = params
    batch._flat_params_key = _graph_key(batch)


def _graph_key(batch: object) -> tuple | None:
    tensors = [batch.x, batch.edge_attr, getattr(batch, "scalars", None), getattr(batch, "flat_params", None)]
    if any(t is not None and t.is_inference() for t in tensors):
        return None  # inference tensors keep no version counter: in-place edits could not be seen
    return tuple((t.data_ptr(), t._version, t.device) if t is not None else None for t in tensors)


def batch_params(batch: object) -> tuple[Tensor, GraphLayout]:
    """Flat parameters ``[B, P]`` and the layout of a batch of one architecture."""
    layout = common_layout(batch)
    if layout is None:
        raise InvalidGraphError("the weight-space baselines need a batch of one architecture (all graphs with the "
                                "same layout, e.g. from GraphTemplate.batch or one ZooDataset)")
    key = getattr(batch, "_flat_params_key", None)
    if key is not None and key == _graph_key(batch):
        return batch.flat_params, layout
    return GraphTemplate(layout).unbatch(batch), layout
