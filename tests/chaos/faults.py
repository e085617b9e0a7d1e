"""A fault-injecting ClickHouse client: refuses every insert and command while an outage is on."""

from __future__ import annotations

import logging
import threading
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError

from sinks.clickhouse import Client


class OutageClient:
    """Wraps a real client; while :attr:`down` is set, ``insert`` and ``command`` raise the connection
    error a client gets from an unreachable server (``OperationalError``, which
    ``sinks.writer.is_transient`` retries). Everything else, and every call outside an outage, goes
    to the real client."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.down = threading.Event()
        self.refused = 0

    def _check(self, what: str) -> None:
        if self.down.is_set():
            self.refused += 1
            raise OperationalError(f"chaos: ClickHouse unreachable ({what} refused by the fault injector)")

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        self._check("insert")
        return self._client.insert(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self._check("command")
        return self._client.command(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class LevelCounter(logging.Handler):
    """Counts the records of a logger by level (the sink logs a transient failure as a warning and a
    non-transient one as an error)."""

    def __init__(self, logger: str) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}
        logging.getLogger(logger).addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] = self.counts.get(record.levelname, 0) + 1
