"""Vectorized CNN zoo training: one program equals the per-model modules, accuracies vary and are recorded."""

import pytest
import torch

from wslgraph import to_graph, to_state_dict
from wslgraph.zoo.cnn import CNNZooSpec, ZooCNN, batched_logits, sample_hyperparameters, train_cnn_zoo
from wslgraph.zoo.data import load_images
from wslgraph.zoo.dataset import ZooDataset
from wslgraph.zoo.jobs import cnn_zoo_job
from wslgraph.zoo.storage import generate_zoo, read_manifest


@pytest.mark.parametrize("spec", [CNNZooSpec(), CNNZooSpec(residual=True, batch_norm=True, channels=4,
                                                            num_layers=2, in_channels=4)])
def test_batched_forward_equals_the_modules(spec) -> None:
    torch.manual_seed(0)
    activations = ["relu", "tanh", "relu"]
    models = [ZooCNN(spec, a).eval() for a in activations]
    for model in models:
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)
    params = {k: torch.stack([m.state_dict()[k] for m in models]) for k in models[0].state_dict()}
    x = torch.randn(5, 3, spec.in_channels, 28, 28)
    logits = batched_logits(params, x, spec, torch.tensor([a == "relu" for a in activations]))
    for i, model in enumerate(models):
        with torch.no_grad():
            torch.testing.assert_close(logits[:, i], model(x[:, i]), atol=1e-5, rtol=1e-5)
    assert to_graph(models[0]).num_nodes > 0  # the architecture converts (residual adds, BatchNorm)


def test_small_cnn_zoo_spec_has_4970_parameters() -> None:
    assert sum(p.numel() for p in ZooCNN(CNNZooSpec()).parameters()) == 4970


def test_training_records_varying_accuracies_and_real_checkpoints() -> None:
    train, test = load_images("digits", "train"), load_images("digits", "test")
    spec = CNNZooSpec(stride=1)
    result = train_cnn_zoo(train, test, 8, spec=spec, epochs=2, checkpoints=(0, 1, 2), steps_per_epoch=40,
                           progress=False)
    assert result.params.shape == (24, 4970) and result.epoch.tolist()[:3] == [0, 1, 2]
    final = result.test_accuracy[result.epoch == 2]
    assert float(final.max()) > 0.5 and float(final.max() - final.min()) > 0.2  # hyperparameters matter
    assert bool(torch.isnan(result.train_loss[result.epoch == 0]).all())
    assert bool((result.train_loss[result.epoch > 0] > 0).all())
    # a recorded checkpoint is a real network: rebuilt from its graph it scores the recorded accuracy
    best = int(final.argmax())
    row = best * 3 + 2
    model = ZooCNN(spec, result.hyperparameters[best]["activation"]).eval()
    graph = result.template.batch(result.params[row:row + 1]).get_example(0)
    model.load_state_dict(to_state_dict(graph))
    with torch.no_grad():
        accuracy = (model(test.images).argmax(1) == test.labels).float().mean()
    assert abs(float(accuracy) - float(result.test_accuracy[row])) < 1e-6
    assert result.hyperparameters[0] == sample_hyperparameters(0, 0)


def test_cnn_zoo_job_writes_a_dataset(tmp_path) -> None:
    job = cnn_zoo_job("digits", count=4, epochs=1, steps_per_epoch=5, models_per_shard=2, train_images=200,
                      test_images=50)
    generate_zoo(tmp_path / "zoo", job, progress=False)
    manifest = read_manifest(tmp_path / "zoo")
    assert manifest["num_models"] == 8 and len(manifest["shards"]) == 2
    assert manifest["columns"]["optimizer"]["vocab"] == ["sgd", "adam", "rmsprop"]
    dataset = ZooDataset(tmp_path / "zoo", split=None)
    assert dataset[0].y.dtype == torch.float32 and dataset.arrays.columns["model_index"].tolist() == [0, 0, 1, 1,
                                                                                                       2, 2, 3, 3]
    assert dataset.arrays.columns["split"].tolist() == [0, 0, 2, 2, 0, 0, 2, 2]


def test_bad_configuration() -> None:
    train = load_images("digits", "train")[:10]
    with pytest.raises(ValueError, match="channels"):
        train_cnn_zoo(train, train, 2, spec=CNNZooSpec(in_channels=3))
    with pytest.raises(ValueError, match="checkpoints"):
        train_cnn_zoo(train, train, 2, spec=CNNZooSpec(stride=1), epochs=1, checkpoints=(5,))
    with pytest.raises(ValueError, match="activation"):
        ZooCNN(CNNZooSpec(), "gelu")
