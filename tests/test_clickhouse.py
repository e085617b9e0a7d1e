"""Tests of ClickHouse connections (DSNs, the one-engine rule) and migrations, on the real chdb engine."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from modelmon.events import Alert, DeadLetter, MetricPoint, RetrainRequested
from sinks import clickhouse
from sinks.clickhouse import ClickHouseError, ClickHouseTarget, Client, connect, describe, parse_dsn
from sinks.migrate import (
    DEFAULT_TTL_DAYS,
    MIGRATIONS_TABLE,
    Migration,
    MigrationError,
    applied_versions,
    load_migrations,
    migrate,
    set_retention,
)
from sinks.writer import TABLES, Event

SECRET = "s3cr3t-pw"
RunPython = Callable[..., subprocess.CompletedProcess[str]]


# --- DSNs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("chdb://memory", ClickHouseTarget("chdb")),
        ("chdb://:memory:", ClickHouseTarget("chdb")),
        ("chdb://memory?database=mm", ClickHouseTarget("chdb", database="mm")),
        ("chdb:///var/lib/mm", ClickHouseTarget("chdb", path=Path("/var/lib/mm"))),
        ("chdb:///var/lib/mm/", ClickHouseTarget("chdb", path=Path("/var/lib/mm"))),
        ("chdb:///var/lib/../lib/mm?database=x", ClickHouseTarget("chdb", Path("/var/lib/mm"), "x")),
        (
            "chdb://./.modelmon/clickhouse",
            ClickHouseTarget("chdb", path=Path("/srv/app/.modelmon/clickhouse")),
        ),
        ("chdb://data/ch", ClickHouseTarget("chdb", path=Path("/srv/app/data/ch"))),
        ("chdb://../shared/ch", ClickHouseTarget("chdb", path=Path("/srv/shared/ch"))),
        ("http://localhost:8123", ClickHouseTarget("http")),
        (
            "https://user:pw@ch.example:8443/monitoring?compress=1",
            ClickHouseTarget("http", database="monitoring"),
        ),
    ],
)
def test_parse_dsn(dsn: str, expected: ClickHouseTarget) -> None:
    assert parse_dsn(dsn, cwd=Path("/srv/app")) == expected


def test_parse_dsn_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_dsn("chdb://~/ch").path == tmp_path.resolve() / "ch"


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        (f"clickhouse://u:{SECRET}@host:9000/db", "unsupported ClickHouse DSN"),
        ("localhost:8123", "unsupported ClickHouse DSN"),
        ("chdb://", "without a location"),
        ("chdb:///tmp/x?path=/y", "unknown chdb DSN parameter"),
        ("chdb://memory?database=drop%20table", "invalid database name"),
        ("http:///db", "has no host"),
    ],
)
def test_parse_dsn_rejects_with_reason(dsn: str, message: str) -> None:
    with pytest.raises(ClickHouseError, match=message) as info:
        parse_dsn(dsn)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (f"http://monitor:{SECRET}@ch:8123/mm", "http://monitor:***@ch:8123/mm"),
        (f"https://monitor:{SECRET}@ch:8443/mm?compress=1", "https://monitor:***@ch:8443/mm?compress=1"),
        (f"http://ch:8123/?user=u&password={SECRET}", "http://ch:8123/?user=u&password=***"),
        ("http://monitor@ch:8123", "http://monitor@ch:8123"),
        ("chdb:///var/lib/mm", "chdb:///var/lib/mm"),
    ],
)
def test_describe_masks_passwords(dsn: str, expected: str) -> None:
    assert describe(dsn) == expected


def test_server_connection_error_hides_password() -> None:
    with pytest.raises(ClickHouseError, match="cannot connect") as info:
        connect(f"http://monitor:{SECRET}@127.0.0.1:1/mm")
    assert SECRET not in str(info.value)
    assert "monitor:***@127.0.0.1:1" in str(info.value)


def test_same_path_gives_the_same_client(clickhouse_client: Client, clickhouse_dsn: str) -> None:
    if parse_dsn(clickhouse_dsn).kind != "chdb":
        pytest.skip("client cache is for the embedded engine")
    assert connect(clickhouse_dsn) is clickhouse_client
    assert connect(clickhouse_dsn.rstrip("/") + "/") is clickhouse_client


def test_database_parameter_selects_a_database_of_the_same_engine(
    clickhouse_client: Client, clickhouse_dsn: str
) -> None:
    if parse_dsn(clickhouse_dsn).kind != "chdb":
        pytest.skip("the database parameter is for the embedded engine")
    other = connect(f"{clickhouse_dsn}?database=side_db")
    try:
        assert other is not clickhouse_client
        assert other is connect(f"{clickhouse_dsn}?database=side_db")
        assert other.command("SELECT currentDatabase()") == "side_db"
        recorded = other.command("SELECT count() FROM default.schema_migrations")
        assert isinstance(recorded, int) and recorded >= 1
    finally:
        clickhouse_client.command("DROP DATABASE IF EXISTS side_db")


def test_other_path_in_the_same_process_is_refused(tmp_path: Path, python_subprocess: RunPython) -> None:
    result = python_subprocess(
        f"""
        from sinks.clickhouse import ClickHouseError, close_all, connect
        first = connect("chdb://{tmp_path}/a")
        first.command("CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x")
        first.command("INSERT INTO t VALUES (7)")
        for other in ("chdb://{tmp_path}/b", "chdb://memory"):
            try:
                connect(other)
            except ClickHouseError as error:
                assert "one engine" in str(error) and "{tmp_path}/a" in str(error), error
            else:
                raise AssertionError("a second engine path was accepted")
        close_all()  # the engine shuts down with its last client and may reopen elsewhere
        assert connect("chdb://{tmp_path}/b").command("SELECT 1") == 1
        close_all()
        assert connect("chdb://{tmp_path}/a").command("SELECT sum(x) FROM t") == 7
        print("ok")
        """
    )
    assert result.stdout.strip().endswith("ok")


def test_memory_and_relative_dsns(tmp_path: Path, python_subprocess: RunPython) -> None:
    result = python_subprocess(
        """
        import os
        from sinks.clickhouse import close_all, connect
        memory = connect("chdb://memory")
        memory.command("CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x")
        assert connect("chdb://:memory:") is memory
        close_all()
        rel = connect("chdb://./.modelmon/clickhouse")
        assert os.path.isdir(".modelmon/clickhouse")
        rel.command("CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x")
        assert connect("chdb://.modelmon/clickhouse") is rel
        assert sorted(os.listdir(".")) == [".modelmon"], os.listdir(".")
        print("ok")
        """,
        cwd=tmp_path,
    )
    assert result.stdout.strip().endswith("ok")
    assert (tmp_path / ".modelmon" / "clickhouse" / "store").is_dir()


def test_directory_held_by_another_process_is_refused(
    clickhouse_client: Client, clickhouse_dsn: str, python_subprocess: RunPython
) -> None:
    if parse_dsn(clickhouse_dsn).kind != "chdb":
        pytest.skip("only the embedded engine locks its directory")
    result = python_subprocess(
        f"""
        from sinks.clickhouse import ClickHouseError, connect
        try:
            connect("{clickhouse_dsn}")
        except ClickHouseError as error:
            assert "another process" in str(error), error
            print("refused")
        """
    )
    assert "refused" in result.stdout


# --- migrations -----------------------------------------------------------------------------------


def test_packaged_migrations_are_numbered_and_ordered() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(versions) and versions[:2] == ["0001", "0002"]
    assert all(m.statements(DEFAULT_TTL_DAYS) for m in migrations)
    assert all("${" not in s for m in migrations for s in m.statements(30))


def test_migrate_applies_in_order_records_and_is_idempotent(fresh_database: Client) -> None:
    everything = [m.version for m in load_migrations()]
    assert migrate(fresh_database, ttl_days=30) == everything
    assert migrate(fresh_database) == []
    recorded = applied_versions(fresh_database)
    assert list(recorded) == everything
    assert recorded == {m.version: m.checksum for m in load_migrations()}
    rows = fresh_database.query(f"SELECT count() FROM {MIGRATIONS_TABLE} FINAL").result_rows
    assert rows == [(len(everything),)]
    ttl = fresh_database.command(
        "SELECT create_table_query FROM system.tables WHERE database = "
        "currentDatabase() AND name = 'metric_points'"
    )
    assert "toIntervalDay(30)" in str(ttl)


def test_failing_migration_names_its_file_and_is_not_recorded(fresh_database: Client) -> None:
    good = Migration("0001", "good", "CREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = Memory;\n")
    bad = Migration("0002", "broken_thing", "CREATE TABLE b (x UInt8) ENGINE = NoSuchEngine;\n")
    later = Migration("0003", "later", "CREATE TABLE IF NOT EXISTS c (x UInt8) ENGINE = Memory;\n")
    with pytest.raises(MigrationError, match=r"0002_broken_thing\.sql"):
        migrate(fresh_database, migrations=[later, bad, good])
    assert list(applied_versions(fresh_database)) == ["0001"]
    fixed = Migration("0002", "broken_thing", "CREATE TABLE IF NOT EXISTS b (x UInt8) ENGINE = Memory;\n")
    assert migrate(fresh_database, migrations=[good, fixed, later]) == ["0002", "0003"]


def test_migration_files_must_be_well_named(tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "1_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"1_bad\.sql"):
        load_migrations(tmp_path)
    (tmp_path / "1_bad.sql").unlink()
    (tmp_path / "0001_dup.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share version 0001"):
        load_migrations(tmp_path)


def test_statements_split_on_line_ending_semicolons() -> None:
    sql = "-- a comment; with ${ttl_days}\nSELECT ';'\n  ;\nSELECT ${ttl_days};\n\n"
    assert Migration("0009", "x", sql).statements(12) == ["SELECT ';'", "SELECT 12"]


EXPECTED_COLUMNS = {
    "metric_points": {
        "model_id": "LowCardinality(String)", "model_version": "LowCardinality(String)",
        "segment": "LowCardinality(String)", "metric": "LowCardinality(String)",
        "feature": "LowCardinality(String)", "window_start": "DateTime64(3, 'UTC')",
        "window_end": "DateTime64(3, 'UTC')", "source": "LowCardinality(String)", "value": "Float64",
        "details": "String", "revision": "UInt64", "emitted_at": "DateTime64(3, 'UTC')",
        "inserted_at": "DateTime64(3, 'UTC')",
    },
    "dead_letters": {
        "ts": "DateTime64(3, 'UTC')", "topic": "LowCardinality(String)", "partition": "Int32",
        "offset": "Int64", "key": "Nullable(String)", "payload": "String", "reason": "String",
        "error_type": "LowCardinality(String)", "inserted_at": "DateTime64(3, 'UTC')",
    },
    "alerts": {
        "alert_id": "String", "dedup_key": "String", "model_id": "LowCardinality(String)",
        "model_version": "LowCardinality(String)", "rule": "LowCardinality(String)",
        "state": "LowCardinality(String)", "severity": "LowCardinality(String)",
        "metric": "LowCardinality(String)", "feature": "LowCardinality(String)",
        "segment": "LowCardinality(String)", "value": "Float64", "threshold": "Float64",
        "window_start": "DateTime64(3, 'UTC')", "window_end": "DateTime64(3, 'UTC')",
        "message": "String", "details": "String", "ts": "DateTime64(3, 'UTC')",
        "inserted_at": "DateTime64(3, 'UTC')",
    },
    "retrain_requests": {
        "request_id": "String", "idempotency_key": "String", "model_id": "LowCardinality(String)",
        "model_version": "LowCardinality(String)", "reason": "String", "evidence": "String",
        "alert_ids": "Array(String)", "requested_at": "DateTime64(3, 'UTC')",
        "inserted_at": "DateTime64(3, 'UTC')",
    },
    "reference_profiles": {
        "model_id": "LowCardinality(String)", "model_version": "LowCardinality(String)",
        "feature": "LowCardinality(String)", "profile": "String", "created_at": "DateTime64(3, 'UTC')",
    },
}  # fmt: skip


def _columns(client: Client, table: str) -> dict[str, str]:
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String} "
        "ORDER BY position",
        parameters={"t": table},
    ).result_rows
    return {str(name): str(kind) for name, kind in rows}


@pytest.mark.parametrize("table", sorted(EXPECTED_COLUMNS))
def test_every_table_has_the_expected_columns(clickhouse_client: Client, table: str) -> None:
    assert _columns(clickhouse_client, table) == EXPECTED_COLUMNS[table]


@pytest.mark.parametrize("event_type", [MetricPoint, Alert, RetrainRequested, DeadLetter])
def test_tables_hold_every_field_of_the_contract_under_the_documented_key(
    clickhouse_client: Client, event_type: type[Event]
) -> None:
    spec = TABLES[event_type]
    assert set(event_type.model_fields) <= set(_columns(clickhouse_client, spec.table))
    engine, key, partition = clickhouse_client.query(
        "SELECT engine, sorting_key, partition_key FROM system.tables "
        "WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": spec.table},
    ).result_rows[0]
    assert engine == "ReplacingMergeTree"
    assert key == ", ".join(spec.order_by)
    assert partition.startswith("toYYYYMM(")


def test_metric_totals_view_exists(clickhouse_client: Client) -> None:
    assert set(_columns(clickhouse_client, "metric_totals")) == {
        "model_id", "model_version", "segment", "metric", "feature",
        "window_start", "window_end", "value", "sources",
    }  # fmt: skip


def test_set_retention_changes_every_ttl(fresh_database: Client) -> None:
    migrate(fresh_database)
    set_retention(fresh_database, 7)
    queries = fresh_database.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() "
        "AND name IN ('metric_points', 'dead_letters', 'alerts', 'retrain_requests')"
    ).result_rows
    assert len(queries) == 4
    assert all("toIntervalDay(7)" in query for _, query in queries)
    with pytest.raises(ValueError, match="positive"):
        set_retention(fresh_database, 0)


@pytest.mark.parametrize(
    ("dsn", "interface"),
    [
        ("https://u:p@ch.example/db", "https"),
        ("https://u:p@ch.example:9443/db", "https"),
        ("HTTPS://u:p@ch.example:8123/db", "https"),
        ("http://u:p@ch.example:8443/db", "http"),
    ],
)
def test_server_dsn_scheme_decides_tls(monkeypatch: pytest.MonkeyPatch, dsn: str, interface: str) -> None:
    # clickhouse-connect alone infers TLS from the port; the scheme the user wrote must win.
    seen: dict[str, object] = {}

    def fake_get_client(**kwargs: object) -> object:
        seen.update(kwargs)
        return object()

    monkeypatch.setattr(clickhouse.clickhouse_connect, "get_client", fake_get_client)
    clickhouse.connect(dsn)
    assert seen["interface"] == interface
    assert seen["dsn"] == dsn
