"""The IFT hypernetwork head: real weights, training, exact IFT Jacobians and implicit gradients."""

import json
import xml.etree.ElementTree as ET

import pytest
import torch
from torch import nn

from wslgraph import GraphTemplate
from wslgraph.convert import register
from wslgraph.errors import ShapeMismatchError, UnsupportedModuleError
from wslgraph.graph import Activation
from wslgraph.heads import (
    AutoDecoder,
    HypernetworkHead,
    INRArchitecture,
    LatentEditor,
    WeightSpaceAutoencoder,
    dilate,
    fit_embedding_classifier,
    ift_report,
    image_targets,
    implicit_gradients,
    implicit_training_step,
    inr_forward,
    latent_hessians,
    latent_jacobian,
    reconstruction_loss,
    solve_latents,
    spectrum_summary,
)
from wslgraph.nn import GNNEncoder
from wslgraph.weightspace import pixel_grid
from wslgraph.zoo import siren, small_cnn
from wslgraph.zoo.data import load_images
from wslgraph.zoo.inr import fit_inrs

TEMPLATE = GraphTemplate.from_module(siren(hidden=(16, 16)))


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", "train").images[:16]


@pytest.mark.parametrize("mode", ["full", "shift"])
def test_generated_weights_are_real_networks(mode) -> None:
    torch.manual_seed(0)
    head = HypernetworkHead(TEMPLATE, 6, mode=mode, hidden=32)
    z = torch.randn(3, 6)
    params = head(z)
    coords = pixel_grid(5, 7)
    rendered = inr_forward(params, coords, head.architecture)
    for i in range(3):
        module = siren(hidden=(16, 16))
        module.load_state_dict(TEMPLATE.unflatten(params[i].detach()))
        with torch.no_grad():
            torch.testing.assert_close(module(coords), rendered[i], atol=1e-6, rtol=1e-5)
    assert TEMPLATE.batch(params.detach()).num_graphs == 3


def test_initial_weights_have_siren_statistics() -> None:
    head = HypernetworkHead(TEMPLATE, 8)
    params = head(torch.randn(64, 8) * 0.01).detach()
    weights = TEMPLATE.unflatten(params[0])
    # SIREN: first layer U(+-1/2) (std 0.289), hidden layer U(+-sqrt(6/16)/30) (std 0.0118)
    assert abs(float(weights["0.weight"].std()) / (0.5 / 3**0.5) - 1) < 0.25
    assert abs(float(weights["2.weight"].std()) / ((6 / 16) ** 0.5 / 30 / 3**0.5) - 1) < 0.25
    assert float(params.std(0).max()) > 0  # z changes the weights


