"""The parameter graph: one obvious data structure for a network's weights."""

from __future__ import annotations

from enum import IntEnum

import torch
from torch import Tensor
from torch_geometric.data import Data

from wslgraph.errors import InvalidGraphError, NonFiniteError
from wslgraph.graph.layout import GraphLayout, batch_layouts
from wslgraph.graph.vocab import NUM_NODE_FEATURES, Activation, EdgeType, NodeType

__all__ = ["ParamGraph", "structure_tensors"]

_INDEX_ATTRS = ("node_type", "layer", "io_position", "activation")


class ParamGraph(Data):
    r"""A trained network as a graph: neurons are nodes, weights are edges.

    Every converter (:func:`wslgraph.to_graph`,
    :meth:`wslgraph.GraphTemplate.batch`) produces a ``ParamGraph`` and every
    encoder consumes one; batches are ordinary PyG
    :class:`~torch_geometric.data.Batch` objects of them.

    **Nodes.** One node per input feature/channel, one per hidden neuron or
    channel, one per output neuron/channel, ordered by :class:`NodeGroup`
    (input first, output last). Pooling, Flatten and Dropout add no nodes.

    **Node features** ``x`` (``[num_nodes, 7]``), columns named by
    :class:`~wslgraph.graph.vocab.NodeFeature`: the bias, then the per-channel
    tensors of a normalization layer acting on the node (affine weight, affine
    bias, running mean, running variance), a learned activation parameter
    (PReLU's slope) and a learned per-channel factor (ConvNeXt's layer scale).
    Features a layer does not have are
    0 and ``x_mask`` (bool, same shape) is ``False`` there; input nodes have no
    bias. The width is the same for every architecture.

    **Edges** ``edge_index`` (``[2, num_edges]``, source to target) with
    features ``edge_attr`` (``[num_edges, prod(kernel_grid)]``):

    * ``Linear``: one edge per weight entry ``i -> j``, feature = the weight;
    * ``ConvNd``: one edge per existing (in channel, out channel) pair (grouped
      and depthwise convolutions produce only the pairs that exist), feature =
      the kernel;
    * ``Linear`` after ``Flatten`` of a ``C x H x W`` map: one edge per
      (channel, output neuron), feature = that neuron's ``H x W`` block of
      weights, treated like a kernel so channel permutations stay a graph
      symmetry;
    * residual additions: an identity edge ``c -> c`` (an identity kernel)
      from each channel of the skipped tensor to the channel it is added to;
    * concatenation along channels (``torch.cat``: DenseNet, Inception,
      SqueezeNet): a new hidden group with one identity edge (type
      ``RESIDUAL``) into each of its channels from the channel it copies, in
      order, so each consumer of a concatenation holds its own normalization
      and activation; a concatenation is permuted as its parts are;
    * chunks and channel shuffles (ShuffleNetV2: ``x.chunk(2, dim=1)``,
      ``torch.split`` along channels, and ``view(N, g, C // g, H, W)``,
      ``transpose(1, 2)``, ``view(N, C, H, W)``): groups of copies too, each
      channel with one ``RESIDUAL`` identity edge from the channel it copies
      (a chunk's identity block reads a slice of its source,
      ``EdgeBlock.src_start``; a shuffle is ``g`` identity blocks with strided
      targets, ``EdgeBlock.dst_stride``); every group of copies is permuted
      as the channels it copies move;
    * multi-head self-attention (``nn.MultiheadAttention``, batch first;
      torchvision's Swin and MaxViT attention): the packed input projection
      is a ``Linear`` into a group of ``3 d`` query/key/value nodes; one node
      per head receives an ``ATTENTION_HEAD`` identity edge from each key dim
      of its head and sends one to each attention output of its head; the
      ``d`` attention outputs also receive an ``ATTENTION_VALUE`` identity edge
      from their value dim; an ``ATTENTION_QK`` identity edge joins query dim
      ``i`` to key dim ``i``; the output projection reads the attention
      outputs. The graph's automorphisms are then attention's permutation
      symmetries: heads, queries with keys within a head, values within a
      head. A relative position bias table is an ``EMBEDDING`` block between
      the head nodes and one constant node per relative position; its index
      buffer is kept as graph-level scalars;
    * token embeddings (a transformer's positional embedding ``x + pos`` and
      class token ``torch.cat([cls.expand(N, -1, -1), x], 1)``): a group of
      constant *input* nodes, one per token, with an ``EMBEDDING`` edge to
      each channel holding the entry (its weight is the ``(1, tokens, d)``
      tensor, one row per token node). Tokens are ordered, channels are not;
    * a normalisation of a tensor that another layer reads too (pre-norm
      transformer blocks, pre-activation ResNets), or an activation of one
      another layer has already read, acts on a new group tied to it by
      identity edges, so each reader sees the values it reads;
    * gating (``x * gate``, squeeze-excitation): a new hidden group of
      *product* nodes, each with one ``GATE`` identity edge from the same
      channel of each factor; its value is the product of its gate inputs
      (the gate's own layers are ordinary edges, its activation the gate
      group's activation).

    Every edge feature is a kernel zero-padded *centrally* to the largest
    kernel in the graph (``layout.kernel_grid``; a linear weight is a 1 x 1
    kernel) and flattened. True kernel shapes live in ``layout``, so the
    conversion is exact both ways.

    **Metadata** (``long`` tensors), enough to build positional encodings that
    keep exactly the hidden-neuron symmetry:

    * ``node_type`` (``[num_nodes]``): :class:`~wslgraph.graph.vocab.NodeType`;
    * ``layer`` (``[num_nodes]``): depth index, 0 for inputs;
    * ``io_position`` (``[num_nodes]``): index of an input/output node within
      its layer, -1 for hidden nodes (hidden nodes are unordered);
    * ``activation`` (``[num_nodes]``):
      :class:`~wslgraph.graph.vocab.Activation` applied to the node;
    * ``edge_type`` (``[num_edges]``): :class:`~wslgraph.graph.vocab.EdgeType`.

    **Graph-level** ``scalars`` (``float64``, ``[1, num_scalars]``): integer
    buffers such as BatchNorm's ``num_batches_tracked`` (and index tables
    such as Swin's ``relative_position_index``, one column per entry), exact
    up to :math:`2^{53}`. ``layout`` (a :class:`~wslgraph.graph.layout.GraphLayout`,
    not a tensor) describes the architecture and where each state-dict entry
    lives; in a batch it becomes a list with one layout per graph.

    Graphs of different architectures batch with
    :meth:`Batch.from_data_list <torch_geometric.data.Batch.from_data_list>`
    once their edge features share one width: use :func:`wslgraph.collate`
    (or the :class:`wslgraph.graph.PadEdgeFeatures` transform).
    """

    def validate(self, *, check_finite: bool = True) -> ParamGraph:
        """Check that the graph is well formed; return it.

        Args:
            check_finite: Also reject NaN and infinite parameters
                (default: ``True``).

        Raises:
            InvalidGraphError: A tensor is missing or has the wrong shape,
                dtype or values (e.g. an edge pointing at a missing node).
            NonFiniteError: A parameter is NaN or infinite.
        """
        num_nodes = self._require("x", floating=True).shape[0]
        if self.x.dim() != 2 or self.x.shape[1] != NUM_NODE_FEATURES:
            raise InvalidGraphError(f"x must have shape [num_nodes, {NUM_NODE_FEATURES}], got {list(self.x.shape)}")
        mask = self._require("x_mask")
        if mask.dtype != torch.bool or mask.shape != self.x.shape:
            raise InvalidGraphError(f"x_mask must be a bool tensor shaped like x {list(self.x.shape)}, "
                                    f"got {mask.dtype} {list(mask.shape)}")
        edge_index = self._require("edge_index", dtype=torch.long)
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise InvalidGraphError(f"edge_index must have shape [2, num_edges], got {list(edge_index.shape)}")
        num_edges = edge_index.shape[1]
        if num_edges and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
            raise InvalidGraphError(f"edge_index refers to nodes outside [0, {num_nodes}): "
                                    f"min {int(edge_index.min())}, max {int(edge_index.max())}")
        edge_attr = self._require("edge_attr", floating=True)
        if edge_attr.dim() != 2 or edge_attr.shape[0] != num_edges:
            raise InvalidGraphError(f"edge_attr must have shape [{num_edges}, edge_dim], got {list(edge_attr.shape)}")
        for name in _INDEX_ATTRS:
            self._check_vector(name, num_nodes)
        self._check_vector("edge_type", num_edges)
        self._check_vocab("node_type", NodeType)
        self._check_vocab("activation", Activation)
        self._check_vocab("edge_type", EdgeType)
        scalars = self._require("scalars", floating=True)
        if scalars.dim() != 2:
            raise InvalidGraphError(f"scalars must have shape [num_graphs, num_scalars], got {list(scalars.shape)}")
        self._check_layout(num_nodes, num_edges, edge_attr.shape[1])
        if check_finite:
            for name in ("x", "edge_attr", "scalars"):
                self._check_finite(name)
        return self

    def summary(self) -> str:
        """A human-readable description: node groups, edge blocks, sizes."""
        layout = self.layout
        if not isinstance(layout, GraphLayout):
            raise InvalidGraphError("summary() needs a single graph with a layout; "
                                    "call it on batch.get_example(i) for a batch")
        grid = "x".join(map(str, layout.kernel_grid)) or "1"
        lines = [
            f"ParamGraph: {self.num_nodes} nodes ({_counts(self.node_type, NodeType)}), "
            f"{self.num_edges} edges ({_counts(self.edge_type, EdgeType)})",
            f"  {layout.num_params} parameters, dtype {str(layout.dtype).removeprefix('torch.')}, "
            f"edge features {self.edge_attr.shape[1]} wide (kernel grid {grid})",
            "  node groups:",
        ]
        for group in layout.groups:
            lines.append(f"    {group.name:<24} {group.size:>5} {group.node_type.name.lower():<6} "
                         f"layer {group.layer:<3} {group.activation.name.lower()}")
        lines.append("  edge blocks:")
        for block in layout.edge_blocks:
            src, dst = layout.groups[block.src].name, layout.groups[block.dst].name
            kernel = "x".join(map(str, block.kernel_shape)) or "1"
            lines.append(f"    {block.kind.name.lower():<15} {src} -> {dst}: "
                         f"{block.num_edges} edges, kernel {kernel}")
        return "\n".join(lines)

    def _require(self, name: str, *, floating: bool = False, dtype: torch.dtype | None = None) -> Tensor:
        value = getattr(self, name, None)
        if not isinstance(value, Tensor):
            raise InvalidGraphError(f"ParamGraph is missing tensor attribute '{name}'; "
                                    "build graphs with wslgraph.to_graph or GraphTemplate.batch")
        if floating and not value.is_floating_point():
            raise InvalidGraphError(f"'{name}' must be a floating-point tensor, got {value.dtype}")
        if dtype is not None and value.dtype != dtype:
            raise InvalidGraphError(f"'{name}' must have dtype {dtype}, got {value.dtype}")
        return value

    def _check_vector(self, name: str, length: int) -> None:
        value = self._require(name, dtype=torch.long)
        if value.shape != (length,):
            raise InvalidGraphError(f"'{name}' must have shape [{length}], got {list(value.shape)}")

    def _check_vocab(self, name: str, vocab: type) -> None:
        value = getattr(self, name)
        if value.numel() and (int(value.min()) < 0 or int(value.max()) >= len(vocab)):
            raise InvalidGraphError(f"'{name}' holds ids outside the {vocab.__name__} vocabulary "
                                    f"[0, {len(vocab)}): min {int(value.min())}, max {int(value.max())}")

    def _check_layout(self, num_nodes: int, num_edges: int, edge_dim: int) -> None:
        layouts = batch_layouts(self)
        if any(not isinstance(layout, GraphLayout) for layout in layouts):
            raise InvalidGraphError("ParamGraph has no 'layout' (a GraphLayout); "
                                    "build graphs with wslgraph.to_graph or GraphTemplate.batch")
        expected = (sum(lay.num_nodes for lay in layouts), sum(lay.num_edges for lay in layouts))
        if expected != (num_nodes, num_edges):
            raise InvalidGraphError(f"graph has {num_nodes} nodes and {num_edges} edges but its layout "
                                    f"describes {expected[0]} nodes and {expected[1]} edges")
        widths = {lay.edge_dim for lay in layouts}
        if widths != {edge_dim}:
            raise InvalidGraphError(f"edge_attr is {edge_dim} wide but the layout's kernel grid gives "
                                    f"{sorted(widths)}; pad with wslgraph.graph.PadEdgeFeatures")

    def _check_finite(self, name: str) -> None:
        value = getattr(self, name)
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            row = int(bad.any(dim=-1).nonzero()[0])
            raise NonFiniteError(f"'{name}' holds {int(bad.sum())} NaN/inf value(s), the first in row {row}"
                                 f"{self._locate(name, row)}; the network's parameters are not finite "
                                 "(diverged training?) - drop or repair this model")

    def _locate(self, name: str, row: int) -> str:
        layout = getattr(self, "layout", None)
        if not isinstance(layout, GraphLayout) or name == "scalars":
            return ""
        if name == "x":
            group = next(g for g in layout.groups if row in g.nodes)
            return f" (node group '{group.name}')"
        start = 0
        for block in layout.edge_blocks:
            count = block.num_edges
            if start <= row < start + count:
                return f" (weight '{block.key}')"
            start += count
        return ""


