"""The scenarios' traffic: paced SDK streams in a thread, and raw messages from a plain producer."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from modelmon.sdk import MonitorClient

Counts = dict[str, int]


@dataclass(frozen=True)
class Stream:
    """``n`` predictions of one model, spread over ``duration`` seconds of wall time, event times from
    ``first_ts`` in steps of ``step``; a label after every ``label_every``-th one (0: none)."""

    model_id: str
    n: int
    duration: float
    first_ts: datetime
    step: timedelta
    label_every: int = 4
    model_version: str = "1"
    tag: str = "p"

    @property
    def labels(self) -> int:
        return 0 if not self.label_every else len(range(0, self.n, self.label_every))

    def expected(self) -> Counts:
        return {"events": self.n, "labels": self.labels}


class _Collect(logging.Handler):
    """Keeps librdkafka's error lines (e.g. a fatal idempotence error) for the result row."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class PacedProducer(threading.Thread):
    """Sends a :class:`Stream` with the SDK (``MonitorClient``) at a steady pace, then flushes.

    ``sent`` grows as it goes; a broker outage only fills the SDK's local queue.
    """

    def __init__(self, bootstrap: str, prefix: str, stream: Stream, flush_timeout: float = 150.0) -> None:
        super().__init__(name=f"produce-{stream.model_id}", daemon=True)
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.stream = stream
        self.flush_timeout = flush_timeout
        self.sent = 0
        self.undelivered = 0
        self.failed = 0
        self.error: BaseException | None = None
        self.started_at = 0.0
        self._errors = _Collect()

    def run(self) -> None:
        s = self.stream
        client: MonitorClient | None = None
        try:
            logger = logging.getLogger(f"chaos.sdk.{self.name}")
            logger.addHandler(self._errors)
            logger.propagate = False
            client = MonitorClient(self.bootstrap, self.prefix, max_block=30.0, logger=logger)
            self.started_at = time.monotonic()
            for i in range(s.n):
                delay = self.started_at + s.duration * i / s.n - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pid = f"{s.tag}{i}"
                client.log_prediction(
                    s.model_id,
                    {"amount": float(i % 1000), "country": "DE" if i % 3 else "FR"},
                    i % 2,
                    score=(i % 10) / 10,
                    prediction_id=pid,
                    model_version=s.model_version,
                    ts=s.first_ts + s.step * i,
                )
                if s.label_every and i % s.label_every == 0:
                    client.log_ground_truth(s.model_id, pid, (i // 2) % 2)
                self.sent += 1
            self.undelivered = client.flush(self.flush_timeout)
            self.failed = client.failed
        except BaseException as error:  # reported in the result row, never as a traceback
            self.error = error
        if self.error is not None and client is not None:
            # Serves librdkafka's queued log lines (the fatal error's reason); a failed producer's
            # callbacks may raise here too, the first error is the one kept.
            with contextlib.suppress(Exception):
                client.flush(1.0)

    @property
    def fraction(self) -> float:
        return self.sent / self.stream.n

    @property
    def fatal(self) -> str:
        """librdkafka's fatal error line, if the SDK's producer hit one."""
        return next((line for line in self._errors.lines if "Fatal error" in line), "")

    def problems(self) -> list[str]:
        found = []
        if self.error is not None:
            # "Fatal error: Broker: <what>: <details>" -> "Broker: <what>"
            reason = ":".join(self.fatal.split("Fatal error:", 1)[-1].split(":")[:2]).strip()
            reason = reason or str(self.error)[:120]
            found.append(
                f"the SDK failed after {self.sent:,} predictions ({reason}; it raised "
                f"{type(self.error).__name__}: {str(self.error)[:160]})"
            )
        if self.undelivered or self.failed:
            found.append(f"SDK: {self.undelivered} undelivered, {self.failed} failed deliveries")
        return found


def prediction_message(
    model_id: str | None,
    ts: datetime | str | int,
    *,
    version: str = "1",
    features: dict[str, Any] | None = None,
    pid: str | None = None,
    **overrides: Any,
) -> tuple[bytes, bytes]:
    """(key, value) of a prediction as the SDK would send it, with any field overridden."""
    pid = pid or uuid.uuid4().hex
    body: dict[str, Any] = {
        "prediction_id": pid,
        "model_version": version,
        "ts": ts.isoformat() if isinstance(ts, datetime) else ts,
        "features": features if features is not None else {"amount": 3.5, "country": "DE"},
        "prediction": 1,
        "score": 0.7,
        **overrides,
    }
    if model_id is not None:
        body["model_id"] = model_id
    return pid.encode(), orjson.dumps(body)


def label_message(model_id: str, pid: str, ts: datetime | str, label: Any = 1) -> tuple[bytes, bytes]:
    body = {"prediction_id": pid, "model_id": model_id, "label": label}
    body["ts"] = ts.isoformat() if isinstance(ts, datetime) else ts
    return pid.encode(), orjson.dumps(body)


def produce_raw(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes | None]]) -> list[str]:
    """Send (topic, key, value) messages as they are, with the SDK's partitioner; returns problems."""
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    for topic, key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(60)
    problems = [f"{len(failures)} raw messages not delivered: {failures[0]}"] if failures else []
    if left:
        problems.append(f"{left} raw messages still queued after 60 s")
    return problems
