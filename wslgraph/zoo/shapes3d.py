"""Procedural 3D shapes with exact signed distances: ten classes, each instance with its own proportions, size and
pose drawn from a seed, for zoos of 3D implicit neural representations.

Every signed distance here is exact (negative inside): the classic closed forms for the sphere, box, rounded box,
capped cylinder, capsule, torus, octahedron, capped cone and square pyramid (as collected by Inigo Quilez), and for
the ellipsoid, which has no closed form, the exact distance to the closest surface point found by bisection on the
Lagrange multiplier (to float64 precision). A shape is posed by a rotation, a uniform scale and a translation, which
keep a distance exact. Points for fitting come half from near the surface (surface points, found by projecting along
the distance's gradient, plus Gaussian offsets) and half uniformly from the cube ``[-1, 1]^3``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from wslgraph.zoo.meshes import MeshSet

__all__ = ["SHAPE_CLASSES", "ShapeSet", "make_shapes", "random_rotations", "shape_sdf", "sample_points",
           "SHAPE_VOLUMES", "ShapeRecipe", "SHAPE_RECIPES", "shape_siren", "default_chunk_size", "fit_shape_inrs",
           "inr_surfaces", "inr_chamfer", "zoo_shapes", "zoo_figure"]

SHAPE_CLASSES = ("sphere", "ellipsoid", "box", "rounded_box", "cylinder", "cone", "capsule", "torus", "pyramid",
                 "octahedron")
_NUM_PARAMS = 4  # shape parameters per instance (unused ones are 0)


@dataclass(frozen=True)
class ShapeSet:
    """``N`` posed shapes: class labels ``[N]``, shape parameters ``[N, 4]`` (local frame), rotations ``[N, 3, 3]``
    (local to world), uniform scales ``[N]`` and centres ``[N, 3]``; all float64."""

    labels: Tensor
    params: Tensor
    rotations: Tensor
    scales: Tensor
    centres: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: slice | Tensor) -> ShapeSet:
        return ShapeSet(self.labels[index], self.params[index], self.rotations[index], self.scales[index],
                        self.centres[index])

    def sdf(self, points: Tensor) -> Tensor:
        """Exact signed distances ``[N, P]`` of points ``[N, P, 3]`` (or ``[P, 3]``, shared) to each shape."""
        points = points.to(torch.float64)
        if points.dim() == 2:
            points = points.expand(len(self), -1, -1)
        rotated = torch.einsum("nij,npi->npj", self.rotations, points - self.centres[:, None])  # R^T (p - c)
        local = rotated / self.scales[:, None, None]
        out = torch.empty(local.shape[:2], dtype=torch.float64, device=local.device)
        for code in self.labels.unique().tolist():
            rows = (self.labels == code).nonzero().flatten()
            out[rows] = shape_sdf(SHAPE_CLASSES[code], local[rows], self.params[rows])
        return out * self.scales[:, None]

    def turned(self, rotations: Tensor) -> ShapeSet:
        """The same shapes turned about the origin, shape ``i`` by ``rotations[i]`` ``[N, 3, 3]``: their pose
        rotation becomes ``R R_i`` and their centre ``R c_i``, so that the distance of the turned shape at ``R p`` is
        the original's at ``p`` (tested)."""
        if rotations.shape != (len(self), 3, 3):
            raise ValueError(f"rotations must be [{len(self)}, 3, 3], got {tuple(rotations.shape)}")
        rotations = rotations.to(self.rotations.dtype)
        return ShapeSet(self.labels, self.params, rotations @ self.rotations, self.scales,
                        torch.einsum("nij,nj->ni", rotations, self.centres))

    def occupancy(self, points: Tensor) -> Tensor:
        """1.0 inside (distance < 0), 0.0 outside: ``[N, P]``."""
        return (self.sdf(points) < 0).to(torch.float64)

    def project_to_surface(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Points ``[N, S, 3]`` moved onto each shape's surface: along the distance's gradient (a unit vector for an
        exact distance) by minus the distance, three times (``generator`` is unused: the projection is
        deterministic)."""
        for _ in range(3):
            points = points.detach().requires_grad_(True)
            with torch.enable_grad():
                distance = self.sdf(points)
                (gradient,) = torch.autograd.grad(distance.sum(), points)
            points = points - distance.detach()[..., None] * torch.nan_to_num(gradient)  # 0 on a medial axis
        return points.detach()

    def surfaces(self, count: int = 4096, generator: torch.Generator | None = None,
                 resolution: int = 64) -> list[Tensor]:
        """``count`` surface points per shape, uniform by area on the marching-cubes mesh of its exact distance at
        ``resolution`` (the discretisation :func:`inr_chamfer` applies to the INR too)."""
        from wslgraph.zoo.meshes import grid_points, marching_cubes, surface_samples

        grid = grid_points(resolution)
        out = []
        for i in range(len(self)):
            vertices, faces = marching_cubes(self[i:i + 1].sdf(grid).reshape((resolution,) * 3))
            out.append(surface_samples(vertices[faces], count, generator))
        return out


def _length(*parts: Tensor) -> Tensor:
    # clamped far below any distance that matters, so that the gradient at 0 is 0, not NaN
    return torch.sqrt(sum(part * part for part in parts).clamp(min=1e-200))


def _box(p: Tensor, half: Tensor) -> Tensor:
    q = p.abs() - half[:, None]
    return _length(*q.clamp(min=0).unbind(-1)) + q.amax(-1).clamp(max=0)


def _ellipsoid(p: Tensor, axes: Tensor) -> Tensor:
    """Exact distance to the ellipsoid ``sum(x_i^2 / a_i^2) = 1`` (sign: inside negative).

    The closest point is ``x_i = a_i^2 p_i / (a_i^2 + t)`` for the root ``t > -min(a_i^2)`` of
    ``f(t) = sum(a_i^2 p_i^2 / (a_i^2 + t)^2) - 1``, which decreases in ``t`` there: bisection finds it.
    """
    a2 = (axes * axes)[:, None]  # [N, 1, 3]
    low = -a2.amin(-1) + a2.amin(-1) * 1e-12  # just above the pole
    high = (a2.amax(-1) ** 0.5 + p.norm(dim=-1)) ** 2  # f(high) < 0
    low, high = low.expand_as(high).clone(), high
    for _ in range(200):
        mid = (low + high) / 2
        f = (a2 * p * p / (a2 + mid[..., None]) ** 2).sum(-1) - 1
        low = torch.where(f > 0, mid, low)
        high = torch.where(f > 0, high, mid)
    t = ((low + high) / 2).detach()
    closest = (a2 * p / (a2 + t[..., None])).detach()
    inside = (p * p / a2).sum(-1) < 1
    offset = p - closest
    direction = (offset / offset.norm(dim=-1, keepdim=True).clamp(min=1e-200)).detach()
    distance = (offset * direction).sum(-1)  # |p - closest|, with the exact gradient: the unit direction
    return torch.where(inside, -distance, distance)


def _capped_cone(p: Tensor, height: Tensor, r1: Tensor, r2: Tensor) -> Tensor:
    """Cone frustum along y from ``y = -h`` (radius ``r1``) to ``y = h`` (radius ``r2``)."""
    h, r1, r2 = height[:, None], r1[:, None], r2[:, None]
    qx, qy = _length(p[..., 0], p[..., 2]), p[..., 1]
    k2x, k2y = r2 - r1, 2 * h
    cax = qx - torch.minimum(qx, torch.where(qy < 0, r1, r2))
    cay = qy.abs() - h
    along = (((r2 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y)).clamp(0, 1)
    cbx, cby = qx - r2 + k2x * along, qy - h + k2y * along
    sign = torch.where((cbx < 0) & (cay < 0), -1.0, 1.0)
    return sign * torch.sqrt(torch.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby))


def _pyramid(p: Tensor, height: Tensor) -> Tensor:
    """Square pyramid: base of side 1 centred in the plane ``y = 0``, apex at ``y = h``."""
    h = height[:, None]
    m2 = h * h + 0.25
    x, z = p[..., 0].abs(), p[..., 2].abs()
    x, z = torch.where(z > x, z, x), torch.where(z > x, x, z)
    x, z, y = x - 0.5, z - 0.5, p[..., 1]
    qx, qy, qz = z, h * y - 0.5 * x, h * x + 0.5 * y
    s = (-qx).clamp(min=0)
    t = ((qy - 0.5 * z) / (m2 + 0.25)).clamp(0, 1)
    a = m2 * (qx + s) ** 2 + qy * qy
    b = m2 * (qx + 0.5 * t) ** 2 + (qy - m2 * t) ** 2
    d2 = torch.where(torch.minimum(qy, -qx * m2 - qy * 0.5) > 0, torch.zeros_like(a), torch.minimum(a, b))
    return torch.sqrt((d2 + qz * qz) / m2) * torch.sign(torch.maximum(qz, -y))


def _octahedron(p: Tensor, size: Tensor) -> Tensor:
    s = size[:, None]
    p = p.abs()
    m = p.sum(-1) - s
    x, y, z = p.unbind(-1)
    # the face region's coordinates, rotated so that the nearest edge is handled alike
    first = 3 * x < m
    second = ~first & (3 * y < m)
    third = ~first & ~second & (3 * z < m)
    qx = torch.where(first, x, torch.where(second, y, z))
    qy = torch.where(first, y, torch.where(second, z, x))
    qz = torch.where(first, z, torch.where(second, x, y))
    k = (0.5 * (qz - qy + s)).clamp(min=0)
    k = torch.minimum(k, s.expand_as(k))
    edge = _length(qx, qy - s + k, qz - k)
    return torch.where(first | second | third, edge, m * (1 / math.sqrt(3)))


def shape_sdf(name: str, p: Tensor, params: Tensor) -> Tensor:
    """Exact signed distance of local points ``p`` ``[N, P, 3]`` to shapes of class ``name`` with ``params``
    ``[N, 4]`` (their meaning per class: see :func:`make_shapes`)."""
    a, b, c, d = params.unbind(-1)
    x, y, z = p.unbind(-1)
    if name == "sphere":
        return p.norm(dim=-1) - a[:, None]
    if name == "ellipsoid":
        return _ellipsoid(p, params[:, :3])
    if name == "box":
        return _box(p, params[:, :3])
    if name == "rounded_box":
        return _box(p, params[:, :3]) - d[:, None]
    if name == "cylinder":  # radius a, half-height b, axis z
        dx, dz = _length(x, y) - a[:, None], z.abs() - b[:, None]
        return torch.maximum(dx, dz).clamp(max=0) + _length(dx.clamp(min=0), dz.clamp(min=0))
    if name == "cone":  # base radius a at y = -b, apex at y = b
        return _capped_cone(p, b, a, torch.zeros_like(a))
    if name == "capsule":  # segment along z of half-length b, radius a
        along = torch.maximum(torch.minimum(z, b[:, None]), -b[:, None])
        return _length(x, y, z - along) - a[:, None]
    if name == "torus":  # ring radius a in the xy-plane, tube radius b
        return _length(_length(x, y) - a[:, None], z) - b[:, None]
    if name == "pyramid":  # base side 1 at y = 0, height a; centred on its mid-height
        return _pyramid(torch.stack([x, y + a[:, None] / 2, z], dim=-1), a)
    if name == "octahedron":  # |x| + |y| + |z| = a
        return _octahedron(p, a)
    raise ValueError(f"unknown shape {name!r}; choose one of {SHAPE_CLASSES}")


def _volume(name: str, params: Tensor) -> Tensor:
    a, b, c, d = params.unbind(-1)
    if name == "sphere":
        return 4 / 3 * math.pi * a**3
    if name == "ellipsoid":
        return 4 / 3 * math.pi * a * b * c
    if name == "box":
        return 8 * a * b * c
    if name == "rounded_box":
        return (8 * a * b * c + 8 * d * (a * b + b * c + c * a) + 2 * math.pi * d**2 * (a + b + c)
                + 4 / 3 * math.pi * d**3)
    if name == "cylinder":
        return math.pi * a**2 * 2 * b
    if name == "cone":
        return math.pi * a**2 * 2 * b / 3
    if name == "capsule":
        return math.pi * a**2 * 2 * b + 4 / 3 * math.pi * a**3
    if name == "torus":
        return 2 * math.pi**2 * a * b**2
    if name == "pyramid":
        return a / 3
    if name == "octahedron":
        return 4 / 3 * a**3
    raise ValueError(name)


#: analytic volume of each class in its local frame, from its parameters ``[N, 4]`` (tests use it)
SHAPE_VOLUMES = {name: (lambda params, name=name: _volume(name, params)) for name in SHAPE_CLASSES}


def _random_params(name: str, count: int, generator: torch.Generator) -> Tensor:
    """Proportions per class, in a local frame where the shape fits well inside the unit ball."""
    u = torch.rand(count, _NUM_PARAMS, generator=generator, dtype=torch.float64)
    zero = torch.zeros(count, dtype=torch.float64)
    if name == "sphere":
        return torch.stack([0.5 + 0.3 * u[:, 0], zero, zero, zero], -1)
    if name in ("ellipsoid", "box"):
        axes = 0.25 + 0.45 * u[:, :3]
        return torch.cat([axes * (0.55 if name == "box" else 0.85), zero[:, None]], -1)
    if name == "rounded_box":
        return torch.stack([0.2 + 0.2 * u[:, 0], 0.2 + 0.2 * u[:, 1], 0.2 + 0.2 * u[:, 2], 0.05 + 0.1 * u[:, 3]], -1)
    if name == "cylinder":
        return torch.stack([0.25 + 0.3 * u[:, 0], 0.3 + 0.35 * u[:, 1], zero, zero], -1)
    if name == "cone":
        return torch.stack([0.3 + 0.35 * u[:, 0], 0.3 + 0.35 * u[:, 1], zero, zero], -1)
    if name == "capsule":
        return torch.stack([0.15 + 0.2 * u[:, 0], 0.2 + 0.35 * u[:, 1], zero, zero], -1)
    if name == "torus":
        ring = 0.4 + 0.25 * u[:, 0]
        return torch.stack([ring, (0.12 + 0.6 * (ring - 0.12) * u[:, 1]).clamp(max=0.3), zero, zero], -1)
    if name == "pyramid":
        return torch.stack([0.6 + 0.6 * u[:, 0], zero, zero, zero], -1)
    return torch.stack([0.55 + 0.3 * u[:, 0], zero, zero, zero], -1)  # octahedron


def random_rotations(count: int, generator: torch.Generator) -> Tensor:
    """Rotations uniform over SO(3) (from uniformly drawn unit quaternions)."""
    q = torch.randn(count, 4, generator=generator, dtype=torch.float64)
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)


def _bounding_radius(name: str, params: Tensor) -> Tensor:
    """Radius of a ball around the local origin that holds the shape."""
    a, b, c, d = params.unbind(-1)
    radius = {"sphere": a, "ellipsoid": params[:, :3].amax(-1), "box": params[:, :3].norm(dim=-1),
              "rounded_box": params[:, :3].norm(dim=-1) + d, "cylinder": _length(a, b), "cone": _length(a, b),
              "capsule": a + b, "torus": a + b, "pyramid": torch.sqrt(0.5 + a * a / 4), "octahedron": a}
    return radius[name]


def make_shapes(per_class: int, seed: int = 0) -> ShapeSet:
    """``per_class`` instances of each of the ten :data:`SHAPE_CLASSES`, posed at random: a rotation uniform over
    SO(3), a scale that makes the shape's bounding radius ``0.8 * u`` for ``u`` uniform in ``[0.8, 1.05]`` (shapes
    smaller than that keep their size times ``u``), and a centre within 0.05 of the origin per axis, so that every
    shape lies inside the cube ``[-1, 1]^3``. The same seed gives the same shapes. Instances are ordered by
    class."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(SHAPE_CLASSES)).repeat_interleave(per_class)
    params = torch.cat([_random_params(name, per_class, generator) for name in SHAPE_CLASSES])
    radius = torch.cat([_bounding_radius(name, params[i * per_class:(i + 1) * per_class])
                        for i, name in enumerate(SHAPE_CLASSES)])
    count = labels.shape[0]
    rotations = random_rotations(count, generator)
    scales = (0.8 + 0.25 * torch.rand(count, generator=generator, dtype=torch.float64)) * (0.8 / radius).clamp(max=1)
    centres = (torch.rand(count, 3, generator=generator, dtype=torch.float64) * 2 - 1) * 0.05
    return ShapeSet(labels, params, rotations, scales, centres)


