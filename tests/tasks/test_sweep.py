"""The sweep's pure parts: parsing the swept values and choosing winners on validation, in both directions."""

import pytest

from wslgraph.tasks.compare import parse_options
from wslgraph.tasks.sweep import _winners, parse_base, parse_variations, task_sign


def test_parse_variations_reads_json_and_bare_words() -> None:
    assert parse_variations(["dropout=0,0.2", "symmetry=permutation,scale", "dense=true,null"]) == {
        "dropout": [0, 0.2], "symmetry": ["permutation", "scale"], "dense": [True, None]}
    # commas inside JSON objects and lists belong to the value
    assert parse_variations(['probe_options={"num_probes":64,"projection":64},{"num_probes":16}',
                             "hidden=[64, 64],[32]"]) == {
        "probe_options": [{"num_probes": 64, "projection": 64}, {"num_probes": 16}], "hidden": [[64, 64], [32]]}
    for bad in (["dropout"], ["=1"], ["dropout="]):
        with pytest.raises(ValueError, match="expected KEY=V1,V2"):
            parse_variations(bad)


def test_base_variations_and_harness_options_read_values_alike() -> None:
    texts = ["128", "0.2", "true", "null", "[64, 64]", "layer", " scale"]
    expected = [128, 0.2, True, None, [64, 64], "layer", "scale"]
    assert parse_base([f"k{i}={t}" for i, t in enumerate(texts)]) == {f"k{i}": v for i, v in enumerate(expected)}
    assert parse_options([f"gnn:k{i}={t}" for i, t in enumerate(texts)]) == {
        "gnn": {f"k{i}": v for i, v in enumerate(expected)}}
    assert parse_variations(["k=128,0.2,true,null,layer, scale"]) == {"k": [128, 0.2, True, None, "layer", "scale"]}
    for bad in (["hidden"], ["=1"]):
        with pytest.raises(ValueError, match="expected KEY=VALUE"):
            parse_base(bad)


def _row(change: dict, val: float) -> dict:
    return {"change": change, "val_mean": val}


def test_winners_beat_the_base_on_validation_in_the_task_direction() -> None:
    rows = [_row({}, 0.5), _row({"dropout": 0.1}, 0.4), _row({"dropout": 0.2}, 0.6), _row({"lr": 1e-3}, 0.45),
            _row({"lr": 5e-4}, 0.3)]
    variations = {"dropout": [0.1, 0.2], "lr": [1e-3, 5e-4]}
    assert task_sign("regression") == task_sign("classification") == 1.0
    assert _winners(rows, variations, 1.0) == {"dropout": 0.2}  # no lr beats the base
    assert task_sign("editing") == -1.0  # a lower MSE wins
    assert _winners(rows, variations, -1.0) == {"dropout": 0.1, "lr": 5e-4}
