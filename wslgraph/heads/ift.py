r"""Implicit-function-theorem diagnostics and implicit gradients for auto-decoded embeddings.

For an image :math:`X` and the head's parameters :math:`v`, the fitted
embedding is :math:`z^*(X, v) = \arg\min_z \ell(z, X; v)` (:func:`~wslgraph.heads.
reconstruction_loss`). By the IFT, :math:`z^*` is a locally well-defined,
differentiable function of :math:`X` (and :math:`v`) where the Hessian
:math:`H = \nabla^2_z \ell` is invertible, with

.. math::
    \frac{\partial z^*}{\partial X} = -H^{-1} \nabla_X \nabla_z \ell, \qquad
    \frac{d L(z^*)}{d v} = -\big(H^{-1} \nabla_z L\big)^\top \nabla_v \nabla_z \ell .

Everything here is exact (``torch.func`` Hessians and Jacobians, batched with
``vmap``); nothing is unrolled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.func import grad, jacrev, vmap

from wslgraph.heads.hypernetwork import HypernetworkHead, reconstruction_loss
from wslgraph.io import atomic_write_json
from wslgraph.plotting import line_plot, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["latent_hessians", "spectrum_summary", "solve_latents", "latent_jacobian", "implicit_gradients",
           "conjugate_gradient", "ift_report", "spectrum_figure"]


def _single_loss(head: HypernetworkHead, latent_reg: float):
    def loss(z: Tensor, target: Tensor, coords: Tensor) -> Tensor:
        return reconstruction_loss(head, z.unsqueeze(0), target.unsqueeze(0), coords, latent_reg)[0]
    return loss


def _per_instance(function, coords: Tensor):
    """``vmap`` over ``(z, targets, coords)``: coordinates ``[B, points, in]`` are mapped, shared ones ``[points,
    in]`` are not."""
    return vmap(function, in_dims=(0, 0, 0 if coords.dim() == 3 else None))


def latent_hessians(head: HypernetworkHead, z: Tensor, targets: Tensor, coords: Tensor,
                    latent_reg: float = 0.0) -> Tensor:
    r"""Exact :math:`\nabla^2_z \ell` per instance: ``[B, l, l]`` (``targets`` ``[B, points, out]``).

    Reverse-over-reverse (``jacrev(grad)``), which every activation's double
    backward supports (forward-mode AD is missing for some, e.g. SiLU).
    """
    return _per_instance(jacrev(grad(_single_loss(head, latent_reg))), coords)(z, targets, coords)


def spectrum_summary(hessians: Tensor, rtol: float | None = None) -> dict:
    """Eigenvalues, numerical rank, condition number and positive definiteness per Hessian, and over the set.

    The rank counts eigenvalues above ``rtol * max |eigenvalue|`` (default:
    ``l * eps`` of the dtype, as ``numpy.linalg.matrix_rank``); the condition
    number is ``max |eig| / min |eig|`` (``inf`` if singular).
    """
    hessians = hessians.detach()
    eigenvalues = torch.linalg.eigvalsh(hessians)  # ascending, [B, l]
    size = hessians.shape[-1]
    rtol = rtol if rtol is not None else size * torch.finfo(hessians.dtype).eps
    magnitude = eigenvalues.abs()
    largest = magnitude.max(dim=-1).values
    rank = (magnitude > rtol * largest.unsqueeze(-1)).sum(-1)
    smallest = magnitude.min(dim=-1).values
    condition = torch.where(rank == size, largest / smallest, torch.full_like(largest, math.inf))
    full_rank = rank == size
    positive = eigenvalues[:, 0] > rtol * largest
    return {"latent_dim": size, "instances": hessians.shape[0], "eigenvalues": eigenvalues.tolist(),
            "rank": rank.tolist(), "condition_number": condition.tolist(),
            "fraction_full_rank": float(full_rank.float().mean()),
            "fraction_positive_definite": float(positive.float().mean()),
            "median_condition_number": float(condition.median()), "rtol": rtol}


def solve_latents(head: HypernetworkHead, targets: Tensor, coords: Tensor, z0: Tensor, latent_reg: float = 0.0,
                  newton_steps: int = 50, damping: float = 1e-8, tol: float = 1e-12) -> Tensor:
    """Refine embeddings to minima of their losses: Newton steps on exact Hessians with a line search.

    Used to reach :math:`\\nabla_z \\ell = 0` to working precision, as the IFT
    assumes (Adam leaves a residual gradient). Where a Hessian is not positive
    definite it is shifted by its most negative eigenvalue (Levenberg-Marquardt),
    so every step is a descent direction; a backtracking (Armijo) line search
    per instance keeps the loss decreasing where full Newton steps overshoot.
    Stops once every gradient norm is below ``tol``.
    """
    single = _single_loss(head, latent_reg)
    batched_gradient, batched_losses = _per_instance(grad(single), coords), _per_instance(single, coords)

    def gradient(z: Tensor, targets: Tensor) -> Tensor:
        return batched_gradient(z, targets, coords)

    def losses(z: Tensor, targets: Tensor) -> Tensor:
        return batched_losses(z, targets, coords)

    z = z0.detach().clone()
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    scales = 0.5 ** torch.arange(30, dtype=z.dtype, device=z.device)
    for _ in range(newton_steps):
        with torch.no_grad():
            g = gradient(z, targets)
            if float(g.norm(dim=1).max()) < tol:
                break
            h = latent_hessians(head, z, targets, coords, latent_reg)
            lowest = torch.linalg.eigvalsh(h)[:, 0]
            shift = torch.where(lowest > damping, torch.full_like(lowest, damping), damping - 2 * lowest)
            step = torch.linalg.solve(h + shift.view(-1, 1, 1) * eye, g.unsqueeze(-1)).squeeze(-1)
            current = losses(z, targets)
            slope = (g * step).sum(1)  # > 0: -step descends
            # within rounding of the optimum the loss cannot show a decrease: take the full Newton step there
            rounding = 64 * torch.finfo(z.dtype).eps * current.abs()
            chosen = torch.where(0.5 * slope <= rounding, torch.ones_like(current), torch.zeros_like(current))
            for scale in scales:  # largest step size with sufficient decrease, per instance
                trial = losses(z - scale * step, targets)
                ok = (chosen == 0) & (trial <= current - 1e-4 * scale * slope)
                chosen = torch.where(ok, scale, chosen)
                if bool((chosen > 0).all()):
                    break
            z = z - chosen.unsqueeze(1) * step
    return z.detach()


def latent_jacobian(head: HypernetworkHead, z_star: Tensor, targets: Tensor, coords: Tensor,
                    latent_reg: float = 0.0) -> Tensor:
    r""":math:`\partial z^* / \partial X = -H^{-1} \nabla_X \nabla_z \ell` per instance: ``[B, l, points, out]``."""
    loss = _single_loss(head, latent_reg)
    mixed = _per_instance(jacrev(grad(loss, argnums=0), argnums=1), coords)(z_star, targets, coords)  # [B,l,pts,out]
    h = latent_hessians(head, z_star, targets, coords, latent_reg)
    flat = mixed.reshape(*mixed.shape[:2], -1)
    return -torch.linalg.solve(h, flat).reshape(mixed.shape)


def conjugate_gradient(matvec, b: Tensor, iterations: int = 50, tol: float = 1e-10) -> Tensor:
    """Solve ``A x = b`` for symmetric positive definite ``A`` given as ``matvec`` (batched over rows of ``b``)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(-1, keepdim=True)
    for _ in range(iterations):
        ap = matvec(p)
        alpha = rs / (p * ap).sum(-1, keepdim=True).clamp(min=1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        new = (r * r).sum(-1, keepdim=True)
        if bool((new.sqrt() <= tol * b.norm(dim=-1, keepdim=True).clamp(min=1e-30)).all()):
            break
        p = r + new / rs.clamp(min=1e-30) * p
        rs = new
    return x


def implicit_gradients(head: HypernetworkHead, z_star: Tensor, targets: Tensor, coords: Tensor,
                       grad_z: Tensor, latent_reg: float = 0.0, solver: str = "direct") -> list[Tensor]:
    r"""Gradients of a downstream loss w.r.t. the head's parameters through :math:`z^*` (IFT, no unrolling).

    With ``grad_z`` :math:`= \partial L / \partial z^*` ``[B, l]``:
    :math:`w = H^{-1} \partial L / \partial z^*` (``solver="direct"``: exact
    Hessians and a solve; ``"cg"``: conjugate gradient on Hessian-vector
    products), then :math:`dL/dv = -\nabla_v (\nabla_z \ell \cdot w)`.
    Returns one tensor per ``head.parameters()`` entry (zeros where unused).
    """
    if solver == "direct":
        h = latent_hessians(head, z_star, targets, coords, latent_reg)
        w = torch.linalg.solve(h, grad_z.unsqueeze(-1)).squeeze(-1)
    elif solver == "cg":
        gradient = grad(_single_loss(head, latent_reg))

        def hvp(vector: Tensor) -> Tensor:  # H u = d/dz (grad . u), reverse over reverse (H is symmetric)
            return vmap(lambda z, t, u, c: torch.func.vjp(lambda q: gradient(q, t, c), z)[1](u)[0],
                        in_dims=(0, 0, 0, 0 if coords.dim() == 3 else None))(z_star, targets, vector, coords)

        w = conjugate_gradient(hvp, grad_z)
    else:
        raise ValueError(f"solver must be 'direct' or 'cg', got {solver!r}")
    z = z_star.detach().requires_grad_(True)
    params = [p for p in head.parameters()]
    with torch.enable_grad():
        loss = reconstruction_loss(head, z, targets, coords, latent_reg).sum()
        gz = torch.autograd.grad(loss, z, create_graph=True)[0]
        grads = torch.autograd.grad(-(gz * w.detach()).sum(), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def spectrum_figure(series: dict[str, Sequence[float]], title: str) -> Figure:
    """A log-scale plot of sorted eigenvalue magnitudes, largest first, one line per named series."""
    ordered = {name: sorted((abs(v) for v in values), reverse=True) for name, values in series.items()}
    return line_plot(ordered, title, xlabel="eigenvalue index (largest first)", ylabel="|eigenvalue|", log_y=True)


def ift_report(entries: dict[str, dict], out: str | Path) -> dict:
    """Write ``out.json``, ``out.svg`` and ``out.png`` from named :func:`spectrum_summary` results; return the
    JSON summary.

    The figure plots the median (over instances) sorted eigenvalue magnitudes of each entry.
    """
    out = Path(out)
    summary = {name: {k: v for k, v in entry.items() if k not in ("eigenvalues", "condition_number", "rank")}
               for name, entry in entries.items()}
    series = {}
    for name, entry in entries.items():
        eigenvalues = torch.tensor(entry["eigenvalues"]).abs().sort(dim=-1, descending=True).values
        series[name] = eigenvalues.median(dim=0).values.tolist()
        summary[name]["median_spectrum"] = series[name]
    atomic_write_json(out.with_suffix(".json"), summary)
    figure = spectrum_figure(series, "Hessian of the reconstruction loss w.r.t. z: median spectrum")
    for suffix in (".svg", ".png"):
        save_figure(figure, out.with_suffix(suffix))
    return summary
