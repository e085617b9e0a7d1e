"""A worker whose broker is gone still stops promptly on SIGTERM (its held inputs are replayed later)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from modelmon.app.broker import EmbeddedBroker
from streams.run import prepare_topics
from tests.workers import WorkerProcess, make_settings, wait_until, write_spec

pytestmark = pytest.mark.integration


def test_a_worker_without_its_broker_exits_soon_after_sigterm(tmp_path: Path) -> None:
    broker = EmbeddedBroker(kind="noida").start()
    models = tmp_path / "models"
    write_spec(models)
    settings = make_settings(broker.bootstrap, "t.", tmp_path, models, shutdown_timeout=3.0)
    worker = None
    try:
        prepare_topics(settings)
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        # Up: its data plane has partitions, and faust's agents log their statistics every 10 s.
        assert wait_until(
            lambda: "data plane: assigned" in worker.log() and "stage2 Stage2Stats" in worker.log(), 90
        ), worker.log()
        broker.stop()
        worker.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            worker.process.wait(20)  # faust's own shutdown waits 30 s or more for a broker that is gone
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 20 s after SIGTERM:\n{worker.log()}")
        assert time.monotonic() - started < 20
        assert "exiting now" in worker.log() or worker.process.returncode == 0, worker.log()
    finally:
        if worker is not None and worker.alive:
            worker.kill()
        broker.stop()
