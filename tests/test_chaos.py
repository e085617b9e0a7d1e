"""Every chaos scenario in quick mode, each in its own process: the outcome is ok and every count exact.

`make chaos` runs the full scenarios; docs/operations.md ("Chaos suite") says what each one does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("MODELMON_TEST_BROKER", "noida").strip().lower() not in ("", "noida"),
        reason="the chaos scenarios start (and restart) their own noida-db brokers",
    ),
]

#: Scenarios that fail because of a known bug outside the harness. They are not run here: a test that
#: may fail or pass (a non-strict xfail) asserts nothing, and this one took 80 s of every CI run.
#: `make chaos` still runs them and reports their outcome.
KNOWN_FAILURES = {
    # Seen in some runs, not all (docs/operations.md, "Known gaps"): noida-db 0.2.3 can come back
    # without the last messages it acknowledged before a SIGTERM; no client can send those again.
    "broker_restart": "noida-db can lose messages it acknowledged before a restart",
}


def scenario_params() -> list[object]:
    params: list[object] = []
    for name in SCENARIOS:
        known = KNOWN_FAILURES.get(name)
        marks = [pytest.mark.skip(reason=f"known failure: {known}; run by `make chaos`")] if known else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.timeout(480)
@pytest.mark.parametrize("name", scenario_params())
def test_chaos_scenario_quick(name: str, tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    command = [sys.executable, "-m", "tests.chaos", "--quick", "--only", name, "--json", str(out)]
    runner = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The runner stops a scenario after 300 s itself; this is the backstop.
        stdout, stderr = runner.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        runner.send_signal(signal.SIGINT)  # the runner stops the scenario and the workers it started
        stdout, stderr = runner.communicate(timeout=40)
    report = stdout[-6000:] + stderr[-2000:]
    assert out.exists(), report
    (result,) = json.loads(out.read_text())["results"]
    assert result["scenario"] == name
    assert result["outcome"] == "ok", report
    assert result["stored"] == result["produced"], report
    assert result["dead_got"] == result["dead_expected"], report
    assert runner.returncode == 0, report
