"""Every example and every benchmark's quick mode run end to end."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_example_runs(script: str) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script)], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exact: True" in result.stdout or "permutation invariant: True" in result.stdout
    assert "False" not in result.stdout


def _run_quick(script: str, tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``benchmarks/<script> --quick [options]``; its stdout and JSON report."""
    out = tmp_path / "result.json"
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *options, "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return result, json.loads(out.read_text())


def test_convert_benchmark_quick(tmp_path: Path) -> None:
    result, report = _run_quick("convert.py", tmp_path)
    names = [r["architecture"] for r in report["results"]]
    assert names == ["SIREN", "SmallCNN"]
    for row in report["results"]:
        assert row["template_graphs_per_s"] > row["loop_graphs_per_s"] > 0
        assert 0 < row["bandwidth_fraction"] and row["batch_bytes"] > 0
    assert "ratio" in result.stdout and "% of clone()" in result.stdout
    if report["torchvision"]:  # torchvision installed (make setup installs it)
        assert [r["model"] for r in report["torchvision"]] == ["squeezenet1_1", "mobilenet_v3_small"]
        assert report["torchvision_all_exact"] and all(r["edges"] > r["nodes"] > 0 for r in report["torchvision"])


@pytest.mark.parametrize("script, keys", [("scatter.py", ["rows"]), ("encoders.py", ["dense_vs_generic", "scaling"])])
def test_nn_benchmarks_quick(tmp_path: Path, script: str, keys: list[str]) -> None:
    # the encoders' compiled rows through aot_eager: the harness is checked without inductor's compile time
    options = ("--compile", "--compile-backend", "aot_eager") if script == "encoders.py" else ()
    result, report = _run_quick(script, tmp_path, *options)
    for key in keys:
        assert report[key], key
    if script == "encoders.py":
        assert {row["architecture"] for row in report["dense_vs_generic"]} == {"SIREN", "SmallCNN"}
        assert all(row["dense_s"] > 0 and row["generic_s"] > 0 for row in report["dense_vs_generic"])
        siren_row = report["dense_vs_generic"][0]  # --quick compiles the SIREN row only
        assert siren_row["compiled_dense_s"] > 0 and siren_row["compiled_generic_s"] > 0
        assert set(siren_row["compile_s"]) == {"dense", "generic"}
        assert report["compile_backend"] == "aot_eager" and "torch.compile (aot_eager)" in result.stdout
        assert {row["encoder"] for row in report["scaling"]} == {"GNNEncoder", "TransformerEncoder"}


def test_zoo_fit_benchmark_quick(tmp_path: Path) -> None:
    result, report = _run_quick("zoo_fit.py", tmp_path)
    methods = {row["method"]: row for row in report["methods"]}
    assert set(methods) == {"per-model loop", "batched, eager", "batched, compiled", "torch.func idiom, eager",
                            "torch.func idiom, compiled", "batched, no early stop, eager",
                            "batched, no early stop, compiled"}
    assert set(report["versus_torch_func_idiom"]) == {"eager", "compiled"}
    assert all(ratio > 0 for ratio in report["versus_torch_func_idiom"].values())
    for row in methods.values():
        assert row["inr_steps_per_s"] > 0 and 0 < row["fraction_of_sgemm"] < 1
    assert methods["batched, eager"]["speedup_vs_loop"] > 1  # batching beats the loop even in the quick mode
    assert report["psnr_quantiles"]["min"] > 0 and "% of sgemm" in result.stdout
    shapes = report["shapes_3d"]
    assert shapes["batched_inr_steps_per_s"] > 0 and shapes["loop_inr_steps_per_s"] > 0 and shapes["steps"] == 20


def test_baselines_benchmark_quick(tmp_path: Path) -> None:
    result, report = _run_quick("baselines.py", tmp_path)
    models = {(row["architecture"], row["model"]) for row in report["rows"]}
    assert ("SIREN", "dwsnet") in models and ("SmallCNN", "dwsnet") not in models  # DWSNet is MLP-only
    assert {("SmallCNN", name) for name in ("GNNEncoder", "nfn-hnp", "nfn-np", "statnn")} <= models
    assert all(row["parameters"] > 0 and row["fwd_bwd_s"] > 0 for row in report["rows"])
    pytest.importorskip("nfn")  # the layer comparison with the authors' NFN layers (a dev/bench dependency)
    assert [row["mode"] for row in report["layers"]] == ["HNP", "NP"]
    assert all(set(row["seconds"]) == {"wslgraph", "nfn", "wslgraph per-term"} for row in report["layers"])


