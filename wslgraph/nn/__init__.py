"""The encoders (GNNEncoder, TransformerEncoder) and their parts: the message-passing layer and its dense fused
path, relational attention, their sign-equivariant forms, windows of layers for large networks, positional
encodings, probe features, readouts, graph batch norm, scatter backends."""

from wslgraph.layers import Sine
from wslgraph.nn.backend import WITH_TORCH_SCATTER, get_scatter_backend, scatter, set_scatter_backend
from wslgraph.nn.conv import AGGREGATORS, SCALERS, EdgeUpdateConv
from wslgraph.nn.dense import DensePlan, dense_plan
from wslgraph.nn.encoders import GNNEncoder, TransformerEncoder
from wslgraph.nn.encodings import EdgeEncoder, FourierFeatures, NodeEncoder, ParamNormalizer, PositionalEmbedding
from wslgraph.nn.norm import GraphBatchNorm, recompute_batch_norm
from wslgraph.nn.probe import ProbeFeatures
from wslgraph.nn.readout import InvariantReadout
from wslgraph.nn.symmetric import SYMMETRIES, SignEquivariantConv, SignRelationalAttention
from wslgraph.nn.transformer import RelationalAttention
from wslgraph.nn.windowed import WindowedEncoder

__all__ = [
    "GNNEncoder",
    "TransformerEncoder",
    "WindowedEncoder",
    "RelationalAttention",
    "SignEquivariantConv",
    "SignRelationalAttention",
    "SYMMETRIES",
    "ProbeFeatures",
    "EdgeUpdateConv",
    "InvariantReadout",
    "GraphBatchNorm",
    "recompute_batch_norm",
    "FourierFeatures",
    "PositionalEmbedding",
    "ParamNormalizer",
    "NodeEncoder",
    "EdgeEncoder",
    "DensePlan",
    "dense_plan",
    "scatter",
    "set_scatter_backend",
    "get_scatter_backend",
    "WITH_TORCH_SCATTER",
    "AGGREGATORS",
    "SCALERS",
    "Sine",
]
