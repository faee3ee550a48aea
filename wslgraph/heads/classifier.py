"""A light classifier on embeddings, trained directly or through the IFT (implicit gradients into the head)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from wslgraph.convert.template import column_moments
from wslgraph.heads.hypernetwork import HypernetworkHead, reconstruction_loss
from wslgraph.heads.ift import implicit_gradients, solve_latents

__all__ = ["EmbeddingClassifier", "fit_embedding_classifier", "implicit_training_step"]


class EmbeddingClassifier(nn.Module):
    """Standardised embeddings into a one-hidden-layer MLP (``hidden=0``: logistic regression)."""

    def __init__(self, latent_dim: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("std", torch.ones(latent_dim))
        self.mlp = (nn.Linear(latent_dim, num_classes) if hidden == 0 else
                    nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)))

    def fit_statistics(self, z: Tensor) -> EmbeddingClassifier:
        with torch.no_grad():
            mean, std = column_moments(z)
            self.mean.copy_(mean)
            self.std.copy_(std)
        return self

    def forward(self, z: Tensor) -> Tensor:
        return self.mlp((z - self.mean) / self.std)


def fit_embedding_classifier(z: Tensor, labels: Tensor, num_classes: int | None = None, hidden: int = 64,
                             steps: int = 500, lr: float = 1e-2, weight_decay: float = 1e-4,
                             seed: int = 0) -> EmbeddingClassifier:
    """Train an :class:`EmbeddingClassifier` on fixed embeddings (full batch, AdamW)."""
    torch.manual_seed(seed)
    classifier = EmbeddingClassifier(z.shape[1], num_classes or int(labels.max()) + 1, hidden).fit_statistics(z)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = F.cross_entropy(classifier(z.detach()), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return classifier.eval()


def implicit_training_step(head: HypernetworkHead, classifier: nn.Module, z_init: Tensor, targets: Tensor,
                           coords: Tensor, labels: Tensor, optimizer: torch.optim.Optimizer,
                           latent_reg: float = 1e-3, newton_steps: int = 10, solver: str = "direct",
                           reconstruction_weight: float = 1.0) -> tuple[Tensor, float]:
    r"""One step of training the head (and classifier) on classification *through* the fitted embeddings.

    Embeddings are re-solved to :math:`z^*(X, v)` (Newton, no graph), the
    classification loss :math:`L(z^*)` is differentiated w.r.t. the head's
    parameters by the IFT (:func:`implicit_gradients`), plus the usual
    reconstruction gradient (weight ``reconstruction_weight``) so the head keeps
    decoding. Returns the new embeddings and the classification loss.
    """
    z_star = solve_latents(head, targets, coords, z_init, latent_reg, newton_steps)
    z = z_star.clone().requires_grad_(True)
    loss = F.cross_entropy(classifier(z), labels)
    optimizer.zero_grad()
    grad_z = torch.autograd.grad(loss, z, retain_graph=True)[0]
    loss.backward()  # the classifier's own gradients
    through = implicit_gradients(head, z_star, targets, coords, grad_z, latent_reg, solver)
    recon = reconstruction_loss(head, z_star, targets, coords, latent_reg).mean() * reconstruction_weight
    recon_grads = torch.autograd.grad(recon, list(head.parameters()), allow_unused=True)
    for parameter, implicit, direct in zip(head.parameters(), through, recon_grads):
        total = implicit if direct is None else implicit + direct
        parameter.grad = total if parameter.grad is None else parameter.grad + total
    optimizer.step()
    return z_star, float(loss.detach())
