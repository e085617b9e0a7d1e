"""Smoke test of bench/bench_estimation.py: the quick, modelmon-only run finishes and reports its table."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench_runs import run_bench


def test_quick_bench_reports_the_estimation_table(tmp_path: Path) -> None:
    stdout = run_bench(
        "bench_estimation.py", "--quick", "--no-peers", "--data-root", tmp_path / "data",
        "--plot", tmp_path / "accuracy.png", "--json", tmp_path / "estimation.json",
    )  # fmt: skip
    assert "| covariate | modelmon" in stdout and "| concept   | modelmon" in stdout
    assert "NannyML: skipped: --no-peers" in stdout
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    record = json.loads((tmp_path / "estimation.json").read_text())
    covariate = record["summary"]["covariate/modelmon"]
    assert covariate["accuracy"]["mae"] < 0.05  # calibrated by construction: the estimate follows
    assert record["summary"]["concept/modelmon"]["accuracy"]["mae"] > covariate["accuracy"]["mae"]
