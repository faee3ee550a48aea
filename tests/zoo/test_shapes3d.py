"""Procedural 3D shapes: exact signed distances (checked against brute force, the eikonal property and analytic
volumes), seeded instances inside the unit cube, and near-surface sampling."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from wslgraph.zoo.shapes3d import SHAPE_CLASSES, SHAPE_VOLUMES, make_shapes, random_rotations, sample_points

SHAPES = make_shapes(3, seed=0)


def _gradient(points: torch.Tensor) -> torch.Tensor:
    points = points.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(SHAPES.sdf(points).sum(), points)
    return gradient


def test_ten_classes_seeded_and_inside_the_cube() -> None:
    assert len(SHAPE_CLASSES) == 10 and SHAPES.labels.tolist() == [c for c in range(10) for _ in range(3)]
    again = make_shapes(3, seed=0)
    assert torch.equal(again.params, SHAPES.params) and torch.equal(again.rotations, SHAPES.rotations)
    assert not torch.equal(make_shapes(3, seed=1).params, SHAPES.params)
    # every point of the cube's surface is outside every shape
    face = torch.rand(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    face[:, 0] = torch.where(face[:, 1] > 0, 1.0, -1.0)
    assert bool((SHAPES.sdf(face) > 0.02).all())


def test_distances_agree_with_brute_force_over_dense_surface_samples() -> None:
    generator = torch.Generator().manual_seed(1)
    surface = sample_points(SHAPES, 30000, near=1.0, sigma=0.0, generator=generator)
    assert SHAPES.sdf(surface).abs().max() < 1e-6  # projection lands on the surface
    queries = torch.rand(len(SHAPES), 40, 3, generator=generator, dtype=torch.float64) * 2 - 1
    nearest = torch.cdist(queries, surface).amin(-1)  # within the samples' spacing of the true distance
    distance = SHAPES.sdf(queries).abs()
    assert bool((distance <= nearest + 1e-9).all()), (distance - nearest).max()
    assert (nearest - distance).max() < 0.03


def test_gradients_have_unit_norm_almost_everywhere() -> None:
    points = torch.rand(len(SHAPES), 2000, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    norms = _gradient(points * 2 - 1).norm(dim=-1)
    assert (norms - 1).abs().median() < 1e-9
    assert ((norms - 1).abs() < 1e-6).double().mean() > 0.99  # off the medial axes


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_monte_carlo_volumes_match_the_analytic_ones(name: str) -> None:
    code = SHAPE_CLASSES.index(name)
    shapes = SHAPES[SHAPES.labels == code]
    points = torch.rand(200_000, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1
    estimated = shapes.occupancy(points).mean(-1) * 8
    exact = SHAPE_VOLUMES[name](shapes.params) * shapes.scales**3
    torch.testing.assert_close(estimated, exact, rtol=0.04, atol=0.004)


def test_near_surface_sampling_mixes_surface_and_uniform_points() -> None:
    points = sample_points(SHAPES, 1000, near=0.5, sigma=0.01, generator=torch.Generator().manual_seed(4))
    assert points.shape == (30, 1000, 3) and points.abs().max() <= 1
    distance = SHAPES.sdf(points).abs()
    assert (distance[:, :500] < 0.05).double().mean() > 0.99 and (distance[:, 500:] < 0.05).double().mean() < 0.5
    with pytest.raises(ValueError, match="per_class"):
        make_shapes(0)


def test_occupancy_sirens_fit_their_shapes_alike_in_any_chunk() -> None:
    from wslgraph.zoo.shapes3d import ShapeRecipe, default_chunk_size, fit_shape_inrs

    shapes = make_shapes(1, seed=3)[torch.tensor([0, 2, 7])]  # a sphere, a box, a torus
    recipe = ShapeRecipe(steps=300, points=2048)
    params, iou = fit_shape_inrs(shapes, recipe, seed=0)
    assert params.shape == (3, 3 * 32 + 32 + 32 * 32 + 32 + 32 + 1)
    _, untrained = fit_shape_inrs(shapes, replace(recipe, steps=0), seed=0)
    assert bool((iou > 0.6).all()) and bool((iou - untrained > 0.3).all()), (iou, untrained)  # it learned
    # its own init and points, whatever the chunk: the same bits in a chunk of 2 (a 1-INR chunk runs other kernels)
    again, _ = fit_shape_inrs(shapes[1:], recipe, seed=0, index_offset=1, chunk_size=2)
    assert torch.equal(again, params[1:])
    # chunks are balanced, so no shape is fitted alone: 5 shapes in chunks of at most 4 go as 2 + 3, not 4 + 1
    short = replace(recipe, steps=20)
    whole, _ = fit_shape_inrs(make_shapes(1, seed=3)[:5], short, seed=0, chunk_size=5)
    balanced, _ = fit_shape_inrs(make_shapes(1, seed=3)[:5], short, seed=0, chunk_size=4)  # 2 + 3, not 4 + 1
    assert torch.equal(balanced, whole)
    assert default_chunk_size(recipe) == 16 and default_chunk_size(ShapeRecipe()) == 8  # 2,048 / 4,096 points
    assert default_chunk_size(ShapeRecipe(), "cuda") == 256


def test_a_3d_zoo_is_written_and_read_like_a_2d_one(tmp_path, capsys) -> None:
    from wslgraph.cli import main
    from wslgraph.zoo.dataset import ZooDataset

    zoo = tmp_path / "zoo"
    assert main(["zoo", "inr", str(zoo), "--source", "shapes3d", "--per-class", "10", "--steps", "5",
                 "--shard-size", "40", "--quiet"]) == 0
    train, test = ZooDataset(zoo, "train"), ZooDataset(zoo, "test")
    assert (len(train), len(ZooDataset(zoo, "val")), len(test)) == (80, 10, 10)
    assert sorted(test.arrays.columns["label"][test.indices_].tolist()) == list(range(10))
    batch = train.batch(torch.arange(4))
    assert int((batch.node_type == 0).sum()) == 4 * 3  # x, y, z inputs
    assert train.arrays.description["classes"] == list(SHAPE_CLASSES)
    assert train.arrays.columns["chamfer"].shape == (100,)  # nan where 5 steps left no surface
    figure = tmp_path / "shapes.png"
    assert main(["zoo", "render", str(zoo), "--out", str(figure), "--count", "3", "--views", "2",
                 "--resolution", "16"]) == 0
    assert figure.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        main(["zoo", "inr", str(tmp_path / "other"), "--source", "shapes3d", "--train-images", "5"])
    assert "apply to image sources; shapes3d takes --per-class" in capsys.readouterr().err


def test_signed_distance_sirens_learn_their_shapes() -> None:
    from wslgraph.zoo.shapes3d import SHAPE_RECIPES, fit_shape_inrs, inr_chamfer

    shapes = make_shapes(1, seed=3)[torch.tensor([0, 2, 7])]
    recipe = replace(SHAPE_RECIPES["sdf"], steps=300, points=2048)
    assert recipe.target == "sdf" and recipe.inside(torch.tensor([-0.1, 0.1])).tolist() == [True, False]
    params, iou = fit_shape_inrs(shapes, recipe, seed=0)
    _, untrained = fit_shape_inrs(shapes, replace(recipe, steps=0), seed=0)
    assert bool((iou > 0.6).all()) and bool((iou - untrained > 0.3).all()), (iou, untrained)
    assert bool((inr_chamfer(params, shapes, recipe, resolution=32, points=1024) < 0.2).all())
    with pytest.raises(ValueError, match="target must be"):
        replace(recipe, target="udf")


def test_turned_shapes_are_the_same_shapes_in_another_pose() -> None:
    """A turned shape's distance at R p is the original's at p, for every class; the rotations are proper."""
    shapes = make_shapes(2, seed=3)
    turns = random_rotations(len(shapes), torch.Generator().manual_seed(4))
    eye = torch.eye(3, dtype=turns.dtype).expand_as(turns)
    assert torch.allclose(turns @ turns.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(turns), torch.ones(len(shapes), dtype=turns.dtype))
    points = torch.rand(len(shapes), 300, 3, dtype=torch.float64) * 2 - 1
    turned = shapes.turned(turns)
    moved = torch.einsum("nij,npj->npi", turns, points)
    assert torch.allclose(turned.sdf(moved), shapes.sdf(points), atol=1e-9)
    assert not torch.allclose(turned.sdf(points), shapes.sdf(points), atol=1e-3)  # the pose did change
    assert torch.equal(turned.labels, shapes.labels)
    with pytest.raises(ValueError, match="rotations must be"):
        shapes.turned(turns[:1])
