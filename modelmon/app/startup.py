"""Start-up of the commands that need Kafka or a ClickHouse server: bounded retries, one line at the end.

A worker, a sink, ``modelmon produce`` or ``modelmon reference load`` started before its broker (or with a
wrong address) retries for ``MODELMON_STARTUP_TIMEOUT`` seconds, logging one line per attempt, then
raises :class:`StartupError`, whose message is one line naming the setting to check. librdkafka's
own log lines (one "Connection refused" per reconnect, about twenty a second) go through the
``modelmon.librdkafka`` logger, where :class:`RepeatFilter` collapses repeats into one line with a count.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from clickhouse_connect.driver.exceptions import Error as DriverError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from modelmon.settings import Settings
from sinks.clickhouse import ClickHouseError, parse_dsn
from sinks.writer import is_transient

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_DELAY = 8.0
"""Longest pause between two attempts (the pauses double from one second)."""
ATTEMPT_SECONDS = 3.0
"""How long one attempt waits for the broker's metadata (a reachable broker answers in milliseconds)."""


def _attempts(count: int, started: float) -> str:
    return f"{count} attempt{'s' if count > 1 else ''} in {time.monotonic() - started:.0f} s"


class StartupError(RuntimeError):
    """A service the command needs stayed unreachable for the start-up timeout."""


class RepeatFilter(logging.Filter):
    """Lets a message through once per ``interval`` seconds; the next one that passes counts those held back.

    Messages that differ only in numbers (timestamps, durations) count as repeats of each other.

    >>> now = [0.0]
    >>> repeats = RepeatFilter(interval=60, clock=lambda: now[0])
    >>> def record(text):
    ...     return logging.LogRecord("x", logging.ERROR, "", 0, text, None, None)
    >>> [repeats.filter(record(f"connect failed (after {ms}ms)")) for ms in (0, 1, 2)]
    [True, False, False]
    >>> now[0] = 61.0
    >>> passed = record("connect failed (after 3ms)")
    >>> repeats.filter(passed), passed.getMessage()
    (True, 'connect failed (after 3ms) [2 more like it in the last 61 s]')
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shape = re.sub(r"\d+", "#", message)
        now = self._clock()
        with self._lock:
            since, held = self._seen.get(shape, (-self.interval, 0))
            if now - since < self.interval:
                self._seen[shape] = (since, held + 1)
                return False
            self._seen[shape] = (now, 0)
        if held:
            record.msg, record.args = f"{message} [{held} more like it in the last {now - since:.0f} s]", None
        return True


LIBRDKAFKA_LOG = logging.getLogger("modelmon.librdkafka")
"""Where librdkafka's log lines go when a client is configured with :func:`librdkafka_logging`."""
LIBRDKAFKA_LOG.addFilter(RepeatFilter())


def librdkafka_logging() -> dict[str, Any]:
    """librdkafka settings that send its log lines to :data:`LIBRDKAFKA_LOG` (served on ``poll``)."""
    return {"logger": LIBRDKAFKA_LOG}


# What librdkafka's error reports say after the broker's address: "Connect to ipv4#127.0.0.1:1 failed:
# Connection refused (after 0ms in state CONNECT)", "Failed to resolve 'nosuch:9092': Name or service ...".
_AFTER = r"(?: \(after \d+ms.*)?$"
_CAUSES = (re.compile(r"failed: (.+?)" + _AFTER), re.compile(r"(Failed to resolve .+?)" + _AFTER))


def _kafka_reason(reported: list[str], error: KafkaException) -> str:
    """The cause librdkafka reported last ("Connection refused"), else the exception's own text."""
    for text in reversed(reported):
        for pattern in _CAUSES:
            if found := pattern.search(text):
                return found.group(1)
    first = error.args[0] if error.args else error
    return str(getattr(first, "str", lambda: first)())


def wait_for_kafka(settings: Settings, timeout: float | None = None) -> None:
    """Return once the broker answers a metadata request; raise :class:`StartupError` after ``timeout``
    seconds (default ``settings.startup_timeout``) of failed attempts."""
    timeout = settings.startup_timeout if timeout is None else timeout
    bootstrap, reported = settings.kafka_bootstrap, list[str]()
    config: dict[str, Any] = {**settings.kafka_common(), **librdkafka_logging()}
    config["error_cb"] = lambda error: reported.append(error.str())
    admin = AdminClient(config)
    started = time.monotonic()
    deadline, attempt, delay = started + timeout, 0, 1.0
    while True:
        attempt += 1
        try:
            admin.list_topics(timeout=max(0.5, min(ATTEMPT_SECONDS, deadline - time.monotonic())))
            if attempt > 1:
                log.info("Kafka broker at %s reachable (attempt %d)", bootstrap, attempt)
            return
        except KafkaException as error:
            admin.poll(0)  # serves the error callback and librdkafka's log lines
            reason = _kafka_reason(reported, error)
        left = deadline - time.monotonic()
        if left <= 0:
            raise StartupError(
                f"cannot reach the Kafka broker at {bootstrap} ({reason}; {_attempts(attempt, started)}); "
                "check MODELMON_KAFKA_BOOTSTRAP and that the broker runs"
            )
        log.warning("Kafka broker at %s not reachable (%s), attempt %d; retrying for up to %.0f s more",
                    bootstrap, reason, attempt, left)  # fmt: skip
        time.sleep(min(delay, left))
        delay = min(delay * 2, MAX_DELAY)


def retry_clickhouse(settings: Settings, open_: Callable[[], T], timeout: float | None = None) -> T:
    """``open_()``, retried while a ClickHouse server (``http(s)://`` DSN) is unreachable.

    Embedded engines (``chdb://``) and errors that are not about reaching the server (a rejected
    password, a bad migration) are not retried. Raises :class:`StartupError` after ``timeout`` seconds.
    """
    dsn = settings.clickhouse_dsn
    if parse_dsn(dsn).kind == "chdb":
        return open_()
    timeout = settings.startup_timeout if timeout is None else timeout
    started = time.monotonic()
    deadline, attempt, delay = started + timeout, 0, 1.0
    while True:
        attempt += 1
        try:
            return open_()
        except (ClickHouseError, DriverError) as error:
            if not is_transient(error):
                raise
            reason = str(error).splitlines()[0]
        left = deadline - time.monotonic()
        if left <= 0:
            raise StartupError(f"{reason} ({_attempts(attempt, started)})")
        log.warning("%s; attempt %d, retrying for up to %.0f s more", reason, attempt, left)
        time.sleep(min(delay, left))
        delay = min(delay * 2, MAX_DELAY)


__all__ = ["LIBRDKAFKA_LOG", "RepeatFilter", "StartupError", "librdkafka_logging", "retry_clickhouse"]
__all__ += ["wait_for_kafka"]
