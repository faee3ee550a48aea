"""Input encodings of parameter graphs: Fourier features, positions, statistics."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn import Linear

from wslgraph.errors import NonFiniteError, ShapeMismatchError
from wslgraph.graph.vocab import NUM_NODE_FEATURES, VOCAB_CAPACITY, NodeType

__all__ = ["FourierFeatures", "PositionalEmbedding", "ParamNormalizer", "NodeEncoder", "EdgeEncoder", "CHUNK_ELEMENTS"]

CHUNK_ELEMENTS = 2**24  # Fourier feature values of edges encoded at once (64 MiB in float32)


class FourierFeatures(nn.Module):
    r"""Random Fourier features of scalars (Tancik et al., 2020).

    .. math::
        \gamma(v) = [\sin(2\pi b_1 v), \cos(2\pi b_1 v), \dots, \sin(2\pi b_F v), \cos(2\pi b_F v)],
        \quad b_f \sim \mathcal{N}(0, \sigma^2)

    applied to every entry of the last dim, followed by the raw value.

    Args:
        num_frequencies: :math:`F` (default: ``16``); 0 keeps only the raw values.
        scale: :math:`\sigma` (default: ``1.0``, for standardised inputs).
        seed: Seed of the fixed frequencies (default: ``0``).

    Shapes:
        input ``[..., d]``, output ``[..., d * (2F + 1)]``.
    """

    def __init__(self, num_frequencies: int = 16, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        self.num_frequencies, self.scale, self.seed = num_frequencies, scale, seed
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(num_frequencies, generator=generator) * scale)

    def forward(self, values: Tensor) -> Tensor:
        angles = 2 * math.pi * values.unsqueeze(-1) * self.frequencies.to(values.dtype)
        features = torch.cat([values.unsqueeze(-1), torch.sin(angles), torch.cos(angles)], dim=-1)
        return features.flatten(-2)

    def extra_repr(self) -> str:
        return f"num_frequencies={self.num_frequencies}, scale={self.scale}"


class PositionalEmbedding(nn.Module):
    """Positions that keep exactly the hidden-neuron symmetry.

    Input and output nodes are ordered: each position has its own learned
    vector. Hidden nodes are not: all nodes of one hidden layer share a vector.

    Args:
        dim: Embedding width.
        max_io: Most input or output nodes a graph may have (default: ``1024``).
        max_layers: Most layers a graph may have (default: ``64``).
    """

    def __init__(self, dim: int, max_io: int = 1024, max_layers: int = 64) -> None:
        super().__init__()
        self.max_io, self.max_layers = max_io, max_layers
        self.inputs = nn.Embedding(max_io, dim)
        self.outputs = nn.Embedding(max_io, dim)
        self.hidden = nn.Embedding(max_layers, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for table in (self.inputs, self.outputs, self.hidden):
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, node_type: Tensor, io_position: Tensor, layer: Tensor) -> Tensor:
        if io_position.numel() and int(io_position.max()) >= self.max_io:
            raise ShapeMismatchError(f"a graph has {int(io_position.max()) + 1} input or output nodes but the "
                                     f"encoder was built with max_io={self.max_io}; raise max_io")
        if layer.numel() and int(layer.max()) >= self.max_layers:
            raise ShapeMismatchError(f"a graph has {int(layer.max()) + 1} layers but the encoder was built with "
                                     f"max_layers={self.max_layers}; raise max_layers")
        position = io_position.clamp(min=0)
        out = self.hidden(layer)
        out = torch.where((node_type == int(NodeType.INPUT)).unsqueeze(-1), self.inputs(position), out)
        return torch.where((node_type == int(NodeType.OUTPUT)).unsqueeze(-1), self.outputs(position), out)


class ParamNormalizer(nn.Module):
    """Per-layer normalization of weights and node features, fitted on a training set.

    Statistics are buffers (saved with the model): for each layer index, the
    mean and standard deviation of the edge features of edges *into* that
    layer, and of each present node-feature column of its nodes. Until
    :meth:`fit` runs, it is the identity.

    Args:
        max_layers: Most layers a graph may have (default: ``64``).
    """

    def __init__(self, max_layers: int = 64) -> None:
        super().__init__()
        self.max_layers = max_layers
        self.register_buffer("edge_mean", torch.zeros(max_layers))
        self.register_buffer("edge_std", torch.ones(max_layers))
        self.register_buffer("node_mean", torch.zeros(max_layers, NUM_NODE_FEATURES))
        self.register_buffer("node_std", torch.ones(max_layers, NUM_NODE_FEATURES))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, batches: object) -> ParamNormalizer:
        """Compute the statistics from an iterable of batches (or one batch)."""
        batches = [batches] if hasattr(batches, "edge_index") else batches
        edge_stats = torch.zeros(3, self.max_layers, dtype=torch.float64)
        node_stats = torch.zeros(3, self.max_layers * NUM_NODE_FEATURES, dtype=torch.float64)
        for batch in batches:
            values = batch.edge_attr.double().cpu()
            layers = batch.layer[batch.edge_index[1]].cpu().unsqueeze(1).expand_as(values)
            present = values != 0  # zeros are kernel padding, not weights
            edge_stats += _moments(layers[present], values[present], self.max_layers)
            mask = batch.x_mask.cpu()
            cells = batch.layer.cpu().unsqueeze(1) * NUM_NODE_FEATURES + torch.arange(NUM_NODE_FEATURES)
            node_stats += _moments(cells[mask], batch.x.double().cpu()[mask], node_stats.shape[1])
        if not (torch.isfinite(edge_stats).all() and torch.isfinite(node_stats).all()):
            raise NonFiniteError("fit_statistics was given NaN or infinite weights or node features (or weights so "
                                 "large that their squares overflow); leave those models out (ZooDataset refuses "
                                 "them) before fitting the normalisation")
        for stats, mean, std in ((edge_stats, self.edge_mean, self.edge_std),
                                 (node_stats.view(3, self.max_layers, -1), self.node_mean, self.node_std)):
            count, total, squares = stats
            mu = total / count.clamp(min=1)
            sigma = (squares / count.clamp(min=1) - mu**2).clamp(min=0).sqrt()
            mean.copy_(torch.where(count > 0, mu, 0.0))
            std.copy_(torch.where(count > 1, sigma.clamp(min=1e-8), 1.0))
        self.fitted.fill_(True)
        return self

    def forward(self, batch: object) -> tuple[Tensor, Tensor]:
        """Normalized ``(x, edge_attr)``; absent features and edge padding stay 0."""
        edge_layer = batch.layer[batch.edge_index[1]]
        edge_attr = batch.edge_attr
        scaled = (edge_attr - self.edge_mean[edge_layer].unsqueeze(1).to(edge_attr.dtype)) / \
            self.edge_std[edge_layer].unsqueeze(1).to(edge_attr.dtype)
        edge_attr = torch.where(edge_attr != 0, scaled, torch.zeros_like(scaled))
        x = (batch.x - self.node_mean[batch.layer].to(batch.x.dtype)) / self.node_std[batch.layer].to(batch.x.dtype)
        return x * batch.x_mask, edge_attr


def _moments(index: Tensor, values: Tensor, size: int) -> Tensor:
    """Count, sum and sum of squares of ``values`` per ``index`` bucket: ``[3, size]``."""
    return torch.stack([torch.bincount(index, minlength=size).double(), torch.bincount(index, values, minlength=size),
                        torch.bincount(index, values**2, minlength=size)])


class NodeEncoder(nn.Module):
    """Initial node states: Fourier features of node parameters, mask, activation, position.

    Input feature sizes are inferred on the first batch (lazy
    :class:`torch_geometric.nn.Linear`); extra per-node features (probe
    activations) may be appended.

    Args:
        dim: Output width.
        fourier: Fourier features of the node parameters.
        max_io, max_layers: As for :class:`PositionalEmbedding`.
    """

    def __init__(self, dim: int, fourier: FourierFeatures, max_io: int = 1024, max_layers: int = 64) -> None:
        super().__init__()
        self.fourier = fourier
        self.project = Linear(-1, dim)
        self.activation = nn.Embedding(VOCAB_CAPACITY, dim)
        self.position = PositionalEmbedding(dim, max_io, max_layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.project.reset_parameters()
        nn.init.normal_(self.activation.weight, std=0.02)
        self.position.reset_parameters()

    def forward(self, x: Tensor, batch: object, extra: Tensor | None = None) -> Tensor:
        features = [self.fourier(x), batch.x_mask.to(x.dtype)]
        if extra is not None:
            features.append(extra)
        return (self.project(torch.cat(features, dim=-1)) + self.activation(batch.activation)
                + self.position(batch.node_type, batch.io_position, batch.layer))


class EdgeEncoder(nn.Module):
    """Initial edge states: Fourier features of the (padded) kernel plus an edge-type embedding."""

    def __init__(self, dim: int, fourier: FourierFeatures) -> None:
        super().__init__()
        self.fourier = fourier
        self.project = Linear(-1, dim)
        self.edge_type = nn.Embedding(VOCAB_CAPACITY, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.project.reset_parameters()
        nn.init.normal_(self.edge_type.weight, std=0.02)

    def forward(self, edge_attr: Tensor, edge_type: Tensor) -> Tensor:
        width = edge_attr.shape[-1] * (2 * self.fourier.num_frequencies + 1)  # Fourier features per edge
        built = not isinstance(self.project.weight, nn.parameter.UninitializedParameter)
        if built and width != self.project.in_channels:
            expected = self.project.in_channels // (2 * self.fourier.num_frequencies + 1)
            raise ShapeMismatchError(f"edge features are {edge_attr.shape[-1]} wide but the encoder was built for "
                                     f"{expected}; pad every batch to one kernel grid (wslgraph.graph.PadEdgeFeatures)")
        chunk = max(1, CHUNK_ELEMENTS // width)
        if not built or edge_attr.shape[0] <= chunk:
            return self._project(edge_attr) + self.edge_type(edge_type)
        # Large graphs (a ResNet's 3x3 kernels padded to its 7x7 stem: 1,617 features per edge) go chunk by chunk,
        # so the features of at most CHUNK_ELEMENTS values exist at once; under autograd each chunk is recomputed
        # in the backward pass instead of kept.
        parts = []
        for values in edge_attr.split(chunk):
            if torch.is_grad_enabled() and (values.requires_grad or self.project.weight.requires_grad):
                parts.append(checkpoint(self._project, values, use_reentrant=False))
            else:
                parts.append(self._project(values))
        return torch.cat(parts) + self.edge_type(edge_type)

    def _project(self, values: Tensor) -> Tensor:
        return self.project(self.fourier(values))
