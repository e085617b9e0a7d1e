"""Smoke test of bench/bench_detectors.py: the quick, modelmon-only run finishes and reports a throughput."""

from __future__ import annotations

import re
from pathlib import Path

from tests.bench_runs import run_bench


def test_quick_bench_reports_rows_per_second(tmp_path: Path) -> None:
    stdout = run_bench(
        "bench_detectors.py", "--quick", "--no-peers", "--data-root", tmp_path / "data",
        "--json", tmp_path / "result.json",
    )  # fmt: skip
    match = re.search(r"^modelmon: ([\d,]+) rows/s", stdout, flags=re.MULTILINE)
    assert match, stdout
    assert int(match.group(1).replace(",", "")) > 0
    assert "| modelmon" in stdout  # the results table
    assert (tmp_path / "result.json").exists()
