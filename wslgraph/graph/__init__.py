"""The parameter-graph data structure, its layout (with the block geometry and flat offsets), batching, and the
activation vocabulary with its table."""

from wslgraph.graph.activations import ACTIVATIONS, ActivationSpec, apply_activation
from wslgraph.graph.layout import EdgeBlock, GraphLayout, NodeGroup, NodeParam, StateEntry, common_layout
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
    "common_layout",
    "PadEdgeFeatures",
    "collate",
    "common_kernel_grid",
    "to_networkx",
    "NodeType",
    "EdgeType",
    "Activation",
    "ACTIVATIONS",
    "ActivationSpec",
    "apply_activation",
    "NodeFeature",
    "NUM_NODE_FEATURES",
]
