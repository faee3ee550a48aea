r"""A shared hypernetwork from per-instance embeddings to INR weights, and an auto-decoder around it.

:class:`HypernetworkHead` is :math:`\phi(v, z)`: an embedding :math:`z \in
\mathbb{R}^l` to the full flat weight vector of a target INR architecture given
by a :class:`~wslgraph.GraphTemplate` (``template.batch`` turns the output into
parameter graphs, ``template.unflatten`` into a state dict). Two output
parameterisations:

* ``"full"``: an MLP maps ``z`` to all ``P`` weights. Its last layer starts at
  a SIREN initialisation (bias) plus a small ``z``-dependent part, so
  generated weights start with SIREN statistics.
* ``"shift"``: a shared base INR (SIREN-initialised parameters) whose hidden
  biases are shifted by a linear map of ``z`` (shift modulations, as in
  functa). It is much cheaper: the output size is the number of hidden
  neurons.

:func:`inr_forward` evaluates a batch of generated weight vectors on
coordinates in one batched program. :class:`AutoDecoder` trains an
embedding table jointly with the head on pixel reconstruction, and fits
embeddings of new images with the head frozen.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ShapeMismatchError
from wslgraph.weightspace.functional import INRArchitecture, inr_forward, pixel_grid

__all__ = ["INRArchitecture", "inr_forward", "HypernetworkHead", "AutoDecoder", "reconstruction_loss",
           "image_targets"]


class HypernetworkHead(nn.Module):
    r"""The shared hypernetwork :math:`\phi(v, z)`: embeddings ``[B, l]`` to INR weights ``[B, P]``.

    Args:
        template: The target INR architecture (an MLP; SIREN, ReLU or tanh layers).
        latent_dim: ``l``, the embedding size (>= 1).
        mode: ``"full"`` or ``"shift"`` (see the module docstring; default: ``"full"``).
        hidden: Width of the full-mode MLP (default: ``256``).
        num_layers: Its hidden layers (default: ``2``).
        output_scale: Std of the ``z``-dependent part of the weights at initialisation,
            relative to each layer's SIREN bound (default: ``0.1``).
        seed: Seed of the SIREN initialisation it starts from.
        output_offset: Constant added to the INR's output (DWS INRs: ``0.5``).
        activation: Activation of the full-mode MLP (default: ``nn.SiLU``). The IFT
            needs a loss twice continuously differentiable in ``z``; with ReLU it
            is only piecewise smooth, its Hessian ignores the kinks and Newton
            refinement stalls at them.
        loss: What :func:`reconstruction_loss` compares: ``"mse"`` (pixel values,
            signed distances) or ``"bce"`` (the INR outputs occupancy logits; binary
            cross-entropy against occupancies in ``[0, 1]``, as 3D shape INRs are fitted).
    """

    def __init__(self, template: GraphTemplate, latent_dim: int, mode: str = "full", hidden: int = 256,
                 num_layers: int = 2, output_scale: float = 0.1, seed: int = 0, output_offset: float = 0.0,
                 activation: type[nn.Module] = nn.SiLU, loss: str = "mse") -> None:
        super().__init__()
        if loss not in ("mse", "bce"):
            raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")
        self.loss = loss
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        if mode not in ("full", "shift"):
            raise ValueError(f"mode must be 'full' or 'shift', got {mode!r}")
        self.architecture = INRArchitecture.from_template(template)
        self.template, self.latent_dim, self.mode = template, latent_dim, mode
        self.output_offset = output_offset
        base = self.architecture.siren_init(torch.Generator().manual_seed(seed))
        if mode == "full":
            widths = [latent_dim] + [hidden] * num_layers
            layers: list[nn.Module] = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(a, b), activation()]
            self.trunk = nn.Sequential(*layers)
            self.out = nn.Linear(widths[-1], template.num_params)
            with torch.no_grad():
                self.out.bias.copy_(base)
                # per-parameter scale: a fraction of the magnitude of its layer's SIREN initialisation
                scale = self._layer_scale(base) * output_scale * math.sqrt(3.0 / widths[-1])
                self.out.weight.normal_(generator=torch.Generator().manual_seed(seed + 1)).mul_(scale.unsqueeze(1))
        else:
            self.base = nn.Parameter(base)
            hidden_sizes = self.architecture.sizes[1:-1]
            self.shift = nn.Linear(latent_dim, sum(hidden_sizes))
            with torch.no_grad():
                self.shift.weight.normal_(0, output_scale / math.sqrt(latent_dim),
                                          generator=torch.Generator().manual_seed(seed + 1))
                self.shift.bias.zero_()
            index = torch.cat([torch.arange(offset, offset + numel)
                               for offset, numel in self.architecture.spec.bias_slices[:-1]])
            self.register_buffer("shift_index", index)

    def _layer_scale(self, base: Tensor) -> Tensor:
        """Per parameter: the std of its layer tensor in ``base`` (weights and biases separately)."""
        spec = self.architecture.spec
        scale = torch.empty_like(base)
        for offset, numel in (*spec.weight_slices, *spec.bias_slices):
            block = base[offset:offset + numel]
            scale[offset:offset + numel] = block.std() if numel > 1 else block.abs().clamp(min=1e-3)
        return scale

    def forward(self, z: Tensor) -> Tensor:
        """INR weights ``[B, P]`` (the template's flatten order) for embeddings ``[B, l]``."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ShapeMismatchError(f"embeddings must be [B, {self.latent_dim}], got {tuple(z.shape)}")
        if self.mode == "full":
            return self.out(self.trunk(z))
        params = self.base.expand(z.shape[0], -1)
        return params.index_add(1, self.shift_index, self.shift(z))

    def render(self, z: Tensor, coords: Tensor) -> Tensor:
        """The generated INRs evaluated at ``coords``: ``[B, points, out]``."""
        return inr_forward(self(z), coords, self.architecture, self.output_offset)

    def extra_repr(self) -> str:
        return (f"latent_dim={self.latent_dim}, mode={self.mode!r}, loss={self.loss!r}, "
                f"inr_params={self.template.num_params}")


def reconstruction_loss(head: HypernetworkHead, z: Tensor, targets: Tensor, coords: Tensor,
                        latent_reg: float = 0.0) -> Tensor:
    r"""Per-instance loss :math:`\ell(z, X) = \mathrm{mean}\,(f_{\phi(z)}(x) - X)^2 + \lambda \|z\|^2`: ``[B]``
    (with ``head.loss == "bce"``, the mean binary cross-entropy of the outputs as logits instead of the squares).

    ``targets`` is ``[B, points, out]`` (values at ``coords``: ``[points, in]``, shared, or ``[B, points, in]``).
    """
    outputs = head.render(z, coords)
    if head.loss == "bce":
        loss = nn.functional.binary_cross_entropy_with_logits(outputs, targets, reduction="none").mean(dim=(1, 2))
    else:
        loss = (outputs - targets).square().mean(dim=(1, 2))
    return loss + latent_reg * z.square().sum(1) if latent_reg else loss


def image_targets(images: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel coordinates ``[H * W, 2]`` and targets ``[N, H * W, C]`` of images ``[N, C, H, W]``."""
    if images.dim() != 4:
        raise ShapeMismatchError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    count, channels, height, width = images.shape
    return (pixel_grid(height, width, images.device).to(images.dtype),
            images.flatten(2).transpose(1, 2).contiguous())


class AutoDecoder(nn.Module):
    """Per-instance embeddings (a table) trained jointly with a :class:`HypernetworkHead` on reconstruction.

    Args:
        head: The hypernetwork.
        num_instances: Rows of the embedding table (training images).
        init_std: Std of the initial embeddings (default: ``0.01``).
        latent_reg: Weight of ``||z||^2`` in the loss (default: ``1e-4``).
    """

    def __init__(self, head: HypernetworkHead, num_instances: int, init_std: float = 0.01,
                 latent_reg: float = 1e-4) -> None:
        super().__init__()
        self.head, self.latent_reg = head, latent_reg
        self.embeddings = nn.Embedding(num_instances, head.latent_dim)
        nn.init.normal_(self.embeddings.weight, std=init_std)

    def _check(self, images: Tensor) -> tuple[Tensor, Tensor]:
        dtype = next(self.head.parameters()).dtype
        coords, targets = image_targets(images.to(dtype) if images.is_floating_point() else images)
        out = self.head.architecture.sizes[-1]
        if targets.shape[-1] != out or coords.shape[-1] != self.head.architecture.sizes[0]:
            raise ShapeMismatchError(f"images with {targets.shape[-1]} channels do not fit INRs with "
                                     f"{self.head.architecture.sizes[0]} inputs and {out} outputs")
        return coords, targets

    def fit(self, images: Tensor, steps: int = 500, lr: float = 1e-3, batch_size: int = 64,
            generator: torch.Generator | None = None) -> list[float]:
        """Train embeddings and head jointly on ``images`` (row ``i`` is instance ``i``); returns losses."""
        coords, targets = self._check(images)
        return self.fit_points(coords, targets, steps, lr, batch_size, generator)

    def fit_points(self, coords: Tensor, targets: Tensor, steps: int = 500, lr: float = 1e-3, batch_size: int = 64,
                   generator: torch.Generator | None = None) -> list[float]:
        """:meth:`fit` on values at points: ``targets`` ``[N, points, out]`` at ``coords`` ``[points, in]`` (shared)
        or ``[N, points, in]`` (each instance its own, e.g. points around each 3D shape's surface)."""
        self._check_points(coords, targets)
        if targets.shape[0] != self.embeddings.num_embeddings:
            raise ShapeMismatchError(f"{targets.shape[0]} instances for {self.embeddings.num_embeddings} embeddings")
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            rows = torch.randperm(targets.shape[0], generator=generator)[:batch_size]
            loss = reconstruction_loss(self.head, self.embeddings.weight[rows], targets[rows],
                                       coords[rows] if coords.dim() == 3 else coords, self.latent_reg).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        return losses

    def infer(self, images: Tensor, steps: int = 300, lr: float = 1e-2, init: Tensor | None = None) -> Tensor:
        """Embeddings of new images with the head frozen (all images optimised together, each on its own loss)."""
        coords, targets = self._check(images)
        return self.infer_points(coords, targets, steps, lr, init)

    def infer_points(self, coords: Tensor, targets: Tensor, steps: int = 300, lr: float = 1e-2,
                     init: Tensor | None = None) -> Tensor:
        """:meth:`infer` on values at points (shapes as in :meth:`fit_points`)."""
        self._check_points(coords, targets)
        z = (init.clone() if init is not None else targets.new_zeros(targets.shape[0], self.head.latent_dim)
             ).requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        frozen = [p.requires_grad for p in self.head.parameters()]
        self.head.requires_grad_(False)
        try:
            for _ in range(steps):
                loss = reconstruction_loss(self.head, z, targets, coords, self.latent_reg).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        finally:
            for p, flag in zip(self.head.parameters(), frozen):
                p.requires_grad_(flag)
        return z.detach()

    def _check_points(self, coords: Tensor, targets: Tensor) -> None:
        sizes = self.head.architecture.sizes
        per_instance = coords.dim() == 3 and coords.shape[0] == targets.shape[0]
        if (targets.dim() != 3 or targets.shape[-1] != sizes[-1] or coords.shape[-1] != sizes[0]
                or coords.dim() not in (2, 3) or (coords.dim() == 3 and not per_instance)
                or coords.shape[-2] != targets.shape[1]):
            raise ShapeMismatchError(f"targets must be [N, points, {sizes[-1]}] at coords [points, {sizes[0]}] or "
                                     f"[N, points, {sizes[0]}]; got targets {tuple(targets.shape)}, coords "
                                     f"{tuple(coords.shape)}")
