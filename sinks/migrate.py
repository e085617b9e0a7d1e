"""Versioned schema migrations: numbered SQL files applied in order and recorded in schema_migrations."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from sinks.clickhouse import ClickHouseError, Client

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TTL_DAYS",
    "MIGRATIONS_TABLE",
    "Migration",
    "MigrationError",
    "applied_versions",
    "load_migrations",
    "migrate",
    "set_retention",
]

DEFAULT_TTL_DAYS = 400
"""Retention of time-partitioned tables, in days, unless ``migrate(ttl_days=...)`` says otherwise."""

MIGRATIONS_TABLE = "schema_migrations"
RETAINED_TABLES = {
    "metric_points": "window_start",
    "dead_letters": "ts",
    "alerts": "ts",
    "retrain_requests": "requested_at",
}
"""Tables with a TTL, and the time column it is computed from."""

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")

_CREATE_MIGRATIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}
(
    version    String,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""


class MigrationError(ClickHouseError):
    """A migration file is malformed or one of its statements failed; the message names the file."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: ``NNNN_name.sql``; statements end with ``;`` at the end of a line."""

    version: str
    name: str
    sql: str

    @property
    def file_name(self) -> str:
        return f"{self.version}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, ttl_days: int) -> list[str]:
        """The statements of the file with ``${ttl_days}`` filled in and comment lines removed."""
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        try:
            text = Template("\n".join(lines)).substitute(ttl_days=ttl_days)
        except (KeyError, ValueError) as exc:
            raise MigrationError(f"migration {self.file_name}: bad placeholder ({exc})") from exc
        return [part.strip() for part in _STATEMENT_END.split(text) if part.strip()]


def load_migrations(source: Traversable | Path | None = None) -> list[Migration]:
    """The migrations in ``source`` (default: the packaged ``sinks/migrations``), by version.

    >>> [m.version for m in load_migrations()][:2]
    ['0001', '0002']
    """
    directory = source if source is not None else resources.files("sinks").joinpath("migrations")
    found: dict[str, Migration] = {}
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_lowercase_name.sql")
        version, name = match.groups()
        if version in found:
            other = found[version].file_name
            raise MigrationError(f"two migrations share version {version}: {other}, {entry.name}")
        found[version] = Migration(version, name, entry.read_text(encoding="utf-8"))
    return [found[version] for version in sorted(found)]


def applied_versions(client: Client) -> dict[str, str]:
    """Version → checksum of the migrations recorded in the client's database."""
    client.command(_CREATE_MIGRATIONS_TABLE)
    query = f"SELECT version, checksum FROM {MIGRATIONS_TABLE} FINAL ORDER BY version"
    rows = client.query(query).result_rows
    return {str(version): str(checksum) for version, checksum in rows}


def migrate(
    client: Client,
    *,
    ttl_days: int = DEFAULT_TTL_DAYS,
    migrations: Iterable[Migration] | None = None,
) -> list[str]:
    """Apply the migrations not yet recorded, in version order; return the versions applied now.

    Idempotent: a second run applies nothing. A failing statement raises :class:`MigrationError`
    naming the file, and that version stays unrecorded; statements use ``IF NOT EXISTS`` so a
    partly applied file can simply be run again. ``ttl_days`` only affects tables created now; use
    :func:`set_retention` to change it later. Runs in the client's current database.
    Not safe to run from two processes at once against one server; run it once per deployment.
    """
    if ttl_days < 1:
        raise ValueError(f"ttl_days must be a positive number of days, got {ttl_days}")
    pending = list(migrations) if migrations is not None else load_migrations()
    done = applied_versions(client)
    applied: list[str] = []
    for migration in sorted(pending, key=lambda m: m.version):
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                logger.warning("migration %s changed after it was applied; not re-run", migration.file_name)
            continue
        for statement in migration.statements(ttl_days):
            try:
                client.command(statement)
            except Exception as exc:
                raise MigrationError(f"migration {migration.file_name} failed: {exc}") from exc
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        logger.info("applied migration %s", migration.file_name)
        applied.append(migration.version)
    return applied


def set_retention(client: Client, ttl_days: int) -> None:
    """Change the TTL of every time-partitioned table (rewrites TTL info of existing parts)."""
    if ttl_days < 1:
        raise ValueError(f"ttl_days must be a positive number of days, got {ttl_days}")
    for table, column in RETAINED_TABLES.items():
        client.command(f"ALTER TABLE {table} MODIFY TTL {column} + INTERVAL {int(ttl_days)} DAY")
    logger.info("retention set to %d days", ttl_days)
