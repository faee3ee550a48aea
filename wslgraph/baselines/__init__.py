"""The peers in wslgraph's harness: DWSNet, NFN (NP and HNP), an MLP on flat weights and StatNN."""

from wslgraph.baselines.equivariant import TensorSlot, WeightSpaceLinear, invariant_pool, weight_space_slots
from wslgraph.baselines.models import (
    BASELINES,
    NFN,
    DWSNet,
    EquivariantStack,
    FlatMLP,
    StatNN,
    WeightSpaceModel,
    fit_statnn_regressor,
    statnn_features,
)

__all__ = [
    "TensorSlot", "weight_space_slots", "WeightSpaceLinear", "invariant_pool",
    "WeightSpaceModel", "EquivariantStack", "DWSNet", "NFN", "FlatMLP", "StatNN", "statnn_features",
    "fit_statnn_regressor", "BASELINES",
]
