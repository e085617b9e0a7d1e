"""Smoke test of bench/bench_detectors.py: the quick, modelmon-only run finishes and reports a throughput."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_bench_reports_rows_per_second(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "bench_detectors.py"),
            "--quick",
            "--no-peers",
            "--data-root",
            str(tmp_path / "data"),
            "--json",
            str(tmp_path / "result.json"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"^modelmon: ([\d,]+) rows/s", proc.stdout, flags=re.MULTILINE)
    assert match, proc.stdout
    assert int(match.group(1).replace(",", "")) > 0
    assert "| modelmon" in proc.stdout  # the results table
    assert (tmp_path / "result.json").exists()
