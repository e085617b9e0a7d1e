"""Reference profiles in ClickHouse: one ``reference_profiles`` row per feature, read back with FINAL."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from detectors.profiles import ReferenceProfile
from detectors.profiles.records import ReferenceRecord, assemble_reference, reference_records
from modelmon.references import InvalidReferenceMessage
from sinks.clickhouse import ClickHouseError, Client, connect, describe

logger = logging.getLogger(__name__)

__all__ = [
    "COLUMNS",
    "TABLE",
    "ReferenceDeletion",
    "apply_reference_changes",
    "deletion_of",
    "load_reference",
    "load_reference_records",
    "store_records",
    "store_reference",
    "store_reference_at",
]

TABLE = "reference_profiles"
COLUMNS = ("model_id", "model_version", "feature", "profile", "created_at")


def store_reference(
    client: Client,
    model_id: str,
    version: str,
    profile: ReferenceProfile,
    source: str,
    *,
    created_at: datetime | None = None,
) -> int:
    """Insert one row per feature of ``profile``; return the number of rows.

    The ``profile`` column holds the whole record as JSON (the Kafka message value: the feature
    profile under ``"profile"``, plus ``kind``, ``source``, ``reference_id``, ``features``), since
    the table has no column of its own for them. Idempotent per (model, version, feature): the
    row with the latest ``created_at`` wins (ReplacingMergeTree).
    """
    return store_records(client, reference_records(model_id, version, profile, source, created_at=created_at))


def store_records(client: Client, records: Sequence[ReferenceRecord]) -> int:
    """Insert reference records as they are (e.g. those read from the reference topic)."""
    rows = [[r.model_id, r.model_version, r.feature, r.to_json().decode(), r.created_at] for r in records]
    if rows:
        client.insert(TABLE, rows, column_names=list(COLUMNS))
    return len(rows)


def load_reference_records(client: Client, model_id: str, version: str) -> list[ReferenceRecord]:
    """The latest stored record of each feature of this model version; invalid rows are logged and skipped."""
    result = client.query(
        f"SELECT feature, profile FROM {TABLE} FINAL "
        "WHERE model_id = {model_id:String} AND model_version = {version:String} ORDER BY feature",
        parameters={"model_id": model_id, "version": version},
    )
    records = []
    for feature, text in result.result_rows:
        try:
            records.append(ReferenceRecord.from_json(text))
        except InvalidReferenceMessage as error:
            logger.warning("invalid reference row %s|%s|%s (skipped): %s", model_id, version, feature, error)
    return records


def load_reference(client: Client, model_id: str, version: str) -> ReferenceProfile | None:
    """The newest complete stored reference of exactly this model version, or ``None``."""
    return assemble_reference(load_reference_records(client, model_id, version))


def store_reference_at(dsn: str, model_id: str, version: str, profile: ReferenceProfile, source: str) -> int:
    """Connect to ``dsn``, apply migrations, store the reference; every failure is a ``ClickHouseError``.

    For the CLI: an embedded chdb directory held by another process (a running sink) fails here.
    """
    from clickhouse_connect.driver.exceptions import Error as DriverError

    from sinks.migrate import migrate

    try:
        client = connect(dsn)
        migrate(client)
        return store_reference(client, model_id, version, profile, source)
    except DriverError as error:
        raise ClickHouseError(f"cannot store the reference in {describe(dsn)}: {error}") from error


@dataclass(frozen=True)
class ReferenceDeletion:
    """A tombstone (empty value) on the reference topic: the feature's record is gone."""

    model_id: str
    model_version: str
    feature: str

    @property
    def key(self) -> str:
        return f"{self.model_id}|{self.model_version}|{self.feature}"


def deletion_of(key: str) -> ReferenceDeletion:
    """The deletion a tombstone with this key means; raises ``InvalidReferenceMessage`` for a bad key.

    >>> deletion_of("fraud-detector|3|amount")
    ReferenceDeletion(model_id='fraud-detector', model_version='3', feature='amount')
    """
    model_id, _, rest = key.partition("|")
    version, _, feature = rest.rpartition("|")
    if not (model_id and version and feature):
        raise InvalidReferenceMessage(f"tombstone key {key!r} is not model_id|model_version|feature")
    return ReferenceDeletion(model_id, version, feature)


def apply_reference_changes(client: Client, changes: Sequence[ReferenceRecord | ReferenceDeletion]) -> int:
    """Mirror messages of the reference topic, in topic order; return the rows inserted plus keys deleted.

    As compaction would, only the last change per key counts: a record is inserted (the latest
    ``created_at`` per key wins on merge), a deletion deletes the key's rows (a lightweight
    ``DELETE``, so ``load_reference`` and the catalog agree). Replaying the same messages gives
    the same table.
    """
    last: dict[str, ReferenceRecord | ReferenceDeletion] = {}
    for change in changes:
        last.pop(change.key, None)  # keep topic order of the last change per key
        last[change.key] = change
    records = [c for c in last.values() if isinstance(c, ReferenceRecord)]
    deletions = [c for c in last.values() if isinstance(c, ReferenceDeletion)]
    for gone in deletions:
        client.command(
            f"DELETE FROM {TABLE} WHERE model_id = {{m:String}} AND model_version = {{v:String}} "
            "AND feature = {f:String}",
            parameters={"m": gone.model_id, "v": gone.model_version, "f": gone.feature},
        )
    return store_records(client, records) + len(deletions)
