"""Encoders of parameter graphs: message passing (GNNEncoder) and relational attention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import Linear
from torch_geometric.utils import to_dense_batch

from wslgraph.convert.template import batch_params, column_moments, statnn_features
from wslgraph.errors import InvalidGraphError, ShapeMismatchError
from wslgraph.graph.layout import batch_layouts, common_layout
from wslgraph.graph.vocab import VOCAB_CAPACITY
from wslgraph.nn.conv import AGGREGATORS, SCALERS, EdgeUpdateConv
from wslgraph.nn.dense import DensePlan, dense_plan
from wslgraph.nn.encodings import EdgeEncoder, FourierFeatures, NodeEncoder, ParamNormalizer, PositionalEmbedding
from wslgraph.nn.init import reset_children
from wslgraph.nn.norm import GraphBatchNorm
from wslgraph.nn.probe import ProbeFeatures
from wslgraph.nn.readout import InvariantReadout
from wslgraph.nn.symmetric import (
    SCALE_ACTIVATIONS,
    SIGN_ACTIVATIONS,
    SignEquivariantConv,
    SignInputEncoder,
    SignRelationalAttention,
    canonical_scales,
    canonicalize,
    check_symmetry,
    restore_scales,
    symmetric_nodes,
)
from wslgraph.nn.transformer import RelationalAttention

__all__ = ["GNNEncoder", "TransformerEncoder", "GraphEncoderBase"]

_REQUIRED = {"x": True, "x_mask": False, "edge_index": False, "edge_attr": True, "node_type": False,
             "layer": False, "io_position": False, "activation": False, "edge_type": False}


def check_batch(batch: object) -> None:
    """Raise :class:`InvalidGraphError` unless ``batch`` has every tensor an encoder reads."""
    missing = [key for key in _REQUIRED if not isinstance(getattr(batch, key, None), Tensor)]
    if missing:
        raise InvalidGraphError(f"the batch is missing {missing}; encoders read ParamGraph batches built by "
                                "wslgraph.to_graph, GraphTemplate.batch or wslgraph.collate")
    for key, floating in _REQUIRED.items():
        value = getattr(batch, key)
        if floating and not value.is_floating_point():
            raise InvalidGraphError(f"batch.{key} must be floating point, got {value.dtype}")
        if not floating and key != "x_mask" and value.dtype != torch.long:
            raise InvalidGraphError(f"batch.{key} must be torch.long, got {value.dtype}")
    if batch.x_mask.dtype != torch.bool:
        raise InvalidGraphError(f"batch.x_mask must be torch.bool, got {batch.x_mask.dtype}")


def batch_vector(batch: object) -> tuple[Tensor, int]:
    """The node-to-graph assignment and the number of graphs (a single graph gets zeros)."""
    vector = getattr(batch, "batch", None)
    if vector is None:
        return torch.zeros(batch.x.shape[0], dtype=torch.long, device=batch.x.device), 1
    return vector, int(batch.num_graphs)


class GraphEncoderBase(nn.Module):
    """Shared input encoding, readout and head of wslgraph's encoders.

    Subclasses implement :meth:`encode` (``batch -> (node states, edge
    states)``); ``forward`` pools the node states invariantly and maps them
    to ``out_dim`` with an MLP head whose hidden layer is batch-normalised
    over the graphs (:class:`~wslgraph.nn.GraphBatchNorm`). Like any model
    with batch norm, call ``.eval()`` for outputs that do not depend on the
    rest of the batch.

    Why the batch norm: invariant pooling of a parameter graph gives
    features whose graph-to-graph differences are a few per cent of their
    part shared by all graphs (hidden neurons look alike). Without it,
    AdamW at the harness's learning rate (2e-3) drove those differences
    towards zero within 40 steps on a Fashion-MNIST INR zoo, every layer
    in turn, and the GNN stayed at chance (README, "Why the GNN stayed at
    chance").
    """

    def __init__(self, out_dim: int, hidden: int, fourier_frequencies: int, fourier_scale: float,
                 readout_hidden: str, readout_output: str, max_io: int, max_layers: int,
                 probe: ProbeFeatures | None, symmetry: str = "permutation", statistics: bool = False) -> None:
        super().__init__()
        self.out_dim, self.hidden = out_dim, hidden
        self.symmetry = check_symmetry(symmetry)
        if statistics and self.signs:
            raise ValueError(f"statistics=True with symmetry={symmetry!r}: the weight statistics (means, "
                             "quantiles) change when a sine/tanh neuron flips sign; use symmetry='permutation' "
                             "or 'scale' with them")
        self.statistics = bool(statistics)
        if self.statistics:  # s(W)'s standardisation, sized by the first architecture seen (fit or first batch)
            self.register_buffer("stat_mean", torch.zeros(0))
            self.register_buffer("stat_std", torch.ones(0))
        self.probe = probe
        self.normalizer = ParamNormalizer(max_layers)
        self.fourier = FourierFeatures(fourier_frequencies, fourier_scale)
        if self.signs:
            position = PositionalEmbedding(hidden, max_io, max_layers)
            self.sign_encoder = SignInputEncoder(hidden, self.fourier, position, VOCAB_CAPACITY, VOCAB_CAPACITY)
        else:
            self.node_encoder = NodeEncoder(hidden, self.fourier, max_io, max_layers)
            self.edge_encoder = EdgeEncoder(hidden, self.fourier)
        self.readout = InvariantReadout(readout_hidden, readout_output)
        # the batch norm keeps graph-to-graph differences of the pooled features at unit scale (GraphBatchNorm)
        self.head = nn.Sequential(Linear(-1, hidden, bias=False), GraphBatchNorm(hidden), nn.SiLU(),
                                  nn.Linear(hidden, out_dim))
        if self.signs:  # |R h| of sign-symmetric nodes, for the readout
            self.sign_invariant = nn.Linear(hidden, hidden, bias=False)

    @property
    def signs(self) -> bool:
        """Whether the layers are sign equivariant (``symmetry`` "sign" or "auto")."""
        return self.symmetry in ("sign", "auto")

    @property
    def scales(self) -> bool:
        """Whether ReLU neurons are scale-canonicalised (``symmetry`` "scale" or "auto")."""
        return self.symmetry in ("scale", "auto")

    def fit_statistics(self, batches: object) -> GraphEncoderBase:
        """Fit the per-layer weight normalization on training batches (stored as buffers)."""
        batches = [batches] if hasattr(batches, "edge_index") else batches
        if self.scales:  # statistics of the canonical weights the layers see
            batches = (self.prepare(batch)[0] for batch in batches)
        if self.statistics:
            batches = list(batches)
            features = torch.cat([statnn_features(*batch_params(batch)) for batch in batches])
            self.stat_mean, self.stat_std = column_moments(features)
        self.normalizer.fit(batches)
        return self

    def weight_statistics(self, batch: object) -> Tensor:
        """StatNN's per-tensor statistics s(W) of a (prepared) batch of one architecture, standardised with the
        training models' mean and std (:meth:`fit_statistics`; unfitted: unchanged): ``[num_graphs, 7 *
        tensors]``. Invariant to hidden-neuron permutations; under ``symmetry="scale"`` they are taken of the
        canonical weights, so invariant to ReLU rescaling too."""
        if not self.statistics:
            raise ValueError("weight_statistics reads the statistics of an encoder built with statistics=True")
        features = statnn_features(*batch_params(batch))
        if self.stat_mean.numel() == 0:
            self.stat_mean = torch.zeros_like(features[0])
            self.stat_std = torch.ones_like(features[0])
        if self.stat_mean.numel() != features.shape[1]:
            raise ShapeMismatchError(f"the weight statistics were fitted for {self.stat_mean.numel()} features but "
                                     f"this batch gives {features.shape[1]}: statistics=True reads one "
                                     "architecture, the one it was fitted on")
        return (features - self.stat_mean) / self.stat_std

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        for name in ("stat_mean", "stat_std") if self.statistics else ():  # sized by the checkpoint's architecture
            saved = state_dict.get(prefix + name)
            if saved is not None and getattr(self, name).shape != saved.shape:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def prepare(self, batch: object) -> tuple[object, Tensor | None, Tensor | None]:
        """``(batch, sign, norms)``: the batch with ReLU neurons in canonical scale (``symmetry`` "scale"/"auto";
        ``norms`` their incoming norms), and which nodes are sign-symmetric (``symmetry`` "sign"/"auto")."""
        check_batch(batch)
        norms = None
        if self.scales:
            norms = canonical_scales(batch, symmetric_nodes(batch, SCALE_ACTIVATIONS))
            batch = canonicalize(batch, norms)
        sign = symmetric_nodes(batch, SIGN_ACTIVATIONS) if self.signs else None
        return batch, sign, norms

    def input_states(self, batch: object, sign: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Initial node and edge states of a (prepared) batch."""
        check_batch(batch)
        return self._initial_states(batch, sign)

    def _initial_states(self, batch: object, sign: Tensor | None) -> tuple[Tensor, Tensor]:
        """:meth:`input_states` of a batch already checked."""
        extra = self.probe(batch) if self.probe is not None else None
        if self.signs:
            sign = symmetric_nodes(batch, SIGN_ACTIVATIONS) if sign is None else sign
            return self.sign_encoder(batch, self.normalizer, sign, extra)
        x, edge_attr = self.normalizer(batch)
        return self.node_encoder(x, batch, extra), self.edge_encoder(edge_attr, batch.edge_type)

    def propagate(self, batch: object, h: Tensor, e: Tensor, sign: Tensor | None) -> tuple[Tensor, Tensor]:
        """The encoder's layers: initial states to final ones."""
        raise NotImplementedError

    def states(self, batch: object) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Final node and edge states of the prepared batch, with its ``sign`` and ``norms`` (see :meth:`prepare`)."""
        prepared, sign, norms = self.prepare(batch)  # checks the batch
        h, e = self._initial_states(prepared, sign)
        h, e = self.propagate(prepared, h, e, sign)
        return h, e, sign, norms

    def encode(self, batch: object) -> tuple[Tensor, Tensor]:
        """Final node and edge states ``([num_nodes, hidden], [num_edges, hidden])``, equivariant to the
        encoder's symmetries (under "scale", multiplied back by each ReLU neuron's norm)."""
        h, e, _, norms = self.states(batch)
        return restore_scales(h, e, batch.edge_index, norms) if norms is not None else (h, e)

    def forward(self, batch: object) -> Tensor:
        """Graph-level output ``[num_graphs, out_dim]``, invariant to the encoder's symmetries."""
        return self.head_output(self.pool(batch))

    def pool(self, batch: object) -> Tensor:
        """The invariant readout ``[num_graphs, features]`` that the head maps to the output."""
        prepared, sign, _ = self.prepare(batch)  # checks the batch
        h, _ = self.propagate(prepared, *self._initial_states(prepared, sign), sign)
        if sign is not None:  # sign-symmetric nodes are pooled through |R h|
            h = self.sign_invariant(h).abs() + (~sign).unsqueeze(-1).to(h.dtype) * h
        vector, num_graphs = batch_vector(batch)
        pooled = self.readout(h, vector, batch.node_type, batch.layer, batch.io_position, num_graphs)
        if not self.statistics:
            return pooled
        # the prepared batch: canonical under "scale", the batch itself otherwise
        return torch.cat([pooled, self.weight_statistics(prepared).to(pooled.dtype)], dim=-1)

    def head_output(self, pooled: Tensor) -> Tensor:
        """The head on pooled features (:meth:`pool`): ``[num_graphs, out_dim]``."""
        first = self.head[0]
        if not isinstance(first.weight, nn.parameter.UninitializedParameter) and pooled.shape[-1] != first.in_channels:
            raise ShapeMismatchError(
                f"the readout gives {pooled.shape[-1]} features but the head was built for {first.in_channels}: "
                "with readout_output='concat' every batch needs the number of output neurons of the first batch; "
                "use readout_output='mean' for architectures with different output sizes")
        return self.head(pooled)

    def node_embeddings(self, batch: object) -> Tensor:
        """Node states ``[num_nodes, hidden]``, equivariant to hidden-neuron permutations."""
        return self.encode(batch)[0]

    def edge_embeddings(self, batch: object) -> Tensor:
        """Edge states ``[num_edges, hidden]``, equivariant to hidden-neuron permutations."""
        return self.encode(batch)[1]

    def reset_parameters(self) -> None:
        reset_children(self)