def test_ift_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "ift"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ift.py"), "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert [run["latent_dim"] for run in report["runs"]] == [2, 8]
    assert 0 <= report["l=2, all pixels"]["fraction_full_rank"] <= 1 and out.with_suffix(".svg").exists()
    assert all(run["train_loss_last"] < run["train_loss_first"] for run in report["runs"])


def test_compare_benchmark_quick(tmp_path: Path) -> None:
    result, report = _run_quick("compare.py", tmp_path)
    models = [row["model"] for row in report["rows"]]
    assert models == ["gnn", "gnn-probe", "transformer", "transformer-probe", "dwsnet", "nfn-hnp", "nfn-np", "mlp",
                      "statnn", "sane"]
    assert all(0 <= row["mean"] <= 1 and row["parameters"] > 0 and row["peak_mib"] > 0 for row in report["rows"])
    # probe features add the probe coordinates and their projection, nothing else
    rows = {row["model"]: row for row in report["rows"]}
    assert rows["gnn-probe"]["parameters"] > rows["gnn"]["parameters"]
    assert (tmp_path / "result.md").read_text().startswith("| model | test accuracy")


def test_compare_parses_model_options() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from compare import parse_options
    finally:
        sys.path.pop(0)
    assert parse_options(["gnn:hidden=128", "gnn:lr=1e-3", "gnn:readout_hidden=layer", "nfn-hnp:dropout=0.1"]) == {
        "gnn": {"hidden": 128, "lr": 1e-3, "readout_hidden": "layer"}, "nfn-hnp": {"dropout": 0.1}}
    with pytest.raises(ValueError, match="NAME:KEY=VALUE"):
        parse_options(["gnn-hidden-128"])


def test_profile_encoder_reports_operators_matrix_products_and_allocations(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "profile_encoder.py"), "--batch", "4", "--steps", "1",
               "--rows", "3", "--allocations", "--min-bytes", "4096", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert any(row["name"] == "aten::mm" and row["calls"] > 0 for row in report["cpu_ops"])
    products = report["matrix_products"]
    assert 0 < products["seconds_per_step"] < products["op_seconds_per_step"]
    allocations = report["large_allocations"]
    assert allocations["count"] > 0 and allocations["bytes"] >= 4096 * allocations["count"]
    assert sum(row["bytes"] for row in allocations["by_operator"]) == allocations["bytes"]
    assert "matrix products:" in result.stdout and "allocations of at least" in result.stdout


def test_collapse_benchmark_quick(tmp_path: Path) -> None:
    result, report = _run_quick("collapse.py", tmp_path)
    assert [row["step"] for row in report["rows"]] == [10, 20] and report["head_norm"]
    for row in report["rows"]:
        assert math.isfinite(row["loss"]) and 0 <= row["accuracy"] <= 1
        assert row["final"]["between"] > 0 and row["final"]["within"] > 0
    assert report["start"]["input"]["between"] > 0 and "final spread between" in result.stdout


def test_scale_benchmark_quick(tmp_path: Path) -> None:
    result, report = _run_quick("scale.py", tmp_path)
    methods = {(row["depth"], row["method"], row["size"]) for row in report["rows"]}
    assert (18, "whole graph", None) in methods and (50, "token windows", None) in methods
    assert {(d, "graph windows", s) for d in (18, 50) for s in (1, 2, 4)} <= methods
    windows = [row for row in report["rows"] if row["method"] == "graph windows"]
    assert all(row["largest_window_edges"] < row["network_edges"] and row["peak_rss_gib"] > 0 for row in windows)
    assert "goals" in result.stdout and report["goals"]


