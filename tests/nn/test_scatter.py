"""The scatter backend: native reductions are right; backends agree; selection works."""

import os
import subprocess
import sys

import pytest
import torch

import wslgraph
from wslgraph.nn import backend as scatter_module
from wslgraph.nn.backend import WITH_TORCH_SCATTER, scatter, set_scatter_backend


def _reference(src: torch.Tensor, index: torch.Tensor, size: int, reduce: str) -> torch.Tensor:
    out = torch.zeros(size, *src.shape[1:], dtype=src.dtype)
    for row in range(size):
        rows = src[index == row]
        if len(rows):
            out[row] = {"sum": rows.sum(0), "mean": rows.mean(0), "max": rows.amax(0), "min": rows.amin(0)}[reduce]
    return out


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_native_scatter_matches_a_loop(reduce: str) -> None:
    generator = torch.Generator().manual_seed(0)
    src = torch.randn(200, 3, generator=generator)
    index = torch.randint(0, 30, (200,), generator=generator)
    index[index == 7] = 8  # row 7 receives nothing: it must be 0
    out = scatter(src, index, 31, reduce)
    assert torch.allclose(out, _reference(src, index, 31, reduce), atol=1e-6)
    assert out[7].abs().sum() == 0 and out[30].abs().sum() == 0


@pytest.mark.skipif(not WITH_TORCH_SCATTER, reason="torch_scatter is not installed")
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_torch_scatter_backend_agrees_with_native(reduce: str) -> None:
    src = torch.randn(500, 8, requires_grad=True)
    index = torch.randint(0, 40, (500,))
    set_scatter_backend("native")
    native = scatter(src, index, 41, reduce)
    (grad_native,) = torch.autograd.grad(native.sum(), src)
    set_scatter_backend("torch_scatter")
    try:
        other = scatter(src, index, 41, reduce)
        (grad_other,) = torch.autograd.grad(other.sum(), src)
    finally:
        set_scatter_backend("auto")
    assert torch.allclose(native, other, atol=1e-6)
    assert torch.allclose(grad_native, grad_other, atol=1e-6)


def test_backend_selection_and_errors() -> None:
    assert wslgraph.get_scatter_backend() == "auto"
    assert scatter_module.scatter_backend_for("max", torch.device("cpu"), grad=False) == "native"
    expected = "torch_scatter" if WITH_TORCH_SCATTER else "native"  # measured faster with a gradient
    assert scatter_module.scatter_backend_for("max", torch.device("cpu"), grad=True) == expected
    assert scatter_module.scatter_backend_for("sum", torch.device("cpu"), grad=True) == "native"
    with pytest.raises(ValueError, match="unknown scatter backend"):
        wslgraph.set_scatter_backend("fast")
    if not WITH_TORCH_SCATTER:
        with pytest.raises(ValueError, match="not installed"):
            wslgraph.set_scatter_backend("torch_scatter")
    with pytest.raises(ValueError, match="unknown reduction"):
        scatter(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), 1, "median")


def test_environment_variable_chooses_the_backend() -> None:
    code = "import wslgraph; print(wslgraph.get_scatter_backend())"
    env = {**os.environ, "WSLGRAPH_SCATTER_BACKEND": "native"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "native"
    env["WSLGRAPH_SCATTER_BACKEND"] = "bogus"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown scatter backend" in bad.stderr


def test_index_count_is_bincount_with_a_fixed_length() -> None:
    index = torch.randint(0, 7, (200,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(wslgraph.nn.backend.index_count(index, 9), torch.bincount(index, minlength=9))
    assert wslgraph.nn.backend.index_count(index, 9, torch.float32).dtype == torch.float32