def _counts(ids: Tensor, vocab: type[IntEnum]) -> str:
    counts = torch.bincount(ids, minlength=len(vocab)).tolist()
    return ", ".join(f"{n} {name}" for name, n in sorted((v.name.lower(), counts[v]) for v in vocab) if n)


def structure_tensors(layout: GraphLayout, device: torch.device | None = None) -> dict[str, Tensor]:
    """The architecture-only tensors of a layout's graph (no parameter values).

    Returns ``edge_index``, ``edge_type``, ``node_type``, ``layer``,
    ``io_position``, ``activation`` and ``x_mask``.
    """
    sources, targets, edge_types = [], [], []
    for block in layout.edge_blocks:
        src, dst = layout.endpoints(block, device)
        sources.append(src)
        targets.append(dst)
        edge_types.append(torch.full_like(src, int(block.kind)))
    edge_index = torch.stack([torch.cat(sources), torch.cat(targets)]) if sources else \
        torch.zeros(2, 0, dtype=torch.long, device=device)
    node_meta = {name: torch.empty(layout.num_nodes, dtype=torch.long, device=device) for name in _INDEX_ATTRS}
    for group in layout.groups:
        nodes = slice(group.offset, group.offset + group.size)
        node_meta["node_type"][nodes] = int(group.node_type)
        node_meta["layer"][nodes] = group.layer
        node_meta["activation"][nodes] = int(group.activation)
        ordered = group.node_type != NodeType.HIDDEN
        node_meta["io_position"][nodes] = torch.arange(group.size, device=device) if ordered else -1
    x_mask = torch.zeros(layout.num_nodes, NUM_NODE_FEATURES, dtype=torch.bool, device=device)
    for param in layout.node_params:
        group = layout.groups[param.group]
        x_mask[group.offset:group.offset + group.size, int(param.column)] = True
    edge_type = torch.cat(edge_types) if edge_types else torch.zeros(0, dtype=torch.long, device=device)
    return {"edge_index": edge_index, "edge_type": edge_type, "x_mask": x_mask, **node_meta}

