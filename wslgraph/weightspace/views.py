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

from wslgraph.convert.template import attach_params, batch_params, statnn_features
from wslgraph.errors import InvalidGraphError, UnsupportedModuleError
from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.vocab import EdgeType, NodeFeature

__all__ = ["statnn_features", "WeightSpaceSpec", "weight_space_spec", "to_weight_space", "from_weight_space",
           "batch_params", "attach_params"]


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
