"""Meshes from users: OFF/OBJ/STL files read through trimesh, exact winding-number occupancy, folder layouts and
splits, typed errors for bad meshes, mesh zoos, and the 3D quality measures (marching cubes, Chamfer distance)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from wslgraph.errors import DataNotFoundError, MeshError
from wslgraph.zoo.meshes import (
    RADIUS,
    chamfer_distance,
    grid_points,
    load_mesh,
    load_mesh_folder,
    marching_cubes,
    surface_samples,
    winding_numbers,
)

trimesh = pytest.importorskip("trimesh")


def _box(path: Path, extents=(1.0, 0.6, 0.4), flip: bool = False, drop_face: bool = False) -> Path:
    mesh = trimesh.creation.box(extents)
    faces = mesh.faces[:, ::-1] if flip else mesh.faces
    if drop_face:
        faces = faces[2:]  # a hole: two triangles of one side
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(mesh.vertices, faces, process=False).export(path)
    return path


def _points(count: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def _inside_box(points: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    return (points.abs() < half).all(-1).to(torch.float64)


@pytest.mark.parametrize("suffix", [".off", ".obj", ".stl", ".ply"])
def test_each_format_loads_normalised_with_the_exact_occupancy_of_a_box(tmp_path, suffix) -> None:
    mesh = load_mesh(_box(tmp_path / f"box{suffix}"))
    assert mesh.watertight and mesh.faces.shape == (12, 3)
    torch.testing.assert_close(mesh.vertices.norm(dim=-1).amax(), torch.tensor(RADIUS, dtype=torch.float64))
    torch.testing.assert_close(mesh.vertices.amax(0), -mesh.vertices.amin(0))  # centred
    half = mesh.vertices.amax(0)  # the box's half extents, scaled: 0.8 * (1, 0.6, 0.4) / |(1, 0.6, 0.4)|
    torch.testing.assert_close(half, torch.tensor([1.0, 0.6, 0.4], dtype=torch.float64) * RADIUS / math.sqrt(1.52))
    points = _points(5000)
    assert torch.equal(mesh.occupancy(points), _inside_box(points, half))  # exact off the surface


def test_winding_numbers_are_one_inside_zero_outside_and_survive_flips_and_holes(tmp_path) -> None:
    sphere = trimesh.creation.icosphere(3, radius=1.0)
    triangles = torch.as_tensor(sphere.vertices)[torch.as_tensor(sphere.faces)]
    radii = torch.linspace(0.0, 2.0, 41, dtype=torch.float64)[:, None]
    directions = torch.nn.functional.normalize(_points(41, 1), dim=-1)
    w = winding_numbers(triangles, radii * directions)
    inside, outside = radii[:, 0] < 0.95, radii[:, 0] > 1.05  # the icosphere's facets lie within 0.5 % of r = 1
    torch.testing.assert_close(w[inside], torch.ones_like(w[inside]), atol=1e-9, rtol=0)
    torch.testing.assert_close(w[outside], torch.zeros_like(w[outside]), atol=1e-9, rtol=0)
    # chunking does not change the sum
    torch.testing.assert_close(winding_numbers(triangles, radii * directions, max_pairs=7), w, atol=1e-12, rtol=0)
    points = _points(3000, 2)
    reference = load_mesh(_box(tmp_path / "box.off")).occupancy(points)
    flipped = load_mesh(_box(tmp_path / "flipped.off", flip=True))  # inside-out: w = -1 inside
    assert torch.equal(flipped.occupancy(points), reference)
    holed = load_mesh(_box(tmp_path / "holed.off", drop_face=True))  # not watertight: w degrades near the hole
    assert not holed.watertight
    assert (holed.occupancy(points) == reference).double().mean() > 0.95


def test_surface_samples_lie_on_the_surface_spread_by_area() -> None:
    box = trimesh.creation.box((2.0, 1.0, 1.0))  # areas: two 1x1 ends, four 2x1 sides
    triangles = torch.as_tensor(box.vertices)[torch.as_tensor(box.faces)]
    samples = surface_samples(triangles, 20000, torch.Generator().manual_seed(0))
    on_face = (samples.abs() - torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64)).abs().amin(-1)
    assert float(on_face.max()) < 1e-12
    ends = ((samples[:, 0].abs() - 1).abs() < 1e-12).double().mean()
    assert abs(float(ends) - 2 / 10) < 0.015  # 2 of the 10 unit squares


def test_folders_give_classes_and_splits_modelnet_and_flat(tmp_path) -> None:
    for name in ("chair", "airplane"):
        for i in range(12):
            _box(tmp_path / "modelnet" / name / "train" / f"{name}_{i:03d}.off", (1, 0.5 + i / 30, 0.3))
        for i in range(2):
            _box(tmp_path / "modelnet" / name / "test" / f"{name}_{i:03d}.off")
    meshes = load_mesh_folder(tmp_path / "modelnet")
    assert meshes.classes == ("airplane", "chair") and len(meshes) == 28
    assert meshes.labels.tolist() == [0] * 14 + [1] * 14
    # sorted paths: test/ before train/; the ninth training mesh (i % 10 == 8) is held out for validation
    assert meshes.split[:14].tolist() == [2, 2] + [0] * 8 + [1] + [0] * 3
    for i in range(11):
        _box(tmp_path / "flat" / "cube" / f"{i:02d}.stl")
    (tmp_path / "flat" / "notes").mkdir()
    (tmp_path / "flat" / "notes" / "readme.txt").write_text("not a mesh")
    flat = load_mesh_folder(tmp_path / "flat")
    assert flat.classes == ("cube",) and flat.split.tolist() == [0] * 8 + [1, 2, 0]
    assert len(load_mesh_folder(tmp_path / "flat", per_class=3)) == 3


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, text, match", [
    ("garbage.off", "this is not a mesh", "not a readable mesh"),
    ("empty.off", "OFF\n0 0 0\n", "empty"),
    ("point.off", "OFF\n3 1 0\n0 0 0\n0 0 0\n0 0 0\n3 0 1 2\n", "degenerate"),
    ("line.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n", "degenerate"),
    ("sheet.off", "OFF\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n", "encloses no volume"),
    ("nan.obj", "v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", "NaN|empty|degenerate"),
])
def test_bad_meshes_are_refused_naming_the_file(tmp_path, name, text, match) -> None:
    path = _write(tmp_path / name, text)
    with pytest.raises(MeshError, match=match) as caught:
        load_mesh(path)
    assert name in str(caught.value)


def test_bad_folders_are_refused(tmp_path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_mesh_folder(tmp_path / "missing")
    _write(tmp_path / "loose" / "a.off", "OFF\n0 0 0\n")  # meshes at the top, no class folders
    (tmp_path / "loose" / "empty_class").mkdir()
    with pytest.raises(MeshError, match="no class folders"):
        load_mesh_folder(tmp_path / "loose")
    _box(tmp_path / "mixed" / "ok" / "a.off")
    _write(tmp_path / "mixed" / "ok" / "b.off", "OFF\n0 0 0\n")
    with pytest.raises(MeshError, match="b.off"):
        load_mesh_folder(tmp_path / "mixed")


def test_marching_cubes_and_chamfer_distances() -> None:
    grid = grid_points(48)
    vertices, faces = marching_cubes((grid.norm(dim=-1) - 0.6).reshape(48, 48, 48))
    assert faces.shape[0] > 1000 and float((vertices.norm(dim=-1) - 0.6).abs().max()) < 2 / 47
    empty_vertices, empty_faces = marching_cubes(torch.ones(8, 8, 8))
    assert empty_vertices.shape == (0, 3) and empty_faces.shape == (0, 3)
    points = surface_samples(vertices[faces], 500, torch.Generator().manual_seed(0))
    assert chamfer_distance(points, points) == 0.0
    shift = torch.tensor([1e-4, 0, 0], dtype=torch.float64)  # far below the points' spacing: each keeps its partner
    assert chamfer_distance(points, points + shift) == pytest.approx(2e-4, rel=1e-6)
    assert math.isnan(chamfer_distance(points, points[:0]))


def test_a_mesh_zoo_fits_and_stores_like_a_procedural_one(tmp_path, capsys) -> None:
    from wslgraph.cli import main
    from wslgraph.zoo.dataset import ZooDataset

    generator = torch.Generator().manual_seed(0)
    for i in range(3):
        sizes = (0.4 + 0.8 * torch.rand(3, generator=generator)).tolist()
        _box(tmp_path / "data" / "box" / f"{i}.off", sizes)
        sphere = trimesh.creation.icosphere(2, radius=0.5 + float(torch.rand(1, generator=generator)))
        (tmp_path / "data" / "sphere").mkdir(parents=True, exist_ok=True)
        sphere.export(tmp_path / "data" / "sphere" / f"{i}.obj")
    zoo = tmp_path / "zoo"
    assert main(["zoo", "inr", str(zoo), "--source", "mesh", "--data-root", str(tmp_path / "data"),
                 "--steps", "300", "--quiet"]) == 0
    data = ZooDataset(zoo)
    columns = data.arrays.columns
    assert data.arrays.description["classes"] == ["box", "sphere"] and columns["label"].tolist() == [0] * 3 + [1] * 3
    assert data.arrays.description["files"][0] == "box/0.off"
    assert columns["watertight"].tolist() == [1] * 6
    assert bool((columns["iou"] > 0.75).all()), columns["iou"]  # a SIREN learned each shape
    assert bool((columns["chamfer"] < 0.3).all()), columns["chamfer"]
    assert int((data.batch(torch.arange(2)).node_type == 0).sum()) == 2 * 3
    # the figure rebuilds each shape from its recorded file
    assert main(["zoo", "render", str(zoo), "--out", str(tmp_path / "f.svg"), "--split", "train",
                 "--resolution", "16"]) == 0
    assert (tmp_path / "f.svg").read_text().count("<g id=\"axes_") == 4  # box and sphere, true and fitted
    # a bad mesh stops the job before anything is written; --source mesh needs its folder
    _write(tmp_path / "bad" / "box" / "0.off", "OFF\n0 0 0\n")
    assert main(["zoo", "inr", str(tmp_path / "zoo2"), "--source", "mesh", "--data-root", str(tmp_path / "bad"),
                 "--quiet"]) == 2
    assert "0.off: the mesh is empty" in capsys.readouterr().err and not (tmp_path / "zoo2").exists()
    with pytest.raises(SystemExit):
        main(["zoo", "inr", str(tmp_path / "zoo3"), "--source", "mesh"])
    assert "--source mesh needs --data-root" in capsys.readouterr().err


def _vrml_box(centre=(0.0, 0.0, 0.0), half=(1.0, 0.5, 0.25)) -> str:
    """A box as one IndexedFaceSet of six quads (outward), in KiCad StepUp's layout."""
    corners = [[centre[k] + (half[k] if (i >> k) & 1 else -half[k]) for k in range(3)] for i in range(8)]
    quads = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    index = ",".join(f"{a},{b},{c},{d},-1" for a, b, c, d in quads)
    points = ",".join(" ".join(f"{x:.3f}" for x in corner) for corner in corners)
    return (f"Shape {{ geometry IndexedFaceSet \n{{ creaseAngle 0.50 coordIndex [{index}]\n"
            f"coord Coordinate {{ point [{points}]\n}}}}\nappearance Appearance{{material USE PIN-01 }}\n}}\n")


