"""Smoke test of bench/bench_detection.py: the quick run finishes and finds the injected changes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.bench_runs import REPO, run_bench

sys.path.insert(0, str(REPO / "bench"))

from bench_detection import Outcome


def test_outcome_splits_alarms_at_the_change_point() -> None:
    changed = Outcome(
        "s", 1, "x", changes=True, monitored_from=5000, monitored_to=25_000, alarms=[9000, 27_000]
    )
    assert (changed.false_alarms, changed.delay) == (1, 2000)
    at_change = Outcome("s", 1, "x", changes=True, monitored_from=0, monitored_to=25_000, alarms=[25_000])
    assert (at_change.false_alarms, at_change.delay) == (1, None)  # an alarm at the change point is early
    control = Outcome(
        "s", 1, "x", changes=False, monitored_from=0, monitored_to=45_000, alarms=[30_000, 41_000]
    )
    assert (control.false_alarms, control.delay) == (2, None)


def test_quick_bench_detects_the_injected_changes(tmp_path: Path) -> None:
    result = tmp_path / "detection.json"
    stdout = run_bench("bench_detection.py", "--quick", "--json", result)
    assert "| rbf-switch" in stdout and "reproduce: " in stdout
    data = json.loads(result.read_text())
    rows = {(row["case"], row["signal"]): row for row in data["summary"]}
    window = data["settings"]["window"]
    # Every input's distribution changes: the window verdict flags the first whole window after it.
    drifted = rows[("rbf-switch", "dataset_drifted")]
    assert drifted["detected"] == drifted["runs"] == 1
    assert 0 < drifted["delays"][0] <= 2 * window
    assert rows[("rbf-switch", "adwin_features")]["detected"] == 1
    # Pure concept drift: the inputs do not change, the error does, and both error signals see it.
    assert rows[("sea-concept", "adwin_error")]["detected"] == 1
    assert rows[("sea-concept", "change_error")]["detected"] == 1
    assert not rows[("sea-concept", "dataset_drifted")]["changes"]
