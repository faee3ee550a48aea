"""The command line: the demo converts the built-in models exactly; zoo jobs generate, resume and report."""

import json

import pytest

from wslgraph.cli import main


def test_demo_quick_runs_end_to_end(tmp_path, capsys) -> None:
    arguments = ["demo", "--quick", "--quiet", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert out.count("round trip exact: True") == 3
    for name in ("GNNEncoder", "DWSNet", "NFN-HNP"):
        assert name in out
    for figure in ("learning_curves.svg", "reconstructions.svg", "network.svg"):
        assert (tmp_path / "out" / figure).read_text().startswith("<svg")
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
    assert main(["zoo", "inr", str(out), "--train-images", "2", "--test-images", "0", "--steps", "1",
                 "--shard-size", "2", "--no-compile", "--quiet"]) == 0
    assert main(["zoo", "inr", str(out), "--train-images", "2", "--test-images", "0", "--steps", "2",
                 "--shard-size", "2", "--no-compile", "--quiet"]) == 2
    assert "different zoo job" in capsys.readouterr().err


def test_train_and_eval_commands(tmp_path, capsys) -> None:
    zoo = tmp_path / "zoo"
    assert main(["zoo", "inr", str(zoo), "--train-images", "26", "--test-images", "8", "--steps", "20",
                 "--shard-size", "34", "--no-compile", "--quiet"]) == 0
    run = tmp_path / "run"
    assert main(["train", str(zoo), "--model", "nfn-hnp", "--options", '{"hidden": 8}', "--epochs", "2",
                 "--batch-size", "8", "--out", str(run), "--quiet"]) == 0
    assert {"run.json", "best.safetensors", "checkpoint.safetensors", "metrics.csv"} <= {p.name for p in run.iterdir()}
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    stored = json.loads((run / "run.json").read_text())["result"]["test"]
    assert metrics["accuracy"] == stored["accuracy"] and metrics["loss"] == pytest.approx(stored["loss"])
    assert main(["eval", str(tmp_path)]) == 2
    assert "no run.json" in capsys.readouterr().err