class GNNEncoder(GraphEncoderBase):
    r"""Message-passing encoder of parameter graphs (NG-GNN, Kofinas et al., ICLR 2024).

    Node and edge states start from Fourier features of the (normalized)
    parameters plus activation, edge-type and positional embeddings that keep
    exactly the hidden-neuron symmetry; ``num_layers``
    :class:`~wslgraph.nn.EdgeUpdateConv` layers update both; an invariant
    readout and an MLP head give ``out_dim`` outputs per graph. Input sizes
    are inferred on the first batch, so ``GNNEncoder(10)(batch)`` works for
    MLPs, CNNs and mixed batches.

    Batches of one architecture (from :class:`~wslgraph.GraphTemplate`,
    :func:`~wslgraph.collate` or ``Batch.from_data_list``) run on the dense
    fast path; others on the generic scatter path. Both compute the same
    function. ``torch.compile(encoder)`` works on both paths (graph breaks
    only at the input checks and the dense plan's exact ``edge_index``
    check) and gives the eager values and gradients.

    Args:
        out_dim: Output size per graph.
        hidden: Width of node and edge states (default: ``64``).
        num_layers: Message-passing layers (default: ``4``).
        aggregators: PNA aggregators (default: mean, max, min, std, sum).
        scalers: PNA degree scalers (default: identity, amplification, attenuation).
        bidirectional: Also pass messages backwards along edges (default: ``True``).
        fourier_frequencies: Random Fourier frequencies per parameter (default: ``16``).
        fourier_scale: Their standard deviation (default: ``1.0``). The inputs are
            standardised per layer, so 1.0 resolves them; 10.0 (an earlier default)
            made the features nearly random and the encoder failed to learn INR
            classification (10.8 % vs 32.2 % on FMNIST INRs after 6 epochs, README).
        readout_hidden: ``"graph"`` or ``"layer"`` pooling of hidden nodes, or ``"concat"``: each hidden layer
            pooled on its own, concatenated in layer order (one architecture per batch; default: ``"graph"``).
        readout_output: ``"mean"`` or ``"concat"`` for output nodes (default: ``"mean"``).
        dropout: Dropout in the node MLPs (default: ``0.0``).
        dense: ``None`` uses the dense fast path whenever the batch allows
            it, ``True`` requires it, ``False`` never uses it (default: ``None``).
        max_io: Most input/output nodes per graph (default: ``1024``).
        max_layers: Most layers per graph (default: ``64``).
        probe: :class:`~wslgraph.nn.ProbeFeatures` of an INR architecture whose
            activations are added to the node features (default: ``None``).
        symmetry: Which weight-space symmetries the output respects besides
            hidden-neuron permutations (default: ``"permutation"``, only those):
            ``"sign"``, sign flips of neurons with odd activations (sine, tanh),
            by sign-equivariant layers (:class:`~wslgraph.nn.SignEquivariantConv`,
            generic path only); ``"scale"``, positive rescaling of ReLU neurons,
            by canonicalising the weights before the layers; ``"auto"``, both,
            each on the neurons whose activation has it (:mod:`wslgraph.nn.symmetric`).
        statistics: Also give the head StatNN's per-tensor weight statistics s(W) (mean, variance and five
            quantiles of every weight and bias tensor, standardised on the training models by
            :meth:`fit_statistics`) beside the pooled states (default: ``False``). Batches of one
            architecture; not with ``"sign"``/``"auto"``, whose sign flips change s(W).

    Shapes:
        ``forward``: batch of ``num_graphs`` ParamGraphs -> ``[num_graphs, out_dim]``.
    """

    def __init__(self, out_dim: int, hidden: int = 64, num_layers: int = 4, aggregators: Sequence[str] = AGGREGATORS,
                 scalers: Sequence[str] = SCALERS, bidirectional: bool = True, fourier_frequencies: int = 16,
                 fourier_scale: float = 1.0, readout_hidden: str = "graph", readout_output: str = "mean",
                 dropout: float = 0.0, dense: bool | None = None, max_io: int = 1024, max_layers: int = 64,
                 probe: ProbeFeatures | None = None, symmetry: str = "permutation",
                 statistics: bool = False) -> None:
        super().__init__(out_dim, hidden, fourier_frequencies, fourier_scale, readout_hidden, readout_output,
                         max_io, max_layers, probe, symmetry, statistics)
        if dense and self.signs:
            raise ValueError(f"symmetry={symmetry!r} runs on the generic path only; leave dense=None")
        self.dense = False if self.signs else dense
        if self.signs:
            self.layers = nn.ModuleList(SignEquivariantConv(hidden, aggregators, scalers, bidirectional, dropout)
                                        for _ in range(num_layers))
        else:
            self.layers = nn.ModuleList(EdgeUpdateConv(hidden, aggregators, scalers, bidirectional, dropout,
                                                       node_bias=i < num_layers - 1) for i in range(num_layers))

    def propagate(self, batch: object, h: Tensor, e: Tensor, sign: Tensor | None) -> tuple[Tensor, Tensor]:
        if sign is not None:
            for layer in self.layers:
                h, e = layer(h, e, batch.edge_index, sign)
            return h, e
        plan = self.plan_for(batch)
        if plan is None:
            for layer in self.layers:
                h, e = layer(h, e, batch.edge_index)
            return h, e
        edges = plan.split_edges(e, h.shape[0] // plan.num_nodes)  # stay split by block across layers
        for layer in self.layers:
            h, edges = layer.forward_dense(h, edges, plan)
        return h, plan.join_edges(edges)

    def plan_for(self, batch: object) -> DensePlan | None:
        """The dense plan of the batch's architecture, if the fast path applies (and is allowed)."""
        if self.dense is False:
            return None
        layout = common_layout(batch)
        plan = dense_plan(layout) if layout is not None else None
        if plan is not None and not plan.matches(batch.edge_index, len(batch_layouts(batch))):
            plan = None
        if plan is None and self.dense:
            raise InvalidGraphError("dense=True but the batch is not a batch of one architecture in template edge "
                                    "order; build it with GraphTemplate.batch or wslgraph.collate")
        return plan

    def __repr__(self) -> str:
        layer = self.layers[0] if len(self.layers) else None
        options = f", aggregators={layer.aggregators}, bidirectional={layer.bidirectional}" if layer else ""
        return (f"{type(self).__name__}(out_dim={self.out_dim}, hidden={self.hidden}, "
                f"num_layers={len(self.layers)}{options})")


class TransformerEncoder(GraphEncoderBase):
    r"""Relational-transformer encoder of parameter graphs (NG-T, Kofinas et al., ICLR 2024).

    The same input encoding, readout and head as :class:`GNNEncoder`, with
    :class:`~wslgraph.nn.RelationalAttention` layers on dense padded tensors
    (every node attends to every node of its graph; pairs without an edge get
    a learned "no edge" state). Padding is masked, so a graph's output does
    not depend on what else is in its batch. Memory grows with the square of
    the largest graph's node count. Parallel edges between the same pair of
    nodes (a residual beside a weight) share one pair state.

    Args:
        out_dim: Output size per graph.
        hidden: Width of node and edge states (default: ``64``).
        num_layers: Attention layers (default: ``4``).
        heads: Attention heads (default: ``4``).
        fourier_frequencies, fourier_scale, readout_hidden, readout_output,
        dropout, max_io, max_layers, probe, symmetry, statistics: As for :class:`GNNEncoder`
            (``"sign"`` uses :class:`~wslgraph.nn.SignRelationalAttention`).

    Shapes:
        ``forward``: batch of ``num_graphs`` ParamGraphs -> ``[num_graphs, out_dim]``.
    """

    def __init__(self, out_dim: int, hidden: int = 64, num_layers: int = 4, heads: int = 4,
                 fourier_frequencies: int = 16, fourier_scale: float = 1.0, readout_hidden: str = "graph",
                 readout_output: str = "mean", dropout: float = 0.0, max_io: int = 1024, max_layers: int = 64,
                 probe: ProbeFeatures | None = None, symmetry: str = "permutation",
                 statistics: bool = False) -> None:
        super().__init__(out_dim, hidden, fourier_frequencies, fourier_scale, readout_hidden, readout_output,
                         max_io, max_layers, probe, symmetry, statistics)
        if self.signs:
            self.layers = nn.ModuleList(SignRelationalAttention(hidden, heads, dropout) for _ in range(num_layers))
        else:
            self.layers = nn.ModuleList(RelationalAttention(hidden, heads, dropout, node_bias=i < num_layers - 1)
                                        for i in range(num_layers))
        self.no_edge = nn.Parameter(torch.zeros(hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.normal_(self.no_edge, std=0.02)

    def propagate(self, batch: object, h: Tensor, e: Tensor, sign: Tensor | None) -> tuple[Tensor, Tensor]:
        vector, num_graphs = batch_vector(batch)
        nodes, mask = to_dense_batch(h, vector, batch_size=num_graphs)
        counts = torch.bincount(vector, minlength=num_graphs)
        local = torch.arange(h.shape[0], device=h.device) - (torch.cumsum(counts, 0) - counts)[vector]
        source, target = batch.edge_index
        pair = (vector[target], local[target], local[source])
        size = nodes.shape[1]
        edges = e.new_zeros(num_graphs, size, size, e.shape[-1]).index_put(pair, e, accumulate=True)
        present = torch.zeros(num_graphs, size, size, dtype=torch.bool, device=h.device).index_put(
            pair, torch.ones_like(source, dtype=torch.bool))
        real_pairs = mask.unsqueeze(2) & mask.unsqueeze(1)
        if sign is None:
            edges = edges + (real_pairs & ~present).unsqueeze(-1) * self.no_edge
            for layer in self.layers:
                nodes, edges = layer(nodes, edges, mask)
            return nodes[mask], edges[pair]
        # sign-equivariant: pairs without an edge start at 0 (a constant state cannot flip); between two
        # nodes without the symmetry they get the learned one
        dense_sign, _ = to_dense_batch(sign, vector, batch_size=num_graphs)
        free = ~dense_sign  # padding is masked out by real_pairs
        free_pairs = real_pairs & ~present & free.unsqueeze(2) & free.unsqueeze(1)
        edges = edges + free_pairs.unsqueeze(-1) * self.no_edge
        for layer in self.layers:
            nodes, edges = layer(nodes, edges, mask, dense_sign, present)
        return nodes[mask], edges[pair]

    def __repr__(self) -> str:
        heads = self.layers[0].heads if len(self.layers) else None
        return (f"{type(self).__name__}(out_dim={self.out_dim}, hidden={self.hidden}, "
                f"num_layers={len(self.layers)}, heads={heads})")