def sample_points(shapes: ShapeSet, count: int, *, near: float = 0.5, sigma: float = 0.02,
                  generator: torch.Generator | None = None) -> Tensor:
    """``count`` points per shape ``[N, count, 3]``: a fraction ``near`` around the surface (surface points plus
    Gaussian offsets of std ``sigma``), the rest uniform in ``[-1, 1]^3``.

    Surface points come from the set's ``project_to_surface``: a :class:`ShapeSet` projects the first uniform points
    along its distance's gradient; a :class:`~wslgraph.zoo.meshes.MeshSet` draws them by area.
    """
    n = len(shapes)
    surface = round(count * near)
    uniform = torch.rand(n, count, 3, generator=generator, dtype=torch.float64) * 2 - 1
    if surface == 0:
        return uniform
    points = shapes.project_to_surface(uniform[:, :surface].clone(), generator)
    offsets = torch.randn(n, surface, 3, generator=generator, dtype=torch.float64) * sigma
    near_points = (points + offsets).clamp(-1, 1)
    return torch.cat([near_points, uniform[:, surface:]], dim=1)


# ------------------------------------------------------------------------------------------------ 3D INRs
@dataclass(frozen=True)
class ShapeRecipe:
    """How to fit one SIREN ``3 -> hidden -> 1`` to one shape's occupancy or signed distance.

    With ``target="occupancy"`` (the recipe ``"occupancy"``) the INR outputs a logit of occupancy at a point
    (inside: positive), fitted with binary cross-entropy; with ``target="sdf"`` (the recipe ``"sdf"``) it outputs
    the signed distance (inside: negative), fitted with DeepSDF's clamped L1 loss, ``|clamp(f, -c, c) - clamp(d,
    -c, c)|`` with ``c = clamp``. Either way on ``points`` points per shape (a fraction ``near`` around the surface
    with Gaussian offsets of std ``sigma``, the rest uniform in the cube, as inr2vec and the NFN 3D sets sample),
    drawn once per shape, by Adam for ``steps`` full-batch steps.
    """

    name: str = "occupancy"
    target: str = "occupancy"
    clamp: float = 0.1
    hidden: tuple[int, ...] = (32, 32)
    w0: float = 10.0  # 20 shapes, 500 steps: mean IoU 0.90 at w0 10, 0.81 at 5, 0.77 at 30 (README, "3D")
    points: int = 4096
    near: float = 0.5
    sigma: float = 0.02
    lr: float = 1e-3
    steps: int = 500

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1 or self.steps < 0 or self.lr <= 0 or self.points < 1:
            raise ValueError(f"recipe {self.name!r} needs hidden widths >= 1, steps >= 0, lr > 0 and points >= 1")
        if self.target not in ("occupancy", "sdf") or self.clamp <= 0:
            raise ValueError(f"recipe {self.name!r}: target must be 'occupancy' or 'sdf' and clamp > 0")

    def inside(self, outputs: Tensor) -> Tensor:
        """Where the INR's outputs say "inside": a positive logit, or a negative distance."""
        return outputs > 0 if self.target == "occupancy" else outputs < 0

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__}, "hidden": list(self.hidden)}


