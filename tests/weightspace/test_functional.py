"""BatchedModule (torch.func) evaluates a zoo from its flat rows exactly as each module would, and the fast
special cases (inr_forward, the zoo trainers' grouped convolutions) agree with it."""

import pytest
import torch
from torch import nn

from tests.models import randomize
from wslgraph import GraphTemplate
from wslgraph.errors import ShapeMismatchError
from wslgraph.graph.vocab import NodeFeature
from wslgraph.weightspace import BatchedModule, INRArchitecture, inr_forward
from wslgraph.zoo import siren
from wslgraph.zoo.cnn import CNNZooSpec, ZooCNN, batched_logits
from wslgraph.zoo.modelzoos import ModelZooCNN, _stacked_state, batched_model_zoo_logits


class _Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def _resnet() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), _Block(4), _Block(4),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def _population(make, count: int, shape: tuple[int, ...] = (1, 8, 8)
                ) -> tuple[list[nn.Module], GraphTemplate, torch.Tensor]:
    models = [randomize(make(), seed).eval() for seed in range(count)]
    for seed, model in enumerate(models):  # batch norm with statistics of its own
        generator = torch.Generator().manual_seed(100 + seed)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2, generator=generator)
    template = GraphTemplate.from_module(models[0], input_shape=shape)
    rows = torch.stack([template.flatten(m.state_dict()) for m in models])
    return models, template, rows


@pytest.mark.parametrize("make, shape", [(_resnet, (1, 8, 8)), (lambda: siren(hidden=(16, 16), w0=1.0), (2,)),
                                         (lambda: ZooCNN(CNNZooSpec(num_layers=2, channels=4, residual=True,
                                                                    batch_norm=True)), (1, 8, 8))])
def test_batched_module_equals_each_module(make, shape) -> None:
    models, template, rows = _population(make, 4, shape)
    x = torch.randn(5, *shape)
    batched = BatchedModule(models[0], template)
    with torch.no_grad():
        expected = torch.stack([m(x) for m in models])
        assert torch.allclose(batched(rows, x), expected, atol=1e-5)
        own = torch.randn(4, 5, *shape)  # each network its own inputs
        assert torch.allclose(batched(rows, own, per_model=True), torch.stack([m(xi) for m, xi in zip(models, own)]),
                              atol=1e-5)


def test_gradients_flow_to_the_rows_and_the_module_keeps_its_mode() -> None:
    models, template, rows = _population(_resnet, 3)
    module = models[0].train()
    rows = rows.clone().requires_grad_()
    out = BatchedModule(module, template)(rows, torch.randn(2, 1, 8, 8))
    out.square().sum().backward()
    assert module.training
    assert rows.grad is not None and bool((rows.grad[:, :36] != 0).any())  # the first convolution's weights
    # the gradient of network 0 depends on network 0 only
    single = rows.detach()[:1].clone().requires_grad_()
    BatchedModule(module, template)(single, torch.zeros(1, 1, 8, 8)).sum().backward()
    full = rows.detach().clone().requires_grad_()
    BatchedModule(module, template)(full, torch.zeros(1, 1, 8, 8)).sum().backward()
    assert torch.allclose(full.grad[0], single.grad[0], atol=1e-6)


