"""The peers in wslgraph's harness: DWSNet, NFN (NP and HNP), an MLP on flat weights, StatNN and SANE's windowed
token transformer."""

from wslgraph.baselines.equivariant import TensorSlot, WeightSpaceLinear, invariant_pool, weight_space_slots
from wslgraph.baselines.models import BASELINES as _PEERS
from wslgraph.baselines.models import (
    NFN,
    DWSNet,
    EquivariantStack,
    FlatMLP,
    StatNN,
    WeightSpaceModel,
    fit_statnn_regressor,
    statnn_features,
)
from wslgraph.baselines.sane import SANE

BASELINES = {**_PEERS, "sane": SANE}

__all__ = [
    "TensorSlot", "weight_space_slots", "WeightSpaceLinear", "invariant_pool",
    "WeightSpaceModel", "EquivariantStack", "DWSNet", "NFN", "FlatMLP", "StatNN", "statnn_features",
    "fit_statnn_regressor", "SANE", "BASELINES",
]
