"""Services the shell wires together in one process: the ClickHouse sink beside a worker.

``modelmon worker --with-sink`` and ``modelmon demo`` run the sink in a thread of their own process;
``modelmon sink`` runs it in the foreground. The worker (``streams/``) knows nothing of the sink:
it is started here and stopped when the worker returns.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from modelmon.app.startup import retry_clickhouse
from modelmon.settings import Settings
from sinks.clickhouse import connect
from sinks.consumer import ClickHouseSink
from sinks.migrate import migrate
from sinks.writer import ClickHouseWriter


def migrated_client(settings: Settings) -> Client:
    """A ClickHouse client on ``settings.clickhouse_dsn`` with the schema migrated.

    A server that cannot be reached yet is retried for ``settings.startup_timeout`` seconds
    (:func:`modelmon.app.startup.retry_clickhouse`), one log line per attempt.
    """

    def open_() -> Client:
        client = connect(settings.clickhouse_dsn)
        migrate(client)
        return client

    return retry_clickhouse(settings, open_)


def clickhouse_sink(settings: Settings, client: Client | None = None) -> ClickHouseSink:
    """The sink writing through ``client`` (default: a new migrated client), not started yet."""
    return ClickHouseSink(settings, ClickHouseWriter(client or migrated_client(settings)))


def start_sink_thread(settings: Settings, client: Client | None = None) -> ClickHouseSink:
    """The sink, started in a thread of this process; call ``stop()`` on it to end it."""
    sink = clickhouse_sink(settings, client)
    sink.start_thread()
    return sink
