"""The parameter-graph data structure, architecture templates and batching."""

from wslgraph.graph.layout import EdgeBlock, GraphLayout, NodeGroup, NodeParam, StateEntry
from wslgraph.graph.networkx import to_networkx
from wslgraph.graph.param_graph import ParamGraph
from wslgraph.graph.transforms import PadEdgeFeatures, collate, common_kernel_grid
from wslgraph.graph.vocab import NUM_NODE_FEATURES, Activation, EdgeType, NodeFeature, NodeType

__all__ = [
    "ParamGraph",
    "GraphLayout",
    "NodeGroup",
    "EdgeBlock",
    "NodeParam",
    "StateEntry",
    "PadEdgeFeatures",
    "collate",
    "common_kernel_grid",
    "to_networkx",
    "NodeType",
    "EdgeType",
    "Activation",
    "NodeFeature",
    "NUM_NODE_FEATURES",
]
