"""wslgraph reproduce: the DWS benchmark at a small scale, resumed runs, refused settings, the CLI."""

import json

import pytest

from wslgraph.cli import main
from wslgraph.errors import ManifestError, ZooError
from wslgraph.tasks.compare import BenchOptions, default_options
from wslgraph.tasks.reproduce import REPRODUCTIONS, reproduce


def test_reproduce_fits_the_split_trains_compares_and_resumes(tmp_path, capsys) -> None:
    bench = BenchOptions(models=("statnn",), seeds=2, epochs=1)
    result = reproduce("dws-mnist", tmp_path, bench, scale=0.0002, progress=False)
    # 12 train images (one in 12 goes to validation) and 2 test images, the DWS recipe
    assert (result["train_images"], result["test_images"], result["source"]) == (12, 2, "mnist5k")
    manifest = json.loads((tmp_path / "zoo" / "job.json").read_text())
    assert manifest["num_models"] == 14
    row = result["rows"][0]
    assert row["model"] == "statnn" and len(row["scores"]) == 2 and 0 <= row["accuracy"] <= 100
    saved = json.loads((tmp_path / "reproduce.json").read_text())
    assert saved["published"]["DWSNet"] == REPRODUCTIONS["dws-mnist"].published["DWSNet"] == 85.7
    assert "| statnn |" in (tmp_path / "reproduce.md").read_text()
    for seed in range(2):
        assert (tmp_path / "runs" / "statnn" / f"seed{seed}" / "result.json").exists()
    capsys.readouterr()
    again = reproduce("dws-mnist", tmp_path, bench, scale=0.0002, progress=False)
    assert "2 of 2 runs read back" in capsys.readouterr().out
    assert again["rows"][0]["scores"] == row["scores"]
    # kept results name the folder they were made in; one read from a moved or linked folder still counts
    for seed in range(2):
        kept = tmp_path / "runs" / "statnn" / f"seed{seed}" / "result.json"
        saved = json.loads(kept.read_text())
        kept.write_text(json.dumps({**saved, "job": {**saved["job"], "out_dir": "/elsewhere/statnn/seed0"}}))
    capsys.readouterr()
    reproduce("dws-mnist", tmp_path, bench, scale=0.0002, progress=False)
    assert "2 of 2 runs read back" in capsys.readouterr().out
    # a finished run is only reused for the same job; other training settings refuse the folder
    with pytest.raises(ManifestError, match="different configuration"):
        reproduce("dws-mnist", tmp_path, BenchOptions(models=("statnn",), seeds=1, epochs=1, lr=1e-4), scale=0.0002,
                  progress=False)


def test_reproduce_refuses_scales_it_has_no_images_for() -> None:
    with pytest.raises(ZooError, match="--data-root with MNIST's IDX files"):
        reproduce("dws-mnist", "unused", scale=0.5, progress=False)
    with pytest.raises(ValueError, match="scale must be in"):
        reproduce("dws-fmnist", "unused", scale=0.0, progress=False)
    with pytest.raises(ValueError, match="unknown benchmark"):
        reproduce("dws-cifar", "unused")


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "dws-mnist", "--scale", "2"], "use a fraction in (0, 1]"),
    (["reproduce", "dws-fmnist", "--models", "resnet"], "unknown models ['resnet']"),
    (["reproduce", "dws-svhn"], "invalid choice"),
])
def test_reproduce_command_line_errors(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_reproduce_command_reports_missing_images(tmp_path, capsys) -> None:
    assert main(["reproduce", "dws-mnist", "--scale", "0.5", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wslgraph: error:") and "MNIST-5k is packaged" in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_harness_defaults_per_zoo_kind() -> None:
    """The encoders classify INR zoos with sign symmetry, the GNN reads CNN zoos with weight statistics and
    dropout; the user's option wins; other models and kinds are left."""
    assert default_options("gnn-probe", {}, "inr", "classification") == {
        "symmetry": "sign", "probe_options": {"num_probes": 64, "projection": 64}}
    assert default_options("gnn-probe", {"probe_options": {"num_probes": 8}}, "inr", "classification") == {
        "symmetry": "sign", "probe_options": {"num_probes": 8}}
    assert default_options("gnn-probe", {}, "inr", "editing") == {}
    assert default_options("gnn", {"symmetry": "permutation", "hidden": 8}, "inr", "classification") == \
        {"symmetry": "permutation", "hidden": 8}
    assert default_options("gnn", {}, "cnn", "regression") == {"statistics": True, "dropout": 0.2}
    assert default_options("gnn", {"statistics": False, "dropout": 0.0}, "cnn", "regression") == {
        "statistics": False, "dropout": 0.0}
    assert default_options("gnn", {"symmetry": "auto"}, "cnn", "regression") == {"symmetry": "auto"}
    assert default_options("transformer", {}, "cnn", "regression") == {"statistics": True, "dropout": 0.2}
    assert default_options("transformer", {"dropout": 0.1}, "cnn", "regression") == {"dropout": 0.1, "statistics": True}
    assert default_options("transformer", {}, "inr", "editing") == {}
    assert default_options("gnn", {}, "inr", "editing") == {}
    assert default_options("transformer", {}, "inr", "classification") == {"symmetry": "sign"}
    assert default_options("transformer-probe", {}, "inr", "classification") == {
        "symmetry": "sign", "probe_options": {"num_probes": 64, "projection": 64}}
    assert default_options("transformer-probe", {}, "cnn", "regression") == {}
    assert default_options("dwsnet", {}, "inr", "classification") == {}


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped, counts as ended)."""
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_the_harness_ends_its_worker(tmp_path) -> None:
    """`kill` of a bench or sweep used to leave its pool's worker training on into the run folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = ("import time\nfrom wslgraph.tasks.compare import run_pool\nwith run_pool() as pool:\n"
              "    print(pool._pool[0].pid, flush=True)\n    pool.map(time.sleep, [120])\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(process.stdout.readline())
    time.sleep(1.0)  # the worker has taken the task
    assert _alive(worker)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 20
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        assert not _alive(worker)
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
