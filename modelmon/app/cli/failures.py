"""What a failed command prints: one or two lines that say what to fix, and exit code 1.

:func:`explain` turns the errors a user can cause (a service that is down, a wrong address, a
directory held by another process, nothing stored yet) into that message; ``modelmon --debug``
shows the traceback instead. Usage errors stay click's (exit code 2).
"""

from __future__ import annotations

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

from modelmon.settings import Settings

DEMO_STORE = Path(".modelmon/demo/clickhouse")
"""Where ``modelmon demo`` (default ``--workdir``) keeps its ClickHouse data, relative to the cwd."""


class NothingStored(Exception):
    """The ClickHouse database has no modelmon tables yet."""


def reason(error: BaseException) -> str:
    """The operating system's reason in an error or its causes ("Connection refused"), else its first line.

    >>> try:
    ...     try:
    ...         raise ConnectionRefusedError(111, "Connection refused")
    ...     except OSError as cause:
    ...         raise RuntimeError("Max retries exceeded") from cause
    ... except RuntimeError as error:
    ...     reason(error)
    'Connection refused'
    """
    seen: BaseException | None = error
    while seen is not None:
        found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(seen))
        if found:
            return found.group(1).strip()
        seen = seen.__cause__ or seen.__context__
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def explain(error: Exception, settings: Settings) -> str:
    """The message for ``error``: what failed, why, and which setting or option to check."""
    from clickhouse_connect.driver.exceptions import Error as DriverError
    from confluent_kafka import KafkaException
    from pydantic import ValidationError

    from modelmon.admin import TopicAdminError, TopicLayoutError
    from modelmon.app.broker import BrokerError
    from modelmon.app.producer import DeliveryError
    from modelmon.app.startup import StartupError
    from modelmon.sdk import BufferFullError
    from sinks.clickhouse import ClickHouseError, describe

    if isinstance(error, ValidationError) and error.title == Settings.__name__:
        wrong = "; ".join(
            f"MODELMON_{'_'.join(map(str, item['loc'])).upper()}: {item['msg']}" for item in error.errors()
        )
        return f'invalid setting: {wrong} (docs/deploy.md, "Settings")'
    bootstrap, dsn = settings.kafka_bootstrap, describe(settings.clickhouse_dsn)
    own = StartupError | ClickHouseError | NothingStored | BrokerError | DeliveryError | TopicLayoutError
    if isinstance(error, own):
        return str(error)
    if isinstance(error, KafkaException | TopicAdminError | BufferFullError):
        text = error.args[0].str() if isinstance(error, KafkaException) and error.args else reason(error)
        return f"Kafka at {bootstrap}: {text}; check MODELMON_KAFKA_BOOTSTRAP and that the broker runs"
    if isinstance(error, DriverError):
        return f"ClickHouse at {dsn}: {reason(error)}; if tables are missing or old, run `modelmon migrate`"
    if isinstance(error, OSError):
        return reason(error) if error.filename is None else str(error)
    return (
        f"unexpected {type(error).__name__}: {reason(error)}\n"
        "Run the command again with `modelmon --debug ...` to see the traceback, and report it."
    )


def stored_client(settings: Settings, command: str) -> Client:
    """A client on ``settings.clickhouse_dsn``; raises :class:`NothingStored` if it holds no modelmon tables.

    The message names the demo's data when it exists (``make demo`` writes to :data:`DEMO_STORE`, not
    to the default DSN) with the exact command to read it.
    """
    from sinks.clickhouse import connect, describe, parse_dsn

    client = connect(settings.clickhouse_dsn)
    if str(client.command("EXISTS TABLE metric_points")) == "1":
        return client
    message = (
        f"nothing is stored in ClickHouse at {describe(settings.clickhouse_dsn)} yet: run `modelmon sink` "
        "(or `modelmon worker --with-sink`) with this MODELMON_CLICKHOUSE_DSN and send events"
    )
    target = parse_dsn(settings.clickhouse_dsn)
    if DEMO_STORE.is_dir() and target.path != DEMO_STORE.resolve():
        message += (
            f"\nThe demo's data is in {DEMO_STORE}: "
            f"MODELMON_CLICKHOUSE_DSN=chdb://./{DEMO_STORE} modelmon {command}"
        )
    raise NothingStored(message)
