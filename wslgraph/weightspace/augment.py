"""Weight-space augmentations: random, function-preserving (or nearly so) maps of flat parameter rows.

They act on flat parameter rows ``[B, P]`` (a zoo's storage order), so the same object serves single graphs and
whole template batches (:class:`~wslgraph.zoo.ZooDataset` applies them before building graphs). Each draws from
its own ``torch.Generator`` (seeded at construction; :meth:`Augmentation.reseed` restarts it), so a seeded
pipeline repeats. The symmetries they draw from are :mod:`wslgraph.weightspace.symmetry`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from wslgraph.errors import ShapeMismatchError, UnsupportedModuleError
from wslgraph.graph.layout import GraphLayout
from wslgraph.graph.vocab import NodeType
from wslgraph.weightspace.symmetry import hidden_permutations, permute_state_dict, sign_flip_groups

__all__ = ["Augmentation", "Compose", "RandomHiddenPermutation", "RandomSignFlip", "GaussianNoise", "WeightDropout",
           "INRAffine", "AUGMENT_PRESETS", "augmentation"]


class Augmentation:
    """A random, per-model map of flat parameter rows ``[B, P] -> [B, P]`` for one layout."""

    def __init__(self, layout: GraphLayout, seed: int = 0) -> None:
        self.layout = layout
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random draws from ``seed`` (the training loop does this every epoch, so a resumed run
        draws what an uninterrupted one draws)."""
        self.generator.manual_seed(seed)

    def __call__(self, params: Tensor) -> Tensor:
        if params.dim() != 2 or params.shape[1] != self.layout.num_params:
            raise ShapeMismatchError(f"{type(self).__name__} expects [B, {self.layout.num_params}] parameter rows, "
                                     f"got {tuple(params.shape)}")
        return self.apply(params)

    def apply(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Compose(Augmentation):
    """Apply augmentations in order."""

    def __init__(self, augmentations: Sequence[Augmentation]) -> None:
        self.augmentations = list(augmentations)

    def reseed(self, seed: int) -> None:
        for index, augmentation in enumerate(self.augmentations):
            augmentation.reseed(seed * 7919 + index)

    def __call__(self, params: Tensor) -> Tensor:
        for augmentation in self.augmentations:
            params = augmentation(params)
        return params

    def __repr__(self) -> str:
        return f"Compose({self.augmentations})"


class RandomHiddenPermutation(Augmentation):
    """Permute every model's hidden neurons at random (the function is unchanged).

    Uses :func:`wslgraph.weightspace.hidden_permutations`, so residual ties,
    GroupNorm groups and grouped convolutions are respected.
    """

    def apply(self, params: Tensor) -> Tensor:
        positions = torch.arange(self.layout.num_params)
        index_state = {e.key: positions[self.layout.span(e.key)].view(e.shape) for e in self.layout.state}
        rows = []
        for _ in range(params.shape[0]):
            permuted = permute_state_dict(self.layout, index_state, hidden_permutations(self.layout, self.generator))
            rows.append(torch.cat([permuted[e.key].reshape(-1) for e in self.layout.state]))
        return params.gather(1, torch.stack(rows).to(params.device))


class RandomSignFlip(Augmentation):
    """Flip the sign of random hidden neurons with an odd activation (the function is unchanged).

    For a neuron with an odd activation (sine, tanh), negating its incoming
    weights and bias negates its output, and negating its outgoing weights
    undoes that: the sign symmetry of SIRENs and tanh networks (ScaleGMN).
    Each eligible neuron of each model is flipped with probability ``p``.
    Eligible: hidden groups with a sine or tanh activation, fed and read by
    Linear or (ungrouped) convolution weights only, with no normalisation
    parameters or residual ties.

    Args:
        layout: The architecture.
        p: Probability of flipping each eligible neuron (default: ``0.5``).
        seed: Seed of the draws (default: ``0``).
    """

    def __init__(self, layout: GraphLayout, p: float = 0.5, seed: int = 0) -> None:
        super().__init__(layout, seed)
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p
        self._groups = sign_flip_groups(layout)
        if not self._groups:
            raise UnsupportedModuleError("RandomSignFlip needs hidden neurons with an odd activation (sine, tanh) "
                                         "between Linear or convolution layers; this architecture has none")

    def apply(self, params: Tensor) -> Tensor:
        out = params.clone()
        count = params.shape[0]
        for size, incoming, outgoing, biases in self._groups:
            flip = torch.rand(count, size, generator=self.generator) < self.p
            signs = (1 - 2 * flip.to(params.dtype)).to(params.device)  # -1 where flipped
            for key, shape in incoming:  # rows of the weights into the group
                block = out[:, self.layout.span(key)].view(count, *shape)
                block.mul_(signs.view(count, size, *[1] * (len(shape) - 1)))
            for key, shape in outgoing:  # columns of the weights out of the group
                block = out[:, self.layout.span(key)].view(count, *shape)
                block.mul_(signs.view(count, 1, size, *[1] * (len(shape) - 2)))
            for key in biases:
                out[:, self.layout.span(key)] *= signs
        return out

    def __repr__(self) -> str:
        return f"RandomSignFlip(p={self.p})"


class GaussianNoise(Augmentation):
    """Add fresh Gaussian noise to every parameter tensor, scaled by that tensor's std in each model.

    ``w + scale * std(w) * N(0, 1)``, a new draw per call, model and entry
    (the peers' "noise" was a constant shift ``w + 0.1 * std(w)``).
    """

    def __init__(self, layout: GraphLayout, scale: float = 0.1, seed: int = 0) -> None:
        super().__init__(layout, seed)
        self.scale = scale

    def apply(self, params: Tensor) -> Tensor:
        out = params.clone()
        for entry in self.layout.state:
            if not entry.dtype.is_floating_point or entry.numel < 2:
                continue
            block = out[:, self.layout.span(entry.key)]
            noise = torch.randn(block.shape, generator=self.generator).to(block)
            block.add_(noise * block.std(dim=1, keepdim=True) * self.scale)
        return out

    def __repr__(self) -> str:
        return f"GaussianNoise(scale={self.scale})"


class WeightDropout(Augmentation):
    """Zero each weight (edge parameter, not biases or norm parameters) with probability ``p``."""

    def __init__(self, layout: GraphLayout, p: float = 0.05, seed: int = 0) -> None:
        super().__init__(layout, seed)
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = p
        self._weight_keys = [b.key for b in layout.edge_blocks if b.key is not None]

    def apply(self, params: Tensor) -> Tensor:
        out = params.clone()
        for key in self._weight_keys:
            block = out[:, self.layout.span(key)]
            keep = torch.rand(block.shape, generator=self.generator) >= self.p
            block.mul_(keep.to(block))
        return out

    def __repr__(self) -> str:
        return f"WeightDropout(p={self.p})"


class INRAffine(Augmentation):
    """Rotate and translate the image an INR draws, by folding the map into its first layer.

    For input coordinates ``x`` (2-D), the new INR computes the old one at
    ``R x + t``: ``W1' = W1 R`` and ``b1' = b1 + W1 t``. Angles are uniform in
    ``[-max_angle, max_angle]`` (radians), translations uniform in
    ``[-max_shift, max_shift]`` per axis.
    """

    def __init__(self, layout: GraphLayout, max_angle: float = math.pi / 12, max_shift: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__(layout, seed)
        first = layout.edge_blocks[0]
        source = layout.groups[first.src]
        bias = [p for p in layout.node_params if p.group == first.dst and p.column == 0]
        if source.node_type != NodeType.INPUT or source.size != 2 or len(first.weight_shape) != 2 or not bias:
            raise UnsupportedModuleError("INRAffine needs an INR whose first layer is a Linear(2, n) with a bias")
        self.max_angle, self.max_shift = max_angle, max_shift
        self._weight, self._bias, self._out = first.key, bias[0].key, first.weight_shape[0]

    def apply(self, params: Tensor) -> Tensor:
        count = params.shape[0]
        angle = (torch.rand(count, generator=self.generator) * 2 - 1) * self.max_angle
        shift = (torch.rand(count, 2, generator=self.generator) * 2 - 1) * self.max_shift
        rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1),
                                torch.stack([angle.sin(), angle.cos()], -1)], -2).to(params)  # [B, 2, 2]
        out = params.clone()
        weight = params[:, self.layout.span(self._weight)].view(count, self._out, 2)
        out[:, self.layout.span(self._weight)] = torch.bmm(weight, rotation).reshape(count, -1)
        out[:, self.layout.span(self._bias)] += torch.bmm(weight, shift.to(params).unsqueeze(-1)).squeeze(-1)
        return out

    def __repr__(self) -> str:
        return f"INRAffine(max_angle={self.max_angle}, max_shift={self.max_shift})"


