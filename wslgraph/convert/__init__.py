"""Conversion between ``nn.Module`` s, state dicts and parameter graphs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch_geometric.data import Batch

from wslgraph.convert.context import ConversionContext, Value
from wslgraph.convert.features import graph_from_state_dict, state_dict_from_graph
from wslgraph.convert.files import is_graph_file, load_checkpoint, load_factory, load_graph, load_model, save_graph
from wslgraph.convert.registry import Handler, register
from wslgraph.convert.template import GraphTemplate
from wslgraph.convert.trace import trace
from wslgraph.convert.windows import LayerWindows
from wslgraph.graph.param_graph import ParamGraph

__all__ = ["to_graph", "GraphTemplate", "to_state_dict", "trace", "register", "Handler", "ConversionContext", "Value",
           "save_graph", "load_graph", "is_graph_file", "load_factory", "load_checkpoint", "load_model", "LayerWindows"]


def to_graph(module: nn.Module, *, input_shape: Sequence[int] | None = None) -> ParamGraph:
    """Convert a network into its :class:`~wslgraph.ParamGraph`.

    The model is traced with ``torch.fx`` (any ``forward``, not only
    ``nn.Sequential``); every supported layer becomes nodes and edges as
    described in :class:`~wslgraph.ParamGraph`. The conversion is exact:
    ``to_state_dict(to_graph(m))`` equals ``m.state_dict()`` bit for bit.

    Args:
        module: The network.
        input_shape: Shape of one input without the batch dim, e.g.
            ``(1, 28, 28)``; only needed where a Linear reads a flattened
            feature map whose spatial size cannot be inferred (default:
            ``None``).

    Raises:
        UnsupportedModuleError: A layer or pattern has no conversion (register
            a handler with :func:`register`).
        TracingError: ``torch.fx`` cannot trace the model.
        ShapeInferenceError: ``input_shape`` is needed or does not fit.

    Example:
        >>> graph = to_graph(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
        >>> graph.num_nodes, graph.num_edges
        (6, 9)
    """
    layout, state_dict = trace(module, input_shape)
    return graph_from_state_dict(layout, state_dict)


def to_state_dict(graph: ParamGraph | Batch) -> dict[str, Tensor] | list[dict[str, Tensor]]:
    """The exact inverse of :func:`to_graph`.

    Returns the state dict (same keys in the same order, shapes, dtypes and
    bits as the original module's, buffers included) of a graph, or a list of
    them for a :class:`~torch_geometric.data.Batch`.

    Raises:
        ShapeMismatchError: The graph's tensors do not match its layout.
    """
    if isinstance(graph, Batch):
        return [state_dict_from_graph(graph.get_example(i)) for i in range(graph.num_graphs)]
    return state_dict_from_graph(graph)
