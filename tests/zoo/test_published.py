"""Published zoo formats, written here in miniature: loading reproduces the networks that were written."""

import csv
import gzip
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from tests.models import randomize
from wslgraph import to_state_dict
from wslgraph.errors import UnsafeFileError, ZooError
from wslgraph.graph.vocab import Activation, NodeType
from wslgraph.zoo import siren, small_cnn
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.published import load_dws_inrs, load_nfn_sirens, load_small_cnn_zoo, mlp_state_to_params
from wslgraph.zoo.storage import write_zoo


class DWSStyleINR(nn.Module):
    """Keys like DWSNets' INRs (``seq.0.weight``), in a different module order."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.ModuleDict({"2": nn.Linear(32, 1), "0": nn.Linear(2, 32), "1": nn.Linear(32, 32)})


def _siren_output(state: dict, offset: float = 0.0) -> torch.Tensor:
    module = siren()
    module.load_state_dict(state)
    with torch.no_grad():
        return module(torch.rand(10, 2, generator=torch.Generator().manual_seed(0))) + offset


def test_dws_inrs_from_a_splits_file(tmp_path) -> None:
    paths, expected = {"train": [], "val": [], "test": []}, []
    for i, split in enumerate(["train", "train", "val", "test"]):
        model = randomize(DWSStyleINR(), i)
        folder = tmp_path / "dataset" / "mnist-inrs" / f"{i}"
        folder.mkdir(parents=True)
        torch.save(model.state_dict(), folder / "checkpoints.pth")
        paths[split].append(f"/home/someone/dataset/mnist-inrs/{i}/checkpoints.pth")  # their machine's path
        expected.append(model)
    splits = {s: {"path": p, "label": list(range(len(p)))} for s, p in paths.items()}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    zoo = load_dws_inrs(tmp_path / "splits.json")
    assert zoo.params.shape == (4, 1185) and zoo.columns["split"].tolist() == [0, 0, 1, 2]
    assert zoo.description["output_offset"] == 0.5
    write_zoo(tmp_path / "zoo", zoo)
    dataset = ZooDataset(tmp_path / "zoo", split=None)
    for i, model in enumerate(expected):
        layers = [model.seq[k] for k in ("0", "1", "2")]
        with torch.no_grad():
            x = torch.rand(10, 2, generator=torch.Generator().manual_seed(0))
            for layer in layers[:-1]:
                x = torch.sin(30 * layer(x))
            reference = layers[-1](x)
        torch.testing.assert_close(_siren_output(to_state_dict(dataset[i])), reference, rtol=0, atol=1e-6)


def test_state_dict_files_that_are_not_plain_tensors_are_refused(tmp_path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    torch.save({"0.weight": Payload()}, tmp_path / "bad.pth")
    (tmp_path / "splits.json").write_text(json.dumps({"train": {"path": ["bad.pth"], "label": [0]}}))
    with pytest.raises(UnsafeFileError, match="weights_only"):
        load_dws_inrs(tmp_path / "splits.json")
    with pytest.raises(ZooError, match="chain"):
        mlp_state_to_params({"a.weight": torch.zeros(3, 5), "a.bias": torch.zeros(3)})


def test_nfn_siren_folders(tmp_path) -> None:
    models = {}
    for index, label in [(0, 3), (1, 7), (2, 3), (3, 1)]:
        model = randomize(siren(), index)
        state = {k.replace("0.", "net.0.linear.").replace("2.", "net.1.linear.").replace("4.", "net.2."): v
                 for k, v in model.state_dict().items()}
        folder = tmp_path / f"randinit_smaller_{label}s"
        folder.mkdir(exist_ok=True)
        torch.save(state, folder / f"net{index}.pth")
        models[index] = (model, label)
    (tmp_path / "randinit_smaller_aug0_3s").mkdir()  # another prefix: ignored
    zoo = load_nfn_sirens(tmp_path, split_points=(2, 3))
    assert zoo.columns["index"].tolist() == [0, 1, 2, 3] and zoo.columns["label"].tolist() == [3, 7, 3, 1]
    assert zoo.columns["split"].tolist() == [0, 0, 1, 2]
    write_zoo(tmp_path / "zoo", zoo)
    dataset = ZooDataset(tmp_path / "zoo", split=None)
    for index, (model, _) in models.items():
        torch.testing.assert_close(_siren_output(to_state_dict(dataset[index])),
                                   _siren_output(model.state_dict()), rtol=0, atol=0)


def _write_small_cnn_zoo(root, models, activations, steps) -> None:
    root.mkdir()
    rows, columns, start = [], [], 0
    for key, value in models[0].state_dict().items():
        tf = value.permute(2, 3, 1, 0) if value.dim() == 4 else value.T if value.dim() == 2 else value
        kind = "kernel:0" if value.dim() > 1 else "bias:0"
        rows.append({"varname": f"sequential/{key}/{kind}", "start_idx": start, "end_idx": start + tf.numel(),
                     "shape": str(tuple(tf.shape))})
        start += tf.numel()
    for model in models:
        columns.append(np.concatenate([(v.permute(2, 3, 1, 0) if v.dim() == 4 else v.T if v.dim() == 2 else v)
                                       .numpy().reshape(-1) for v in model.state_dict().values()]))
    np.save(root / "weights.npy", np.stack(columns).astype(np.float32))
    with open(root / "layout.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["varname", "start_idx", "end_idx", "shape"])
        writer.writeheader()
        writer.writerows(rows)
    with gzip.open(root / "metrics.csv.gz", "wt", newline="") as file:
        writer = csv.DictWriter(file, ["step", "test_accuracy", "config.activation", "config.learning_rate"])
        writer.writeheader()
        for i, (activation, step) in enumerate(zip(activations, steps)):
            writer.writerow({"step": step, "test_accuracy": 0.5 + i / 100, "config.activation": activation,
                             "config.learning_rate": 10.0 ** -i})


def test_small_cnn_zoo_tensorflow_layout(tmp_path) -> None:
    activations = ["relu", "tanh", "relu", "tanh", "relu", "relu"]
    models = [randomize(small_cnn(activation=a), i) for i, a in enumerate(activations)]
    _write_small_cnn_zoo(tmp_path / "cnn", models, activations, [86, 86, 86, 86, 86, 20])
    zoo = load_small_cnn_zoo(tmp_path / "cnn")
    assert zoo.params.shape == (5, 4970) and zoo.vocab["config.activation"] == ["relu", "tanh"]
    assert zoo.columns["test_accuracy"].tolist() == pytest.approx([0.5, 0.51, 0.52, 0.53, 0.54])
    hidden = [g.activation for g in zoo.layout.groups if g.node_type == NodeType.HIDDEN]
    assert Activation.OTHER in hidden  # mixed activations: not claimed per node
    assert sorted(zoo.columns["split"].tolist()) == [0, 1, 2, 2, 2]  # NFN: test = second half, 80/20 of the first
    write_zoo(tmp_path / "zoo", zoo)
    dataset = ZooDataset(tmp_path / "zoo", split=None)
    x = torch.rand(3, 1, 28, 28)
    for i, model in enumerate(models[:5]):
        rebuilt = small_cnn(activation=activations[i])
        rebuilt.load_state_dict(to_state_dict(dataset[i]))
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=1e-6)
    relu_only = load_small_cnn_zoo(tmp_path / "cnn", activation="relu")
    assert len(relu_only) == 3 and Activation.RELU in [g.activation for g in relu_only.layout.groups]


def test_small_cnn_zoo_refuses_pickled_arrays_and_missing_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="weights.npy"):
        load_small_cnn_zoo(tmp_path)
    models = [randomize(small_cnn(), 0)]
    _write_small_cnn_zoo(tmp_path / "cnn", models, ["relu"], [86])
    np.save(tmp_path / "cnn" / "weights.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match="pickled"):
        load_small_cnn_zoo(tmp_path / "cnn")
