"""Connections to ClickHouse: DSN parsing, the embedded chdb engine cache, and safe descriptions."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

logger = logging.getLogger(__name__)

__all__ = ["ClickHouseError", "ClickHouseTarget", "Client", "close_all", "connect", "describe", "parse_dsn"]

CHDB_MEMORY = ":memory:"
"""The engine path chdb uses for an in-memory engine (``chdb://memory``)."""

_SCHEMES = ("chdb", "http", "https")
_MEMORY_NAMES = frozenset({"memory", ":memory:"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHDB_PARAMS = frozenset({"database"})
_SECRET_PARAMS = frozenset({"password", "access_token", "token"})
# Every client modelmon opens returns UTC DateTime columns as aware UTC datetimes, so what is read
# back compares equal to the aware datetimes of the events that were written.
_TZ_MODE = "aware"


class ClickHouseError(Exception):
    """A ClickHouse connection or storage problem, with a message fit for an operator.

    Distinct from ``clickhouse_connect``'s own exception classes, which it wraps (``__cause__``).
    """


@dataclass(frozen=True)
class ClickHouseTarget:
    """Where a DSN points: the embedded engine (a directory or memory) or a server.

    ``path`` is the absolute engine directory for ``chdb`` (``None`` = in memory) and ``None`` for
    servers; ``database`` is the database named in the DSN, if any.
    """

    kind: Literal["chdb", "http"]
    path: Path | None = None
    database: str | None = None

    @property
    def engine_path(self) -> str:
        """The path the chdb engine is bound to (``:memory:`` for memory)."""
        return str(self.path) if self.path is not None else CHDB_MEMORY


def parse_dsn(dsn: str, *, cwd: Path | None = None) -> ClickHouseTarget:
    """Parse a ClickHouse DSN; relative chdb paths are resolved against ``cwd`` (default: the cwd).

    >>> parse_dsn("chdb://memory")
    ClickHouseTarget(kind='chdb', path=None, database=None)
    >>> parse_dsn("chdb:///var/lib/modelmon?database=mm")
    ClickHouseTarget(kind='chdb', path=PosixPath('/var/lib/modelmon'), database='mm')
    >>> parse_dsn("chdb://./.modelmon/clickhouse", cwd=Path("/srv")).path
    PosixPath('/srv/.modelmon/clickhouse')
    >>> parse_dsn("https://u:p@ch.example:8443/monitoring").database
    'monitoring'
    """
    scheme, sep, rest = dsn.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _SCHEMES:
        raise ClickHouseError(
            f"unsupported ClickHouse DSN {describe(dsn)!r}: expected one of chdb://memory, chdb:///abs/dir, "
            "chdb://./rel/dir, http(s)://user:password@host:port/database"
        )
    if scheme == "chdb":
        return _parse_chdb(rest, cwd)
    parts = urlsplit(dsn)
    if not parts.hostname:
        raise ClickHouseError(f"ClickHouse DSN {describe(dsn)!r} has no host")
    database = unquote(parts.path.strip("/").split("/")[0]) or None
    return ClickHouseTarget(kind="http", database=database)


def _parse_chdb(rest: str, cwd: Path | None) -> ClickHouseTarget:
    location, _, query = rest.partition("?")
    location = unquote(location.split("#")[0])
    params = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(params) - _CHDB_PARAMS
    if unknown:
        raise ClickHouseError(
            f"unknown chdb DSN parameter(s) {sorted(unknown)}; allowed: {sorted(_CHDB_PARAMS)}"
        )
    database = params.get("database") or None
    if database is not None and not _IDENTIFIER.match(database):
        raise ClickHouseError(f"invalid database name {database!r}: use letters, digits and underscores")
    if not location:
        raise ClickHouseError("chdb DSN without a location: use chdb://memory or chdb:///path/to/dir")
    if location in _MEMORY_NAMES:
        return ClickHouseTarget(kind="chdb", path=None, database=database)
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    # chdb compares engine paths literally: one spelling per directory.
    return ClickHouseTarget(kind="chdb", path=Path(path).resolve(), database=database)


def describe(dsn: str) -> str:
    """The DSN with its password (and any token parameter) masked, for logs and error messages.

    >>> describe("http://monitor:s3cret@ch.local:8123/mm?password=x&compress=1")
    'http://monitor:***@ch.local:8123/mm?password=***&compress=1'
    >>> describe("chdb://./.modelmon/clickhouse")
    'chdb://./.modelmon/clickhouse'
    """
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if has_password else f"{user}@{hostport}"
    items = [item.partition("=") for item in parts.query.split("&") if item]
    secret = any(key.lower() in _SECRET_PARAMS for key, _, _ in items)
    if netloc == parts.netloc and not secret:
        return dsn
    query = "&".join(
        f"{key}=***" if key.lower() in _SECRET_PARAMS else f"{key}{sep}{value}" for key, sep, value in items
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class _EngineCache:
    """The chdb clients of this process, one per (engine path, database); the engine allows one path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str | None], Client] = {}

    def get(self, target: ClickHouseTarget, dsn: str) -> Client:
        key = (target.engine_path, target.database)
        with self._lock:
            self._drop_closed()
            cached = self._clients.get(key)
            if cached is not None:
                return cached
            held = {path for path, _ in self._clients}
            if held and target.engine_path not in held:
                raise _other_engine_error(target.engine_path, held.pop())
            if target.path is not None:
                target.path.mkdir(parents=True, exist_ok=True)
            if target.database is None:
                client = _open_chdb(target.engine_path, None)
            else:
                base = self._clients.get((target.engine_path, None)) or _open_chdb(target.engine_path, None)
                self._clients[(target.engine_path, None)] = base
                base.command(f"CREATE DATABASE IF NOT EXISTS `{target.database}`")
                client = _open_chdb(target.engine_path, target.database)
            self._clients[key] = client
            logger.info("opened embedded ClickHouse engine %s", describe(dsn))
            return client

    def _drop_closed(self) -> None:
        for key, client in list(self._clients.items()):
            if not client.ping():
                del self._clients[key]

    def close_all(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def _open_chdb(engine_path: str, database: str | None) -> Client:
    try:
        return clickhouse_connect.get_client(
            interface="chdb",
            path=None if engine_path == CHDB_MEMORY else engine_path,
            database=database,
            tz_mode=_TZ_MODE,
        )
    except Exception as exc:
        message = str(exc)
        held = re.search(r"already initialized with path '([^']*)'", message)
        if held:
            raise _other_engine_error(engine_path, held.group(1)) from exc
        if "Error initializing EmbeddedServer" in message:
            raise ClickHouseError(
                f"cannot start the embedded ClickHouse engine in {engine_path}: most likely another process "
                "is using this directory (chdb allows one process per data directory). Stop that process, "
                "give this one its own directory, or share data through a ClickHouse server (http://)."
            ) from exc
        raise ClickHouseError(f"cannot open the embedded ClickHouse engine in {engine_path}: {exc}") from exc


def _other_engine_error(wanted: str, held: str) -> ClickHouseError:
    return ClickHouseError(
        f"cannot open the embedded ClickHouse engine at {wanted!r}: this process already runs one at "
        f"{held!r}. chdb hosts one engine, bound to one path, per process; use the same DSN everywhere "
        "in the process, run one process per data directory, or call sinks.clickhouse.close_all() first."
    )


_ENGINES = _EngineCache()


def connect(dsn: str) -> Client:
    """A ``clickhouse_connect`` client for ``dsn``.

    ``chdb://memory``, ``chdb:///abs/dir`` and ``chdb://./rel/dir`` (relative to the cwd; the
    directory is created) use the in-process engine. chdb clients are cached per process: the same
    path (and database) gives the same client; another path raises :class:`ClickHouseError` while
    the first is open. ``chdb://...?database=NAME`` selects (and creates) a database in the engine.
    ``http(s)://user:password@host:port/database?setting=value`` gives a new server client per call.
    UTC DateTime columns are returned as aware UTC datetimes.
    """
    target = parse_dsn(dsn)
    if target.kind == "chdb":
        return _ENGINES.get(target, dsn)
    # clickhouse-connect infers TLS from the port only (443/8443): take it from the scheme instead,
    # so https://host/db is HTTPS on 8443 and https://host:9443 is HTTPS too.
    interface = "https" if dsn.lower().startswith("https:") else "http"
    try:
        client = clickhouse_connect.get_client(dsn=dsn, interface=interface, tz_mode=_TZ_MODE)
    except Exception as exc:
        raise ClickHouseError(
            f"cannot connect to ClickHouse at {describe(dsn)}: {_cause(exc)}; is the server running? "
            "Check MODELMON_CLICKHOUSE_DSN"
        ) from exc
    logger.info("connected to ClickHouse server %s", describe(dsn))
    return client


def _cause(exc: BaseException) -> str:
    """The operating system's reason inside a driver's wrapped message, else its first line.

    >>> _cause(OSError("HTTPConnectionPool(...): [Errno 111] Connection refused')) attempt 1"))
    'Connection refused'
    """
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    return found.group(1).strip() if found else (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def close_all() -> None:
    """Close every cached chdb client; the engine then shuts down and may reopen at another path."""
    _ENGINES.close_all()