def _vrml(path: Path, *boxes: str) -> Path:
    return _write(path, "#VRML V2.0 utf8\n#kicad StepUp wrl exported\n" + "".join(boxes))


def test_vrml_face_sets_are_merged_fan_triangulated_and_exact(tmp_path) -> None:
    from wslgraph.zoo.meshes import read_vrml

    path = _vrml(tmp_path / "part.wrl", _vrml_box(), _vrml_box((0.0, 0.0, 0.75), (0.25, 0.25, 0.5)))
    vertices, faces = read_vrml(path)
    assert vertices.shape == (16, 3) and faces.shape == (24, 3)  # two boxes: 2 x 6 quads -> 24 triangles
    mesh = load_mesh(path)  # body and a pin on top: the union is the occupancy
    assert mesh.watertight
    centre = torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)  # of the bounding box: z from -0.25 to 1.25
    scale = RADIUS / float((torch.tensor(vertices) - centre).norm(dim=-1).max())
    points = _points(4000, 5)
    local = points / scale + centre  # undo the normalisation
    expected = torch.maximum(_inside_box(local, torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)),
                             _inside_box(local - torch.tensor([0, 0, 0.75]), torch.tensor([0.25, 0.25, 0.5])))
    assert torch.equal(mesh.occupancy(points), expected)


