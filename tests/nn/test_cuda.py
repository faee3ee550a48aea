"""Encoders on CUDA agree with CPU; the dense path agrees with the generic one there too."""

import pytest
import torch

from wslgraph import GraphTemplate, collate, to_graph
from wslgraph.nn import GNNEncoder, TransformerEncoder
from wslgraph.zoo import siren, small_cnn

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("symmetry", ["permutation", "auto"])
@pytest.mark.parametrize("architecture", [small_cnn, siren])
@pytest.mark.parametrize("cls", [GNNEncoder, TransformerEncoder])
def test_encoders_on_cuda_match_cpu(cls, architecture, symmetry) -> None:
    torch.manual_seed(0)
    template = GraphTemplate.from_module(architecture())
    batch = template.batch(torch.randn(6, template.num_params) * 0.1)
    encoder = cls(4, hidden=16, num_layers=2, symmetry=symmetry).eval()
    with torch.no_grad():
        cpu = encoder(batch)
        gpu = encoder.cuda()(batch.to("cuda"))
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_dense_equals_generic_on_cuda_with_gradients() -> None:
    torch.manual_seed(0)
    template = GraphTemplate.from_module(siren())
    batch = template.batch(torch.randn(8, template.num_params, device="cuda") * 0.1)
    # eval mode: in training mode the head's batch norm over 8 graphs divides by their small spread and turns
    # float-rounding differences between the two paths into large gradient differences (measured on CPU too)
    encoder = GNNEncoder(3, hidden=16, num_layers=2).cuda().eval()
    results = []
    for dense in (True, False):
        encoder.dense = dense
        out = encoder(batch)
        grads = torch.autograd.grad(out.square().sum(), list(encoder.parameters()))
        results.append((out, grads))
    (a, ga), (b, gb) = results
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, rtol=1e-3, atol=1e-5)


def test_mixed_batch_on_cuda() -> None:
    batch = collate([to_graph(siren()), to_graph(small_cnn())]).to("cuda")
    assert GNNEncoder(2, hidden=8, num_layers=1).cuda()(batch).shape == (2, 2)


@pytest.mark.parametrize("dense", [True, False])
def test_message_passing_layers_never_synchronise_with_the_host(dense, recwarn) -> None:
    """Only the once-per-batch input checks may read the device; no per-layer code does (it stalls the queue)."""
    import warnings

    template = GraphTemplate.from_module(siren())
    batch = template.batch(torch.randn(8, template.num_params, device="cuda") * 0.1)
    encoder = GNNEncoder(3, hidden=16, num_layers=3).cuda()
    encoder.dense = dense
    encoder(batch).sum().backward()  # lazy initialisation and PNA's delta may read the device once
    warnings.simplefilter("always")
    torch.cuda.set_sync_debug_mode("warn")
    try:
        encoder(batch).sum().backward()
        torch.cuda.current_stream().synchronize()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in recwarn if "synchroniz" in str(w.message)]
    assert len(syncs) <= 8, [f"{w.filename}:{w.lineno}" for w in syncs]
