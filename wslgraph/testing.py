"""Kept for older imports: :func:`permute_hidden` lives in :mod:`wslgraph.weightspace` (the symmetries)."""

from wslgraph.weightspace.symmetry import permute_hidden

__all__ = ["permute_hidden"]
