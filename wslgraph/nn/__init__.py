"""Neural-network building blocks for weight-space learning."""

from wslgraph.nn.sine import Sine

__all__ = ["Sine"]
