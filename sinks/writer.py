"""Batched, retried writes of modelmon events to ClickHouse (read them back with `sinks.queries`)."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from clickhouse_connect.driver.exceptions import Error as DriverError
from clickhouse_connect.driver.exceptions import OperationalError

from modelmon.events import Alert, DeadLetter, MetricPoint, RetrainRequested
from sinks.clickhouse import ClickHouseError, connect

logger = logging.getLogger(__name__)

__all__ = [
    "TABLES",
    "ClickHouseWriter",
    "Event",
    "InsertClient",
    "TableSpec",
    "WriteFailed",
    "is_transient",
]

Event = MetricPoint | Alert | RetrainRequested | DeadLetter

# ClickHouse error codes worth another try: timeouts, network, overload, memory, replica/keeper trouble.
TRANSIENT_CODES = frozenset(
    {3, 32, 159, 164, 202, 203, 209, 210, 236, 241, 242, 252, 285, 319, 425, 439, 999, 1000}
)


class InsertClient(Protocol):
    """What the writer needs of a client: ``clickhouse_connect``'s ``insert`` (test doubles too)."""

    def insert(self, table: str, data: Sequence[Sequence[Any]], column_names: Sequence[str]) -> Any: ...


@dataclass(frozen=True)
class TableSpec:
    """How one event type maps to one table: columns named as the model's fields.

    ``order_by`` is the table's sorting key = its dedup key (as in the migration DDL).
    """

    table: str
    model: type[Event]
    order_by: tuple[str, ...]
    json_columns: frozenset[str] = frozenset()
    minus_one_if_none: frozenset[str] = frozenset()

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.model.model_fields)

    def to_row(self, event: Event) -> list[Any]:
        return [self._to_cell(name, getattr(event, name)) for name in self.columns]

    def _to_cell(self, name: str, value: Any) -> Any:
        if name in self.json_columns:
            return _to_json(value)
        if value is None and name in self.minus_one_if_none:
            return -1
        if isinstance(value, datetime):
            return to_utc_millis(value)
        if isinstance(value, Enum):
            return value.value
        return value

    def from_row(self, row: dict[str, Any]) -> Event:
        fields = {name: row[name] for name in self.columns}
        for name in self.json_columns:
            fields[name] = json.loads(fields[name])
        for name in self.minus_one_if_none:
            if fields[name] == -1:
                fields[name] = None
        return self.model.model_validate(fields)


TABLES: dict[type[Event], TableSpec] = {
    MetricPoint: TableSpec(
        "metric_points",
        MetricPoint,
        ("model_id", "metric", "feature", "segment", "model_version", "window_start", "source"),
        json_columns=frozenset({"details"}),
    ),
    Alert: TableSpec(
        "alerts", Alert, ("model_id", "dedup_key", "ts", "state"), json_columns=frozenset({"details"})
    ),
    RetrainRequested: TableSpec(
        "retrain_requests",
        RetrainRequested,
        ("model_id", "idempotency_key"),
        json_columns=frozenset({"evidence"}),
    ),
    DeadLetter: TableSpec(
        "dead_letters",
        DeadLetter,
        ("topic", "partition", "offset", "error_type", "cityHash64(payload)"),
        minus_one_if_none=frozenset({"partition", "offset"}),
    ),
}
"""Event type → its table, in the order a batch writes them."""


