"""The ClickHouse sink: consumes metric, alert, retrain, dead-letter and reference topics, inserts in batches.

Guarantee: at-least-once into ClickHouse, and no double counting. Offsets are committed only after
the batch's insert has succeeded; if ClickHouse is unavailable the batch is retried with capped
exponential backoff while consumption is paused (memory stays bounded by one batch) and nothing
is committed. A replay re-inserts rows under the same ReplacingMergeTree keys, which replace the
earlier copies. A message that cannot be parsed is turned into a dead letter (never dropped);
workers hold no database connection, this process is the only writer.

The compacted ``reference-profiles`` topic is mirrored into ``reference_profiles`` (whether a
reference was loaded from a file or built by a worker): a record is inserted, a tombstone deletes
its key's rows (``sinks.references.apply_reference_changes``), an invalid record is a dead letter.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import BaseModel, ValidationError

from detectors.profiles.records import ReferenceRecord
from modelmon.admin import REBALANCING_ERRORS, ensure_topics
from modelmon.events import Alert, DeadLetter, MetricPoint, RetrainRequested, model_to_json
from modelmon.references import InvalidReferenceMessage
from modelmon.settings import Settings
from sinks.clickhouse import ClickHouseError, describe, parse_dsn
from sinks.references import ReferenceDeletion, apply_reference_changes, deletion_of
from sinks.writer import ClickHouseWriter, WriteFailed, is_transient

log = logging.getLogger(__name__)

SINK_GROUP_SUFFIX = "-sink"

#: Longest a cleanly stopping sink waits for librdkafka to start its LeaveGroup (normally ~0.1 s).
LEAVE_TIMEOUT_SECONDS = 5.0
Row: TypeAlias = BaseModel | ReferenceDeletion
"""What one consumed message becomes: an event, a reference record, a dead letter or a deletion."""


def _clickhouse_location(dsn: str) -> str:
    """Where a DSN writes, without credentials: ``chdb:<resolved dir>/<db>`` or ``http://host:port/<db>``."""
    try:
        target = parse_dsn(dsn)
    except ClickHouseError:
        return describe(dsn)
    if target.kind == "chdb":
        return f"chdb:{target.engine_path}/{target.database or ''}"
    parts = urlsplit(dsn)
    return f"{parts.scheme.lower()}://{parts.hostname}:{parts.port or ''}/{target.database or ''}"


def sink_instance_id(settings: Settings, group_id: str | None = None, hostname: str | None = None) -> str:
    """The sink's static group membership id (Kafka ``group.instance.id``, KIP-345).

    ``sink-<host name>-<first 10 hex digits of sha256(group id, ClickHouse location)>``: the
    location is the DSN without user, password or query, with a chdb directory resolved to an
    absolute path. Stable across restarts of one sink (same host, app id and ClickHouse), so a
    sink restarted after ``kill -9`` replaces its dead member at once instead of waiting for it
    to expire (noida-db never expires it). Only ``[A-Za-z0-9._-]``, as Kafka requires. Two sinks
    of one app on one host writing the same ClickHouse would share it and fence each other: run
    one sink per app (docs/deploy.md), or give the second its own ``instance_id``.

    >>> settings = Settings(app_id="shop", clickhouse_dsn="http://u:pw@ch:8123/mm")
    >>> sink_instance_id(settings, hostname="box 1")
    'sink-box-1-12c2dcf9dd'
    >>> rotated = settings.model_copy(update={"clickhouse_dsn": "http://u:new@ch:8123/mm"})
    >>> sink_instance_id(rotated, hostname="box 1")  # a new password keeps the id
    'sink-box-1-12c2dcf9dd'
    """
    host = re.sub(r"[^A-Za-z0-9._-]", "-", hostname if hostname is not None else socket.gethostname())
    group = group_id or settings.app_id + SINK_GROUP_SUFFIX
    key = f"{group}\n{_clickhouse_location(settings.clickhouse_dsn)}"
    return f"sink-{host[:64] or 'host'}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@dataclass
class SinkStats:
    """Running totals of the sink."""

    consumed: int = 0
    written: int = 0
    invalid: int = 0
    batches: int = 0
    write_retries: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