@pytest.mark.parametrize("mode", ["full", "shift"])
def test_auto_decoder_training_and_inference(digits, mode) -> None:
    torch.manual_seed(0)
    head = HypernetworkHead(TEMPLATE, 8, mode=mode, hidden=64)
    decoder = AutoDecoder(head, len(digits))
    losses = decoder.fit(digits, steps=300, lr=1e-3, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert losses[-1] < 0.2 * losses[0]
    before = [p.detach().clone() for p in head.parameters()]
    z = decoder.infer(digits[:4], steps=200)
    assert all(torch.equal(a, b) for a, b in zip(before, head.parameters()))  # head frozen at test time
    coords, targets = image_targets(digits[:4])
    assert float(reconstruction_loss(head, z, targets, coords).mean().detach()) < 0.3 * losses[0]


@pytest.fixture(scope="module")
def fitted():
    """A trained float64 head (shift mode, l = 4) and embeddings at exact stationary points."""
    torch.manual_seed(0)
    images = load_images("digits", "train").images[:6].double()
    head = HypernetworkHead(TEMPLATE, 4, mode="shift").double()
    decoder = AutoDecoder(head, len(images), latent_reg=1e-3).double()
    decoder.fit(images, steps=200, lr=3e-3, batch_size=6)
    coords, targets = image_targets(images)
    z = solve_latents(head, targets, coords, decoder.embeddings.weight.detach(), latent_reg=1e-3)
    return head, z, targets, coords


def test_embeddings_are_stationary_and_the_hessian_is_full_rank(fitted) -> None:
    head, z, targets, coords = fitted
    zz = z.clone().requires_grad_(True)
    gradient = torch.autograd.grad(reconstruction_loss(head, zz, targets, coords, 1e-3).sum(), zz)[0]
    assert float(gradient.abs().max()) < 1e-10
    summary = spectrum_summary(latent_hessians(head, z, targets, coords, 1e-3))
    assert summary["fraction_full_rank"] == 1.0 and summary["fraction_positive_definite"] == 1.0


def test_ift_jacobian_matches_finite_differences(fitted) -> None:
    head, z, targets, coords = fitted
    jacobian = latent_jacobian(head, z, targets, coords, 1e-3)  # [B, l, points, out]
    direction = torch.randn(targets.shape, generator=torch.Generator().manual_seed(1), dtype=targets.dtype)
    eps = 1e-5
    plus = solve_latents(head, targets + eps * direction, coords, z, latent_reg=1e-3)
    minus = solve_latents(head, targets - eps * direction, coords, z, latent_reg=1e-3)
    finite = (plus - minus) / (2 * eps)
    predicted = (jacobian * direction.unsqueeze(1)).sum(dim=(2, 3))
    torch.testing.assert_close(predicted, finite, rtol=1e-4, atol=1e-7)


def test_implicit_gradients_match_unrolled_differentiation(fitted) -> None:
    head, z_star, targets, coords = fitted
    goal = torch.randn(z_star.shape, generator=torch.Generator().manual_seed(2), dtype=z_star.dtype)
    implicit = implicit_gradients(head, z_star, targets, coords, 2 * (z_star - goal), latent_reg=1e-3)
    cg = implicit_gradients(head, z_star, targets, coords, 2 * (z_star - goal), latent_reg=1e-3, solver="cg")
    # unrolled: differentiate through 20 Newton steps from the optimum's neighbourhood
    z = z_star.detach() + 1e-3
    for _ in range(20):
        zz = z if z.requires_grad else z.requires_grad_(True)
        loss = reconstruction_loss(head, zz, targets, coords, 1e-3).sum()
        g = torch.autograd.grad(loss, zz, create_graph=True)[0]
        h = torch.stack([torch.stack([torch.autograd.grad(g[b, i], zz, create_graph=True)[0][b]
                                      for i in range(z.shape[1])]) for b in range(z.shape[0])])
        z = zz - torch.linalg.solve(h, g.unsqueeze(-1)).squeeze(-1)
    unrolled = torch.autograd.grad((z - goal).square().sum(), list(head.parameters()), allow_unused=True)
    for a, b, c in zip(implicit, cg, unrolled):
        c = torch.zeros_like(a) if c is None else c
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-9)


def test_hessian_diagnostics_detect_an_ignored_latent_dimension(fitted) -> None:
    head, z, targets, coords = fitted
    blind = HypernetworkHead(TEMPLATE, 4, mode="shift").double()
    blind.load_state_dict(head.state_dict())
    with torch.no_grad():
        blind.shift.weight[:, 3] = 0  # phi ignores z_3
    summary = spectrum_summary(latent_hessians(blind, z, targets, coords))  # no latent regulariser
    assert summary["rank"] == [3] * len(z) and summary["fraction_full_rank"] == 0.0
    assert all(c == float("inf") for c in summary["condition_number"])


def test_ift_report_writes_json_and_figures(fitted, tmp_path) -> None:
    head, z, targets, coords = fitted
    entries = {"l=4, all pixels": spectrum_summary(latent_hessians(head, z, targets, coords, 1e-3)),
               "l=4, 8 pixels": spectrum_summary(latent_hessians(head, z, targets[:, :8], coords[:8], 1e-3))}
    summary = ift_report(entries, tmp_path / "ift")
    assert json.loads((tmp_path / "ift.json").read_text())["l=4, all pixels"]["fraction_full_rank"] == 1.0
    assert len(summary["l=4, 8 pixels"]["median_spectrum"]) == 4
    svg = ET.parse(tmp_path / "ift.svg").getroot()
    assert svg.tag.endswith("svg") and "l=4, 8 pixels" in "".join(svg.itertext())  # the legend names each series
    assert (tmp_path / "ift.png").read_bytes().startswith(b"\x89PNG")


