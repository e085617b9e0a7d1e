"""Smoke test of bench/bench_estimation.py: the quick, modelmon-only run finishes and reports its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_bench_reports_the_estimation_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "bench_estimation.py"),
            "--quick",
            "--no-peers",
            "--data-root",
            str(tmp_path / "data"),
            "--plot",
            str(tmp_path / "accuracy.png"),
            "--json",
            str(tmp_path / "estimation.json"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| covariate | modelmon" in proc.stdout and "| concept   | modelmon" in proc.stdout
    assert "NannyML: skipped: --no-peers" in proc.stdout
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    record = json.loads((tmp_path / "estimation.json").read_text())
    covariate = record["summary"]["covariate/modelmon"]
    assert covariate["accuracy"]["mae"] < 0.05  # calibrated by construction: the estimate follows
    assert record["summary"]["concept/modelmon"]["accuracy"]["mae"] > covariate["accuracy"]["mae"]