def test_fast_paths_agree_with_the_torch_func_evaluator() -> None:
    """inr_forward and both zoo trainers' grouped-convolution logits compute what BatchedModule computes."""
    models, template, rows = _population(lambda: siren(hidden=(16, 16), w0=1.0), 5, (2,))
    coords = torch.rand(7, 2) * 2 - 1
    with torch.no_grad():
        reference = BatchedModule(models[0], template)(rows, coords)
        assert torch.allclose(inr_forward(rows, coords, INRArchitecture.from_template(template)), reference,
                              atol=1e-5)

        spec = CNNZooSpec(num_layers=2, channels=4, residual=True, batch_norm=True)
        models, template, rows = _population(lambda: ZooCNN(spec, "tanh"), 3)
        x = torch.randn(6, 1, 8, 8)
        state = {k: v for k, v in BatchedModule(models[0], template).stacked_state(rows).items()}
        grouped = batched_logits(state, x.unsqueeze(1).expand(-1, 3, -1, -1, -1), spec, torch.zeros(3, dtype=bool))
        assert torch.allclose(grouped.transpose(0, 1), BatchedModule(models[0], template)(rows, x), atol=1e-5)

        models = [randomize(ModelZooCNN(activation="gelu"), seed) for seed in range(3)]
        template = GraphTemplate.from_module(models[0], input_shape=(1, 28, 28))
        rows = torch.stack([template.flatten(m.state_dict()) for m in models])
        x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        grouped = batched_model_zoo_logits(_stacked_state(models), x, torch.full((3,), 3))  # code 3: GELU
        # N(0, 1) weights make logits of order 1e3: compare relative to their scale (a logit near 0 has no digits)
        reference = BatchedModule(models[0], template)(rows, x)
        assert torch.allclose(grouped.transpose(0, 1), reference, rtol=1e-4, atol=1e-5 * float(reference.abs().max()))


def test_bad_rows_and_foreign_templates_are_named() -> None:
    models, template, rows = _population(_resnet, 2)
    batched = BatchedModule(models[0], template)
    with pytest.raises(ShapeMismatchError, match=rf"\[B, {template.num_params}\]"):
        batched(rows[:, :-1], torch.randn(1, 1, 8, 8))
    with pytest.raises(ShapeMismatchError, match="per_model"):
        batched(rows, torch.randn(3, 1, 8, 8), per_model=True)
    with pytest.raises(ShapeMismatchError, match="from_module"):
        BatchedModule(siren(), template)


def test_recalibrate_equals_batch_norm_with_cumulative_statistics() -> None:
    """Each network's running statistics after recalibration are what its own BatchNorm2d (momentum None, reset
    statistics) holds after the same batches, a last short batch included; everything else is unchanged."""
    models, template, rows = _population(_resnet, 3)
    inputs = torch.randn(21, 1, 8, 8) * 2 + 0.5
    module = models[0].eval()
    counters = [m.num_batches_tracked.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    out = BatchedModule(module, template).recalibrate(rows, inputs, batch_size=8)
    assert not module.training and [m.momentum for m in module.modules() if isinstance(m, nn.BatchNorm2d)] == [0.1] * 5
    assert all(torch.equal(c, m.num_batches_tracked) for c, m in
               zip(counters, [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]))
    statistics = torch.zeros(template.num_params, dtype=torch.bool)
    for index, model in enumerate(models):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        model.train()
        with torch.no_grad():
            for x in inputs.split(8):
                model(x)
        expected = template.flatten(model.state_dict())
        for key in template.layout.statistic_keys(NodeFeature.RUNNING_MEAN, NodeFeature.RUNNING_VAR):
            statistics[template.layout.span(key)] = True
        assert torch.allclose(out[index, statistics], expected[statistics], atol=1e-5)
        assert torch.equal(out[index, ~statistics], rows[index, ~statistics])  # parameters and counters
    assert not torch.allclose(out[:, statistics], rows[:, statistics], atol=1e-2)  # they did change


def test_recalibrate_without_batch_norm_and_bad_batches() -> None:
    models, template, rows = _population(lambda: siren(hidden=(16, 16), w0=1.0), 2, (2,))
    out = BatchedModule(models[0], template).recalibrate(rows, torch.randn(10, 2))
    assert torch.equal(out, rows) and out.data_ptr() != rows.data_ptr()
    models, template, rows = _population(_resnet, 2)
    with pytest.raises(ValueError, match="at least 2"):
        BatchedModule(models[0], template).recalibrate(rows, torch.randn(8, 1, 8, 8), batch_size=1)
