"""Small integer vocabularies stored in a :class:`~wslgraph.ParamGraph`."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["NodeType", "EdgeType", "IDENTITY_EDGES", "TIE_EDGES", "ATTENTION_EDGES", "Activation", "NodeFeature",
           "NUM_NODE_FEATURES", "VOCAB_CAPACITY"]


class NodeType(IntEnum):
    """Role of a node: input and output nodes are ordered, hidden ones are not. Constant inputs (a transformer's
    token positions and class token) are input nodes too."""

    INPUT = 0
    HIDDEN = 1
    OUTPUT = 2


class EdgeType(IntEnum):
    """Kind of parameter an edge carries."""

    LINEAR = 0  #: one entry of a ``Linear`` weight matrix
    CONV = 1  #: the kernel of one (in channel, out channel) pair of a ``ConvNd``
    FLATTEN_LINEAR = 2  #: one channel's ``H*W`` block of a ``Linear`` after ``Flatten``
    RESIDUAL = 3  #: identity edge ``c -> c`` of a residual addition or a concatenation (no parameter)
    GATE = 4  #: identity edge ``c -> c`` into a product node: its value is the product of its gate inputs
    ATTENTION_QK = 5  #: identity edge from query dim ``i`` to key dim ``i`` of the same attention layer
    ATTENTION_HEAD = 6  #: identity edge from a key dim to its head's node, and from a head's node to its outputs
    ATTENTION_VALUE = 7  #: identity edge from value dim ``c`` to attention output ``c``
    EMBEDDING = 8  #: one entry of a learned tensor added to the tokens (positional embedding, class token)


TIE_EDGES = (EdgeType.RESIDUAL, EdgeType.GATE)  #: identity edges that tie two groups' channels (or copy them)
ATTENTION_EDGES = (EdgeType.ATTENTION_QK, EdgeType.ATTENTION_HEAD, EdgeType.ATTENTION_VALUE)  #: attention structure
IDENTITY_EDGES = TIE_EDGES + ATTENTION_EDGES  #: edge types that carry no parameter (feature 1)
VOCAB_CAPACITY = 32  #: rows of the encoders' edge-type and activation embeddings (room for new ids)


class Activation(IntEnum):
    """Activation applied to a node's value (after its bias and normalization)."""

    IDENTITY = 0
    RELU = 1
    LEAKY_RELU = 2
    ELU = 3
    GELU = 4
    SILU = 5
    TANH = 6
    SIGMOID = 7
    SOFTPLUS = 8
    SINE = 9
    OTHER = 10  #: a registered activation with no id of its own
    RELU6 = 11
    HARDSWISH = 12
    HARDSIGMOID = 13
    HARDTANH = 14  #: symmetric, ``clamp(x, -m, m)``; ``m`` is the parameter
    MISH = 15
    PRELU = 16  #: the slope of each neuron is its ``ACTIVATION_PARAM`` node feature


class NodeFeature(IntEnum):
    """Columns of ``ParamGraph.x``; ``x_mask`` says which are present per node."""

    BIAS = 0
    NORM_WEIGHT = 1
    NORM_BIAS = 2
    RUNNING_MEAN = 3
    RUNNING_VAR = 4
    ACTIVATION_PARAM = 5  #: a learned per-neuron activation parameter (PReLU's slope)
    LAYER_SCALE = 6  #: a learned per-channel factor applied last (ConvNeXt's layer scale)


NUM_NODE_FEATURES = len(NodeFeature)
