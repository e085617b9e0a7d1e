"""What the bench's phases share: the broker, the sink, the traffic, per-phase settings and backlogs."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_sink import Sinks
from pipeline_traffic import Traffic, fill_backlog, publish_reference_file, write_reference_csv, write_spec

from modelmon.sdk import MonitorClient
from modelmon.settings import Settings
from streams.run import prepare_topics

PREFIX = "MODELMON_"


@dataclass
class Backlog:
    """Predictions (and labels) waiting in a phase's topics before its workers start."""

    settings: Settings
    model_id: str
    predictions: int
    labels: int
    fill_seconds: float

    @property
    def messages(self) -> int:
        return self.predictions + self.labels


@dataclass
class Context:
    args: argparse.Namespace
    workdir: Path
    bootstrap: str
    broker_pid: int
    sinks: Sinks
    traffic: Traffic
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def extra_env(self) -> dict[str, str]:
        return dict(self.args.extra_env)

    def overrides(self) -> dict[str, Any]:
        """``--worker-env MODELMON_*`` as Settings fields (JSON values parsed), so both sides agree."""
        out: dict[str, Any] = {}
        for name, value in self.args.extra_env.items():
            if name.startswith(PREFIX):
                out[name[len(PREFIX) :].lower()] = json.loads(value) if value[:1] in "[{" else value
        return out

    def log(self, phase: str, text: str) -> None:
        print(f"[{phase}] {text}", flush=True)

    def settings(self, phase: str, **extra: Any) -> Settings:
        """Settings of a phase: its own topic prefix, app id, model directory and worker directory."""
        fields: dict[str, Any] = {
            "kafka_bootstrap": self.bootstrap,
            "topic_prefix": f"{phase}.",
            "app_id": f"bench-{phase}",
            "models_path": self.workdir / "models" / phase,
            "worker_data_dir": self.workdir / "worker" / phase,
            "clickhouse_dsn": f"chdb://{self.workdir / 'clickhouse'}",
            "topic_partitions": self.args.partitions,
            **extra,
            **self.overrides(),
        }
        settings = Settings(_env_file=None, **fields)
        settings.worker_data_dir.parent.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
        return settings  # type: ignore[call-arg]

    def prepare(self, phase: str, **extra: Any) -> tuple[Settings, str]:
        """A phase's model (spec + reference file, its profile published) and its topics."""
        settings = self.settings(phase, **extra)
        model_id = f"bench-{phase}"
        spec_path = write_spec(settings.models_path, model_id)
        write_reference_csv(settings.models_path, self.args.seed)
        prepare_topics(settings)
        publish_reference_file(settings, spec_path)
        return settings, model_id

    def fill(
        self,
        phase: str,
        settings: Settings,
        model_id: str,
        first: int,
        n: int,
        start_ms: int,
        span_ms: int,
    ) -> tuple[int, float]:
        """Log predictions ``first`` .. ``first + n - 1`` and their labels; (labels, seconds)."""
        self.log(
            phase,
            f"SDK logging {n:,} predictions and their labels ({self.args.labels_fraction:.0%}), event times "
            f"over {span_ms / 60_000:g} minutes",
        )

        def progress(done: int, of: int) -> None:
            self.log(phase, f"  ... {done:,} of {of:,} predictions logged")

        with MonitorClient(self.bootstrap, settings.topic_prefix) as client:
            labels, seconds = fill_backlog(
                client, self.traffic, model_id, first, n, start_ms, span_ms, progress
            )
        self.log(
            phase,
            f"  backlog: {n:,} predictions + {labels:,} labels in {seconds:.1f} s "
            f"({(n + labels) / seconds:,.0f} events/s through the SDK, flush included)",
        )
        return labels, seconds

    def backlog(self, phase: str, **extra: Any) -> Backlog:
        settings, model_id = self.prepare(phase, **extra)
        n = self.args.events
        span_ms = int(self.args.backlog_minutes * 60_000)
        labels, seconds = self.fill(
            phase, settings, model_id, 0, n, int(time.time() * 1000) - span_ms, span_ms
        )
        return Backlog(settings, model_id, n, labels, seconds)

    def delete_topics(self, settings: Settings) -> None:
        """Drop a finished phase's topics (keeps the broker's data directory small)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(settings.kafka_common())
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):  # housekeeping only
                    future.result(30)
