"""Model building blocks the converter knows natively: the sine activation of SIRENs.

On the ground floor (nothing but torch), so that the converter, the zoos' architectures and the encoders can all
use it; ``wslgraph.nn.Sine`` is the same class.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Sine"]


class Sine(nn.Module):
    r"""Sine activation :math:`\sin(\omega_0 x)` (Sitzmann et al., 2020).

    Args:
        w0: Frequency :math:`\omega_0` (default: ``30.0``).
    """

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"
