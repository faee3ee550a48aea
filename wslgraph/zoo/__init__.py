"""Model zoos: built-in architectures (data sources and fitting come later)."""

from wslgraph.zoo.architectures import BasicBlock, siren, small_cnn, tiny_resnet

__all__ = ["siren", "small_cnn", "BasicBlock", "tiny_resnet"]