def test_scale_benchmark_embeds_a_zoo_row_by_row(tmp_path: Path) -> None:
    from wslgraph.zoo import generate_zoo, resnet_zoo_job

    generate_zoo(tmp_path / "zoo", resnet_zoo_job("digits", count=2, width=4, epochs=1, steps_per_epoch=2,
                                                  models_per_shard=1, train_images=50, test_images=20),
                 progress=False)
    command = [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--zoo", str(tmp_path / "zoo"), "--json",
               str(tmp_path / "r.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [row["method"] for row in rows] == ["graph windows", "token windows"]
    for row in rows:  # 2 models x 2 checkpoints, read from two shards, embedded apart
        assert row["checkpoints"] == 4 and row["closest_pair_relative"] > 0 and row["peak_rss_gib"] > 0
    assert "4 checkpoints of" in result.stdout


def test_ift_2d3d_benchmark_quick(tmp_path: Path) -> None:
    saved = tmp_path / "embeddings.safetensors"
    result, report = _run_quick("ift_2d3d.py", tmp_path, "--source-2d", "digits", "--rotations", "1",
                                "--test-rotations", "1", "--save-embeddings", str(saved))
    assert [row["loss"] for row in report["rows"]] == ["mse", "bce"]
    image, shape = report["rows"]  # turned copies: shapes only (80 training shapes and one copy each)
    assert image["classifier_train_embeddings"] == image["train_instances"] and "test_accuracy_averaged" not in image
    assert shape["classifier_train_embeddings"] == 2 * shape["train_instances"] == 160
    assert 0 <= shape["test_accuracy_averaged"] <= 1 and "turned copies: MLP" in result.stdout
    assert len(shape["test_accuracy_seeds"]) == 2 and shape["test_accuracy_seeds"][0] == shape["test_accuracy"]
    # saved embeddings, classified again without fitting: the same figures
    _, again = _run_quick("ift_2d3d.py", tmp_path, "--embeddings", str(tmp_path / "embeddings_3d.safetensors"))
    for key in ("test_accuracy_seeds", "svm_test_accuracy", "test_accuracy_averaged", "svm_test_accuracy_averaged"):
        assert again["rows"][0][key] == shape[key]
    for row in report["rows"]:
        assert row["reconstruction_last"] < row["reconstruction_first"] and 0 <= row["test_accuracy"] <= 1
        assert 0 <= row["fraction_full_rank"] <= 1 and row["points"] == (64 if row["loss"] == "mse" else 512)


def test_sampling_benchmark_quick(tmp_path: Path) -> None:
    result, report = _run_quick("sampling.py", tmp_path)
    assert [(row["method"], row["bandwidth"]) for row in report["rows"]] == [("kde", 0.2), ("kde", "scott")]
    assert all(0 <= row["accuracy"] <= 1 and row["distance_to_nearest_top"] > 0 for row in report["rows"])
    assert 0 < report["top_accuracy"] <= 1 and "of the top models'" in result.stdout


def test_hyperparameter_signal_benchmark_quick(tmp_path: Path) -> None:
    # a weight decay of 10 against none must stand far out of the minibatch noise, and shrink the weights
    result, report = _run_quick("hyperparameter_signal.py", tmp_path, "--values", "10", "0")
    assert report["hyperparameter"] == "weight_decay" and report["values"] == [10.0, 0.0]
    assert len(report["rows"]) == 2 and "effect/noise: median" in result.stdout
    for row in report["rows"]:
        assert "weight_decay" not in row and row["optimizer"] in ("adam", "sgd")
        assert row["noise"] > 0  # each model draws its own minibatches
        assert row["effect_over_noise"] > 10 and row["norm_ratio"] < 0.99


def test_sweep_benchmark_quick(tmp_path: Path) -> None:
    result, report = _run_quick("sweep.py", tmp_path)
    assert [row["setting"] for row in report["rows"]] == ["base", "hidden=16"]
    assert report["base"]["hidden"] == 8 and report["selected_by"].startswith("validation")
    base, wider = report["rows"]
    assert wider["parameters"] > base["parameters"]  # the swept value reached the model
    assert all(0 <= row["val_mean"] <= 1 and len(row["val"]) == 1 for row in report["rows"])
    assert report["best"] == max(report["rows"], key=lambda row: row["val_mean"])["setting"]
    assert (tmp_path / "result.md").read_text().count("\n") == 4 and "best by validation" in result.stdout


@pytest.mark.parametrize("options, message", [(("--vary", "dropout"), "expected KEY=V1,V2"),
                                              (("--vary", "dropout=0", "--vary", "dropout=1"), "twice"),
                                              (("--model", "resnet"), "unknown models")])
def test_sweep_benchmark_bad_input(tmp_path: Path, options: tuple[str, ...], message: str) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "sweep.py"), "--quick", *options, "--json",
               str(tmp_path / "r.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 2 and "sweep.py: error:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r.json").exists()


def test_probe_units_benchmark_quick(tmp_path: Path) -> None:
    result, report = _run_quick("probe_units.py", tmp_path)
    rows = {row["target"]: row for row in report["rows"]}
    assert set(rows) == {"test_accuracy", "init", "optimizer"}  # --quick's three
    for row in rows.values():  # both scalings probed every property, and the table printed it
        assert -5 < row["rank"] <= 1 and -5 < row["asinh"] <= 1
        assert f"| {row['target']} | {row['metric']} | {row['rank']:.3f} | {row['asinh']:.3f} |" in result.stdout
    assert rows["init"]["rank"] > 0.5  # the inits' value distributions differ at once, in any units
