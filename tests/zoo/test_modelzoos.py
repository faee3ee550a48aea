"""The Model Zoos CNN, its grid trained all at once, and the published folder format (files the tests write)."""

import itertools
import json
import pickle

import pytest
import torch

from wslgraph import GraphTemplate
from wslgraph.errors import UnsafeFileError, ZooError
from wslgraph.zoo.data import load_images
from wslgraph.zoo.modelzoos import (
    GRID,
    ModelZooCNN,
    batched_model_zoo_logits,
    grid_hyperparameters,
    load_model_zoos,
    model_zoo_template,
    train_model_zoo,
)


def test_the_model_zoos_cnn_has_the_published_size_and_keys() -> None:
    # conv 1->8 (5x5), 8->6 (5x5), 6->4 (2x2), linear 36->20, 20->10: 208 + 1,206 + 100 + 740 + 210
    assert model_zoo_template().num_params == 2464
    plain = [k for k in ModelZooCNN(dropout=0.0).state_dict()]
    dropped = [k for k in ModelZooCNN(dropout=0.5).state_dict()]
    assert plain[:2] == ["module_list.0.weight", "module_list.0.bias"] and plain[-1] == "module_list.11.bias"
    assert dropped[2] == "module_list.4.weight" and dropped[-1] == "module_list.14.bias"  # dropout shifts indices


def test_grid_prefix_covers_every_combination_once() -> None:
    combos = {tuple(grid_hyperparameters(3, i)[k] for k in GRID) for i in range(256)}
    assert len(combos) == 256 == len(list(itertools.product(*GRID.values())))
    assert grid_hyperparameters(3, 300)["repetition"] == 1
    assert grid_hyperparameters(3, 300) | {"repetition": 0} == grid_hyperparameters(3, 300 - 256)


def test_batched_logits_equal_each_module() -> None:
    from wslgraph.zoo.modelzoos import _init_model, _stacked_state

    hps = [grid_hyperparameters(0, i) for i in range(12)]
    models = [_init_model(hp, 1, "CNN", i) for i, hp in enumerate(hps)]
    assert {hp["activation"] for hp in hps} == set(GRID["activation"])
    x = torch.randn(5, 1, 28, 28)
    code = torch.tensor([GRID["activation"].index(hp["activation"]) for hp in hps])
    batched = batched_model_zoo_logits(_stacked_state(models), x, code)
    for i, model in enumerate(models):
        reference = model.eval()(x)
        assert torch.allclose(batched[:, i], reference, rtol=1e-5, atol=1e-5 * float(reference.abs().max()))


@pytest.fixture(scope="module")
def small_zoo():
    train = load_images("mnist5k", "train").evenly_spaced(1000)
    test = load_images("mnist5k", "test").evenly_spaced(200)
    return train, test, train_model_zoo(train, test, 16, epochs=3, batch_size=10, steps_per_epoch=100,
                                        eval_images=200, progress=False)