def test_encoder_decoder_mode_reconstructs_and_edits_through_the_latent() -> None:
    torch.manual_seed(0)
    images = load_images("digits", "train").images[:12]
    fit = fit_inrs(images, "nfn", hidden=(16, 16), steps=150, lr=1e-3, progress=False)
    batch = fit.template.batch(fit.params)
    head = HypernetworkHead(fit.template, 16, hidden=64)
    model = WeightSpaceAutoencoder(GNNEncoder(16, hidden=16, num_layers=2), head, (1, 8, 8))
    model(batch)  # lazy initialisation
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    editor = LatentEditor(16)
    target = dilate(model.target_images(batch)).detach()
    z = model(batch).detach()
    edit_optimizer = torch.optim.Adam(editor.parameters(), lr=1e-3)
    edit_losses = []
    for _ in range(60):
        loss = nn.functional.mse_loss(model.decode(editor(z)), target)
        edit_optimizer.zero_grad()
        loss.backward()
        edit_optimizer.step()
        edit_losses.append(float(loss.detach()))
    assert edit_losses[-1] < 0.8 * edit_losses[0]


class _Snake(nn.Module):
    def forward(self, x):
        return x + torch.sin(x) ** 2


register(_Snake, lambda ctx, module, name, value: ctx.activation(value, Activation.OTHER))


@pytest.mark.parametrize("activation", [nn.GELU(), nn.LeakyReLU(0.2), nn.ELU(0.5), nn.Softplus(2.0), nn.SiLU(),
                                        nn.Sigmoid(), nn.Tanh(), nn.ReLU()])
def test_inr_forward_agrees_with_the_module_for_every_activation_in_the_table(activation) -> None:
    """The batched evaluator reads the activation table the converter reads: both paths compute the same thing."""
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(2, 8), activation, nn.Linear(8, 8), activation, nn.Linear(8, 3))
              for _ in range(3)]
    template = GraphTemplate.from_module(models[0])
    params = torch.stack([template.flatten(m.state_dict()) for m in models])
    coords = torch.rand(5, 2) * 2 - 1
    architecture = INRArchitecture.from_template(template)
    with torch.no_grad():
        expected = torch.stack([m(coords) for m in models])
    assert torch.allclose(inr_forward(params, coords, architecture), expected, atol=1e-6)


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        HypernetworkHead(TEMPLATE, 0)
    with pytest.raises(UnsupportedModuleError, match="MLP INRs"):
        HypernetworkHead(GraphTemplate.from_module(small_cnn()), 4)
    with pytest.raises(UnsupportedModuleError, match="OTHER"):
        HypernetworkHead(GraphTemplate.from_module(nn.Sequential(nn.Linear(2, 4), _Snake(), nn.Linear(4, 1))), 4)
    head = HypernetworkHead(TEMPLATE, 4)
    with pytest.raises(ShapeMismatchError, match=r"\[B, 4\]"):
        head(torch.zeros(2, 5))
    decoder = AutoDecoder(head, 3)
    with pytest.raises(ShapeMismatchError, match=r"\[N, C, H, W\]"):
        decoder.fit(torch.zeros(3, 8, 8))
    with pytest.raises(ShapeMismatchError, match="3 channels"):
        decoder.fit(torch.zeros(3, 3, 8, 8))
    with pytest.raises(ShapeMismatchError, match="embeddings"):
        decoder.fit(torch.zeros(5, 1, 8, 8))
    with pytest.raises(ValueError, match="solver"):
        implicit_gradients(head, torch.zeros(1, 4), torch.zeros(1, 4, 1), torch.zeros(4, 2), torch.zeros(1, 4),
                           solver="lu")


def test_embeddings_classify_and_implicit_training_lowers_the_classification_loss() -> None:
    torch.manual_seed(0)
    train, test = load_images("digits", "train"), load_images("digits", "test")
    train_images, train_labels = train.images[:200], train.labels[:200]
    head = HypernetworkHead(TEMPLATE, 16, hidden=128)
    decoder = AutoDecoder(head, len(train_images))
    decoder.fit(train_images, steps=400, lr=1e-3, batch_size=100, generator=torch.Generator().manual_seed(0))
    z_test = decoder.infer(test.images[:100], steps=200)
    classifier = fit_embedding_classifier(decoder.embeddings.weight.detach(), train_labels, 10)
    accuracy = float((classifier(z_test).argmax(1) == test.labels[:100]).float().mean())
    assert accuracy > 0.3  # chance is 0.1
    # implicit training: the classification loss at the re-solved optimum falls
    small = HypernetworkHead(TEMPLATE, 4, mode="shift").double()
    images, labels = train_images[:8].double(), train_labels[:8] % 2
    coords, targets = image_targets(images)
    auto = AutoDecoder(small, 8, latent_reg=1e-3).double()
    auto.fit(images, steps=150, lr=3e-3, batch_size=8)
    probe = nn.Linear(4, 2).double()
    optimizer = torch.optim.Adam([*small.parameters(), *probe.parameters()], lr=1e-3)
    z = auto.embeddings.weight.detach()
    losses = []
    for _ in range(15):
        z, loss = implicit_training_step(small, probe, z, targets, coords, labels, optimizer)
        losses.append(loss)
    assert losses[-1] < losses[0]


