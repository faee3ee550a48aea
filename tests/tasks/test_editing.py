"""INR editing: deltas are equivariant, an untrained editor edits nothing, training lowers the pixel MSE."""

import copy

import pytest
import torch

from wslgraph import GraphTemplate
from wslgraph.heads.autoencoder import dilate
from wslgraph.tasks import INREditor, TrainConfig, train
from wslgraph.weightspace import hidden_permutations, permute_state_dict
from wslgraph.zoo import siren
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.inr import RECIPES, render_inrs

TEMPLATE = GraphTemplate.from_module(siren())


def _permute(params: torch.Tensor, perms: list[torch.Tensor]) -> torch.Tensor:
    rows = [permute_state_dict(TEMPLATE.layout, TEMPLATE.unflatten(p), perms) for p in params]
    return torch.stack([TEMPLATE.flatten(r) for r in rows])


def _randomise_heads(editor: INREditor) -> None:
    """Zero-initialised readouts would make equivariance trivial: give them random weights."""
    heads = [m for name, m in editor.named_modules() if name in ("edge_head", "node_head", "weight_head", "token_head")
             or (editor.backbone_name == "mlp" and m is editor.backbone.mlp[-1])]
    generator = torch.Generator().manual_seed(1)
    for head in heads:
        for parameter in head.parameters():
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.5


@pytest.mark.parametrize("backbone", ["gnn", "transformer", "dwsnet", "nfn-hnp", "nfn-np"])
def test_deltas_move_with_the_hidden_neurons(backbone) -> None:
    torch.manual_seed(0)
    params = torch.randn(4, TEMPLATE.num_params) * 0.3
    editor = INREditor(backbone, hidden=8, num_layers=2).eval()
    with torch.no_grad():
        editor.delta(TEMPLATE.batch(params))  # build
        _randomise_heads(editor)
        perms = hidden_permutations(TEMPLATE.layout, torch.Generator().manual_seed(5))
        delta = editor.delta(TEMPLATE.batch(params))
        moved = editor.delta(TEMPLATE.batch(_permute(params, perms)))
    assert delta.abs().max() > 1e-3  # not trivially zero
    assert torch.allclose(moved, _permute(delta, perms), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(moved, delta, atol=1e-3)  # and the permutation did move something


def test_flat_mlp_editor_is_not_equivariant() -> None:
    torch.manual_seed(0)
    params = torch.randn(4, TEMPLATE.num_params) * 0.3
    editor = INREditor("mlp", hidden=32).eval()
    with torch.no_grad():
        editor.delta(TEMPLATE.batch(params))
        _randomise_heads(editor)
        perms = hidden_permutations(TEMPLATE.layout, torch.Generator().manual_seed(5))
        moved = editor.delta(TEMPLATE.batch(_permute(params, perms)))
        expected = _permute(editor.delta(TEMPLATE.batch(params)), perms)
    assert not torch.allclose(moved, expected, atol=1e-3)


def test_untrained_editor_returns_the_input_and_scores_the_dilation_gap(inr_zoo) -> None:
    data = ZooDataset(inr_zoo, "test")
    batch = data.batch(range(6))
    editor = INREditor("gnn", hidden=8, num_layers=1, output_offset=0.5)
    with torch.no_grad():
        errors = editor(batch)
        params = TEMPLATE.unbatch(batch)
        assert torch.equal(editor.edit(batch), params)
    images = render_inrs(params, RECIPES["dws"], (1, 28, 28))  # the zoo's own renderer
    expected = (images - dilate(images)).square().flatten(1).mean(1, keepdim=True)
    assert torch.allclose(errors, expected, atol=1e-6)


def test_sane_editor_reads_one_delta_per_weight_from_its_tokens() -> None:
    """SANE's editor: an untrained one edits nothing; with a random token readout every weight and bias gets a
    delta of its own (the tokens cover the architecture), and it is not equivariant (the token view learns that)."""
    torch.manual_seed(0)
    params = torch.randn(4, TEMPLATE.num_params) * 0.3
    editor = INREditor("sane", hidden=16, latent=8, num_layers=1, window=16, token_width=8).eval()
    with torch.no_grad():
        assert torch.equal(editor.edit(TEMPLATE.batch(params)), params)  # zero readout: the input
        _randomise_heads(editor)
        delta = editor.delta(TEMPLATE.batch(params))
        assert bool((delta != 0).all())
        perms = hidden_permutations(TEMPLATE.layout, torch.Generator().manual_seed(5))
        moved = editor.delta(TEMPLATE.batch(_permute(params, perms)))
    assert not torch.allclose(moved, _permute(delta, perms), atol=1e-3)


@pytest.mark.parametrize("backbone", ["gnn", "nfn-hnp", "sane"])
def test_training_an_editor_lowers_the_pixel_mse(inr_zoo, backbone) -> None:
    splits = [ZooDataset(inr_zoo, s) for s in ("train", "val", "test")]
    options = {"hidden": 16, "num_layers": 2}
    config = TrainConfig(task="editing", epochs=6, batch_size=16, lr=3e-3, warmup_steps=2, progress=False)
    result = train(INREditor(backbone, output_offset=0.5, **options), *splits[:2], config, test_set=splits[2])
    with torch.no_grad():
        untouched = float(INREditor(backbone, output_offset=0.5, **options)(splits[2].batch(range(20))).mean())
    assert result["test"]["mse"] < 0.9 * untouched, (result["test"]["mse"], untouched)


def test_unbatch_is_differentiable_and_its_gradient_is_the_adjoint() -> None:
    torch.manual_seed(0)
    params = torch.randn(3, TEMPLATE.num_params)
    batch = TEMPLATE.batch(params)
    edits = copy.copy(batch)
    x = batch.x.clone().requires_grad_()
    edge_attr = batch.edge_attr.clone().requires_grad_()
    edits.x, edits.edge_attr = x, edge_attr
    out = TEMPLATE.unbatch(edits)
    assert torch.equal(out, params)
    probe = torch.randn_like(out)
    (out * probe).sum().backward()
    # <probe, unbatch(g)> is linear in g: its gradient is the graph laid out from probe (template.batch)
    laid_out = TEMPLATE.batch(probe)
    assert torch.allclose(edge_attr.grad, laid_out.edge_attr) and torch.allclose(x.grad, laid_out.x * batch.x_mask)