def to_utc_millis(value: datetime) -> datetime:
    """The instant as an aware UTC datetime truncated to milliseconds (the DateTime64(3) resolution).

    A naive datetime is taken as UTC, as :func:`modelmon.events.parse_timestamp` does.
    """
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.replace(microsecond=aware.microsecond // 1000 * 1000)


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:  # NaN or infinity: not JSON, stored as null
        return json.dumps(_finite(value), sort_keys=True, separators=(",", ":"), default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def is_transient(exc: BaseException) -> bool:
    """Whether a failed insert is worth retrying (network, timeout, overload), not a bad request."""
    if isinstance(exc, ClickHouseError) and exc.__cause__ is not None:
        return is_transient(exc.__cause__)
    code = getattr(exc, "code", None) if isinstance(exc, DriverError) else None
    if code is not None:
        return code in TRANSIENT_CODES
    return isinstance(exc, OperationalError | ConnectionError | TimeoutError)


class WriteFailed(Exception):
    """A batch was not (fully) written; the caller must not commit its input offsets.

    ``table`` is the table whose insert failed, ``attempts`` how many were made, ``retryable``
    whether the last error looked transient, ``written`` how many rows of the batch did land
    (earlier tables) — harmless on replay, since writes are idempotent.
    """

    def __init__(self, message: str, *, table: str, attempts: int, retryable: bool, written: int) -> None:
        super().__init__(message)
        self.table = table
        self.attempts = attempts
        self.retryable = retryable
        self.written = written


class ClickHouseWriter:
    """Writes batches of events to ClickHouse, one insert per table per batch.

    Delivery guarantee: **at-least-once**. ``write`` returns only after every row of the batch is
    stored; otherwise it raises :class:`WriteFailed` and the caller (the sink consumer) must not
    commit the Kafka offsets, so the batch is consumed again. Replays are harmless: each table is a
    ReplacingMergeTree keyed on the event's dedup key (for metric points, the higher ``revision``
    wins), so reading with ``FINAL`` sees each logical row once — effectively exactly-once results.

    Transient errors (see :func:`is_transient`) are retried up to ``max_attempts`` times in all,
    sleeping an exponential backoff with jitter (``base_delay · 2^(attempt-1)``, capped at
    ``max_delay``, of which a random half); other errors fail at once.

    Parameters
    ----------
    client
        A ``clickhouse_connect`` client, or a callable making one on first use (lazy connection).
    max_attempts, base_delay, max_delay
        Retry policy; ``max_attempts=1`` disables retries.
    sleep, rng
        Injected for tests.
    """

    def __init__(
        self,
        client: InsertClient | Callable[[], InsertClient],
        *,
        max_attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if base_delay < 0 or max_delay < base_delay:
            raise ValueError(f"need 0 <= base_delay <= max_delay, got {base_delay} and {max_delay}")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        # Anything with an ``insert`` is a client (test doubles included); otherwise a factory.
        is_client = hasattr(client, "insert")
        self._client: InsertClient | None = client if is_client else None  # type: ignore[assignment]
        self._connect: Callable[[], InsertClient] | None = None if is_client else client  # type: ignore[assignment]
        self._sleep = sleep
        self._rng = rng or random.Random()

    @classmethod
    def from_dsn(cls, dsn: str, **options: Any) -> ClickHouseWriter:
        """A writer that connects to ``dsn`` on its first write."""
        return cls(lambda: connect(dsn), **options)

    @property
    def client(self) -> InsertClient:
        if self._client is None:
            assert self._connect is not None
            self._client = self._connect()
        return self._client

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return cap / 2 + self._rng.uniform(0, cap / 2)

    def write(self, events: Sequence[Event]) -> int:
        """Insert ``events``; return the number of rows written. Raises :class:`WriteFailed`."""
        rows: dict[type[Event], list[list[Any]]] = {}
        for event in events:
            spec = TABLES.get(type(event))
            if spec is None:
                allowed = ", ".join(cls.__name__ for cls in TABLES)
                raise TypeError(f"cannot store a {type(event).__name__}; storable events: {allowed}")
            rows.setdefault(type(event), []).append(spec.to_row(event))
        written = 0
        for event_type, spec in TABLES.items():
            if event_type in rows:
                self._insert(spec, rows[event_type], written)
                written += len(rows[event_type])
        return written

    def _insert(self, spec: TableSpec, rows: list[list[Any]], written: int) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.client.insert(spec.table, rows, column_names=list(spec.columns))
                return
            except Exception as exc:
                retryable = is_transient(exc)
                if not retryable or attempt == self.max_attempts:
                    raise WriteFailed(
                        f"insert of {len(rows)} rows into {spec.table} failed "
                        f"after {attempt} attempt(s): {exc}",
                        table=spec.table,
                        attempts=attempt,
                        retryable=retryable,
                        written=written,
                    ) from exc
                delay = self.backoff(attempt)
                logger.warning(
                    "insert of %d rows into %s failed (attempt %d/%d): %s; retrying in %.2fs",
                    len(rows),
                    spec.table,
                    attempt,
                    self.max_attempts,
                    exc,
                    delay,
                )
                self._sleep(delay)