def _shape_points(count: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    from wslgraph.zoo.shapes3d import make_shapes, sample_points

    shapes = make_shapes(1, seed=4)[torch.arange(count)]
    coords = sample_points(shapes, points, generator=torch.Generator().manual_seed(0))
    return coords, shapes.occupancy(coords).unsqueeze(-1)


def test_occupancy_head_with_each_shape_its_own_points_agrees_with_one_shape_at_a_time() -> None:
    from wslgraph.zoo.shapes3d import ShapeRecipe, shape_siren

    coords, targets = _shape_points(3, 64)
    template = GraphTemplate.from_module(shape_siren(ShapeRecipe(hidden=(8, 8))))
    torch.manual_seed(0)
    head = HypernetworkHead(template, 4, hidden=16, loss="bce").double()
    z = torch.randn(3, 4, dtype=torch.float64) * 0.1
    # the loss is the BCE of the INR's logits, instance by instance with its own points
    loss = reconstruction_loss(head, z, targets, coords)
    for i in range(3):
        logits = inr_forward(head(z[i:i + 1]), coords[i], head.architecture)
        torch.testing.assert_close(loss[i], nn.functional.binary_cross_entropy_with_logits(logits[0], targets[i]))
    # batched Hessians, Newton solves and IFT Jacobians with per-instance points = one instance at a time
    batched = latent_hessians(head, z, targets, coords, 1e-3)
    z_star = solve_latents(head, targets, coords, z, 1e-3)
    jacobian = latent_jacobian(head, z_star, targets, coords, 1e-3)
    for i in range(3):
        torch.testing.assert_close(batched[i], latent_hessians(head, z[i:i + 1], targets[i:i + 1], coords[i], 1e-3)[0])
        alone = solve_latents(head, targets[i:i + 1], coords[i], z[i:i + 1], 1e-3)
        torch.testing.assert_close(z_star[i], alone[0], atol=1e-9, rtol=0)
        torch.testing.assert_close(jacobian[i], latent_jacobian(head, alone, targets[i:i + 1], coords[i], 1e-3)[0],
                                   atol=1e-8, rtol=1e-6)
    zz = z_star.clone().requires_grad_(True)
    gradient = torch.autograd.grad(reconstruction_loss(head, zz, targets, coords, 1e-3).sum(), zz)[0]
    assert float(gradient.norm(dim=1).max()) < 1e-8  # stationary points
    with pytest.raises(ValueError, match="loss must be"):
        HypernetworkHead(template, 4, loss="l1")


def test_an_auto_decoder_learns_occupancy_of_3d_shapes() -> None:
    from wslgraph.zoo.shapes3d import ShapeRecipe, shape_siren

    coords, targets = _shape_points(10, 512)
    template = GraphTemplate.from_module(shape_siren(ShapeRecipe(hidden=(16, 16))))
    torch.manual_seed(0)
    decoder = AutoDecoder(HypernetworkHead(template, 8, hidden=64, loss="bce"), 10)
    losses = decoder.fit_points(coords.float(), targets.float(), steps=300, lr=3e-3, batch_size=10)
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    with torch.no_grad():
        logits = inr_forward(decoder.head(decoder.embeddings.weight), coords.float(), decoder.head.architecture)
    assert float(((logits > 0).float() == targets).float().mean()) > 0.9  # its occupancy, shape by shape
    z = decoder.infer_points(coords.float(), targets.float(), steps=100)
    assert z.shape == (10, 8)
    with pytest.raises(ShapeMismatchError, match="coords"):
        decoder.fit_points(coords[:3].float(), targets.float())
    with pytest.raises(ShapeMismatchError, match="instances"):
        decoder.fit_points(coords[:3].float(), targets[:3].float())
