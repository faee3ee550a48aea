"""Zoos of small ResNets: each model trains as a lone torch.optim loop would, stored rows are real models with the
recorded accuracy, and the job is a resumable, sharded zoo like the others."""

import pytest
import torch

from wslgraph import GraphTemplate
from wslgraph.graph.vocab import NodeFeature
from wslgraph.zoo import ZooDataset, generate_zoo, load_images, resnet_zoo_job, train_resnet_zoo
from wslgraph.zoo.inr import inr_seed
from wslgraph.zoo.resnets import deepen_resnet, resnet_hyperparameters, resnet_zoo_model


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", "train").evenly_spaced(400), load_images("digits", "test").evenly_spaced(100)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_batched_training_equals_a_torch_optim_loop_per_model(digits, optimizer) -> None:
    """Each model's step is torch.optim's (Adam, or SGD with momentum 0.9; weight decay) on its own minibatches,
    with batch norm in training mode updating its own running statistics."""
    train, test = digits
    first = next(i for i in range(8) if resnet_hyperparameters(0, i)["optimizer"] == optimizer
                 and resnet_hyperparameters(0, i)["weight_decay"] > 0)
    count, steps = 3, 6
    result = train_resnet_zoo(train, test, count, index_offset=first, width=4, epochs=1, batch_size=16,
                              steps_per_epoch=steps, eval_images=50, progress=False)
    hp = resnet_hyperparameters(0, first)
    model = resnet_zoo_model(8, 4, 1, inr_seed(1, first)).train()
    settings = {"lr": hp["learning_rate"], "weight_decay": hp["weight_decay"]}
    opt = (torch.optim.Adam(model.parameters(), **settings) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), momentum=0.9, **settings))
    images = (train.images - train.images.mean()) / train.images.std()
    generator = torch.Generator().manual_seed(inr_seed(2, first))
    for _ in range(steps):
        pick = torch.randint(len(train), (count, 16), generator=generator)[0]
        loss = torch.nn.functional.cross_entropy(model(images[pick]), train.labels[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    template = GraphTemplate(result.template.layout)
    trained = template.unflatten(result.params[1])  # row 1: model `first` at epoch 1
    # six float32 steps (SGD momentum 0.9, batch norm) in another summation order: on this machine's CPU the sgd
    # run ends 1e-4 apart in places (0.3379 against 0.3380), from the same code that agreed to 1e-5 on the last one
    for key, value in model.state_dict().items():
        assert torch.allclose(trained[key].to(value.dtype), value, rtol=1e-3, atol=1e-4), key
    assert not torch.allclose(result.params[0], result.params[1], atol=1e-3)  # it moved


def test_stored_rows_are_real_models_with_the_recorded_accuracy(digits) -> None:
    train, test = digits
    result = train_resnet_zoo(train, test, 4, width=4, epochs=2, batch_size=16, steps_per_epoch=20, eval_images=100,
                              progress=False)
    assert result.params.shape[0] == 4 * 3 and result.columns["epoch"].tolist()[:3] == [0, 1, 2]
    template = GraphTemplate(result.template.layout)
    images = (test.images - train.images.mean()) / train.images.std()
    for row in (2, 5, 11):
        model = resnet_zoo_model(8, 4, 1)
        model.load_state_dict(template.unflatten(result.params[row]))  # strict: every key, BN statistics too
        with torch.no_grad():
            predicted = model.eval()(images).argmax(1)
        accuracy = float((predicted == test.labels).float().mean())
        assert accuracy == pytest.approx(float(result.columns["test_accuracy"][row]), abs=1e-6)
    final = result.columns["test_accuracy"].view(4, 3)[:, -1]
    assert float(final.max()) > 0.3  # 40 steps on 8x8 digits: some models learn


def test_training_resumes_from_given_rows(digits) -> None:
    """``initial`` rows (fine-tuning sampled or trained models) start where the rows are: at epoch 0 they score
    what they scored when stored, and a generated row with a fractional counter and a negative running variance
    is made loadable, not refused."""
    train, test = digits
    first = train_resnet_zoo(train, test, 2, width=4, epochs=1, batch_size=16, steps_per_epoch=10, eval_images=50,
                             progress=False)
    trained = first.params.view(2, 2, -1)[:, 1]  # both models at epoch 1
    again = train_resnet_zoo(train, test, 2, width=4, epochs=1, batch_size=16, steps_per_epoch=10, eval_images=50,
                             initial=trained, progress=False)
    recorded = first.columns["test_accuracy"].view(2, 2)[:, 1]
    assert torch.equal(again.params.view(2, 2, -1)[:, 0], trained)
    assert torch.allclose(again.columns["test_accuracy"].view(2, 2)[:, 0], recorded)
    # fine-tuning moves the running statistics too (they once stayed at the rows' values: views of the rows)
    statistics = first.template.layout.statistic_keys(NodeFeature.RUNNING_MEAN, NodeFeature.RUNNING_VAR)
    spans = [first.template.layout.span(key) for key in statistics]
    tuned = again.params.view(2, 2, -1)[:, 1]
    assert all(not torch.allclose(tuned[:, span], trained[:, span], atol=1e-3) for span in spans)
    template = GraphTemplate(first.template.layout)
    generated = trained.clone()
    counter, variance = (template.layout.span(k) for k in ("bn1.num_batches_tracked", "bn1.running_var"))
    generated[:, counter] = 9.6
    generated[:, variance] = -0.5
    loadable = template.loadable(generated)
    assert loadable[:, counter].tolist() == [[10.0], [10.0]]
    assert float(loadable[:, variance].min()) == pytest.approx(1e-5)
    assert torch.equal(loadable[:, : counter.start - 10], generated[:, : counter.start - 10])  # the rest as it was
    fixed = train_resnet_zoo(train, test, 2, width=4, epochs=0, initial=generated, progress=False,
                             batch_size=16, eval_images=50)
    assert bool(torch.isfinite(fixed.columns["test_loss"]).all())
    with pytest.raises(ValueError, match="initial rows"):
        train_resnet_zoo(train, test, 3, width=4, epochs=0, initial=trained, progress=False)


def test_resnet_zoo_job_is_a_sharded_zoo(tmp_path) -> None:
    job = resnet_zoo_job("digits", count=4, width=4, epochs=1, steps_per_epoch=3, models_per_shard=2,
                         train_images=100, test_images=40, eval_images=40)
    generate_zoo(tmp_path / "zoo", job, progress=False)
    dataset = ZooDataset(tmp_path / "zoo", None)
    columns = dataset.arrays.columns
    assert len(dataset) == 8 and columns["model_index"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert dataset.arrays.vocab["optimizer"] == ["adam", "sgd"] and dataset.arrays.description["grid"] == "resnet"
    assert set(columns) >= {"test_accuracy", "train_accuracy", "ggap", "learning_rate", "weight_decay", "split"}
    with pytest.raises(ValueError, match="depth 8 or 10"):
        resnet_zoo_job("digits", depth=34)


def test_cli_trains_a_resnet_zoo(tmp_path, capsys) -> None:
    from wslgraph.cli import main

    out = tmp_path / "zoo"
    assert main(["zoo", "cnn", str(out), "--grid", "resnet", "--source", "digits", "--count", "2", "--width", "4",
                 "--epochs", "1", "--steps-per-epoch", "2", "--train-images", "50", "--test-images", "20",
                 "--quiet"]) == 0
    assert ZooDataset(out, None).arrays.description["architecture"] == "ResNet-8"
    with pytest.raises(SystemExit) as stopped:  # argparse's error: "wslgraph: error: ..." and exit code 2
        main(["zoo", "cnn", str(tmp_path / "x"), "--grid", "resnet", "--source", "digits", "--epochs", "1",
              "--checkpoints", "3"])
    assert stopped.value.code == 2 and "checkpoints within" in capsys.readouterr().err


def _with_statistics(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor in (module.weight.data, module.bias.data, module.running_mean):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            module.running_var.uniform_(0.5, 2, generator=generator)
    return model.eval()


@pytest.mark.parametrize("small, large, stages", [(8, 14, 3), (10, 18, 4)])
def test_deepen_resnet_keeps_the_source_and_repeats_each_stage(small, large, stages) -> None:
    """A ResNet grown deeper holds every source tensor where it was, repeats each stage's block in the new
    blocks (conv2/bn2 where conv1 changes width), and with identity blocks computes the source's function."""
    sources = [_with_statistics(resnet_zoo_model(small, 4, 1, seed=i), i) for i in range(2)]
    shape = (1, 12, 12)
    template = GraphTemplate.from_module(sources[0], input_shape=shape)
    rows = torch.stack([template.flatten(m.state_dict()) for m in sources])
    target = resnet_zoo_model(large, 4, 1)
    grown_template = GraphTemplate.from_module(target, input_shape=shape)
    copies = deepen_resnet(rows, sources[0], target, input_shape=shape)
    identity = deepen_resnet(rows, sources[0], target, input_shape=shape, new_blocks="identity")
    given = deepen_resnet(rows, sources[0], target, new_blocks="identity", templates=(template, grown_template))
    assert torch.equal(given, identity)  # templates the caller has are the ones traced here
    x = torch.randn(6, *shape)
    for index, source in enumerate(sources):
        state = grown_template.unflatten(copies[index])
        for key, value in source.state_dict().items():
            assert torch.equal(state[key], value)
        for stage in range(1, stages + 1):
            block = f"layer{stage}"
            assert torch.equal(state[f"{block}.1.conv2.weight"], state[f"{block}.0.conv2.weight"])
            assert torch.equal(state[f"{block}.1.bn2.running_var"], state[f"{block}.0.bn2.running_var"])
            conv1 = "conv1" if stage == 1 else "conv2"  # the first stage keeps its width and stride
            assert torch.equal(state[f"{block}.1.conv1.weight"], state[f"{block}.0.{conv1}.weight"])
        target.load_state_dict(state)  # strict
        with torch.no_grad():
            copied = target.eval()(x)
            target.load_state_dict(grown_template.unflatten(identity[index]))
            assert torch.allclose(target(x), source(x), atol=1e-5)
            assert not torch.allclose(copied, source(x), atol=1e-2)  # copies add their residual branches
    with pytest.raises(ValueError, match="stages"):
        deepen_resnet(rows, sources[0], resnet_zoo_model(18 if small == 8 else 14, 4, 1), input_shape=shape)
    with pytest.raises(ValueError, match="conv1.weight of the target has no counterpart"):  # another width
        deepen_resnet(rows, sources[0], resnet_zoo_model(large, 8, 1), input_shape=shape)
    with pytest.raises(ValueError, match="new_blocks"):
        deepen_resnet(rows, sources[0], target, input_shape=shape, new_blocks="zero")
