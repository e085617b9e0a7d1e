"""Smoke test of bench/bench_pipeline.py: a tiny run reports an events/s figure and a latency figure."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "bench_pipeline.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_pipeline", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_pipeline", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return sys.modules["bench_pipeline"]


@pytest.mark.integration
def test_tiny_run_reports_throughput_and_latency(tmp_path: Path) -> None:
    # Small chunks and a short grace period keep the latency phase to seconds; no faust readers,
    # no profile (py-spy is not a project dependency), no microbenchmarks.
    # fmt: off
    args = [
        sys.executable, str(SCRIPT), "--quick",
        "--events", "1500", "--reference-events", "1000", "--floors", "", "--no-micro", "--no-profile",
        "--latency-rate", "200", "--latency-seconds", "4", "--windows-per-second", "1",
        "--worker-env", "MODELMON_CHUNK_SIZE=100", "--worker-env", "MODELMON_WINDOW_GRACE_SECONDS=2",
        "--json", str(tmp_path / "pipeline.json"),
    ]
    # fmt: on
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    rate = re.search(r"^RESULT pipeline: ([\d,]+) events/s per worker process", proc.stdout, re.MULTILINE)
    assert rate, output[-6000:]
    assert int(rate.group(1).replace(",", "")) > 0
    latency = re.search(r"^RESULT latency: p50 ([\d.]+) s, p99 ([\d.]+) s", proc.stdout, re.MULTILINE)
    assert latency, output[-6000:]
    p50, p99 = float(latency.group(1)), float(latency.group(2))
    assert 0 < p50 <= p99
    assert "Reproduce: .venv/bin/python bench/bench_pipeline.py" in proc.stdout
    results = json.loads((tmp_path / "pipeline.json").read_text())
    assert results["throughput"]["complete"] is True
    assert results["throughput"]["counted_events"] == 1500
    assert results["latency"]["landed_windows"] == results["latency"]["measured_windows"] == 4


def test_profile_analysis_splits_threads_and_categories(tmp_path: Path) -> None:
    bench = load_bench()
    root = "<module> (modelmon/__main__.py:3);BaseEventLoop.run_forever (asyncio/base_events.py:607)"
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "\n".join(
            [
                f"thread (1): MainThread;{root};Stage1.process (streams/stage1.py:10);"
                "parse_event (streams/validation.py:60);BaseModel.model_validate (pydantic/main.py:1) 30",
                f"thread (1): MainThread;{root};Stage1._fold (streams/stage1.py:20);"
                "WindowBundle.add_predictions (streams/bundle.py:5);unique (numpy/lib/x.py:1) 50",
                f"thread (1): MainThread;{root};EpollSelector.select (selectors.py:468) 20",
                "thread (2): Thread-1;WorkerThread.run (mode/threads.py:62);"
                "Fetcher._proc_fetch_request (aiokafka/consumer/fetcher.py:747) 40",
            ]
        )
        + "\n"
    )
    result = bench.analyse_profile(raw, seconds=2, rate=100)
    assert result["samples"] == 140 and result["main_samples"] == 100
    threads = {role: busy for role, _, busy in result["threads"]}
    assert threads["main thread: event loop (agents, table, producer, timers)"] == pytest.approx(0.5)
    assert threads["faust consumer thread (aiokafka fetcher)"] == pytest.approx(0.2)
    categories = dict(result["categories"])
    assert categories["window bundles: numpy aggregates (streams/bundle.py, detectors)"] == pytest.approx(0.5)
    assert categories["validation: orjson + pydantic (streams/validation.py)"] == pytest.approx(0.3)
    assert categories[bench.EVENT_LOOP] == pytest.approx(0.2)
    inclusive = dict(result["inclusive"])
    assert inclusive["Stage1._fold (streams/stage1.py)"] == pytest.approx(0.5)
    assert not any("run_forever" in name for name in inclusive)
