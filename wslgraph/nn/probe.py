"""Probe features: each INR of a batch evaluated on learned coordinates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from wslgraph.errors import ShapeMismatchError, UnsupportedModuleError
from wslgraph.graph.activations import apply_activation
from wslgraph.graph.layout import GraphLayout, batch_layouts, common_layout
from wslgraph.graph.vocab import EdgeType

if TYPE_CHECKING:
    from wslgraph.convert.template import GraphTemplate

__all__ = ["ProbeFeatures"]


class ProbeFeatures(nn.Module):
    """Evaluate every INR of a batch on learned coordinates; neuron activations become node features.

    The probes of Neural Graphs (Kofinas et al., 2024). The INR architecture
    is given by a :class:`~wslgraph.GraphTemplate` or its layout (MLP INRs: Linear layers,
    residual additions, activations; no normalization). All INRs of a batch
    are evaluated at once as batched matrix products; each node gets its
    post-activation value at every probe point (input nodes get the
    coordinates).

    Args:
        architecture: Template (or :class:`~wslgraph.graph.GraphLayout`) of the INR architecture.
        num_probes: Number of learned probe coordinates (default: ``16``).
        seed: Seed of their initialization, uniform in [-1, 1] (default: ``0``).
        projection: If given, each layer's probe values are mapped to this width by a linear map of that layer
            and a ``LayerNorm``, as Neural Graphs configure their probes (default: ``None``, the raw values).
            Both have no bias, so a feature stays odd in its neuron's sign (sine/tanh sign symmetry) and
            the map is shared by the neurons of a layer (permutation equivariant).

    Shapes:
        batch of ``N`` graphs of the template's architecture ->
        ``[N * num_nodes, num_probes]`` (``[N * num_nodes, projection]`` with a projection).
    """

    def __init__(self, architecture: GraphTemplate | GraphLayout, num_probes: int = 16, seed: int = 0,
                 projection: int | None = None) -> None:
        super().__init__()
        layout = architecture if isinstance(architecture, GraphLayout) else architecture.layout
        unsupported = {b.kind.name for b in layout.edge_blocks} - {EdgeType.LINEAR.name, EdgeType.RESIDUAL.name}
        if unsupported or layout.node_params and any(p.column != 0 for p in layout.node_params):
            raise UnsupportedModuleError("probe features evaluate MLP INRs (Linear layers, residual additions, "
                                         f"activations, no normalization); this architecture has {sorted(unsupported)}"
                                         " edges or normalization layers")
        self.layout, self.num_probes = layout, num_probes
        self._order = _topological_order(layout)
        generator = torch.Generator().manual_seed(seed)
        self.coordinates = nn.Parameter(torch.rand(num_probes, layout.groups[0].size, generator=generator) * 2 - 1)
        if projection is not None and (isinstance(projection, bool) or not isinstance(projection, int)
                                       or projection < 1):
            raise ValueError(f"projection must be a positive int (a width) or None, got {projection!r}")
        self.projection = projection
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(num_probes, projection, bias=False), nn.LayerNorm(projection, bias=False))
            for _ in layout.groups) if projection is not None else None

    @property
    def out_dim(self) -> int:
        """Features per node: ``projection`` if set, else ``num_probes``."""
        return self.projection if self.projection is not None else self.num_probes

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.coordinates.uniform_(-1, 1)
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, batch: object) -> Tensor:
        layout = self.layout
        shared = common_layout(batch)
        if shared is not layout and shared != layout:
            raise ShapeMismatchError("probe features need a batch of the template's INR architecture")
        num = len(batch_layouts(batch))
        x = batch.x.view(num, layout.num_nodes, -1)
        edges = batch.edge_attr.view(num, layout.num_edges, -1)
        coords = self.coordinates.to(batch.x.dtype)
        values: dict[int, Tensor] = {0: coords.t().unsqueeze(0).expand(num, -1, -1)}  # [N, size, probes]
        for index in self._order:
            group = layout.groups[index]
            pre = x[:, group.offset:group.offset + group.size, 0:1]  # bias (0 where absent)
            for block in layout.edge_blocks:
                if block.dst != index:
                    continue
                source = values[block.src]
                if block.kind == EdgeType.RESIDUAL:  # a residual sum, or the channels a copy takes of its source
                    targets = torch.arange(group.size, device=pre.device)[layout.copy_targets(block)]
                    pre = pre.expand(num, group.size, self.num_probes).index_add(
                        1, targets, source[:, layout.copy_sources(block)])
                else:
                    rows = edges[:, block.offset:block.offset + group.size * source.shape[1], 0]
                    weight = rows.reshape(num, group.size, source.shape[1])
                    pre = pre + torch.bmm(weight, source)
            values[index] = apply_activation(group.activation, group.activation_param, pre, "probe features")
        if self.projections is not None:
            values = {i: self.projections[i](v) for i, v in values.items()}
        return torch.cat([values[i] for i in range(len(layout.groups))], dim=1).reshape(-1, self.out_dim)


def _topological_order(layout: GraphLayout) -> list[int]:
    """Non-input groups in an order where every group comes after the groups feeding it."""
    feeds = {i: {b.src for b in layout.edge_blocks if b.dst == i} for i in range(1, len(layout.groups))}
    done, order = {0}, []
    while len(order) < len(feeds):
        ready = [i for i, sources in feeds.items() if i not in done and sources <= done]
        order += ready
        done.update(ready)
    return order
