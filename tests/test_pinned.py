"""Fixed seeds give bit-identical outputs of one model of each family, across refactors.

The references (``tests/data/pinned/*.safetensors``, one per machine: torch version, the vector ISA torch's
kernels use, the CPU's AVX-512/AMX extensions, threads) are written by ``WSLGRAPH_PIN_UPDATE=1 python -m pytest
tests/test_pinned.py``; a machine without one skips. The first was written before the layout refactor of issue
13 on an AVX-512 CPU whose kernels round differently from a later one's with the same ISA level (8.9e-8 apart),
so the CPU's extensions are part of the key since. Moving code must not change a single bit of an
encoder's, a peer's, a head's or an editor's output, or of the gradients one training step sees. If a change is
*meant* to change numbers, rewrite the reference in the same commit and say why.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from wslgraph import GraphTemplate
from wslgraph.heads import AutoDecoder, HypernetworkHead, WeightSpaceAutoencoder
from wslgraph.nn import GNNEncoder, ProbeFeatures
from wslgraph.tasks import build_model
from wslgraph.tasks.editing import INREditor
from wslgraph.zoo import siren, small_cnn

REFERENCES = Path(__file__).parent / "data" / "pinned"


def _extensions() -> str:
    """The CPU's AVX-512 and AMX extensions (BLAS and oneDNN choose kernels by them), from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(sorted(flag for flag in set(flags) if flag.startswith(("avx512", "amx"))))


def _inputs(factory, count: int = 6, seed: int = 0):
    template = GraphTemplate.from_module(factory())
    params = torch.randn(count, template.num_params, generator=torch.Generator().manual_seed(seed)) * 0.2
    return template, params


def _model_outputs(name: str, factory, **options) -> dict[str, torch.Tensor]:
    template, params = _inputs(factory)
    batch = template.batch(params)
    torch.manual_seed(1)
    model = build_model(name, 5, **options)
    model(batch)  # lazy initialisation
    model.train()
    out = model(batch)
    grads = torch.autograd.grad(out.square().sum(), [p for p in model.parameters() if p.requires_grad],
                                allow_unused=True, materialize_grads=True)
    model.eval()
    with torch.no_grad():
        evaluated = model(batch)
    return {f"{name}.train": out.detach(), f"{name}.eval": evaluated,
            f"{name}.grad": torch.cat([g.reshape(-1) for g in grads])}


def _outputs() -> dict[str, torch.Tensor]:
    results: dict[str, torch.Tensor] = {}
    for name, options in [("gnn", {"hidden": 16, "num_layers": 2}), ("transformer", {"hidden": 16, "num_layers": 2}),
                          ("dwsnet", {}), ("nfn-hnp", {}), ("nfn-np", {"io_embeddings": "learned"}), ("statnn", {}),
                          ("mlp", {})]:
        results.update(_model_outputs(name, siren, **options))
    results.update({f"cnn.{k}": v for k, v in _model_outputs("gnn", small_cnn, hidden=16, num_layers=2).items()})
    results.update({f"cnn.{k}": v for k, v in _model_outputs("nfn-hnp", small_cnn).items()})

    template, params = _inputs(siren)
    batch = template.batch(params)
    torch.manual_seed(2)
    probe = ProbeFeatures(template, num_probes=8)
    results["probe"] = probe(batch).detach()

    torch.manual_seed(3)
    head = HypernetworkHead(template, 4, hidden=32)
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(4))
    results["hypernetwork.full"] = head(z).detach()
    shift = HypernetworkHead(template, 4, mode="shift")
    results["hypernetwork.shift"] = shift(z).detach()
    torch.manual_seed(5)
    autoencoder = WeightSpaceAutoencoder(GNNEncoder(4, hidden=16, num_layers=1), head, (1, 28, 28), 0.5)
    autoencoder.eval()
    with torch.no_grad():
        results["autoencoder.loss"] = autoencoder.loss(batch).reshape(1)
        results["autoencoder.images"] = autoencoder.decode(autoencoder(batch))
    images = autoencoder.images(params[:3], 0.5).detach()
    torch.manual_seed(7)
    decoder = AutoDecoder(HypernetworkHead(template, 4, hidden=32), 3)
    results["autodecoder.fit"] = torch.tensor(decoder.fit(images, steps=3, generator=torch.Generator().manual_seed(8)))
    results["autodecoder.infer"] = decoder.infer(images, steps=3)

    for backbone in ("gnn", "dwsnet"):
        torch.manual_seed(6)
        options = {"hidden": 16, "num_layers": 1} if backbone == "gnn" else {}
        editor = INREditor(backbone, output_offset=0.5, **options)
        editor.eval()
        with torch.no_grad():
            results[f"editor.{backbone}"] = editor(batch)
    return results


def _fingerprint(tensor: torch.Tensor) -> torch.Tensor:
    """Large tensors are pinned by the SHA-256 of their bytes (plus their float64 sum, to show how far off a change
    is); small ones are kept whole."""
    tensor = tensor.detach().contiguous()
    if tensor.numel() <= 512:
        return tensor
    digest = hashlib.sha256(tensor.numpy().tobytes()).digest()
    return torch.cat([torch.tensor(list(digest), dtype=torch.float64), tensor.double().sum().reshape(1)])


def test_outputs_are_bit_identical_to_the_pinned_reference() -> None:
    # Bits depend on how reductions are split: pin the thread count, and the vector ISA torch's kernels use.
    machine = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": "2",
               "extensions": _extensions()}
    path = REFERENCES / (hashlib.sha256(repr(sorted(machine.items())).encode()).hexdigest()[:16] + ".safetensors")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        outputs = {key: _fingerprint(value) for key, value in _outputs().items()}
    finally:
        torch.set_num_threads(threads)
    if os.environ.get("WSLGRAPH_PIN_UPDATE"):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(outputs, path, metadata=machine)
        pytest.skip(f"wrote {path}")
    if not path.exists():
        pytest.skip(f"no reference for this machine ({machine}); WSLGRAPH_PIN_UPDATE=1 writes one")
    with safe_open(path, "pt") as handle:
        assert handle.metadata() == machine
    reference = load_file(path)
    assert sorted(outputs) == sorted(reference)
    changed = [key for key in outputs if not torch.equal(outputs[key], reference[key])]
    assert not changed, {key: _how_far(outputs[key], reference[key]) for key in changed}


def _how_far(new: torch.Tensor, old: torch.Tensor) -> str:
    if new.shape != old.shape:
        return f"shape {tuple(old.shape)} -> {tuple(new.shape)}"
    if new.dtype == torch.float64 and new.shape == (33,):  # a fingerprint: compare the sums
        return f"sum {old[-1].item():.9g} -> {new[-1].item():.9g}"
    return f"max |difference| {(new.double() - old.double()).abs().max().item():.3g}"
