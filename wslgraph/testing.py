"""Helpers for tests and examples: a function-preserving copy of a model with its hidden neurons permuted.

The symmetry primitives themselves live in :mod:`wslgraph.weightspace.symmetry`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from wslgraph.convert.trace import trace
from wslgraph.weightspace.symmetry import hidden_permutations, permute_state_dict

__all__ = ["permute_hidden"]


def permute_hidden(module: nn.Module, generator: torch.Generator | None = None, *,
                   input_shape: Sequence[int] | None = None) -> nn.Module:
    """A functionally equivalent copy of ``module`` with hidden neurons permuted.

    Hidden neurons/channels are permuted at random (see
    :func:`hidden_permutations` for the ties kept: residual additions,
    normalization layers, grouped convolutions). Inputs and outputs keep
    their order, so the copy computes the same function.

    Args:
        module: A model :func:`~wslgraph.to_graph` can convert.
        generator: Source of randomness (default: torch's global one).
        input_shape: As for :func:`~wslgraph.to_graph`.
    """
    layout, state_dict = trace(module, input_shape)
    permuted = copy.deepcopy(module)
    permuted.load_state_dict(permute_state_dict(layout, state_dict, hidden_permutations(layout, generator)))
    return permuted