class ClickHouseSink:
    """Moves monitor-metrics, alerts, retrain-requests, dead-letter and reference messages into ClickHouse."""

    def __init__(
        self,
        settings: Settings,
        writer: ClickHouseWriter,
        *,
        group_id: str | None = None,
        instance_id: str | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.max_backoff = max_backoff
        topics = settings.topics
        self._models: dict[str, type[BaseModel]] = {
            topics.monitor_metrics: MetricPoint,
            topics.alerts: Alert,
            topics.retrain_requests: RetrainRequested,
            topics.dead_letter: DeadLetter,
            topics.reference_profiles: ReferenceRecord,
        }
        self._dead_letter_topic = topics.dead_letter
        self._reference_topic = topics.reference_profiles
        self.group_id = group_id or settings.app_id + SINK_GROUP_SUFFIX
        self.instance_id = instance_id or sink_instance_id(settings, self.group_id)
        self.stats = SinkStats()
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None

    def _make_consumer(self) -> Consumer:
        config: dict[str, Any] = {
            **self.settings.kafka_consumer(),
            "group.id": self.group_id,
            # Static membership: a sink restarted after kill -9 takes its dead member's place (and
            # partitions) at once; noida-db never expires a killed member, Kafka after the session.
            "group.instance.id": self.instance_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(self.settings.broker_session_timeout * 1000),
        }
        # Compacted, and maybe not created yet by a worker or the CLI: subscribing to a missing
        # topic would only see it after the next metadata refresh (5 minutes by default).
        ensure_topics(
            self.settings.kafka_common(),
            [self._reference_topic],
            partitions=self.settings.topic_partitions,
            replication=self.settings.topic_replication,
            compacted=[self._reference_topic],
        )
        consumer = Consumer(config)
        consumer.subscribe(list(self._models))
        return consumer

    def _parse(self, message: Message) -> Row:
        """Parse one message; an unparseable one becomes a dead letter row instead."""
        topic = message.topic() or ""
        model = self._models[topic]
        value = message.value()
        try:
            if topic == self._reference_topic:
                return self._parse_reference(message)
            return model.model_validate(orjson.loads(value or b"null"))
        except (
            orjson.JSONDecodeError,
            ValidationError,
            InvalidReferenceMessage,
            UnicodeDecodeError,
        ) as error:
            self.stats.invalid += 1
            letter = DeadLetter(
                topic=topic,
                partition=message.partition(),
                offset=message.offset(),
                key=(message.key() or b"").decode("utf-8", errors="replace") or None,
                payload=(value or b"").decode("utf-8", errors="replace")[:64_000],
                reason=f"sink could not parse a {model.__name__}: {error}".splitlines()[0][:500],
                error_type="sink_invalid_message",
            )
            if topic != self._dead_letter_topic:
                self._publish_dead_letter(letter)
            return letter

    @staticmethod
    def _parse_reference(message: Message) -> ReferenceRecord | ReferenceDeletion:
        key, value = (message.key() or b"").decode(), message.value()
        if not value:
            return deletion_of(key)  # a tombstone: compaction's delete
        record = ReferenceRecord.from_json(value)
        if record.key != key:
            raise InvalidReferenceMessage(f"key {key!r} does not match the record ({record.key!r})")
        return record

    def _write(self, rows: list[Row]) -> None:
        """Events through the writer, then the reference topic's changes; raises ``WriteFailed``."""
        changes = [row for row in rows if isinstance(row, ReferenceRecord | ReferenceDeletion)]
        events = [row for row in rows if not isinstance(row, ReferenceRecord | ReferenceDeletion)]
        if events:
            self.writer.write(events)  # type: ignore[arg-type]
        if changes:
            try:
                apply_reference_changes(self.writer.client, changes)  # type: ignore[arg-type]
            except Exception as error:
                raise WriteFailed(
                    f"writing {len(changes)} reference change(s) failed: {error}",
                    table="reference_profiles",
                    attempts=1,
                    retryable=is_transient(error),
                    written=len(events),
                ) from error

    def _publish_dead_letter(self, letter: DeadLetter) -> None:
        if self._producer is None:
            self._producer = Producer({**self.settings.kafka_common(), "enable.idempotence": True})
        self._producer.produce(self._dead_letter_topic, key=letter.dedup_key(), value=model_to_json(letter))

    def _write_with_retry(self, rows: list[Row], consumer: Consumer) -> bool:
        """Insert until it succeeds or the sink is stopped; returns whether it was written."""
        delay = 0.5
        assignment = consumer.assignment()
        paused = False
        try:
            while True:
                try:
                    self._write(rows)
                    return True
                except WriteFailed as error:
                    self.stats.write_retries += 1
                    if error.retryable:
                        log.warning("ClickHouse insert failed, retrying in %.1fs: %s", delay, error)
                    else:
                        # Not transient (e.g. schema mismatch): retrying will not fix it, but skipping
                        # would lose data, so hold the batch and say loudly what needs doing.
                        log.error(
                            "ClickHouse rejected the batch (%s); nothing is committed. Check the schema "
                            "(`modelmon migrate`) and the server; retrying in %.1fs",
                            error,
                            delay,
                        )
                    if not paused and assignment:
                        consumer.pause(assignment)
                        paused = True
                    deadline = time.monotonic() + delay * (0.5 + random.random())
                    while time.monotonic() < deadline:
                        if self._stop.is_set():
                            return False
                        consumer.poll(0.2)  # keeps the group membership alive while paused
                    delay = min(delay * 2, self.max_backoff)
        finally:
            if paused:
                consumer.resume(assignment)

    def run_once(self, consumer: Consumer, timeout: float) -> int:
        """Consume one batch, write it, commit it; returns the number of messages handled."""
        messages = consumer.consume(num_messages=self.settings.sink_batch_size, timeout=timeout)
        batch: list[Message] = []
        for message in messages:
            error = message.error()
            if error is None:
                batch.append(message)
            elif error.fatal() or error.code() == KafkaError._FATAL:
                # E.g. fenced: another consumer joined with this group.instance.id. The consumer
                # is unusable; stop loudly instead of polling it forever.
                log.error(
                    "sink consumer failed (group.instance.id %s; a second sink with the same id "
                    "fences this one): %s",
                    self.instance_id,
                    error,
                )
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
        if not batch:
            return 0
        rows = [self._parse(m) for m in batch]
        if self._producer is not None:
            self._producer.flush(10)
        if not self._write_with_retry(rows, consumer):
            return 0
        offsets: dict[tuple[str, int], int] = {}
        for m in batch:
            key = (m.topic() or "", m.partition() or 0)
            offsets[key] = max(offsets.get(key, -1), (m.offset() or 0) + 1)
        try:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
            )
        except KafkaException as error:
            code = error.args[0].code() if error.args else None
            if code not in REBALANCING_ERRORS:
                raise
            # The rows are in ClickHouse; the partitions' next owner inserts them again, and the
            # copies replace each other (ReplacingMergeTree keys): nothing lost, nothing doubled.
            log.info("commit skipped during a rebalance: %s", error)
        self.stats.batches += 1
        self.stats.consumed += len(batch)
        self.stats.written += len(rows)
        for m in batch:
            topic = m.topic() or ""
            self.stats.by_topic[topic] = self.stats.by_topic.get(topic, 0) + 1
        return len(batch)

    def run(self, *, on_batch: Callable[[SinkStats], None] | None = None) -> None:
        """Consume until :meth:`stop` is called."""
        consumer = self._make_consumer()
        self._consumer = consumer
        log.info(
            "sink consuming %s as group %s, instance %s",
            ", ".join(self._models),
            self.group_id,
            self.instance_id,
        )
        try:
            while not self._stop.is_set():
                if self.run_once(consumer, timeout=self.settings.sink_flush_seconds) and on_batch:
                    on_batch(self.stats)
        finally:
            try:
                self._leave_group(consumer)
            finally:
                consumer.close()
                if self._producer is not None:
                    self._producer.flush(10)

    @staticmethod
    def _leave_group(consumer: Consumer) -> None:
        """Leave the consumer group before ``close()``, so the partitions move at once.

        librdkafka (confluent-kafka 2.16.1) sends no LeaveGroup when a static member (one with
        ``group.instance.id``) closes (KIP-345): Kafka moves its partitions only after the session
        timeout, noida-db never. ``unsubscribe()`` does send LeaveGroup, static or not, but only
        after the application has served the revocation it queues. Measured on noida-db 0.2.3,
        a static member with 2 partitions stopped, then a new member (another instance id) joined:

        - ``close()``, ``unsubscribe()`` + ``close()`` at once, ``incremental_unassign()`` +
          ``close()``: no LeaveGroup sent; the new member got no partitions in 40 s.
        - ``unsubscribe()``, ``poll()`` until ``memberid()`` is empty (librdkafka clears it when
          it sends LeaveGroup; one ``poll(0.1)``, the LeaveGroup answered by then), ``close()``:
          the new member had both partitions as soon as it joined (0.32 s after subscribing).
        - Polling until ``assignment()`` is empty instead: works for a member with partitions,
          but a member without any (more members than partitions) closed without leaving, and
          the group then stalled (the next newcomer never joined).

        Messages polled here are dropped uncommitted; the next owner reads them again.
        """
        deadline = time.monotonic() + LEAVE_TIMEOUT_SECONDS
        with contextlib.suppress(KafkaException, RuntimeError):  # a failed/fenced consumer: just close
            consumer.unsubscribe()
            while consumer.memberid() and time.monotonic() < deadline:
                consumer.poll(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the sink to stop; when it runs in its own thread, wait for it to close cleanly."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def start_thread(self) -> threading.Thread:
        """Run the sink in a daemon thread (for ``worker --with-sink``, the demo and tests)."""
        self._thread = threading.Thread(target=self.run, name="clickhouse-sink", daemon=True)
        self._thread.start()
        return self._thread
