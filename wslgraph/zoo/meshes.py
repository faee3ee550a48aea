"""Triangle meshes from users (ModelNet ``.off``, ShapeNet ``.obj``, ``.stl``) as 3D shapes with occupancy, and the
quality measures of 3D INRs (marching cubes, Chamfer distance).

Meshes are read with ``trimesh`` (the field's mesh reader: it parses OFF, OBJ, STL, PLY and GLB without compiled
extensions), centred on their bounding box and scaled so that their farthest vertex lies at distance 0.8 from the
origin, as the procedural shapes of :mod:`wslgraph.zoo.shapes3d` are. VRML ``.wrl`` files of inline face sets (the
format of Debian's ``kicad-packages3d``, which trimesh does not read) go through :func:`read_vrml`.

Occupancy is the **generalised winding number** (Jacobson, Kavan and Sorkine-Hornung, 2013): the signed solid angle
the triangles subtend at a point, over ``4 pi``. It is exactly 1 inside and 0 outside a closed, consistently oriented
mesh, and it degrades gracefully on the meshes real collections are full of (small holes, duplicated or flipped
faces): a point is inside when ``|w| > 1/2``. A mesh that encloses no volume at all (an open sheet, a flat or empty
mesh) has no occupancy and is refused with :class:`~wslgraph.errors.MeshError`, naming the file.

A folder of meshes gives labels by its layout: ``ROOT/<class>/<file>`` (any depth below the class folder). When a
class folder holds ``train/`` and ``test/`` (ModelNet's layout) they give the split, with every tenth training mesh
(``i % 10 == 8``) held out for validation; otherwise mesh ``i`` of a class (sorted by path) is ``val`` when
``i % 10 == 8``, ``test`` when ``i % 10 == 9`` and ``train`` else, the rule of the procedural zoos.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from wslgraph.errors import DataNotFoundError, MeshError
from wslgraph.zoo.storage import SPLIT_CODES as _SPLITS

__all__ = ["MESH_SUFFIXES", "KICAD_ROOT", "KICAD_CLASSES", "Mesh", "MeshSet", "load_mesh", "load_mesh_folder",
           "load_kicad_shapes", "read_vrml", "winding_numbers", "triangle_distances",
           "surface_samples", "grid_points", "marching_cubes", "chamfer_distance"]

#: file types a mesh folder is searched for
MESH_SUFFIXES = (".off", ".obj", ".stl", ".ply", ".wrl")
RADIUS = 0.8  # the farthest vertex after normalisation


@dataclass(frozen=True)
class Mesh:
    """A normalised triangle mesh: ``vertices`` ``[V, 3]`` (float64), ``faces`` ``[F, 3]`` (int64), the file it came
    from, and whether trimesh found it watertight (closed, every edge shared by two faces)."""

    vertices: Tensor
    faces: Tensor
    path: str
    watertight: bool

    @property
    def triangles(self) -> Tensor:
        """``[F, 3, 3]``: each face's three corners."""
        return self.vertices[self.faces]

    def areas(self) -> Tensor:
        return face_normals(self.triangles).norm(dim=-1) / 2

    def occupancy(self, points: Tensor) -> Tensor:
        """1.0 where ``|winding number| > 1/2``, else 0.0: ``[P]`` for points ``[P, 3]``."""
        return (winding_numbers(self.triangles, points).abs() > 0.5).to(torch.float64)

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance ``[P]`` (negative inside): the exact distance to the nearest triangle, signed by the
        occupancy."""
        distance = triangle_distances(self.triangles, points)
        return torch.where(self.occupancy(points) > 0, -distance, distance)


def face_normals(triangles: Tensor) -> Tensor:
    """``[F, 3]``: each face's normal ``(b - a) x (c - a)``, unnormalised (its length is twice the face's area;
    it points out of a counter-clockwise face)."""
    return torch.linalg.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0], dim=-1)


def winding_numbers(triangles: Tensor, points: Tensor, max_pairs: int = 1 << 20) -> Tensor:
    r"""Generalised winding numbers ``[P]`` of points ``[P, 3]`` with respect to triangles ``[F, 3, 3]`` (float64).

    Each triangle contributes its signed solid angle :math:`\Omega = 2\,\mathrm{atan2}(a \cdot (b \times c),\;
    |a||b||c| + (a \cdot b)|c| + (b \cdot c)|a| + (c \cdot a)|b|)` (Van Oosterom and Strackee, 1983), with
    :math:`a, b, c` the corners relative to the point; :math:`w = \sum \Omega / 4\pi`. Points are processed in
    chunks of at most ``max_pairs`` point-triangle pairs.
    """
    triangles = triangles.to(torch.float64)
    points = points.to(torch.float64)
    step = max(1, max_pairs // max(1, triangles.shape[0]))
    out = []
    for chunk in points.split(step):
        a, b, c = (triangles[None, :, k] - chunk[:, None] for k in range(3))  # [p, F, 3]
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)
        denominator = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out.append(torch.atan2(det, denominator).sum(-1) / (2 * math.pi))
    return torch.cat(out) if out else points.new_zeros(0)


def triangle_distances(triangles: Tensor, points: Tensor, max_pairs: int = 1 << 20) -> Tensor:
    """Exact distance ``[P]`` from each point ``[P, 3]`` to the nearest of the triangles ``[F, 3, 3]`` (float64):
    to its plane where the point projects inside it, else to the nearest of its three edges (segments; degenerate
    triangles reduce to their edges)."""
    triangles = triangles.to(torch.float64)
    points = points.to(torch.float64)
    a, b, c = triangles.unbind(1)  # [F, 3]
    normal = face_normals(triangles)
    length = normal.norm(dim=-1, keepdim=True)
    unit = torch.where(length > 0, normal / length.clamp(min=1e-300), torch.zeros_like(normal))
    edges = [(a, b), (b, c), (c, a)]
    step = max(1, max_pairs // max(1, triangles.shape[0]))
    out = []
    for chunk in points.split(step):
        p = chunk[:, None]  # [p, 1, 3]
        inside = length[:, 0] > 0
        best = None
        for start, end in edges:
            edge = end - start
            inside = inside & ((torch.linalg.cross(edge.expand_as(p - start), p - start, dim=-1) * normal).sum(-1)
                               >= 0)
            t = (((p - start) * edge).sum(-1) / (edge * edge).sum(-1).clamp(min=1e-300)).clamp(0, 1)
            distance = (p - start - t[..., None] * edge).norm(dim=-1)
            best = distance if best is None else torch.minimum(best, distance)
        plane = ((p - a) * unit).sum(-1).abs()
        out.append(torch.where(inside, plane, best).amin(-1))
    return torch.cat(out) if out else points.new_zeros(0)


def surface_samples(triangles: Tensor, count: int, generator: torch.Generator | None = None, *,
                    with_faces: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """``count`` points uniform on the surface (faces drawn by area, then uniform barycentric coordinates): ``[count,
    3]``, and with ``with_faces`` the index of each point's face too."""
    edge1, edge2 = triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    faces = torch.multinomial(face_normals(triangles).norm(dim=-1), count, replacement=True, generator=generator)
    u, v = torch.rand(2, count, 1, generator=generator, dtype=triangles.dtype)
    flip = (u + v) > 1  # reflect into the triangle
    u, v = torch.where(flip, 1 - u, u), torch.where(flip, 1 - v, v)
    points = triangles[faces, 0] + u * edge1[faces] + v * edge2[faces]
    return (points, faces) if with_faces else points


