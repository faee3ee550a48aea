"""Batched INR fitting: equal to the per-model loop, reconstructs images, deterministic per INR."""

import math

import pytest
import torch

from wslgraph import to_state_dict
from wslgraph.errors import ShapeMismatchError
from wslgraph.zoo import siren
from wslgraph.zoo.data import load_images
from wslgraph.zoo.inr import (
    RECIPES,
    INRRecipe,
    fit_flops_per_step,
    fit_inr_reference,
    fit_inrs,
    pixel_grid,
    render_inrs,
)


@pytest.fixture(scope="module")
def digits():
    images = load_images("mnist5k", "train")
    return images.evenly_spaced(6)


@pytest.mark.parametrize("recipe", ["dws", "nfn"])
def test_batched_fit_equals_the_per_model_loop(digits, recipe) -> None:
    fit = fit_inrs(digits[:3], recipe, steps=40, chunk_size=2, progress=False)
    for i in range(3):
        params, final_psnr, steps = fit_inr_reference(digits.images[i], recipe, index=i, steps=40)
        torch.testing.assert_close(fit.params[i], params, rtol=0, atol=1e-5)
        assert math.isclose(float(fit.psnr[i]), final_psnr, abs_tol=1e-3) and int(fit.steps[i]) == steps == 40


def test_early_stopping_freezes_each_inr_like_the_loop(digits) -> None:
    fit = fit_inrs(digits, "dws", steps=160, early_stop_psnr=16.0, compact_every=7, progress=False)
    assert 0 < int((fit.steps < 160).sum()) < len(digits)  # some stop, some run to the end
    for i in range(len(digits)):
        params, final_psnr, steps = fit_inr_reference(digits.images[i], "dws", index=i, steps=160,
                                                      early_stop_psnr=16.0)
        assert int(fit.steps[i]) == steps
        torch.testing.assert_close(fit.params[i], params, rtol=0, atol=1e-4)
        assert math.isclose(float(fit.psnr[i]), final_psnr, abs_tol=1e-2)
    stopped = fit.steps < 160
    assert bool((fit.psnr[stopped] >= 16.0).all())


def test_fitted_inrs_reconstruct_their_images_and_load_into_modules(digits) -> None:
    fit = fit_inrs(digits[:4], "dws", progress=False)  # the full recipe: 1,000 steps
    assert float(fit.psnr.min()) > 20.0
    rendered = render_inrs(fit.params, "dws", fit.image_shape)
    mse = (rendered - digits.images[:4]).square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(10 * torch.log10(1 / mse), fit.psnr, atol=1e-3, rtol=0)
    graphs = fit.template.batch(fit.params)
    module = siren()
    module.load_state_dict(to_state_dict(graphs.get_example(1)))
    with torch.no_grad():
        image = (module(pixel_grid(28, 28)) + RECIPES["dws"].output_offset).view(1, 28, 28)
    torch.testing.assert_close(image, rendered[1], atol=1e-5, rtol=0)


def test_each_inr_starts_from_its_own_seed_whatever_the_chunk_or_shard(digits) -> None:
    full = fit_inrs(digits, "nfn", steps=5, views=2, chunk_size=5, progress=False)
    assert torch.equal(fit_inrs(digits, "nfn", steps=5, views=2, chunk_size=3, progress=False).params, full.params)
    shard = fit_inrs(digits[2:4], "nfn", steps=5, views=2, index_offset=4, progress=False)
    assert torch.equal(shard.params, full.params[4:8])
    assert full.image_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5] and full.view.tolist()[:2] == [0, 1]
    assert not torch.allclose(full.params[0], full.params[1])  # views differ
    other_seed = fit_inrs(digits[:1], "nfn", steps=5, seed=1, progress=False)
    assert not torch.allclose(other_seed.params[0], full.params[0])


def test_rgb_images_and_recipe_overrides() -> None:
    rows = torch.linspace(0, 1, 12)
    images = torch.stack([0.25 + rows.view(1, -1, 1).expand(3, 12, 12) * c for c in (0.3, 0.6)]).contiguous()
    fit = fit_inrs(images, "nfn", hidden=(16,), steps=500, lr=1e-3, progress=False)
    assert fit.params.shape == (2, fit.template.num_params) and fit.template.num_params == 2 * 16 + 16 + 16 * 3 + 3
    assert render_inrs(fit.params, fit.recipe, fit.image_shape).shape == (2, 3, 12, 12)
    assert float(fit.psnr.min()) > 25.0


def test_compiled_step_agrees_with_eager(digits) -> None:
    eager = fit_inrs(digits[:2], "nfn", steps=20, progress=False)
    compiled = fit_inrs(digits[:2], "nfn", steps=20, compile=True, progress=False)
    torch.testing.assert_close(compiled.params, eager.params, atol=1e-5, rtol=0)


def test_flop_count_by_hand() -> None:
    # 784 pixels: forward 2*784*(2*32 + 32*32 + 32*1); backward twice that, minus the first layer's input grad
    forward = 2 * 784 * (64 + 1024 + 32)
    assert fit_flops_per_step(RECIPES["dws"], 784, 1) == 3 * forward - 2 * 784 * 64


def test_bad_input() -> None:
    with pytest.raises(ShapeMismatchError, match=r"\[N, C, H, W\]"):
        fit_inrs(torch.rand(3, 8, 8), progress=False)
    with pytest.raises(ValueError, match="views"):
        fit_inrs(torch.rand(1, 1, 8, 8), views=0, progress=False)
    with pytest.raises(ValueError, match="first_init"):
        INRRecipe("bad", first_init="xavier")
    with pytest.raises(ShapeMismatchError, match="params must be"):
        render_inrs(torch.zeros(2, 5), "dws", (1, 8, 8))
