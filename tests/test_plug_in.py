"""The README's "Plug in your model", run: its marked blocks in a fresh directory, against the
embedded broker and a worker with its sink, as a user would type them (`modelmon` on PATH, default
models path and ClickHouse DSN)."""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path
from subprocess import run
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from modelmon import metrics as m
from modelmon.settings import Settings
from sinks.consumer import SINK_GROUP_SUFFIX
from tests.workers import WorkerProcess, make_settings, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- plug-in: (\w+) -->\n```(sh|python)\n(.*?)```", re.S)
PREDICTIONS = 3000


def section() -> str:
    """The README's section "Plug in your model", up to the next section."""
    text = README.read_text()
    start = text.index("\n## Plug in your model\n")
    return text[start : text.index("\n## ", start + 1)]


def blocks(phase: str) -> list[tuple[str, str]]:
    found = [(lang, code) for step, lang, code in BLOCK.findall(section()) if step == phase]
    assert found, f"no block marked plug-in: {phase} in the README's section 'Plug in your model'"
    return found


def run_blocks(phase: str, cwd: Path, env: dict[str, str]) -> str:
    out = []
    for lang, code in blocks(phase):
        command = ["bash", "-eu", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
        result = run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False)
        assert result.returncode == 0, f"{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        out.append(result.stdout)
    return "".join(out)


class Landed:
    """Whether the worker published the model's metrics and its sink committed all of them."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topics.monitor_metrics
        self.partitions = [TopicPartition(self.topic, p) for p in range(settings.topic_partitions)]
        common = settings.kafka_common()
        self.reader = Consumer(
            {**common, "group.id": f"r-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
        )
        self.reader.subscribe([self.topic])
        self.sink = Consumer({**common, "group.id": settings.app_id + SINK_GROUP_SUFFIX})
        self.events: dict[str, float] = {}
        self.drift_features: set[str] = set()
        self.offsets: tuple[list[int], list[int]] = ([], [])

    def __call__(self) -> bool:
        for message in self.reader.consume(500, timeout=0.5):
            point: dict[str, Any] = orjson.loads(message.value()) if message.error() is None else {}
            if point.get("model_id") != "churn" or point.get("segment") or point.get("source") != "stage2":
                continue
            if point["metric"] == m.EVENTS:
                self.events[point["window_start"]] = point["value"]
            elif point["metric"] in m.DRIFT_METRICS:
                self.drift_features.add(point["feature"])
        if sum(self.events.values()) < PREDICTIONS or not self.drift_features:
            return False
        committed = [max(tp.offset, 0) for tp in self.sink.committed(self.partitions, timeout=10)]
        self.offsets = (
            committed,
            [self.sink.get_watermark_offsets(tp, timeout=10)[1] for tp in self.partitions],
        )
        return committed == self.offsets[1]

    def __repr__(self) -> str:
        return f"events per window {self.events}, drift of {self.drift_features}, sink offsets {self.offsets}"

    def close(self) -> None:
        self.reader.close()
        self.sink.close()


def test_the_plug_in_page_runs_end_to_end(kafka_broker: Any, topic_prefix: str, tmp_path: Path) -> None:
    work, bin_dir = tmp_path / "work", tmp_path / "bin"
    work.mkdir()
    bin_dir.mkdir()
    shim = bin_dir / "modelmon"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m modelmon "$@"\n')
    shim.chmod(0o755)
    # The worker gets the same places as absolute paths (it runs from the repository root).
    settings = make_settings(
        kafka_broker.bootstrap, topic_prefix, work, work / "models",
        clickhouse_dsn=f"chdb://{work / '.modelmon' / 'clickhouse'}",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELMON_")}
    env |= {
        k: v
        for k, v in settings.to_env().items()
        if k not in {"MODELMON_MODELS_PATH", "MODELMON_CLICKHOUSE_DSN"}
    }
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "PYTHONPATH": str(ROOT), "COLUMNS": "80"}

    setup = run_blocks("setup", work, env)
    assert "ok  churn: binary, 3 features, 0 rules, reference models/../data/churn-reference.csv" in setup
    assert "from models/../data/churn-reference.csv: 2000 rows" in setup
    assert "stored 4 rows in ClickHouse" in setup  # 3 features and the score, before the worker holds it

    worker = WorkerProcess(settings, tmp_path / "worker.log", "--with-sink")
    landed: Landed | None = None
    try:  # as the page says: traffic once the worker has created its topics and started
        assert wait_until(lambda: "worker for models churn" in worker.log(), timeout=60), worker.log()
        landed = Landed(settings)
        run_blocks("traffic", work, env)
        assert wait_until(lambda: worker.alive and landed(), timeout=150), (landed, worker.log())
    finally:
        if landed is not None:
            landed.close()
        assert worker.stop() == 0, worker.log()
    assert landed.drift_features >= {"tenure_months", "monthly_fee", "plan"}

    look = run_blocks("look", work, env)
    table, _, _ = look.partition("churn version 1")
    assert max(len(line) for line in table.splitlines()) <= 80, table
    assert re.search(r"^churn +1 +\S+ +1,500 +acc 0\.\d+ +\d/3 +0 +file:churn-reference\.csv", table, re.M), (
        table
    )
    assert "Drift in the latest window" in look and "tenure_months" in look
    [row] = json.loads(look.strip().splitlines()[-1])["models"]
    assert row["model_id"] == "churn" and row["accuracy"] is not None and row["compared"] == 3
    assert row["reference"]["state"] == "loaded" and row["reference"]["source"] == "file:churn-reference.csv"
