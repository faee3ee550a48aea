"""The package version (its own module, so that modules inside wslgraph never import the package top)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