AUGMENT_PRESETS = ("auto", "none", "permutation", "inr")


def augmentation(preset: str, layout: GraphLayout, seed: int = 0) -> Augmentation | None:
    """A named training-time augmentation for ``layout`` (``None`` for ``"none"``).

    - ``"permutation"``: :class:`RandomHiddenPermutation` (any architecture).
    - ``"inr"``: the INR classification recipe of Neural Graphs (Kofinas et al., 2024), with real noise:
      hidden permutations, sign flips of odd-activation neurons (:class:`RandomSignFlip`), a rotation
      within ±45° and translation within ±0.25 folded into the first layer (:class:`INRAffine`), weight
      dropout with p = 0.01 and Gaussian noise of 0.01 of each tensor's std. Sign flips and the affine map
      are left out where the architecture has no odd activation or no 2-D input.

    ``"auto"`` is resolved by the caller (the training loop: ``"inr"`` for classification on INR zoos, else
    ``"none"``).
    """
    if preset not in AUGMENT_PRESETS or preset == "auto":
        raise ValueError(f"augmentation preset must be one of {AUGMENT_PRESETS[1:]}, got {preset!r}")
    if preset == "none":
        return None
    parts: list[Augmentation] = [RandomHiddenPermutation(layout, seed)]
    if preset == "inr":
        for build in (lambda: RandomSignFlip(layout, seed=seed + 1),
                      lambda: INRAffine(layout, max_angle=math.pi / 4, max_shift=0.25, seed=seed + 2)):
            try:
                parts.append(build())
            except UnsupportedModuleError:  # no odd activation / no 2-D input: that part does not apply
                pass
        parts += [WeightDropout(layout, p=0.01, seed=seed + 3), GaussianNoise(layout, scale=0.01, seed=seed + 4)]
    return parts[0] if len(parts) == 1 else Compose(parts)
