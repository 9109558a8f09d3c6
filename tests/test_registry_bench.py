"""`tunixrt db bench` writes what it says it measures."""

from __future__ import annotations

import json

from tunixrt.cli.main import main as tunixrt_cli
from tunixrt.registry import Registry, list_runs


def test_db_bench_reports_rates_and_writes_its_rows(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    args = ["db", "bench", "--registry", url, "--runs", "5", "--steps", "7", "--processes", "2"]
    assert tunixrt_cli([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == "sqlite" and result["concurrent_processes"] == 2
    assert result["run_rows_per_s"] > 0 and result["metric_points_per_s"] > 0
    with Registry.open(url) as reg:
        runs = list_runs(reg)
    assert len(runs) == 5 + 1 + 2  # the rows, the metrics run, one per process
    assert {r.last_step for r in runs if r.name != "bench-0" and r.status == "completed"} == {7}
