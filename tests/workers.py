"""Starting and stopping real `modelmon` processes from tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from modelmon.settings import Settings


def write_spec(directory: Path, model_id: str | None = None, **overrides: Any) -> str:
    """Write a small binary-classifier spec with a unique model id into ``directory``."""
    model_id = model_id or f"m-{uuid.uuid4().hex[:8]}"
    spec = {
        "model_id": model_id,
        "task": "binary",
        "features": {
            "amount": {"type": "numerical", "min": 0, "required": True},
            "country": {"type": "categorical", "allowed": ["DE", "FR"]},
        },
        **overrides,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{model_id}.yaml").write_text(yaml.safe_dump(spec))
    return model_id


def make_settings(bootstrap: str, prefix: str, workdir: Path, models: Path, **extra: Any) -> Settings:
    """Settings of a test worker; ``extra`` overrides any field."""
    fields: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": prefix,
        "app_id": f"app-{prefix.strip('.')}",
        "models_path": models,
        "worker_data_dir": workdir / "worker",
        "topic_partitions": 2,
        "batch_within": 0.2,
        # The end-to-end tests replay fixed, months-old event times: accept them (production: 7 days).
        "max_event_age": "3650d",
        **extra,
    }
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


class ModelmonProcess:
    """A `python -m modelmon <command>` subprocess with its log in a file."""

    command = ""
    stop_timeout = 20.0
    reap_timeout = 5.0

    def __init__(self, settings: Settings, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {**os.environ, **settings.to_env()}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelmon", self.command, *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (the class's ``stop_timeout`` by default)."""
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(self.reap_timeout)
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(self.reap_timeout)
        self._log.close()


class WorkerProcess(ModelmonProcess):
    """A `modelmon worker` subprocess with its log in a file."""

    command = "worker"


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


class SinkProcess(ModelmonProcess):
    """A `modelmon sink` subprocess (it owns its chDB directory while it runs).

    SIGTERM: the sink finishes its batch, leaves its group and exits 0.
    """

    command = "sink"
    stop_timeout = 30.0
    reap_timeout = 10.0
