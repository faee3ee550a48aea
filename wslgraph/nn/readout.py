"""Invariant graph readouts over parameter graphs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wslgraph.errors import ShapeMismatchError
from wslgraph.graph.vocab import NodeType
from wslgraph.nn.backend import scatter

__all__ = ["InvariantReadout"]


class InvariantReadout(nn.Module):
    """Pool node states into one vector per graph, invariant to hidden-neuron permutations.

    Hidden nodes are pooled by mean and max, either over the whole graph, or
    per layer first (each layer then weighs the same; ``hidden="layer"``), or
    per layer and concatenated in layer order (``hidden="concat"``; every
    graph must have the same hidden layers, as in a zoo of one architecture:
    the readout then keeps which layer a feature came from, as NFN's
    invariant pooling and the per-layer weight statistics s(W) do).
    Input nodes are mean-pooled. Output nodes are ordered, so they are
    concatenated in order (``output="concat"``; every graph must have the
    same number) or mean-pooled (``output="mean"``, for mixed batches).

    Args:
        hidden: ``"graph"``, ``"layer"`` or ``"concat"`` (default: ``"graph"``).
        output: ``"mean"`` or ``"concat"`` (default: ``"mean"``).

    Shapes:
        node states ``[num_nodes, C]`` -> ``[num_graphs, 4C]`` (``"mean"``)
        or ``[num_graphs, (3 + num_outputs) C]`` (``"concat"``); with
        ``hidden="concat"``, ``2C`` becomes ``2 L C`` for ``L`` hidden layers.
    """

    def __init__(self, hidden: str = "graph", output: str = "mean") -> None:
        super().__init__()
        if hidden not in ("graph", "layer", "concat") or output not in ("mean", "concat"):
            raise ValueError(f"hidden must be 'graph', 'layer' or 'concat' and output 'mean' or 'concat', got "
                             f"{hidden!r}, {output!r}")
        self.hidden, self.output = hidden, output

    def forward(self, h: Tensor, batch: Tensor, node_type: Tensor, layer: Tensor, io_position: Tensor,
                num_graphs: int) -> Tensor:
        hidden = node_type == int(NodeType.HIDDEN)
        if self.hidden == "concat":
            pooled = _per_layer(h, batch, hidden, layer, num_graphs)
        elif self.hidden == "layer":
            # mean per (graph, layer), then mean and max over the layers of each graph
            max_layer, cell = _layer_cells(batch, hidden, layer)
            cells, cell_index = torch.unique(cell, return_inverse=True)
            per_layer = scatter(h[hidden], cell_index, cells.numel(), "mean")
            owner = cells // max_layer
            pooled = [scatter(per_layer, owner, num_graphs, "mean"), scatter(per_layer, owner, num_graphs, "max")]
        else:
            pooled = [_pool(h, batch, hidden, num_graphs, "mean"), _pool(h, batch, hidden, num_graphs, "max")]
        pooled.append(_pool(h, batch, node_type == int(NodeType.INPUT), num_graphs, "mean"))
        outputs = node_type == int(NodeType.OUTPUT)
        if self.output == "mean":
            pooled.append(_pool(h, batch, outputs, num_graphs, "mean"))
        else:
            counts = torch.bincount(batch[outputs], minlength=num_graphs)
            if counts.numel() and bool((counts != counts[0]).any()):
                raise ShapeMismatchError("readout output='concat' needs the same number of output nodes in every "
                                         f"graph, got {sorted(set(counts.tolist()))}; use output='mean'")
            order = torch.argsort(batch[outputs] * (int(io_position.max()) + 1) + io_position[outputs])
            pooled.append(h[outputs][order].view(num_graphs, -1))
        return torch.cat(pooled, dim=-1)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden!r}, output={self.output!r}"


def _layer_cells(batch: Tensor, hidden: Tensor, layer: Tensor) -> tuple[int, Tensor]:
    """``(max_layer, cell)``: each hidden node's (graph, layer) cell, ``graph * max_layer + layer``."""
    max_layer = int(layer.max()) + 1 if layer.numel() else 1
    return max_layer, batch[hidden] * max_layer + layer[hidden]


def _per_layer(h: Tensor, batch: Tensor, hidden: Tensor, layer: Tensor, num_graphs: int) -> list[Tensor]:
    """Mean and max of the hidden nodes of each (graph, layer), ``[num_graphs, L C]`` each in layer order;
    refuses graphs whose hidden layers differ (the features would not line up)."""
    max_layer, cell = _layer_cells(batch, hidden, layer)
    counts = torch.bincount(cell, minlength=num_graphs * max_layer).view(num_graphs, max_layer)
    present = counts > 0
    layers = present.any(dim=0)
    if bool((present != layers).any()):
        raise ShapeMismatchError("readout hidden='concat' needs the same hidden layers in every graph of a batch "
                                 "(one architecture); use hidden='layer' or 'graph' for mixed architectures")
    channels = h.shape[-1]
    pooled = []
    for reduce in ("mean", "max"):
        cells = scatter(h[hidden], cell, num_graphs * max_layer, reduce).view(num_graphs, max_layer, channels)
        pooled.append(cells[:, layers].reshape(num_graphs, -1))
    return pooled


def _pool(h: Tensor, batch: Tensor, mask: Tensor, num_graphs: int, reduce: str) -> Tensor:
    """``scatter(h[mask], batch[mask], num_graphs, reduce)`` without boolean indexing (no CUDA sync).

    Nodes outside ``mask`` are sent to a spare segment ``num_graphs`` that is
    dropped; a graph with no such nodes gets zeros, as with the masked form.
    """
    segment = torch.where(mask, batch, torch.full_like(batch, num_graphs))
    return scatter(h, segment, num_graphs + 1, reduce)[:num_graphs]
