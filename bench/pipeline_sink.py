"""The ClickHouse sink in the bench process, noting when each window's counts reached ClickHouse."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelmon.events import MetricPoint
from modelmon.settings import Settings
from sinks.consumer import ClickHouseSink
from sinks.queries import events_per_model
from sinks.writer import ClickHouseWriter

COUNTED = ("events", "labels")
DRIFT_METRIC = "drift_share"


@dataclass
class Watch:
    """Targets for one model's whole-model totals; ``done_at``: wall time of the insert that met them."""

    model_id: str
    targets: dict[str, int]
    done_at: float | None = None


class RecordingWriter(ClickHouseWriter):
    """A ``ClickHouseWriter`` that keeps, in memory, what ``FINAL`` would read of ``events``/``labels``.

    ``write`` returns once ClickHouse acknowledged the insert, so the time taken right after it is
    when the rows became readable. Only whole-model rows count (segment ``""``), newest revision per
    (model, version, metric, window, source), as the table's ReplacingMergeTree key.
    """

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.cond = threading.Condition()
        self.latest: dict[tuple[str, str, str, int, str], tuple[int, float]] = {}
        self.first_landed: dict[tuple[str, str, int, float], float] = {}
        self.watches: list[Watch] = []
        self._totals: dict[tuple[str, str], float] = {}

    def write(self, events: Sequence[Any]) -> int:
        written = super().write(events)
        now = time.time()
        with self.cond:
            for event in events:
                if not isinstance(event, MetricPoint) or event.segment or event.metric not in COUNTED:
                    continue
                start = int(event.window_start.timestamp() * 1000)
                key = (event.model_id, event.model_version, event.metric, start, event.source)
                old = self.latest.get(key)
                if old is not None and old[0] > event.revision:
                    continue
                self.latest[key] = (event.revision, event.value)
                total = (event.model_id, event.metric)
                self._totals[total] = self._totals.get(total, 0.0) + event.value - (old[1] if old else 0.0)
                self.first_landed.setdefault((event.model_id, event.metric, start, event.value), now)
            for watch in self.watches:
                if watch.done_at is None and all(
                    self._totals.get((watch.model_id, metric), 0.0) >= target
                    for metric, target in watch.targets.items()
                ):
                    watch.done_at = now
            self.cond.notify_all()
        return written

    def watch(self, model_id: str, **targets: int) -> Watch:
        with self.cond:
            watch = Watch(model_id, targets)
            self.watches.append(watch)
            return watch

    def total(self, model_id: str, metric: str) -> int:
        with self.cond:
            return int(self._totals.get((model_id, metric), 0.0))

    def landed(self, model_id: str, window_start_ms: int, events: int) -> float | None:
        """When the ``events`` row of a window first landed with the value ``events``."""
        with self.cond:
            return self.first_landed.get((model_id, "events", window_start_ms, float(events)))

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 0.5))
        return True


class Sinks:
    """One ``ClickHouseSink`` thread at a time (per phase: its own topic prefix), one writer for all."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.writer = RecordingWriter(client)
        self.current: ClickHouseSink | None = None

    def start(self, settings: Settings) -> None:
        self.stop()
        self.current = ClickHouseSink(settings, self.writer)
        self.current.start_thread()

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None

    def stored(self, model_id: str) -> dict[str, int]:
        """Events and labels of a model as ClickHouse answers ``FINAL`` (``sinks.queries``)."""
        return {metric: events_per_model(self.client, metric).get(model_id, 0) for metric in COUNTED}

    def drift_windows(self, model_id: str) -> tuple[int, int]:
        """(windows with a drift verdict, windows with an ``events`` row) of a model in ClickHouse."""
        rows = self.client.query(
            "SELECT metric, count(DISTINCT window_start) FROM metric_points FINAL "
            "WHERE model_id = {m:String} AND segment = '' AND feature = '' "
            "AND metric IN ({d:String}, 'events') "
            "GROUP BY metric",
            parameters={"m": model_id, "d": DRIFT_METRIC},
        ).result_rows
        counts = {str(metric): int(n) for metric, n in rows}
        return counts.get(DRIFT_METRIC, 0), counts.get("events", 0)