def test_trained_zoo_rows_columns_and_learning(small_zoo) -> None:
    train, test, result = small_zoo
    assert result.params.shape == (16 * 4, 2464)
    columns = result.columns
    assert columns["epoch"].tolist()[:4] == [0, 1, 2, 3] and columns["model_index"].tolist()[:5] == [0, 0, 0, 0, 1]
    assert torch.allclose(columns["ggap"], columns["train_accuracy"] - columns["test_accuracy"])
    accuracy = columns["test_accuracy"].view(16, 4)
    gain = accuracy[:, -1] - accuracy[:, 0]
    assert float(accuracy[:, -1].max()) > 0.5 and float(gain.max()) > 0.3  # 300 steps of 10 images: some learn
    assert float(accuracy[:, -1].std()) > 0.05  # and the grid makes the zoo diverse


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_batched_training_equals_a_torch_optim_loop_per_model(optimizer) -> None:
    """Each model's update is torch.optim's (Adam, or SGD with momentum 0.9; weight decay), on its own batches."""
    from wslgraph.zoo.inr import inr_seed
    from wslgraph.zoo.modelzoos import _init_model

    train = load_images("mnist5k", "train").evenly_spaced(300)
    test = load_images("mnist5k", "test").evenly_spaced(50)
    first = next(i for i in range(256) if grid_hyperparameters(0, i)["optimizer"] == optimizer
                 and grid_hyperparameters(0, i)["dropout"] == 0 and grid_hyperparameters(0, i)["init"] != "uniform")
    count, steps = 3, 12
    result = train_model_zoo(train, test, count, index_offset=first, epochs=1, batch_size=10, steps_per_epoch=steps,
                             eval_images=50, progress=False)
    mean, std = train.images.mean(), train.images.std()
    images = (train.images - mean) / std
    hp = grid_hyperparameters(0, first)
    model = _init_model(hp, 1, "CNN", inr_seed(1, first))
    settings = {"lr": hp["learning_rate"], "weight_decay": hp["weight_decay"]}
    opt = (torch.optim.Adam(model.parameters(), **settings) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), momentum=0.9, **settings))
    generator = torch.Generator().manual_seed(inr_seed(2, first))
    for _ in range(steps):
        pick = torch.randint(len(train), (count, 10), generator=generator)[0]
        loss = torch.nn.functional.cross_entropy(model(images[pick]), train.labels[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    expected = torch.cat([p.detach().reshape(-1) for p in model.module_list.parameters()])
    assert torch.allclose(result.params[1], expected, rtol=1e-4, atol=1e-5)  # row 1: model `first`, epoch 1
    assert not torch.allclose(result.params[0], expected, atol=1e-3)  # it moved


def test_stored_rows_are_real_models_with_the_recorded_accuracy(small_zoo) -> None:
    train, test, result = small_zoo
    template = GraphTemplate(result.template.layout)
    mean, std = train.images.mean(), train.images.std()
    for row in (3, 7, 22, 41):
        hp = result.hyperparameters[row // 4]
        model = ModelZooCNN(activation=hp["activation"])
        model.load_state_dict(template.unflatten(result.params[row]))
        with torch.no_grad():
            predicted = model.eval()((test.images - mean) / std).argmax(1)
        recorded = float(result.columns["test_accuracy"][row])
        assert float((predicted == test.labels).float().mean()) == pytest.approx(recorded, abs=1e-6)


def _write_published(root, count=4, epochs=(0, 1, 2), dropout=(0.0, 0.5), six_digits=False):
    """A Model Zoos folder as ray-tune writes it: params.json, result.json (JSON lines), checkpoint_<e>/checkpoints."""
    models = []
    for index in range(count):
        folder = root / f"NN_tune_trainable_{index:05d}_{index}_seed={index}"
        folder.mkdir(parents=True)
        rate = dropout[index % len(dropout)]
        config = {"model::type": "CNN", "model::channels_in": 1, "model::o_dim": 10, "model::nlin": "tanh",
                  "model::dropout": rate, "model::init_type": "kaiming_uniform", "optim::optimizer": "adam",
                  "optim::lr": 1e-3, "optim::wd": 1e-4, "seed": 100 + index}
        (folder / "params.json").write_text(json.dumps(config))
        lines, states = [], []
        for epoch in epochs:
            torch.manual_seed(1000 * index + epoch)
            model = ModelZooCNN(1, "tanh", rate)
            name = f"checkpoint_{epoch:06d}" if six_digits else f"checkpoint_{epoch}"
            (folder / name).mkdir()
            torch.save(model.state_dict(), folder / name / "checkpoints")
            torch.save({"state": {}}, folder / name / "optimizer")
            states.append(model)
            lines.append({"train_loss": 2.0 - epoch / 10, "train_acc": 0.1 * epoch + 0.2, "test_loss": 2.1,
                          "test_acc": 0.1 * epoch + 0.15, "training_iteration": epoch, "config": config})
        (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
        models.append(states)
    return models


@pytest.mark.parametrize("six_digits", [False, True])
def test_published_zoo_loads_exactly(tmp_path, six_digits) -> None:
    models = _write_published(tmp_path, six_digits=six_digits)
    arrays = load_model_zoos(tmp_path)
    template = model_zoo_template()
    assert arrays.params.shape == (12, 2464) and arrays.kind == "cnn" and arrays.layout == template.layout
    for row, (index, epoch) in enumerate(itertools.product(range(4), range(3))):
        expected = torch.cat([p.detach().reshape(-1) for p in models[index][epoch].module_list.parameters()])
        assert torch.equal(arrays.params[row], expected)
        reference = ModelZooCNN(1, "tanh", 0.0)
        reference.load_state_dict(template.unflatten(arrays.params[row]))
        x = torch.randn(2, 1, 28, 28)
        assert torch.allclose(reference.eval()(x), models[index][epoch].eval()(x), atol=1e-6)
    columns = arrays.columns
    assert columns["epoch"].tolist()[:3] == [0, 1, 2] and columns["model_index"].tolist()[-1] == 3
    assert torch.allclose(columns["ggap"], torch.full((12,), 0.05), atol=1e-6)
    assert columns["dropout"].tolist()[:6] == [0.0] * 3 + [0.5] * 3
    assert arrays.vocab["init"][int(columns["init"][0])] == "kaiming_uniform"
    assert columns["seed"].tolist()[::3] == [100, 101, 102, 103]
    assert load_model_zoos(tmp_path, epochs=[2]).params.shape == (4, 2464)


def test_published_zoo_bad_input(tmp_path) -> None:
    with pytest.raises(ZooError, match="not a folder"):
        load_model_zoos(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="no model folders"):
        load_model_zoos(tmp_path / "empty")
    _write_published(tmp_path / "a", count=2)
    with pytest.raises(ZooError, match="no checkpoint for epochs"):
        load_model_zoos(tmp_path / "a", epochs=[5])
    folder = sorted((tmp_path / "a").iterdir())[1]
    (folder / "result.json").write_text("not json\n")
    with pytest.raises(ZooError, match="one JSON object per line"):
        load_model_zoos(tmp_path / "a")
    _write_published(tmp_path / "b", count=2)
    folder = sorted((tmp_path / "b").iterdir())[0]
    state = torch.load(folder / "checkpoint_1" / "checkpoints", weights_only=True)
    state["module_list.0.weight"] = torch.full_like(state["module_list.0.weight"], float("nan"))
    torch.save(state, folder / "checkpoint_1" / "checkpoints")
    with pytest.raises(ZooError, match="NaN or inf"):
        load_model_zoos(tmp_path / "b")
    state["module_list.0.weight"] = torch.zeros(3, 1, 5, 5)
    torch.save(state, folder / "checkpoint_1" / "checkpoints")
    with pytest.raises(ZooError, match="do not match"):
        load_model_zoos(tmp_path / "b")

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    (folder / "checkpoint_1" / "checkpoints").write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(UnsafeFileError):
        load_model_zoos(tmp_path / "b")


def test_cli_model_zoos_grid_and_loader_round_trip(tmp_path) -> None:
    from wslgraph.cli import main
    from wslgraph.zoo.dataset import ZooDataset

    out = tmp_path / "zoo"
    assert main(["zoo", "cnn", str(out), "--grid", "model-zoos", "--count", "10", "--epochs", "2",
                 "--steps-per-epoch", "3", "--train-images", "100", "--test-images", "50", "--quiet"]) == 0
    dataset = ZooDataset(out, None)
    columns = dataset.arrays.columns
    assert len(dataset) == 30 and columns["epoch"].tolist()[:3] == [0, 1, 2]
    assert {"ggap", "train_accuracy", "activation", "weight_decay", "learning_rate", "dropout"} <= set(columns)
    assert sorted(set(columns["split"].tolist())) == [0, 1, 2]
    with pytest.raises(SystemExit) as exit_:  # argparse's error: exit 2 with "wslgraph zoo cnn: error: ..."
        main(["zoo", "cnn", str(tmp_path / "bad"), "--grid", "model-zoos", "--source", "digits", "--quiet"])
    assert exit_.value.code == 2 and not (tmp_path / "bad").exists()


def test_module_layers_match_published_definition() -> None:
    model = ModelZooCNN(1, "gelu", 0.5)
    kinds = [type(m).__name__ for m in model.module_list]
    assert kinds == ["Conv2d", "MaxPool2d", "GELU", "Dropout", "Conv2d", "MaxPool2d", "GELU", "Dropout", "Conv2d",
                     "GELU", "Flatten", "Linear", "GELU", "Dropout", "Linear"]
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert ModelZooCNN(3, kind="CNN2")(torch.zeros(2, 3, 28, 28)).shape == (2, 10)
