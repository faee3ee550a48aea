"""The weight-space core: what every model of weights shares, below the encoders, the peers and the heads.

* :mod:`~wslgraph.weightspace.views`: the per-layer view of a chain network's flat parameters
  (:class:`WeightSpaceSpec`, :func:`to_weight_space` / :func:`from_weight_space`) and the flat rows of a batch
  (:func:`batch_params`, which reads the rows a :class:`~wslgraph.zoo.ZooDataset` attached), and their weight
  statistics s(W) (:func:`statnn_features`).
* :mod:`~wslgraph.weightspace.symmetry`: the symmetries of an architecture (hidden-neuron permutations, sign
  flips of odd activations).
* :mod:`~wslgraph.weightspace.augment`: training-time augmentations drawn from them (plus noise, dropout, and the
  INR's input affine map), on flat parameter rows.
* :mod:`~wslgraph.weightspace.functional`: many networks of one architecture evaluated at once from their flat
  rows (:class:`BatchedModule`, any architecture, on :mod:`torch.func`; :func:`inr_forward`, its fast MLP-INR
  case), the pixel grid and the SIREN initialisation.

The flat parameter layout itself (offsets, block geometry) is the :class:`~wslgraph.graph.GraphLayout`'s.
"""

from wslgraph.weightspace.functional import BatchedModule, INRArchitecture, inr_forward, pixel_grid, siren_layer_init
from wslgraph.weightspace.symmetry import hidden_permutations, permute_hidden, permute_state_dict, sign_flip_groups
from wslgraph.weightspace.views import (
    WeightSpaceSpec,
    attach_params,
    batch_params,
    from_weight_space,
    statnn_features,
    to_weight_space,
    weight_space_spec,
)

__all__ = ["WeightSpaceSpec", "weight_space_spec", "to_weight_space", "from_weight_space", "batch_params",
           "attach_params", "statnn_features", "hidden_permutations", "permute_state_dict", "permute_hidden",
           "sign_flip_groups", "BatchedModule", "INRArchitecture", "inr_forward", "pixel_grid", "siren_layer_init"]