@pytest.mark.parametrize("text, match", [
    ("#VRML V1.0 ascii\n", "not a VRML 2.0"),
    ("#VRML V2.0 utf8\nTransform { children [" + _vrml_box() + "] }", "Transform"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coordIndex [0,1,9,-1] coord Coordinate { point "
     "[0 0 0, 1 0 0, 0 1 0] } } }", "outside its 3 points"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0] } } }", "without inline"),
    ("#VRML V2.0 utf8\nShape { appearance Appearance { } }", "no IndexedFaceSet"),
])
def test_unsupported_vrml_is_refused_naming_the_file(tmp_path, text, match) -> None:
    path = _write(tmp_path / "model.wrl", text)
    with pytest.raises(MeshError, match=match) as caught:
        load_mesh(path)
    assert "model.wrl" in str(caught.value)


def test_kicad_models_give_a_filtered_evenly_spaced_set(tmp_path, capsys) -> None:
    from wslgraph.cli import main
    from wslgraph.zoo.dataset import ZooDataset
    from wslgraph.zoo.meshes import KICAD_CLASSES, load_kicad_shapes

    root = tmp_path / "3dmodels"
    for c, name in enumerate(KICAD_CLASSES):
        for i in range(4):
            parts = [_vrml_box(half=(1.0, 0.3 + 0.1 * c, 0.2 + 0.05 * i))] * (1 + (i == 3))  # model 3: 24 triangles
            _vrml(root / f"{name}.3dshapes" / f"{name}_{i}.wrl", *parts)
    shapes = load_kicad_shapes(root, per_class=2, max_faces=12)  # of models 0, 1, 2: the first and the last
    assert shapes.classes == KICAD_CLASSES and len(shapes) == 20
    assert [Path(m.path).name for m in shapes.meshes[:2]] == ["Capacitor_THT_0.wrl", "Capacitor_THT_2.wrl"]
    with pytest.raises(MeshError, match="has 3 models with at most 12 triangles"):
        load_kicad_shapes(root, per_class=4, max_faces=12)
    with pytest.raises(DataNotFoundError, match="apt-get download kicad-packages3d"):
        load_kicad_shapes(tmp_path / "nothing")
    zoo = tmp_path / "zoo"
    assert main(["zoo", "inr", str(zoo), "--source", "kicad", "--data-root", str(root), "--per-class", "2",
                 "--steps", "5", "--quiet"]) == 0
    data = ZooDataset(zoo)
    assert data.arrays.description["source"] == "kicad" and len(data) == 20
    assert data.arrays.description["files"][1] == "Capacitor_THT.3dshapes/Capacitor_THT_3.wrl"  # max 5,000 faces


def test_signed_distances_to_a_mesh_are_exact(tmp_path) -> None:
    mesh = load_mesh(_box(tmp_path / "box.obj"))
    half = mesh.vertices.amax(0)
    points = torch.cat([_points(3000, 6), surface_samples(mesh.triangles, 200, torch.Generator().manual_seed(1))])
    q = points.abs() - half
    exact = q.clamp(min=0).norm(dim=-1) + q.amax(-1).clamp(max=0)  # the box's signed distance
    torch.testing.assert_close(mesh.sdf(points[:3000]), exact[:3000], atol=1e-12, rtol=0)
    assert float(mesh.sdf(points[3000:]).abs().max()) < 1e-12  # zero on the surface
    from wslgraph.zoo.meshes import triangle_distances

    degenerate = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]], dtype=torch.float64)  # a segment
    torch.testing.assert_close(triangle_distances(degenerate, torch.tensor([[1.0, 3, 4], [-3, 4, 0]])),
                               torch.tensor([5.0, 5.0], dtype=torch.float64))
