"""Heads on top of weight-space representations: the IFT hypernetwork head (auto-decoder and encoder-decoder)."""

from wslgraph.heads.autoencoder import LatentEditor, WeightSpaceAutoencoder, dilate
from wslgraph.heads.classifier import EmbeddingClassifier, fit_embedding_classifier, implicit_training_step
from wslgraph.heads.hypernetwork import (
    AutoDecoder,
    HypernetworkHead,
    INRArchitecture,
    image_targets,
    inr_forward,
    reconstruction_loss,
)
from wslgraph.heads.ift import (
    conjugate_gradient,
    ift_report,
    implicit_gradients,
    latent_hessians,
    latent_jacobian,
    solve_latents,
    spectrum_figure,
    spectrum_summary,
)

__all__ = [
    "HypernetworkHead", "AutoDecoder", "INRArchitecture", "inr_forward", "reconstruction_loss", "image_targets",
    "latent_hessians", "spectrum_summary", "solve_latents", "latent_jacobian", "implicit_gradients",
    "conjugate_gradient", "ift_report", "spectrum_figure", "WeightSpaceAutoencoder", "LatentEditor", "dilate",
    "EmbeddingClassifier", "fit_embedding_classifier", "implicit_training_step",
]
