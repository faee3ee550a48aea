"""Initialisation helpers shared by wslgraph's models."""

from __future__ import annotations

from torch import nn

__all__ = ["reset_children"]


def reset_children(module: nn.Module) -> None:
    """Reset every submodule of ``module`` once, each by its own ``reset_parameters``.

    A child with ``reset_parameters`` is reset by it and not descended into:
    its own reset owns its children's initialisation (e.g. an encoder that
    draws its embeddings with std 0.02). Containers without one (``nn.Sequential``,
    ``nn.ModuleList``) are descended into. Calling ``reset_parameters`` on
    every module of ``module.modules()`` instead resets parents first and
    then their children with the children's defaults, which undoes the
    parents' choices (it reset the transformer's embeddings to N(0, 1)).
    """
    for child in module.children():
        reset = getattr(child, "reset_parameters", None)
        if callable(reset):
            reset()
        else:
            reset_children(child)
