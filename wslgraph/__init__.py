"""wslgraph: weight-space learning on parameter graphs."""

from wslgraph import convert, graph, nn, testing, zoo
from wslgraph.convert import GraphTemplate, to_graph, to_state_dict
from wslgraph.errors import (
    InvalidGraphError,
    NonFiniteError,
    ShapeInferenceError,
    ShapeMismatchError,
    TracingError,
    UnsupportedModuleError,
    WSLGraphError,
)
from wslgraph.graph import ParamGraph, collate, to_networkx
from wslgraph.nn.backend import get_scatter_backend, set_scatter_backend

__version__ = "0.1.0"

__all__ = [
    "ParamGraph",
    "GraphTemplate",
    "to_graph",
    "to_state_dict",
    "to_networkx",
    "collate",
    "set_scatter_backend",
    "get_scatter_backend",
    "convert",
    "graph",
    "nn",
    "testing",
    "zoo",
    "WSLGraphError",
    "UnsupportedModuleError",
    "TracingError",
    "ShapeInferenceError",
    "ShapeMismatchError",
    "InvalidGraphError",
    "NonFiniteError",
    "__version__",
]
