"""Every example and the conversion benchmark's quick mode run end to end."""

import json
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
    assert "exact: True" in result.stdout


def test_convert_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "convert.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "convert.py"), "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    names = [r["architecture"] for r in report["results"]]
    assert names == ["SIREN", "SmallCNN"]
    for row in report["results"]:
        assert row["template_graphs_per_s"] > row["loop_graphs_per_s"] > 0
        assert 0 < row["bandwidth_fraction"] and row["batch_bytes"] > 0
    assert "ratio" in result.stdout and "% of clone()" in result.stdout
