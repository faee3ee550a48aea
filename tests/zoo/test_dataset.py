"""ZooDataset and the weight-space augmentations."""

import math

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from wslgraph.convert.template import GraphTemplate
from wslgraph.errors import ShapeMismatchError, UnsupportedModuleError
from wslgraph.weightspace import pixel_grid
from wslgraph.weightspace.augment import (
    Compose,
    GaussianNoise,
    INRAffine,
    RandomHiddenPermutation,
    RandomSignFlip,
    WeightDropout,
    augmentation,
)
from wslgraph.zoo import small_cnn
from wslgraph.zoo.dataset import ZooDataset, batch_column
from wslgraph.zoo.inr import RECIPES, _forward, render_inrs
from wslgraph.zoo.jobs import inr_zoo_job
from wslgraph.zoo.storage import generate_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo") / "inr"
    generate_zoo(root, inr_zoo_job("mnist5k", train_images=24, test_images=6, shard_size=10, steps=30), progress=False)
    return root


def test_splits_targets_and_graphs(zoo) -> None:
    train, val, test = (ZooDataset(zoo, split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (22, 2, 6)
    graph = train[3]
    assert graph.y.shape == (1,) and graph.num_nodes == 67 and graph.num_edges == 1120
    assert set(train.arrays.columns) - {"label"} <= set(graph.keys())
    expected = train.template.batch(train.params([3])).get_example(0)
    assert torch.equal(graph.edge_attr, expected.edge_attr) and torch.equal(graph.x, expected.x)
    batch = next(train.batches(5))
    reference = Batch.from_data_list([train[i] for i in range(5)])
    assert torch.equal(batch.edge_attr, reference.edge_attr) and torch.equal(batch.y, reference.y)
    assert sum(b.num_graphs for b in train.batches(5, shuffle=True, generator=torch.Generator().manual_seed(0))) == 22
    assert repr(train) == "ZooDataset(inr, split='train', models=22, params=1185)"
    with pytest.raises(ValueError, match="split"):
        ZooDataset(zoo, "validation")
    with pytest.raises(ValueError, match="target"):
        ZooDataset(zoo, target="accuracy")
    # the target column is y and, like every column, also attached by its name (batch_column reads it)
    batch = ZooDataset(zoo, "train", target="image_index").batch(range(5))
    assert torch.equal(batch.y, train.arrays.columns["image_index"][train.indices_[:5]])
    assert torch.equal(batch_column(batch, "image_index"), batch.y)
    assert torch.equal(batch.label, train.arrays.columns["label"][train.indices_[:5]])
    assert torch.equal(batch_column(next(train.batches(5)), "label").long(), next(train.batches(5)).y)


def test_hidden_permutation_keeps_the_function(zoo) -> None:
    dataset = ZooDataset(zoo, "train")
    params = dataset.params(range(4))
    permuted = RandomHiddenPermutation(dataset.arrays.layout, seed=1)(params)
    assert not torch.equal(permuted, params)
    shape = (1, 28, 28)
    torch.testing.assert_close(render_inrs(permuted, "dws", shape), render_inrs(params, "dws", shape),
                               atol=1e-5, rtol=0)
    cnn = GraphTemplate.from_module(small_cnn())
    cnn_params = torch.randn(2, cnn.num_params)
    assert not torch.equal(RandomHiddenPermutation(cnn.layout)(cnn_params), cnn_params)


def test_noise_is_fresh_scaled_per_layer_and_seeded(zoo) -> None:
    layout = ZooDataset(zoo, "train").arrays.layout
    params = ZooDataset(zoo, "train").params()
    noise = GaussianNoise(layout, scale=0.1, seed=3)
    first, second = noise(params), noise(params)
    assert not torch.equal(first - params, second - params)  # a new draw each call, not a constant shift
    assert torch.equal(GaussianNoise(layout, scale=0.1, seed=3)(params), first)  # seeded
    offset = 0
    for entry in layout.state:
        block = slice(offset, offset + entry.numel)
        offset += entry.numel
        if entry.numel < 2:
            continue
        ratio = (first - params)[:, block].std() / params[:, block].std(dim=1).mean()
        assert 0.07 < float(ratio) < 0.13, entry.key


def test_weight_dropout_only_zeroes_weights(zoo) -> None:
    dataset = ZooDataset(zoo, "train", augment=WeightDropout(ZooDataset(zoo).arrays.layout, p=0.25))
    params = ZooDataset(zoo, "train").params()
    dropped = dataset.params()
    weights = slice(32 * 2 + 32, 32 * 2 + 32 + 32 * 32)  # "2.weight" of the SIREN
    assert 0.2 < float((dropped[:, weights] == 0).float().mean()) < 0.3
    assert torch.equal(dropped[:, 64:96], params[:, 64:96])  # "0.bias" untouched
    assert dataset[0].num_edges == 1120


def test_inr_affine_moves_the_image_by_the_folded_map(zoo) -> None:
    params = ZooDataset(zoo, "train").params(range(3))
    augment = INRAffine(ZooDataset(zoo).arrays.layout, max_angle=0.5, max_shift=0.2, seed=0)
    moved = augment(params)
    generator = torch.Generator().manual_seed(0)  # the same draws, to rebuild the map
    angle = (torch.rand(3, generator=generator) * 2 - 1) * 0.5
    shift = (torch.rand(3, 2, generator=generator) * 2 - 1) * 0.2
    grid = pixel_grid(28, 28)
    for i in range(3):
        c, s = math.cos(angle[i]), math.sin(angle[i])
        coords = grid @ torch.tensor([[c, -s], [s, c]]).T + shift[i]
        stacked = [p.unsqueeze(0) for p in _unflatten(params[i])]
        expected = _forward(stacked, coords, 30.0, RECIPES["dws"].output_offset)
        actual = _forward([p.unsqueeze(0) for p in _unflatten(moved[i])], grid, 30.0, RECIPES["dws"].output_offset)
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
    with pytest.raises(UnsupportedModuleError, match="Linear\\(2, n\\)"):
        INRAffine(GraphTemplate.from_module(small_cnn()).layout)


def test_rendering_through_the_core_evaluator_agrees_with_the_fitter(zoo) -> None:
    """render_inrs (wslgraph.weightspace.inr_forward) and the fitter's own forward compute the same images."""
    params = ZooDataset(zoo, "test").params(range(4))
    stacked = [torch.stack(parts) for parts in zip(*(_unflatten(row) for row in params))]
    fitted = _forward(stacked, pixel_grid(28, 28), 30.0, RECIPES["dws"].output_offset)  # in [0, 1] for dws
    rendered = render_inrs(params, "dws", (1, 28, 28))
    torch.testing.assert_close(rendered, fitted.transpose(1, 2).reshape(-1, 1, 28, 28), atol=1e-5, rtol=0)
    with pytest.raises(ShapeMismatchError, match=r"\[N, 1185\]"):
        render_inrs(params[:, :-1], "dws", (1, 28, 28))
    with pytest.raises(ValueError, match="unknown INR recipe 'dwss'"):
        render_inrs(params, "dwss", (1, 28, 28))


def _unflatten(row: torch.Tensor) -> list[torch.Tensor]:
    shapes = [(32, 2), (32,), (32, 32), (32,), (1, 32), (1,)]
    return [p.view(s) for p, s in zip(row.split([math.prod(s) for s in shapes]), shapes)]


def test_compose_and_bad_rows(zoo) -> None:
    layout = ZooDataset(zoo).arrays.layout
    pipeline = Compose([RandomHiddenPermutation(layout), GaussianNoise(layout, 0.01)])
    assert pipeline(torch.zeros(2, 1185)).shape == (2, 1185)
    with pytest.raises(ShapeMismatchError, match="1185"):
        RandomHiddenPermutation(layout)(torch.zeros(2, 10))


def test_sign_flips_keep_the_rendered_image(zoo) -> None:
    """sin is odd: negating a neuron's incoming weights, bias and outgoing weights leaves the INR's image."""
    dataset = ZooDataset(zoo, "train")
    params = dataset.params(range(4))
    flipped = RandomSignFlip(dataset.arrays.layout, seed=1)(params)
    changed = flipped != params
    assert 0.3 < float(changed[:, :64].float().mean()) < 0.7  # about half of the first layer's rows flip
    assert torch.equal(flipped.abs(), params.abs()) and torch.equal(flipped[:, -1], params[:, -1])  # output bias
    shape = (1, 28, 28)
    torch.testing.assert_close(render_inrs(flipped, "dws", shape), render_inrs(params, "dws", shape),
                               atol=1e-5, rtol=0)
    tanh = GraphTemplate.from_module(nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 2, 3)))
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 2, 3))
    row = torch.cat([p.detach().reshape(-1) for p in model.state_dict().values()]).unsqueeze(0)
    flipped = RandomSignFlip(tanh.layout, seed=0)(row.expand(8, -1))
    x = torch.randn(2, 1, 7, 7)
    for candidate in flipped:  # a convolution's channels flip too, with the same function
        state = dict(zip(model.state_dict(), candidate.split([p.numel() for p in model.state_dict().values()])))
        twin = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 2, 3))
        twin.load_state_dict({k: v.view_as(model.state_dict()[k]) for k, v in state.items()})
        torch.testing.assert_close(twin(x), model(x), atol=1e-6, rtol=0)
    with pytest.raises(UnsupportedModuleError, match="odd activation"):
        RandomSignFlip(GraphTemplate.from_module(small_cnn()).layout)  # ReLU only


def test_the_inr_preset_draws_every_part_and_repeats_after_reseed(zoo) -> None:
    layout = ZooDataset(zoo).arrays.layout
    preset = augmentation("inr", layout, seed=0)
    kinds = [type(part) for part in preset.augmentations]
    assert kinds == [RandomHiddenPermutation, RandomSignFlip, INRAffine, WeightDropout, GaussianNoise]
    affine = preset.augmentations[2]
    assert affine.max_angle == pytest.approx(math.pi / 4) and affine.max_shift == 0.25
    params = ZooDataset(zoo, "train").params(range(6))
    preset.reseed(5)
    first = preset(params)
    preset.reseed(5)
    assert torch.equal(preset(params), first) and not torch.equal(preset(params), first)
    assert augmentation("none", layout) is None
    assert isinstance(augmentation("permutation", layout), RandomHiddenPermutation)
    cnn = augmentation("inr", GraphTemplate.from_module(small_cnn()).layout)  # no sine, no 2-D input: left out
    assert [type(part) for part in cnn.augmentations] == [RandomHiddenPermutation, WeightDropout, GaussianNoise]
    with pytest.raises(ValueError, match="preset"):
        augmentation("auto", layout)