def load_mesh(path: str | Path) -> Mesh:
    """Read one mesh file (``.off``, ``.obj``, ``.stl``, ``.ply``), normalise it, and check that it encloses a volume.

    Raises:
        MeshError: the file cannot be parsed, holds no faces, has non-finite or degenerate geometry, or encloses no
            volume (an open sheet or a flat mesh: occupancy is undefined); the message names the file.
    """
    import trimesh

    path = Path(path)
    try:
        if path.suffix.lower() == ".wrl":
            mesh = trimesh.Trimesh(*read_vrml(path))
        else:
            mesh = trimesh.load(path, force="mesh")
    except MeshError:
        raise
    except Exception as error:  # trimesh raises whatever its parsers hit (ValueError, IndexError, KeyError, ...)
        raise MeshError(f"{path}: not a readable mesh ({type(error).__name__}: {error})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise MeshError(f"{path}: the mesh is empty (no triangle faces); a shape needs a closed triangle surface")
    vertices = torch.as_tensor(np.asarray(mesh.vertices, dtype=np.float64))
    faces = torch.as_tensor(np.asarray(mesh.faces, dtype=np.int64))
    if not torch.isfinite(vertices).all():
        raise MeshError(f"{path}: vertices hold NaN or infinite coordinates")
    low, high = vertices.amin(0), vertices.amax(0)
    centred = vertices - (low + high) / 2
    radius = float(centred.norm(dim=-1).amax())
    if radius == 0:
        raise MeshError(f"{path}: the mesh is degenerate (all vertices coincide)")
    normalised = Mesh(centred * (RADIUS / radius), faces, str(path), bool(mesh.is_watertight))
    if float(normalised.areas().sum()) < 1e-9:
        raise MeshError(f"{path}: the mesh is degenerate (its faces have no area)")
    _check_volume(normalised)
    return normalised


_FACE_SET = re.compile(r"\bIndexedFaceSet\b")
_INDICES = re.compile(r"\bcoordIndex\s*\[([^\]]*)\]")
_POINTS = re.compile(r"\bpoint\s*\[([^\]]*)\]")


def read_vrml(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` and triangles ``[F, 3]`` of a VRML 2.0 file made of ``IndexedFaceSet`` nodes with inline
    coordinates (what KiCad's StepUp exporter writes for ``kicad-packages3d``); polygons are fan-triangulated and
    all face sets are merged. Files that place geometry with ``Transform`` nodes or reuse coordinates with
    ``USE`` are refused (:class:`MeshError`): this reader applies no transforms, so it would misplace them."""
    path = Path(path)
    text = path.read_text(errors="replace")
    if not text.startswith("#VRML V2.0"):
        raise MeshError(f"{path}: not a VRML 2.0 file (its first line is not '#VRML V2.0 ...')")
    if re.search(r"\bTransform\b|\bcoord\s+USE\b", text):
        raise MeshError(f"{path}: VRML with Transform nodes or shared (USE) coordinates is not supported; convert it "
                        f"to .obj, .stl or .ply (e.g. with trimesh or MeshLab)")
    vertices, faces, offset = [], [], 0
    for chunk in _FACE_SET.split(text)[1:]:
        indices, points = _INDICES.search(chunk), _POINTS.search(chunk)
        if indices is None or points is None:
            raise MeshError(f"{path}: an IndexedFaceSet without inline coordIndex and point lists")
        xyz = np.array(points.group(1).replace(",", " ").split(), dtype=np.float64)
        index = np.array(indices.group(1).replace(",", " ").split(), dtype=np.int64)
        if xyz.size % 3:
            raise MeshError(f"{path}: a point list whose length ({xyz.size}) is not a multiple of 3")
        xyz = xyz.reshape(-1, 3)
        if index.size and (index.max() >= len(xyz) or index.min() < -1):
            raise MeshError(f"{path}: a coordIndex outside its {len(xyz)} points")
        for polygon in np.split(index, np.flatnonzero(index == -1)):
            polygon = polygon[polygon >= 0]
            faces.extend([offset + polygon[0], offset + a, offset + b] for a, b in zip(polygon[1:-1], polygon[2:]))
        vertices.append(xyz)
        offset += len(xyz)
    if not vertices:
        raise MeshError(f"{path}: the VRML file holds no IndexedFaceSet")
    return np.concatenate(vertices), np.array(faces, dtype=np.int64).reshape(-1, 3)


def _check_volume(mesh: Mesh) -> None:
    """Refuse a mesh whose winding number stays below 1/2 at points just inside and around its surface."""
    generator = torch.Generator().manual_seed(0)
    triangles = mesh.triangles
    on_surface, faces = surface_samples(triangles, 256, generator, with_faces=True)
    normal = face_normals(triangles)[faces]  # each point's own face: a step along it leaves the surface
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-300)
    probes = torch.cat([on_surface[:128] + 0.01 * normal[:128], on_surface[128:] - 0.01 * normal[128:],
                        torch.rand(256, 3, generator=generator, dtype=torch.float64) * 2 - 1])
    if float(winding_numbers(triangles, probes).abs().max()) <= 0.5:
        raise MeshError(f"{mesh.path}: the mesh encloses no volume (its winding number stays below 1/2: an open "
                        f"sheet or a flat mesh), so occupancy is undefined; close it or leave it out")


@dataclass(frozen=True)
class MeshSet:
    """Labelled meshes, the shape set of a mesh zoo: ``meshes``, ``labels`` ``[N]`` (indices into ``classes``) and
    ``split`` ``[N]`` (the zoo storage's codes: 0 train, 1 val, 2 test). Behaves like
    :class:`~wslgraph.zoo.shapes3d.ShapeSet` for :func:`~wslgraph.zoo.shapes3d.fit_shape_inrs`."""

    meshes: tuple[Mesh, ...]
    labels: Tensor
    classes: tuple[str, ...]
    split: Tensor

    def __len__(self) -> int:
        return len(self.meshes)

    def __getitem__(self, index: slice) -> MeshSet:
        if not isinstance(index, slice):
            raise TypeError("a MeshSet is indexed by slices")
        return MeshSet(self.meshes[index], self.labels[index], self.classes, self.split[index])

    def occupancy(self, points: Tensor) -> Tensor:
        """``[N, P]`` occupancy of points ``[N, P, 3]`` (or ``[P, 3]``, shared)."""
        if points.dim() == 2:
            points = points.expand(len(self), -1, -1)
        return torch.stack([mesh.occupancy(p) for mesh, p in zip(self.meshes, points)])

    def sdf(self, points: Tensor) -> Tensor:
        """``[N, P]`` signed distances (negative inside) of points ``[N, P, 3]`` (or ``[P, 3]``, shared)."""
        if points.dim() == 2:
            points = points.expand(len(self), -1, -1)
        return torch.stack([mesh.sdf(p) for mesh, p in zip(self.meshes, points)])

    def project_to_surface(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Surface points, as many as ``points`` ``[N, S, 3]`` (a mesh draws them by area; ``points`` only sets the
        count)."""
        return torch.stack([surface_samples(mesh.triangles, points.shape[1], generator) for mesh in self.meshes])

    def surfaces(self, count: int = 4096, generator: torch.Generator | None = None) -> list[Tensor]:
        """``count`` true surface points per mesh (for :func:`chamfer_distance`)."""
        return [surface_samples(mesh.triangles, count, generator) for mesh in self.meshes]


def _evenly_spaced(files: list[Path], count: int | None) -> list[Path]:
    if count is None or count >= len(files):
        return files
    return [files[i] for i in torch.linspace(0, len(files) - 1, count).round().long().tolist()]


def load_mesh_folder(root: str | Path, *, per_class: int | None = None) -> MeshSet:
    """Every mesh under ``ROOT/<class>/`` (see the module docstring for the layout and the split), classes sorted
    by name, meshes by path; ``per_class`` keeps that many meshes of each class, evenly spaced through its sorted
    files (so a ModelNet class keeps test and train meshes); all when ``None``.

    Raises:
        DataNotFoundError: ``root`` is not a folder.
        MeshError: no class folder holds a mesh file, or one mesh is unreadable, empty or degenerate (named).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"mesh folder {root} does not exist or is not a folder; expected ROOT/<class>/<mesh>"
                                f" with {', '.join(MESH_SUFFIXES)} files")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
        if files:
            found[folder.name] = _evenly_spaced(files, per_class)
    if not found:
        raise MeshError(f"{root} has no class folders with meshes; expected ROOT/<class>/<mesh> with "
                        f"{', '.join(MESH_SUFFIXES)} files (one folder per class)")
    return _mesh_set({name: [(f, f.relative_to(root / name).parts[0]) for f in files]
                      for name, files in found.items()})


def _mesh_set(found: dict[str, list[tuple[Path, str]]]) -> MeshSet:
    """Load ``{class: [(file, first folder below the class folder)]}`` with the module docstring's split rule."""
    meshes, labels, split = [], [], []
    for label, files in enumerate(found.values()):
        layout = {top for _, top in files}
        modelnet = layout <= {"train", "test"} and "test" in layout
        train_seen = 0
        for i, (file, top) in enumerate(files):
            meshes.append(load_mesh(file))
            labels.append(label)
            if modelnet:
                if top == "test":
                    split.append(_SPLITS["test"])
                else:
                    split.append(_SPLITS["val"] if train_seen % 10 == 8 else _SPLITS["train"])
                    train_seen += 1
            else:
                split.append(_SPLITS["val"] if i % 10 == 8 else _SPLITS["test"] if i % 10 == 9 else _SPLITS["train"])
    return MeshSet(tuple(meshes), torch.tensor(labels), tuple(found), torch.tensor(split, dtype=torch.uint8))


#: where Debian's ``kicad-packages3d`` installs its models (one ``<category>.3dshapes`` folder each)
KICAD_ROOT = Path("/usr/share/kicad/3dmodels")
#: ten categories of electronic components, each with at least 60 models of at most 5,000 triangles
KICAD_CLASSES = ("Capacitor_THT", "Connector_PinHeader_2.54mm", "Crystal", "Diode_THT", "LED_THT", "Package_DFN_QFN",
                 "Package_DIP", "Package_SO", "Package_TO_SOT_THT", "Resistor_THT")


def load_kicad_shapes(root: str | Path | None = None, *, per_class: int | None = 60, max_faces: int = 5000,
                      classes: tuple[str, ...] = KICAD_CLASSES) -> MeshSet:
    """A real 3D classification set from Debian's ``kicad-packages3d``: the VRML models of ``classes`` (one
    ``<class>.3dshapes`` folder each under ``root``, default :data:`KICAD_ROOT`) with at most ``max_faces``
    triangles (the winding number costs points x triangles), ``per_class`` of them per class evenly spaced through
    the sorted file names (all when ``None``); split as a flat folder (module docstring).

    Raises:
        DataNotFoundError: ``root`` or a class folder is missing; the message says how to install or extract it.
        MeshError: a class has fewer than ``per_class`` models within ``max_faces``, or a model is unreadable.
    """
    root = Path(root) if root is not None else KICAD_ROOT
    how = ("install it (apt-get install kicad-packages3d: 5.4 GB) or extract only its VRML files: apt-get download "
           "kicad-packages3d && dpkg-deb --fsys-tarfile kicad-packages3d_*.deb | tar -x -C DIR --wildcards "
           "'*.wrl', then pass DIR/usr/share/kicad/3dmodels")
    found = {}
    for name in classes:
        folder = root / f"{name}.3dshapes"
        if not folder.is_dir():
            raise DataNotFoundError(f"{folder} not found: kicad-packages3d is not under {root}; {how}")
        files = [f for f in sorted(folder.glob("*.wrl")) if len(read_vrml(f)[1]) <= max_faces]
        if per_class is not None and len(files) < per_class:
            raise MeshError(f"{folder} has {len(files)} models with at most {max_faces} triangles; ask for at most "
                            f"that many per class or raise max_faces")
        found[name] = [(f, f.name) for f in _evenly_spaced(files, per_class)]
    return _mesh_set(found)


# ---------------------------------------------------------------------------------------- quality measures
def grid_points(resolution: int) -> Tensor:
    """``[R^3, 3]`` points of the regular grid over ``[-1, 1]^3`` (``indexing="ij"``: x slowest)."""
    axis = torch.linspace(-1, 1, resolution, dtype=torch.float64)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def marching_cubes(field: Tensor, level: float = 0.0) -> tuple[Tensor, Tensor]:
    """The ``level`` set of one field ``[R, R, R]`` on :func:`grid_points`'s grid, by scikit-image's marching cubes:
    vertices ``[V, 3]`` in ``[-1, 1]^3`` and faces ``[F, 3]`` (empty when the field does not cross ``level``)."""
    from skimage import measure

    volume = field.detach().to(torch.float64).cpu().numpy()
    if not (volume.min() < level < volume.max()):
        return torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.int64)
    spacing = 2.0 / (volume.shape[0] - 1)
    vertices, faces, _, _ = measure.marching_cubes(volume, level, spacing=(spacing,) * 3)
    return torch.as_tensor(vertices - 1.0), torch.as_tensor(faces.astype(np.int64))


def chamfer_distance(a: Tensor, b: Tensor, chunk: int = 4096) -> float:
    """Symmetric Chamfer distance between point sets ``[A, 3]`` and ``[B, 3]``: the mean distance from each point of
    one set to its nearest point of the other, summed over both directions (L2 distances, not squared). ``nan`` when
    a set is empty."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return float("nan")

    def nearest(x: Tensor, y: Tensor) -> Tensor:
        # exact differences (no |x|^2 + |y|^2 - 2 x.y matrix product): a set is at distance 0 from itself
        return torch.cat([torch.cdist(part, y, compute_mode="donot_use_mm_for_euclid_dist").amin(1)
                          for part in x.split(chunk)])

    return float(nearest(a, b).mean() + nearest(b, a).mean())
