"""Architecture templates: convert whole zoos of one architecture at once."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from wslgraph.convert.features import check_state_dict
from wslgraph.convert.trace import trace
from wslgraph.errors import InvalidGraphError, ShapeMismatchError
from wslgraph.graph.layout import (
    EdgeBlock,
    GraphLayout,
    batch_layouts,
    common_layout,
    expand_kernel_shape,
)
from wslgraph.graph.param_graph import ParamGraph, structure_tensors
from wslgraph.graph.vocab import IDENTITY_EDGES, NUM_NODE_FEATURES, NodeFeature

__all__ = ["GraphTemplate", "attach_params", "batch_params", "column_moments", "statnn_features"]

_NODE_KEYS = ("x", "x_mask", "node_type", "layer", "io_position", "activation")
_EDGE_KEYS = ("edge_index", "edge_attr", "edge_type")
_NODE_META = ("node_type", "layer", "io_position", "activation")


class GraphTemplate:
    """The topology of one architecture, computed once, for zoo-scale conversion.

    ``template.batch(params)`` turns ``N`` flat parameter vectors into a
    :class:`~torch_geometric.data.Batch` of ``N`` :class:`~wslgraph.ParamGraph`
    s with whole-tensor index arithmetic (no Python loop over models, layer
    entries or edges); the graphs equal :func:`~wslgraph.to_graph`'s exactly.

    A flat parameter vector holds every state-dict entry (buffers included)
    flattened in ``state_dict()`` order, cast to ``layout.dtype``.

    Args:
        layout: The architecture's :class:`~wslgraph.graph.layout.GraphLayout`.

    Example:
        >>> template = GraphTemplate.from_module(model)
        >>> params = torch.stack([template.flatten(m.state_dict()) for m in zoo])
        >>> batch = template.batch(params)            # N graphs
        >>> torch.equal(template.unbatch(batch), params)
        True
    """

    def __init__(self, layout: GraphLayout) -> None:
        self.layout = layout
        self._offsets = layout.offsets
        structure = structure_tensors(layout)
        # Node metadata stacked so one repeat() serves all four; scalar columns as a gather index.
        structure["node_meta"] = torch.stack([structure.pop(key) for key in _NODE_META])
        structure["scalar_columns"] = layout.scalar_positions
        self._structure: dict[torch.device, dict[str, Tensor]] = {torch.device("cpu"): structure}

    @classmethod
    def from_module(cls, module: nn.Module, *, input_shape: Sequence[int] | None = None) -> GraphTemplate:
        """Trace ``module``'s architecture (its parameter values are not used)."""
        return cls(trace(module, input_shape)[0])

    @property
    def num_params(self) -> int:
        """Length ``P`` of a flat parameter vector."""
        return self.layout.num_params

    def __repr__(self) -> str:
        layout = self.layout
        return (f"{type(self).__name__}(num_params={self.num_params}, num_nodes={layout.num_nodes}, "
                f"num_edges={layout.num_edges}, edge_dim={layout.edge_dim})")

    # ------------------------------------------------------------ flat vectors
    def flatten(self, state_dict: Mapping[str, Tensor]) -> Tensor:
        """A state dict as one flat vector ``[P]`` of ``layout.dtype``."""
        check_state_dict(self.layout, state_dict)
        dtype = self.layout.dtype
        digits = round(-math.log2(torch.finfo(dtype).eps)) + 1  # significand bits
        limit = 2**digits
        parts = []
        for entry in self.layout.state:
            tensor = state_dict[entry.key]
            if not tensor.is_floating_point() and tensor.numel() and int(tensor.abs().max()) > limit:
                raise ShapeMismatchError(f"'{entry.key}' holds integers above 2**{digits}, "
                                         f"which {dtype} cannot store exactly")
            parts.append(tensor.reshape(-1).to(dtype))
        return torch.cat(parts)

    def loadable(self, rows: Tensor) -> Tensor:
        """Generated flat rows ``[N, P]`` (or ``[P]``) made a valid state: integer buffers (batch norm's step
        counters) rounded and at least 0, running variances at least ``1e-5``. A decoder need not respect either,
        and without them :meth:`unflatten` refuses the row or batch norm divides by a variance <= 0. Every other
        value is kept as it is."""
        rows = rows.clone()
        variances = self.layout.statistic_keys(NodeFeature.RUNNING_VAR)
        for entry in self.layout.state:
            span = self.layout.span(entry.key)
            if not entry.dtype.is_floating_point:
                rows[..., span] = rows[..., span].round().clamp_min(0)
            elif entry.key in variances:
                rows[..., span] = rows[..., span].clamp_min(1e-5)
        return rows

    def stacked_state(self, rows: Tensor) -> dict[str, Tensor]:
        """Flat rows ``[N, P]`` as stacked state tensors ``{key: [N, *shape]}`` of each entry's dtype, copies that
        own their memory (for many models at once, as :func:`torch.func.stack_module_state` gives them)."""
        if rows.dim() != 2 or rows.shape[1] != self.num_params:
            raise ShapeMismatchError(f"expected flat rows of shape [N, {self.num_params}], got {list(rows.shape)}")
        return {entry.key: rows[:, self.layout.span(entry.key)].reshape(rows.shape[0], *entry.shape)
                .to(entry.dtype, copy=True) for entry in self.layout.state}

    def unflatten(self, vector: Tensor) -> dict[str, Tensor]:
        """The state dict of a flat vector ``[P]`` (inverse of :meth:`flatten`)."""
        if vector.dim() != 1 or vector.numel() != self.num_params:
            raise ShapeMismatchError(f"expected a flat parameter vector of shape [{self.num_params}], got "
                                     f"{list(vector.shape)}; for many models use batch()/unbatch()")
        state = {}
        for entry in self.layout.state:
            part = vector.narrow(0, self._offsets[entry.key], entry.numel)
            if not entry.dtype.is_floating_point and not torch.equal(part, part.round()):
                raise ShapeMismatchError(f"'{entry.key}' is an integer buffer but the vector holds "
                                         f"non-integer values {part.tolist()} there")
            state[entry.key] = part.reshape(entry.shape).to(entry.dtype, copy=True)
        return state

    # --------------------------------------------------------------- batching
    def batch(self, params: Tensor) -> Batch:
        """``N`` graphs from a ``[N, P]`` tensor of flat parameter vectors.

        Each layer is one strided copy from ``params`` into the batched
        feature tensors (kernels land directly in their padded place), and the
        structure tensors are the template's, offset per graph.
        """
        if params.dim() != 2 or params.shape[1] != self.num_params or not params.is_floating_point():
            raise ShapeMismatchError(f"expected a floating tensor of shape [N, {self.num_params}], got "
                                     f"{params.dtype} {list(params.shape)}; use params.unsqueeze(0) for one model")
        layout, num, device = self.layout, params.shape[0], params.device
        num_nodes, num_edges = layout.num_nodes, layout.num_edges
        x = params.new_zeros(num, num_nodes, NUM_NODE_FEATURES)
        edges = params.new_empty(num, num_edges, *layout.kernel_grid)
        for graph_view, param_view in self._views(x, edges, params, zero_padding=True):
            graph_view.copy_(param_view)
        for block in layout.edge_blocks:
            if block.kind in IDENTITY_EDGES:
                self._padded_block(edges, block, zero=True).fill_(1)
        structure = self._structure_on(device)
        graphs = torch.arange(num, device=device)
        offsets = graphs * num_nodes
        data = {
            "x": x.view(num * num_nodes, NUM_NODE_FEATURES),
            "edge_attr": edges.view(num * num_edges, layout.edge_dim),
            "scalars": params.index_select(1, structure["scalar_columns"]).to(torch.float64),
            "edge_index": (structure["edge_index"].unsqueeze(1) + offsets.view(1, num, 1)).view(2, -1),
            "x_mask": structure["x_mask"].repeat(num, 1),
            "edge_type": structure["edge_type"].repeat(num),
            **dict(zip(_NODE_META, structure["node_meta"].repeat(1, num))),
        }
        batch = Batch(_base_cls=ParamGraph)
        for key, value in data.items():
            batch[key] = value
        batch.layout = [layout] * num
        batch.batch = graphs.repeat_interleave(num_nodes)
        batch.ptr = torch.arange(num + 1, device=device) * num_nodes
        steps = torch.arange(num + 1, device=device)
        batch._num_graphs = num
        batch._slice_dict = {key: steps * (num_edges if key in _EDGE_KEYS else num_nodes if key in _NODE_KEYS else 1)
                             for key in data}
        batch._slice_dict["layout"] = steps
        zeros = torch.zeros(num, dtype=torch.long, device=device)
        batch._inc_dict = {key: offsets if key == "edge_index" else zeros for key in data}
        batch._inc_dict["layout"] = None
        return batch

    def unbatch(self, batch: ParamGraph | Batch) -> Tensor:
        """The ``[N, P]`` flat parameter vectors of a batch of this architecture."""
        layout = self.layout
        shared = common_layout(batch)
        if shared is not layout and shared != layout:
            raise ShapeMismatchError("the batch holds graphs of another architecture (or with re-padded edge "
                                     "features) than this template; use wslgraph.to_state_dict per graph")
        num = len(batch_layouts(batch))
        expected = {"x": (num * layout.num_nodes, NUM_NODE_FEATURES),
                    "edge_attr": (num * layout.num_edges, layout.edge_dim)}
        for key, shape in expected.items():
            if tuple(batch[key].shape) != shape:
                raise ShapeMismatchError(f"batch.{key} has shape {list(batch[key].shape)}, {num} graphs of this "
                                         f"architecture need {list(shape)}")
        if batch.scalars.shape[1] < layout.num_scalars:
            raise ShapeMismatchError(f"batch.scalars has {batch.scalars.shape[1]} columns, "
                                     f"the architecture needs {layout.num_scalars}")
        params = batch.x.new_empty(num, self.num_params, dtype=layout.dtype)
        x = batch.x.view(num, layout.num_nodes, NUM_NODE_FEATURES)
        edges = batch.edge_attr.view(num, layout.num_edges, *layout.kernel_grid)
        pairs = self._views(x, edges, params, zero_padding=False)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (batch.x, batch.edge_attr, batch.scalars)):
            # differentiable: one out-of-place index_copy (in-place writes through views made before the
            # first differentiable write are refused by autograd)
            pieces = [graph_view.reshape(num, -1).to(layout.dtype) for graph_view, _ in pairs]
            starts = [param_view.storage_offset() - params.storage_offset() for _, param_view in pairs]
            scalar_positions = self._structure_on(params.device)["scalar_columns"]
            pieces.append(batch.scalars[:, :layout.num_scalars].to(layout.dtype))
            positions = torch.cat([torch.arange(start, start + piece.shape[1], device=params.device)
                                   for start, piece in zip(starts, pieces)] + [scalar_positions])
            return params.new_zeros(()).expand_as(params).index_copy(1, positions, torch.cat(pieces, dim=1))
        for graph_view, param_view in pairs:
            param_view.copy_(graph_view)
        if layout.num_scalars:
            params[:, self._structure_on(params.device)["scalar_columns"]] = \
                batch.scalars[:, :layout.num_scalars].to(layout.dtype)
        return params

    # ------------------------------------------------------------------ views
    def _views(self, x: Tensor, edges: Tensor, params: Tensor, *, zero_padding: bool) -> list[tuple[Tensor, Tensor]]:
        """Pairs (view into the batched graph tensors, view into ``params``), one per layer tensor.

        With ``zero_padding`` the padding around each block's kernels is zeroed
        (``edges`` is then being written).
        """
        layout, num = self.layout, params.shape[0]
        pairs = []
        for param in layout.node_params:
            group = layout.groups[param.group]
            start = self._offsets[param.key]
            pairs.append((x[:, group.offset:group.offset + group.size, int(param.column)],
                          params[:, start:start + group.size]))
        for block in layout.edge_blocks:
            if block.kind not in IDENTITY_EDGES:
                count = block.num_edges
                start = self._offsets[block.key]
                shape = expand_kernel_shape(block.kernel_shape, len(layout.kernel_grid))
                pairs.append((self._padded_block(edges, block, zero=zero_padding),
                              params[:, start:start + count * math.prod(shape)].view(num, count, *shape)))
        return pairs

    def _padded_block(self, edges: Tensor, block: EdgeBlock, *, zero: bool) -> Tensor:
        """The kernel region of ``block``'s rows of ``edges`` ``[N, E, *grid]``; zero the padding first if asked."""
        layout = self.layout
        rows = edges.narrow(1, block.offset, block.num_edges)
        shape = expand_kernel_shape(block.kernel_shape, len(layout.kernel_grid))
        if zero and shape != layout.kernel_grid:
            rows.zero_()
        for dim, (size, pad) in enumerate(zip(shape, layout.padding(block))):
            rows = rows.narrow(dim + 2, pad, size)
        return rows

    def _structure_on(self, device: torch.device) -> dict[str, Tensor]:
        if device not in self._structure:
            self._structure[device] = {k: v.to(device) for k, v in self._structure[torch.device("cpu")].items()}
        return self._structure[device]


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


def column_moments(features: Tensor) -> tuple[Tensor, Tensor]:
    """Per column: the mean and the standard deviation (at least 1e-8; ones for a single row) of ``[N, F]``
    features, the standardisation every statistics-fitting model here stores."""
    mean = features.mean(0)
    std = features.std(0).clamp_min(1e-8) if features.shape[0] > 1 else torch.ones_like(mean)
    return mean, std


def statnn_features(params: Tensor, layout: GraphLayout) -> Tensor:
    """Per parameter tensor: mean, variance and the 0/25/50/75/100 % quantiles: ``[N, 7 * tensors]``.

    The features of Unterthiner et al. (2020); they are invariant to every
    neuron permutation. Feed them to :class:`StatNN` or any regressor (e.g. a
    scikit-learn gradient-boosted model).
    """
    levels = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=params.dtype, device=params.device)
    features = []
    for part in params.split([e.numel for e in layout.state], dim=1):
        features += [part.mean(1, keepdim=True), part.var(1, keepdim=True, unbiased=False),
                     torch.quantile(part, levels, dim=1).T]
    return torch.cat(features, dim=1)
