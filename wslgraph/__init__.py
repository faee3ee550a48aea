"""wslgraph: weight-space learning on parameter graphs."""

from wslgraph import convert, graph, nn, testing, zoo
from wslgraph.convert import GraphTemplate, load_graph, save_graph, to_graph, to_state_dict
from wslgraph.errors import (
    CorruptShardError,
    DataNotFoundError,
    FactoryError,
    InvalidGraphError,
    ManifestError,
    NonFiniteError,
    ShapeInferenceError,
    ShapeMismatchError,
    TracingError,
    UnsafeFileError,
    UnsupportedModuleError,
    WSLGraphError,
    ZooError,
)
from wslgraph.graph import ParamGraph, collate, to_networkx
from wslgraph.nn.backend import get_scatter_backend, set_scatter_backend
from wslgraph.runtime import tune_cpu_allocator
from wslgraph.version import __version__

__all__ = [
    "ParamGraph",
    "GraphTemplate",
    "to_graph",
    "to_state_dict",
    "save_graph",
    "load_graph",
    "to_networkx",
    "collate",
    "set_scatter_backend",
    "get_scatter_backend",
    "tune_cpu_allocator",
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
    "DataNotFoundError",
    "FactoryError",
    "ZooError",
    "CorruptShardError",
    "ManifestError",
    "UnsafeFileError",
    "__version__",
]
