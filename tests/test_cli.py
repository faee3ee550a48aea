"""The command line: the demo converts the built-in models exactly; zoo jobs generate, resume and report."""

import json
import xml.etree.ElementTree as ET

import pytest

from wslgraph.cli import main


def test_demo_quick_runs_end_to_end(tmp_path, capsys) -> None:
    arguments = ["demo", "--quick", "--quiet", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert out.count("round trip exact: True") == 3
    for name in ("GNNEncoder", "DWSNet", "NFN-HNP"):
        assert name in out
    for figure in ("learning_curves", "reconstructions", "network"):
        svg = ET.parse(tmp_path / "out" / f"{figure}.svg").getroot()
        assert svg.tag.endswith("svg")
        assert (tmp_path / "out" / f"{figure}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    texts = "".join(ET.parse(tmp_path / "out" / "reconstructions.svg").getroot().itertext())
    assert texts.count("true ") == 16 and texts.count("/ GNN ") == 16  # every image has its label and prediction
    axes = "".join(ET.parse(tmp_path / "out" / "learning_curves.svg").getroot().itertext())
    assert "epoch" in axes and "validation accuracy" in axes and "GNNEncoder" in axes  # labelled axes, legend
    assert (tmp_path / "cache" / "demo-mnist5k-quick" / "manifest.json").exists()


def test_zoo_commands_generate_resume_and_report(tmp_path, capsys) -> None:
    out = tmp_path / "zoo"
    arguments = ["zoo", "inr", str(out), "--train-images", "6", "--test-images", "2", "--steps", "3",
                 "--shard-size", "4", "--no-compile", "--quiet"]
    assert main(arguments) == 0
    first = {p.name: p.read_bytes() for p in out.glob("shard-*")}
    assert main(arguments) == 0  # a second run finds every shard done
    assert {p.name: p.read_bytes() for p in out.glob("shard-*")} == first
    assert main(["zoo", "info", str(out)]) == 0
    assert "inr zoo, 8 models in 2 shards" in capsys.readouterr().out
    assert main(["zoo", "cnn", str(tmp_path / "cnn"), "--count", "2", "--epochs", "1", "--steps-per-epoch", "2",
                 "--models-per-shard", "2", "--train-images", "50", "--test-images", "20", "--quiet"]) == 0
    assert main(["zoo", "info", str(tmp_path / "cnn")]) == 0
    assert "cnn zoo, 4 models" in capsys.readouterr().out


def test_zoo_errors_are_reported_not_raised(tmp_path, capsys) -> None:
    assert main(["zoo", "info", str(tmp_path / "missing")]) == 2
    assert "manifest.json does not exist" in capsys.readouterr().err
    out = tmp_path / "zoo"
    assert main(["zoo", "inr", str(out), "--train-images", "2", "--test-images", "1", "--steps", "1",
                 "--shard-size", "2", "--no-compile", "--quiet"]) == 0
    assert main(["zoo", "inr", str(out), "--train-images", "2", "--test-images", "1", "--steps", "2",
                 "--shard-size", "2", "--no-compile", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "different zoo job: job.recipe.steps: 1 in the folder, 2 now" in error, error


def test_train_and_eval_commands(tmp_path, capsys) -> None:
    zoo = tmp_path / "zoo"
    assert main(["zoo", "inr", str(zoo), "--train-images", "26", "--test-images", "8", "--steps", "20",
                 "--shard-size", "34", "--no-compile", "--quiet"]) == 0
    run = tmp_path / "run"
    assert main(["train", str(zoo), "--model", "nfn-hnp", "--options", '{"hidden": 8}', "--epochs", "2",
                 "--batch-size", "8", "--out", str(run), "--augment", "permutation", "--quiet"]) == 0
    assert {"run.json", "best.safetensors", "checkpoint.safetensors", "metrics.csv"} <= {p.name for p in run.iterdir()}
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    stored = json.loads((run / "run.json").read_text())["result"]["test"]
    assert metrics["accuracy"] == stored["accuracy"] and metrics["loss"] == pytest.approx(stored["loss"])
    assert main(["eval", str(tmp_path)]) == 2
    assert "no run.json" in capsys.readouterr().err

    # the editing task from the command line, with probe features, evaluated from its run folder
    edit_run = tmp_path / "edit"
    assert main(["train", str(zoo), "--model", "gnn-probe", "--task", "editing", "--options",
                 '{"hidden": 8, "num_layers": 1}', "--epochs", "1", "--batch-size", "8", "--out", str(edit_run),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(edit_run)]) == 0
    stored = json.loads((edit_run / "run.json").read_text())["result"]["test"]
    assert json.loads(capsys.readouterr().out)["mse"] == pytest.approx(stored["mse"])


def test_convert_a_factory_a_checkpoint_and_a_saved_graph(tmp_path, capsys) -> None:
    import torch

    from wslgraph import load_graph, to_state_dict
    from wslgraph.zoo import siren, tiny_resnet

    picture, saved = tmp_path / "resnet.svg", tmp_path / "resnet.safetensors"
    assert main(["convert", "wslgraph.zoo:tiny_resnet", "--picture", str(picture), "--save", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "round trip to the state dict exact: True" in out and "residual" in out
    assert ET.parse(picture).getroot().tag.endswith("svg")
    reference = tiny_resnet()  # a fresh init: the saved graph holds the factory's own weights, so compare structure
    assert list(to_state_dict(load_graph(saved))) == list(reference.state_dict())
    assert main(["convert", str(saved)]) == 0 and "(72 hidden, 3 input, 10 output)" in capsys.readouterr().out

    # a factory from a file, with its weights from a checkpoint
    (tmp_path / "models.py").write_text("import torch\n\ndef build(width=4):\n"
                                        "    return torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.ReLU(), "
                                        "torch.nn.Linear(width, 2))\n")
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    torch.save({"state_dict": net.state_dict()}, tmp_path / "net.pth")
    saved = tmp_path / "net.safetensors"
    assert main(["convert", f"{tmp_path / 'models.py'}:build", "--kwargs", '{"width": 5}', "--checkpoint",
                 str(tmp_path / "net.pth"), "--save", str(saved), "--quiet"]) == 0
    state = to_state_dict(load_graph(saved))
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())

    # a bare SIREN checkpoint (as in the DWS and NFN zoos): widths from the shapes
    inr = siren()
    torch.save(inr.state_dict(), tmp_path / "inr.pth")
    assert main(["convert", str(tmp_path / "inr.pth"), "--activation", "sine", "--save", str(saved), "--quiet"]) == 0
    graph = load_graph(saved)
    assert graph.num_nodes == 2 + 32 + 32 + 1 and graph.num_edges == 2 * 32 + 32 * 32 + 32
    assert all(torch.equal(a, b) for a, b in zip(to_state_dict(graph).values(), inr.state_dict().values(), strict=True))


def test_convert_errors_are_clear(tmp_path, capsys) -> None:
    import torch

    torch.save({"model": torch.nn.Linear(3, 2)}, tmp_path / "pickled.pth")  # a pickled module, not a state dict
    assert main(["convert", str(tmp_path / "pickled.pth")]) == 2
    assert "weights_only=True" in capsys.readouterr().err
    assert main(["convert", "no_such_module:build"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err
    assert main(["convert", "wslgraph.zoo:no_such_factory"]) == 2
    assert "has no attribute" in capsys.readouterr().err
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "linear.pth")
    assert main(["convert", "wslgraph.zoo:small_cnn", "--checkpoint", str(tmp_path / "linear.pth")]) == 2
    assert "does not fit wslgraph.zoo:small_cnn" in capsys.readouterr().err
    for bad, message in ((["--picture", str(tmp_path / "graph.gif")], "use a .png, .svg or .pdf"),
                         (["--kwargs", "{bad"], "argument --kwargs: '{bad' is not JSON")):
        with pytest.raises(SystemExit) as stopped:
            main(["convert", "wslgraph.zoo:siren", *bad])
        error = capsys.readouterr().err
        assert stopped.value.code == 2 and "error: " in error and message in error
    assert not (tmp_path / "graph.gif").exists()
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    from wslgraph import load_graph
    from wslgraph.errors import CorruptShardError
    with pytest.raises(CorruptShardError, match="save_graph"):
        load_graph(tmp_path / "junk.safetensors")


def test_bench_runs_the_comparison_harness(tmp_path, capsys) -> None:
    report = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--models", "nfn-np", "statnn", "gnn-windows", "--option", "nfn-np:lr=0.001",
                 "--option", "gnn-windows:hidden=16", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert [row["model"] for row in data["rows"]] == ["nfn-np", "statnn", "gnn-windows"]
    assert data["rows"][0]["training"]["lr"] == 0.001 and data["rows"][1]["training"]["lr"] == 0.002
    assert data["augment"] == "none" and data["rows"][0]["training"]["augment"] == "none"
    assert report.with_suffix(".md").read_text().count("\n") == 5
    with pytest.raises(SystemExit):
        main(["bench", "--quick", "--models", "resnet"])
    assert "unknown models ['resnet']" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["train", "ZOO", "--out", "RUN", "--epochs", "0"], "argument --epochs: 0 is too small"),
    (["train", "ZOO", "--out", "RUN", "--lr", "nan"], "argument --lr: nan is not allowed"),
    (["train", "ZOO", "--out", "RUN", "--lr", "-1"], "argument --lr: -1 is not allowed"),
    (["train", "ZOO", "--out", "RUN", "--weight-decay", "inf"], "argument --weight-decay: inf is not allowed"),
    (["train", "ZOO", "--out", "RUN", "--patience", "-3"], "argument --patience: -3 is too small"),
    (["train", "ZOO", "--out", "RUN", "--batch-size", "two"], "argument --batch-size: 'two' is not a whole number"),
    (["train", "ZOO", "--out", "RUN", "--device", "tpu"], "argument --device: 'tpu'"),
    (["zoo", "inr", "OUT", "--views", "0"], "argument --views: 0 is too small"),
    (["zoo", "inr", "OUT", "--chunk-size", "0"], "argument --chunk-size: 0 is too small"),
    (["zoo", "inr", "OUT", "--hidden", "32", "0"], "argument --hidden: 0 is too small"),
    (["zoo", "inr", "OUT", "--train-images", "0"], "argument --train-images: 0 is too small"),
    (["zoo", "cnn", "OUT", "--count", "0"], "argument --count: 0 is too small"),
    (["zoo", "inr", "OUT", "--rank", "3", "--world-size", "2"], "rank 3 does not fit world size 2"),
    (["bench", "--quick", "--seeds", "0"], "argument --seeds: 0 is too small"),
])
def test_bad_numbers_and_names_are_refused_before_anything_runs(tmp_path, capsys, arguments, message) -> None:
    arguments = [str(tmp_path / a.lower()) if a in ("ZOO", "RUN", "OUT") else a for a in arguments]
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and "error: " in error and message in error, error
    assert not any(tmp_path.iterdir())  # nothing was created


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_refused(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["zoo", "inr", str(tmp_path / "zoo"), "--device", "cuda"])
    assert stopped.value.code == 2 and "has no CUDA device" in capsys.readouterr().err


def test_train_refuses_bad_options_and_models(tmp_path, capsys) -> None:
    zoo = tmp_path / "zoo"
    assert main(["zoo", "inr", str(zoo), "--train-images", "12", "--test-images", "2", "--steps", "5",
                 "--shard-size", "14", "--no-compile", "--quiet"]) == 0
    for arguments, message in ((["--options", "{bad"], "argument --options: '{bad' is not JSON"),
                               (["--model", "resnet"], "unknown model 'resnet'"),
                               (["--options", '{"no_such_option": 1}'], "no_such_option")):
        with pytest.raises(SystemExit) as stopped:
            main(["train", str(zoo), "--out", str(tmp_path / "run"), "--quiet", *arguments])
        error = capsys.readouterr().err
        assert stopped.value.code == 2 and message in error, error
    assert not (tmp_path / "run").exists()


def test_zoo_info_verifies_every_shard_and_convert_names_a_missing_file(tmp_path, capsys) -> None:
    zoo = tmp_path / "zoo"
    assert main(["zoo", "inr", str(zoo), "--train-images", "4", "--test-images", "2", "--steps", "2",
                 "--shard-size", "3", "--no-compile", "--quiet"]) == 0
    assert main(["zoo", "info", str(zoo)]) == 0
    assert "all 2 shards match their SHA-256" in capsys.readouterr().out
    shard = next(zoo.glob("shard-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in the parameters
    shard.write_bytes(bytes(data))
    assert main(["zoo", "info", str(zoo)]) == 2
    assert "does not match its SHA-256" in capsys.readouterr().err
    assert main(["zoo", "info", str(zoo), "--no-verify"]) == 0  # the manifest alone, as asked
    assert "2 shards, not verified (--no-verify)" in capsys.readouterr().out
    manifest = json.loads((zoo / "manifest.json").read_text())
    manifest["shards"][0]["file"] = "../elsewhere.safetensors"
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    assert main(["zoo", "info", str(zoo)]) == 2
    assert "not inside the zoo folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["convert", str(tmp_path / "missing.pt")])
    assert stopped.value.code == 2 and "missing.pt: no such file" in capsys.readouterr().err


def test_sharded_jobs_with_different_settings_do_not_mix(tmp_path, capsys) -> None:
    zoo = tmp_path / "zoo"
    common = ["--train-images", "4", "--test-images", "2", "--shard-size", "3", "--no-compile", "--quiet",
              "--world-size", "2"]
    assert main(["zoo", "inr", str(zoo), "--seed", "1", "--steps", "2", "--rank", "1", *common]) == 0
    assert main(["zoo", "inr", str(zoo), "--seed", "0", "--steps", "3", "--rank", "0", *common]) == 2
    assert "different zoo job" in capsys.readouterr().err
    assert not (zoo / "manifest.json").exists()
    # a shard of another job slipped in under this job's job.json: finalising refuses it by its fingerprint
    (zoo / "job.json").unlink()
    assert main(["zoo", "inr", str(zoo), "--seed", "0", "--steps", "3", "--rank", "0", *common]) == 2
    assert "written by a different zoo job" in capsys.readouterr().err
    assert not (zoo / "manifest.json").exists()


def test_names_paths_and_runs_that_do_not_fit_are_reported(tmp_path, capsys) -> None:
    import torch
    from torch import nn

    from wslgraph import to_graph
    from wslgraph.errors import UnsupportedModuleError
    from wslgraph.weightspace import permute_hidden

    with pytest.raises(SystemExit) as stopped:
        main(["zoo", "inr", str(tmp_path / "z"), "--source", "imagenet"])
    assert stopped.value.code == 2 and "invalid choice: 'imagenet'" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["zoo", "inr", str(blocker / "zoo"), "--train-images", "2", "--test-images", "1", "--steps", "1",
                 "--no-compile", "--quiet"]) == 2
    assert "wslgraph: error: " in capsys.readouterr().err and blocker.read_text() == "not a folder"
    zoo, run = tmp_path / "zoo", tmp_path / "run"
    assert main(["zoo", "inr", str(zoo), "--train-images", "12", "--test-images", "2", "--steps", "3",
                 "--shard-size", "14", "--no-compile", "--quiet"]) == 0
    assert main(["train", str(zoo), "--target", "colour", "--out", str(run), "--quiet"]) == 2
    assert "target 'colour' is not a column" in capsys.readouterr().err
    assert main(["train", str(zoo), "--model", "statnn", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    other = tmp_path / "other"
    assert main(["zoo", "inr", str(other), "--train-images", "12", "--test-images", "2", "--steps", "3",
                 "--hidden", "8", "--shard-size", "14", "--no-compile", "--quiet"]) == 0
    assert main(["eval", str(run), "--zoo", str(other)]) == 2
    assert "trained on another architecture" in capsys.readouterr().err
    tied = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    tied[2].weight = tied[0].weight
    with pytest.raises(UnsupportedModuleError, match="'0.weight' and '2.weight' are the same tensor"):
        to_graph(tied)
    with pytest.raises(UnsupportedModuleError, match="weight sharing"):
        permute_hidden(tied, torch.Generator().manual_seed(0))