#: the named recipes (``wslgraph zoo inr --source shapes3d|mesh|kicad --recipe NAME``)
SHAPE_RECIPES = {"occupancy": ShapeRecipe(), "sdf": ShapeRecipe(name="sdf", target="sdf")}


def shape_siren(recipe: ShapeRecipe) -> torch.nn.Module:
    """The architecture of a shape INR: a SIREN ``3 -> hidden -> 1`` (its output is an occupancy logit)."""
    from wslgraph.zoo.architectures import siren

    return siren(3, recipe.hidden, 1, recipe.w0)


def default_chunk_size(recipe: ShapeRecipe, device: str | torch.device | None = None) -> int:
    """INRs fitted together by default: on CPU as many as keep one layer's activations near 4 MB (8 at 4,096
    points and width 32: ``benchmarks/zoo_fit.py`` measured 355 INR-steps/s for 64 at once and 1,183 for 8, since
    the larger chunk's activations leave the cache), on a GPU 256."""
    if torch.device(device or "cpu").type != "cpu":
        return 256
    return max(2, (1 << 20) // (recipe.points * max(recipe.hidden)))


def fit_shape_inrs(shapes: ShapeSet | MeshSet, recipe: ShapeRecipe | None = None, *, seed: int = 0,
                   index_offset: int = 0, chunk_size: int | None = None,
                   device: str | torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Fit one SIREN per shape (occupancy or signed distance, as ``recipe.target`` says), all of a chunk at once:
    flat parameters ``[N, P]`` (the template order of :func:`shape_siren`) and each INR's IoU ``[N]`` on 16,384
    fresh uniform points (inside as :meth:`ShapeRecipe.inside` reads its outputs).

    The INRs of a chunk are one ``[N, P]`` tensor evaluated with :func:`~wslgraph.weightspace.inr_forward`
    (per-INR points); Adam acts elementwise, so each row follows the optimisation it would alone. Shape ``i``'s
    initialisation and points come from its own generator, seeded by ``(seed, index_offset + i)``: an INR does not
    depend on its chunk or shard. Chunks are balanced (sizes differ by at most one), so no INR is fitted alone
    unless there is only one: a one-INR chunk runs other kernels and differs in the last bits. ``chunk_size``
    defaults to :func:`default_chunk_size`.
    """
    from wslgraph.convert.template import GraphTemplate
    from wslgraph.weightspace.functional import INRArchitecture, inr_forward, siren_layer_init
    from wslgraph.zoo.inr import inr_seed

    recipe = recipe or ShapeRecipe()
    device = torch.device(device or "cpu")
    architecture = INRArchitecture.from_template(GraphTemplate.from_module(shape_siren(recipe)))
    sizes = [3, *recipe.hidden, 1]
    params_out, iou_out = [], []
    chunk_size = chunk_size or default_chunk_size(recipe, device)
    count = -(-len(shapes) // chunk_size)
    bounds = [round(i * len(shapes) / count) for i in range(count + 1)] if len(shapes) else [0]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        chunk = shapes[start:stop]
        generators = [torch.Generator().manual_seed(inr_seed(seed, index_offset + start + i))
                      for i in range(len(chunk))]
        rows = torch.stack([torch.cat([t.flatten() for t in siren_layer_init(sizes, [recipe.w0] * (len(sizes) - 1),
                                                                              g)]) for g in generators])
        points = torch.cat([sample_points(chunk[i:i + 1], recipe.points, near=recipe.near, sigma=recipe.sigma,
                                          generator=g) for i, g in enumerate(generators)])
        truth_at = chunk.occupancy if recipe.target == "occupancy" else chunk.sdf
        targets = truth_at(points).float().unsqueeze(-1).to(device)
        coords = points.float().to(device)
        weights = rows.to(device).requires_grad_(True)
        optimizer = torch.optim.Adam([weights], lr=recipe.lr)
        for _ in range(recipe.steps):
            outputs = inr_forward(weights, coords, architecture)
            if recipe.target == "occupancy":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
            else:
                loss = (outputs.clamp(-recipe.clamp, recipe.clamp) - targets.clamp(-recipe.clamp, recipe.clamp)).abs()
            optimizer.zero_grad(set_to_none=True)
            loss.mean(dim=(1, 2)).sum().backward()  # each INR's mean loss: its gradient is its own
            optimizer.step()
        # each shape's evaluation points from its own generator: its IoU does not depend on its chunk either
        evaluation = torch.stack([torch.rand(16384, 3, generator=g, dtype=torch.float64) for g in generators]) * 2 - 1
        with torch.no_grad():
            predicted = recipe.inside(inr_forward(weights, evaluation.float().to(device), architecture)[..., 0])
        truth = chunk.occupancy(evaluation).to(device) > 0.5
        iou = (predicted & truth).sum(-1) / (predicted | truth).sum(-1).clamp(min=1)
        params_out.append(weights.detach().cpu())
        iou_out.append(iou.float().cpu())
    return torch.cat(params_out), torch.cat(iou_out)


def inr_surfaces(params: Tensor, recipe: ShapeRecipe | None = None, *, resolution: int = 64
                 ) -> list[tuple[Tensor, Tensor]]:
    """Each shape INR's surface (the zero level set of its logit or distance) by marching cubes on a
    ``resolution^3`` grid over ``[-1, 1]^3``: ``(vertices [V, 3], faces [F, 3])`` per row of ``params`` ``[N, P]``
    (empty where the INR predicts no inside)."""
    from wslgraph.convert.template import GraphTemplate
    from wslgraph.weightspace.functional import INRArchitecture, inr_forward
    from wslgraph.zoo.meshes import grid_points, marching_cubes

    recipe = recipe or ShapeRecipe()
    architecture = INRArchitecture.from_template(GraphTemplate.from_module(shape_siren(recipe)))
    grid = grid_points(resolution).to(params.dtype)
    out = []
    with torch.no_grad():
        for row in params:
            field = inr_forward(row[None], grid, architecture)[0, :, 0].reshape((resolution,) * 3)
            out.append(marching_cubes(field))
    return out


def inr_chamfer(params: Tensor, shapes: ShapeSet | MeshSet, recipe: ShapeRecipe | None = None, *,
                resolution: int = 64, points: int = 4096, seed: int = 0) -> Tensor:
    """Chamfer distance ``[N]`` (:func:`~wslgraph.zoo.meshes.chamfer_distance`, in the ``[-1, 1]^3`` frame) between
    each INR's marching-cubes surface and its shape's surface, ``points`` area-uniform points on each; ``nan`` where
    the INR has no surface. A procedural shape's surface is the marching-cubes mesh of its exact distance at the same
    resolution; a mesh's is the mesh itself."""
    from wslgraph.zoo.meshes import chamfer_distance, surface_samples

    generator = torch.Generator().manual_seed(seed)
    truths = shapes.surfaces(points, generator)
    out = []
    for (vertices, faces), truth in zip(inr_surfaces(params, recipe, resolution=resolution), truths):
        predicted = surface_samples(vertices[faces], points, generator) if len(faces) else vertices
        out.append(chamfer_distance(predicted, truth))
    return torch.tensor(out)


def zoo_shapes(description: dict, indices: Tensor, data_root: str | None = None) -> ShapeSet | MeshSet:
    """The true shapes of models ``indices`` of a 3D zoo, rebuilt from its description: procedural shapes from the
    seed, meshes from their files under ``data_root`` (default: the folder the zoo was made from).

    Raises:
        ZooError: the zoo is not a 3D zoo, or its description lacks what rebuilding needs.
        DataNotFoundError, MeshError: a mesh file is missing or unreadable.
    """
    from wslgraph.errors import ZooError
    from wslgraph.zoo.meshes import MeshSet, load_mesh

    source = description.get("source")
    if source == "shapes3d":
        return make_shapes(int(description["per_class"]), int(description["seed"]))[indices]
    if source in ("mesh", "kicad"):
        root = data_root or description.get("data_root")
        if root is None or "files" not in description:
            raise ZooError("this mesh zoo does not record its data root; pass --data-root")
        files = [description["files"][int(i)] for i in indices]
        meshes = tuple(load_mesh(Path(root) / name) for name in files)
        return MeshSet(meshes, torch.zeros(len(meshes), dtype=torch.long), tuple(description.get("classes", ())),
                       torch.zeros(len(meshes), dtype=torch.uint8))
    raise ZooError(f"a zoo of source {source!r} holds no 3D shapes; render draws zoos made with --source shapes3d, "
                   f"mesh or kicad")


def zoo_figure(arrays, count: int = 10, *, views: int = 1, resolution: int = 64, data_root: str | None = None,
               split: str = "test") -> Figure:
    """True shapes (marching cubes of their exact distance, or the meshes) above their INRs' surfaces, for the first
    ``split`` model of each class (up to ``count`` models), seen from ``views`` azimuths (two rows per view)."""
    from wslgraph.plotting import mesh_grid
    from wslgraph.zoo.meshes import grid_points, marching_cubes
    from wslgraph.zoo.storage import SPLIT_CODES

    description = arrays.description
    if description.get("source") not in ("shapes3d", "mesh", "kicad"):
        zoo_shapes(description, torch.zeros(0, dtype=torch.long))  # raises: not a 3D zoo
    recipe = ShapeRecipe(**{**description["recipe"], "hidden": tuple(description["recipe"]["hidden"])})
    labels, rows = arrays.columns["label"], (arrays.columns["split"] == SPLIT_CODES[split]).nonzero().flatten()
    chosen = [int(rows[labels[rows] == c][0]) for c in labels[rows].unique().tolist()][:count]
    chosen = torch.tensor(chosen or rows[:count].tolist(), dtype=torch.long)
    shapes = zoo_shapes(description, arrays.columns.get("shape_index", torch.arange(len(labels)))[chosen],
                        data_root)
    grid = grid_points(resolution)
    if isinstance(shapes, ShapeSet):  # marching cubes of the exact distance
        truth = [marching_cubes(shapes[i:i + 1].sdf(grid).reshape((resolution,) * 3)) for i in range(len(chosen))]
    else:  # the meshes themselves
        truth = [(mesh.vertices, mesh.faces) for mesh in shapes.meshes]
    fitted = inr_surfaces(arrays.params[chosen], recipe, resolution=resolution)
    classes = description.get("classes") or []
    names = [classes[int(labels[i])] if int(labels[i]) < len(classes) else str(int(labels[i])) for i in chosen]
    iou = arrays.columns.get("iou")
    meshes = (truth + fitted) * views
    captions = (names + [f"INR, IoU {float(iou[i]):.2f}" if iou is not None else "INR" for i in chosen]) * views
    azimuths = [35.0 + 90.0 * (k // (2 * len(chosen))) for k in range(len(meshes))]  # a quarter turn per view
    return mesh_grid(meshes, f"{description.get('source')}: true shapes (rows 1, 3, ...) and their INRs", captions,
                     columns=len(chosen), azimuths=azimuths)
