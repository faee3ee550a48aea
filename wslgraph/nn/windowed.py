"""A graph encoder on windows of consecutive layers: large networks in bounded memory.

:class:`WindowedEncoder` runs a graph encoder (:class:`~wslgraph.nn.GNNEncoder` or
:class:`~wslgraph.nn.TransformerEncoder`) on each window of :class:`~wslgraph.convert.LayerWindows` in turn,
averages the windows' invariant readouts and applies the encoder's head. Each window is built from the networks'
flat rows with one gather, so neither the whole graph nor the whole network's node and edge states ever exist:
peak memory follows the largest window, not the network (``benchmarks/scale.py``). Windows keep the depth of
every layer (the positional encodings of the whole network) and their hidden nodes stay unordered, so the
embedding is exactly invariant to hidden-neuron permutations, which token windows only learn.
"""

from __future__ import annotations

from torch import Tensor, nn

from wslgraph.convert.template import batch_params
from wslgraph.convert.windows import LayerWindows
from wslgraph.graph.layout import GraphLayout

__all__ = ["WindowedEncoder"]


class WindowedEncoder(nn.Module):
    """``encoder`` on windows of ``size`` depth levels; ``forward`` gives ``[B, out_dim]``.

    Args:
        encoder: A graph encoder with ``pool`` and ``head_output`` (``GNNEncoder``, ``TransformerEncoder``).
        size: Depth levels per window (default: ``4``).

    Shapes:
        a batch of ``B`` graphs of one architecture (or flat rows with :meth:`pool_rows`) -> ``[B, out_dim]``.
    """

    def __init__(self, encoder: nn.Module, size: int = 4) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size must be >= 1 depth level, got {size}")
        self.encoder, self.size = encoder, size
        self._windows: dict[GraphLayout, LayerWindows] = {}

    def windows(self, layout: GraphLayout) -> LayerWindows:
        """The windows of ``layout`` (built once per architecture)."""
        if layout not in self._windows:
            self._windows[layout] = LayerWindows(layout, self.size)
        return self._windows[layout]

    def pool_rows(self, rows: Tensor, layout: GraphLayout) -> Tensor:
        """The mean over windows of the encoder's readout ``[B, features]`` of networks given as flat rows."""
        windows = self.windows(layout)
        total = None
        for index in range(len(windows)):
            pooled = self.encoder.pool(windows.batch(rows, index))
            total = pooled if total is None else total + pooled
        return total / len(windows)

    def fit_statistics(self, batches: object) -> WindowedEncoder:
        """The encoder's input statistics, fitted on every window of the training batches."""
        batches = [batches] if hasattr(batches, "edge_index") else list(batches)
        windows = []
        for batch in batches:
            rows, layout = batch_params(batch)
            split = self.windows(layout)
            windows += [split.batch(rows, index) for index in range(len(split))]
        self.encoder.fit_statistics(windows)
        return self

    def forward(self, batch: object) -> Tensor:
        rows, layout = batch_params(batch)
        return self.encoder.head_output(self.pool_rows(rows, layout))

    def extra_repr(self) -> str:
        return f"size={self.size}"
