"""pytest fixtures for ClickHouse: one real engine per test session, plus in-memory client doubles.

Registered by ``tests/conftest.py`` (or ``pytest_plugins = ["tests.clickhouse_fixtures"]``).

chdb runs one engine, bound to one directory, per process, so every test of a pytest process
shares the session engine (``clickhouse_client``); a test that needs another engine path must run
it in a subprocess (fixture ``python_subprocess``). Isolation: a test that needs empty tables asks for
``clickhouse`` (the session client with every data table truncated first); a test that tolerates
other rows may use ``clickhouse_client`` with the unique ``model_id``. Set
``MODELMON_TEST_CLICKHOUSE_DSN`` to run the same tests against a server — a throwaway database,
since tables are truncated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from sinks.clickhouse import Client, close_all, connect, parse_dsn
from sinks.migrate import MIGRATIONS_TABLE, migrate

__all__ = [
    "DATA_TABLES",
    "FlakyClient",
    "clickhouse",
    "clickhouse_client",
    "clickhouse_dsn",
    "flaky_client",
    "fresh_database",
    "model_id",
    "python_subprocess",
    "run_python",
]

DATA_TABLES = ("metric_points", "dead_letters", "alerts", "retrain_requests", "reference_profiles")
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The DSN of the session's ClickHouse: ``MODELMON_TEST_CLICKHOUSE_DSN`` or a chdb temp dir."""
    return os.environ.get("MODELMON_TEST_CLICKHOUSE_DSN") or f"chdb://{tmp_path_factory.mktemp('clickhouse')}"


@pytest.fixture(scope="session")
def clickhouse_client(clickhouse_dsn: str) -> Iterator[Client]:
    """The session's client, migrated once; the one chdb engine of this pytest process."""
    client = connect(clickhouse_dsn)
    migrate(client)
    yield client
    close_all()


@pytest.fixture
def clickhouse(clickhouse_client: Client) -> Client:
    """The session client with every data table emptied (``schema_migrations`` is kept)."""
    for table in DATA_TABLES:
        clickhouse_client.command(f"TRUNCATE TABLE IF EXISTS {table}")
    return clickhouse_client


@pytest.fixture
def model_id() -> str:
    """A model id unique to one test, so rows of other tests do not interfere."""
    return f"model-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fresh_database(clickhouse_client: Client, clickhouse_dsn: str) -> Iterator[Client]:
    """A client on a new, empty database of the session engine (for migration tests); dropped after."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    if parse_dsn(clickhouse_dsn).kind == "chdb":
        client = connect(f"{clickhouse_dsn}?database={name}")
    else:
        clickhouse_client.command(f"CREATE DATABASE {name}")
        parts = urlsplit(clickhouse_dsn)
        client = connect(urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, "")))
    yield client
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def python_subprocess() -> Callable[..., subprocess.CompletedProcess[str]]:
    """:func:`run_python`, for tests (importing this plugin module directly defeats assert rewriting)."""
    return run_python


@pytest.fixture
def flaky_client() -> type[FlakyClient]:
    """The :class:`FlakyClient` class: an in-memory client double for unit tests of writers."""
    return FlakyClient


def run_python(
    code: str, *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter (its own chdb engine); checks exit status 0.

    The repository root is on ``PYTHONPATH``; ``env`` entries are added to this environment.
    """
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
    return result


class FlakyClient:
    """An in-memory stand-in for a client's ``insert``: fails the first ``failures`` calls, then stores.

    ``error`` is the exception raised (default: a transient ``OperationalError``); ``fail_tables``
    limits failures to those tables. Stored rows are in ``inserted[table]``.
    """

    def __init__(
        self,
        failures: int = 0,
        error: Exception | None = None,
        fail_tables: Sequence[str] | None = None,
    ) -> None:
        from clickhouse_connect.driver.exceptions import OperationalError

        self.failures = failures
        self.error = error or OperationalError("connection reset by peer (test double)")
        self.fail_tables = set(fail_tables) if fail_tables is not None else None
        self.calls: list[str] = []
        self.inserted: dict[str, list[dict[str, Any]]] = {}

    def insert(self, table: str, data: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        self.calls.append(table)
        if self.failures > 0 and (self.fail_tables is None or table in self.fail_tables):
            self.failures -= 1
            raise self.error
        rows = [dict(zip(column_names, row, strict=True)) for row in data]
        self.inserted.setdefault(table, []).extend(rows)


assert MIGRATIONS_TABLE not in DATA_TABLES
