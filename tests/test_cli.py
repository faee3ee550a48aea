"""The command line: the interim demo converts the built-in models exactly."""

from wslgraph.cli import main


def test_demo_runs_and_reports_exact_round_trips(capsys) -> None:
    assert main(["demo", "--zoo-size", "50"]) == 0
    out = capsys.readouterr().out
    assert out.count(": exact") == 3
    assert "50 SIRENs" in out and "unbatch exact: True" in out
