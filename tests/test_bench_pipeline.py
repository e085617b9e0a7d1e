"""bench/bench_pipeline.py: a tiny run reports (a)..(h) with exact counts, and its profile analysis."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "bench_pipeline.py"
RESULT = re.compile(r"^RESULT ([a-h]) [^:]+: (.*)$", re.MULTILINE)


@pytest.mark.integration
def test_tiny_run_reports_every_phase_with_exact_counts(tmp_path: Path) -> None:
    # Ceiling, one worker, the ratio and the SDK; the slow phases (two workers, latency, memory,
    # idle CPU) are skipped, and py-spy is not a project dependency.
    out = tmp_path / "pipeline.json"
    args = ["--quick", "--events", "3000", "--backlog-minutes", "2", "--sdk-calls", "5000"]
    args += ["--skip", "d,f,g,h", "--no-profile"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    results = dict(RESULT.findall(proc.stdout))
    assert sorted(results) == list("abcdefgh"), output[-6000:]
    assert re.match(r"[\d,]+ msg/s;", results["a"]), results["a"]
    assert re.match(r"[\d,]+ events/s; 3,600 events \(3,000 predictions \+ 600 labels\)", results["b"])
    assert "counts exact" in results["b"]
    assert re.match(r"\d+\.\d\d;", results["c"]), results["c"]
    assert re.match(r"[\d,]+ events/s; 5,000 calls \+ flush; per call median [\d.]+ µs", results["e"])
    for skipped in "dfgh":
        assert results[skipped].startswith("SKIPPED"), results[skipped]
    assert f"Reproduce: .venv/bin/python bench/bench_pipeline.py {' '.join(args)} --json {out}" in proc.stdout
    data = json.loads(out.read_text())
    b = data["phases"]["b"]["result"]
    assert (b["stored_events"], b["stored_labels"], b["exact"]) == (3000, 600, True)
    assert b["drift_windows"] == b["windows"] > 0  # the reference was loaded: drift at every window close
    assert data["phases"]["a"]["result"]["messages"] == 3600
    assert data["machine"]["cpus"] and data["machine"]["git"]


def test_profile_analysis_splits_the_data_plane_from_the_other_threads(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from pipeline_profile import analyse
    finally:
        sys.path.remove(str(REPO / "bench"))
    boot = "Thread._bootstrap (/usr/lib/python3.11/threading.py:1002)"
    plane = f"{boot};DataPlane.run ({REPO}/streams/data_plane.py:180)"
    entry = "<module> (modelmon/__main__.py:3)"
    loop = f"{entry};BaseEventLoop.run_forever (/x/lib/python3.11/asyncio/base_events.py:6)"
    raw = tmp_path / "profile.txt"
    raw.write_text(
        f"thread (7): data-plane;{plane};Stage1.process ({REPO}/streams/stage1.py:10) 60\n"
        f"thread (7): data-plane;{plane};Consumer.consume (x.py:1) 20\n"
        f"thread (1): MainThread;{loop};Stage2.process ({REPO}/streams/stage2.py:5) 30\n"
        "thread (9): Thread-1;Fetcher._fetch (/v/site-packages/aiokafka/consumer/fetcher.py:9) 10\n"
    )
    result = analyse(raw, seconds=2.0, rate=100)
    assert result["samples"] == 120
    busy = {name: share for name, _, share in result["threads"]}
    assert busy == {"data-plane": 0.4, "MainThread": 0.15, "Thread-1": 0.05}
    plane_frames = dict(result["groups"]["data-plane"]["inclusive"])
    assert plane_frames["DataPlane.run (streams/data_plane.py)"] == pytest.approx(1.0)
    assert plane_frames["Stage1.process (streams/stage1.py)"] == pytest.approx(0.75)
    assert not any("_bootstrap" in frame for frame in plane_frames)  # thread entry frames left out
    others = dict(result["groups"]["other threads"]["inclusive"])
    assert others["Stage2.process (streams/stage2.py)"] == pytest.approx(0.75)
    assert others["Fetcher._fetch (aiokafka/consumer/fetcher.py)"] == pytest.approx(0.25)
    assert not any("run_forever" in frame for frame in others)
