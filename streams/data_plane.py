"""The data plane: stage 1 on confluent-kafka batches, in a thread of ``modelmon worker``.

One consumer (group ``<app id>-stage1``) reads ``predictions``, ``ground-truth`` and the internal
``monitor-repartition`` with ``consume(MODELMON_BATCH_SIZE)``; :class:`~streams.stage1.Stage1`
turns each partition's messages into chunk partials, dead letters, routed events and join-state
changes, which one idempotent producer sends. Guarantees:

- **Co-partitioning**: the ``range`` assignor gives a worker partition *p* of all three topics (they
  have the same partition count), so the join state of *p* is whole in one worker
  (``tests/test_data_plane.py`` checks it with two and three workers).
- **Nothing lost, nothing twice**: offsets are committed every ``MODELMON_COMMIT_INTERVAL`` seconds,
  after ``flush()`` returned with every output delivered, and only up to the first offset of each
  partition's open chunk (:meth:`Stage1.commit_offsets`). A restarted worker or the next owner reads
  from there, rebuilds the same chunks (their partials replace the earlier copies in stage 2) and
  the replay-safe join gives the same outcomes. A delivery that fails for good stops the worker
  (exit 1) before anything past it is committed.
- **Join state** (:mod:`streams.join_state`): one changelog message per batch and partition on
  ``<prefix>monitor-joins``, restored before a newly assigned partition is processed. A partition
  that comes back to the same worker right after a rebalance keeps its state when nobody wrote to its
  changelog meanwhile.
- **Static membership** (``group.instance.id``) for fast restarts after a crash; a clean stop leaves
  the group first, so the partitions move at once.
- **Idle is idle**: after an empty poll with every partition read to its end (by the last fetch's
  high watermark), the consumer pauses its partitions and sleeps (up to
  ``IDLE_SLEEP_MAX`` seconds), since the embedded broker answers empty fetches at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from modelmon.admin import REBALANCING_ERRORS
from modelmon.events import DeadLetter, model_to_json
from modelmon.settings import Settings
from modelmon.spec import ModelSpec
from streams.idle import IdleCheck, pause_while_idle
from streams.reference_id import ReferenceLookup
from streams.routing import repartition_topic
from streams.stage1 import Stage1

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

JOINS = "monitor-joins"
IDLE_SLEEP_MAX = 0.2
EXPIRE_EVERY_SECONDS = 60.0
STATS_EVERY_SECONDS = 10.0
LEAVE_TIMEOUT_SECONDS = 5.0


def joins_topic(prefix: str) -> str:
    return f"{prefix}{JOINS}"


class DeliveryFailed(RuntimeError):
    """An output could not be delivered: nothing past it may be committed."""


class DataPlane:
    """Stage 1 of one worker on confluent-kafka; :meth:`run` until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        specs: dict[str, ModelSpec],
        references: ReferenceLookup,
        *,
        partitions: int,
        instance_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        topics = settings.topics
        self.inputs = [topics.predictions, topics.ground_truth, repartition_topic(settings.topic_prefix)]
        self.partials_topic = f"{settings.topic_prefix}monitor-partials"
        self.dead_topic = topics.dead_letter
        self.repartition = repartition_topic(settings.topic_prefix)
        self.joins_topic = joins_topic(settings.topic_prefix)
        self.group_id = f"{settings.app_id}-stage1"
        self.instance_id = instance_id
        self.stage1 = Stage1(settings, specs, references, self, partitions=partitions, clock=clock)
        self.producer = Producer(
            {
                **settings.kafka_common(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
                "message.max.bytes": max(settings.max_partial_bytes + 65_536, 1_000_000),
            }
        )
        self._stop = threading.Event()
        self._failed: list[str] = []
        self._committed: dict[tuple[str, int], int] = {}
        self._changelog_end: dict[int, int] = {}  # partition -> next offset after our last changelog write
        self._parked: dict[int, Any] = {}  # join states of revoked partitions, reused if nobody wrote
        self._consumer: Consumer | None = None
        self.batches = 0
        self.events = 0
        self.restored_entries = 0

    # -- Outputs (what Stage1 emits) -----------------------------------------------------------------
    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed.append(f"{message.topic()}: {error}")
        elif message.topic() == self.joins_topic:
            partition = message.partition() or 0
            self._changelog_end[partition] = max(
                self._changelog_end.get(partition, 0), (message.offset() or 0) + 1
            )

    def _produce(self, topic: str, value: bytes | None, key: bytes | None, **extra: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=self._delivered, **extra)
                return
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let deliveries drain it

    def partials(self, messages: list[tuple[bytes, bytes]]) -> None:
        for key, value in messages:
            self._produce(self.partials_topic, value, key)

    def dead_letter(self, letter: DeadLetter) -> None:
        self._produce(self.dead_topic, model_to_json(letter), letter.dedup_key().encode())

    def route(
        self, partition: int, key: bytes, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self._produce(self.repartition, value, key, partition=partition, headers=headers)

    # -- the loop ----------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        consumer = Consumer(
            {
                **self.settings.kafka_consumer(),
                "group.id": self.group_id,
                "group.instance.id": self.instance_id,
                "partition.assignment.strategy": "range",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": int(self.settings.broker_session_timeout * 1000),
                "queued.max.messages.kbytes": 256 * 1024,
            }
        )
        self._consumer = consumer
        consumer.subscribe(self.inputs, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("data plane reading %s as %s (instance %s)", ", ".join(self.inputs), self.group_id,
                 self.instance_id)  # fmt: skip
        now = time.monotonic()
        timers = {"commit": now, "expire": now, "stats": now, "revisions": now}
        idle = 0.0
        read_to_end = IdleCheck(consumer)
        try:
            while not self._stop.is_set():
                messages = consumer.consume(self.settings.batch_size, timeout=0.1 if idle else 0.5)
                if self._handle(messages):
                    idle = 0.0
                elif read_to_end.caught_up():  # nothing left to read: wait without spinning (streams.idle)
                    idle = min(max(idle * 2, 0.01), IDLE_SLEEP_MAX)
                    pause_while_idle(consumer, idle, self._stop)
                self._housekeeping(consumer, timers)
            self._commit(consumer)
        finally:
            self._close(consumer)

    def _handle(self, messages: list[Message]) -> bool:
        by_tp: dict[tuple[str, int], list[Message]] = defaultdict(list)
        for message in messages:
            error = message.error()
            if error is None:
                by_tp[(message.topic() or "", message.partition() or 0)].append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("consumer error: %s", error)
        for (topic, partition), items in by_tp.items():
            self.stage1.process(topic, partition, items)  # type: ignore[arg-type]
        self._log_joins()
        self.producer.poll(0)
        if by_tp:
            self.batches += 1
            self.events += sum(map(len, by_tp.values()))
        return bool(by_tp)

    def _log_joins(self) -> None:
        """Send the join state's changes to its changelog partition by partition."""
        for partition, payloads in self.stage1.take_changelog().items():
            for payload in payloads:
                self._produce(self.joins_topic, payload, str(partition).encode(), partition=partition)

    def _housekeeping(self, consumer: Consumer, timers: dict[str, float]) -> None:
        now = time.monotonic()
        if now - timers["revisions"] >= min(self.settings.idle_flush_seconds, 1.0):
            timers["revisions"] = now
            self.stage1.publish_revisions(self.settings.idle_flush_seconds)
        if now - timers["expire"] >= EXPIRE_EVERY_SECONDS:
            timers["expire"] = now
            self.stage1.expire_entries()
            self._log_joins()
        if now - timers["commit"] >= self.settings.commit_interval:
            timers["commit"] = now
            self._commit(consumer)
        if now - timers["stats"] >= STATS_EVERY_SECONDS:
            timers["stats"] = now
            stats = {
                k: dict(v) if isinstance(v, dict) else v for k, v in vars(self.stage1.stats).items() if v
            }
            log.info("data plane: %d events in %d batches; stage1 %s", self.events, self.batches, stats)

    def _commit(self, consumer: Consumer, only: set[tuple[str, int]] | None = None) -> None:
        """Flush every output, then commit what is safe: the first offset of each open chunk."""
        remaining = self.producer.flush(30)
        if remaining or self._failed:
            raise DeliveryFailed(f"{remaining} outputs undelivered, failures: {self._failed[:3]}")
        offsets = []
        for tp, offset in self.stage1.commit_offsets().items():
            if (only is None or tp in only) and offset > self._committed.get(tp, -1):
                offsets.append(TopicPartition(tp[0], tp[1], offset))
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            code = error.args[0].code() if error.args else None
            if code not in REBALANCING_ERRORS:
                raise
            # The group is rebalancing: the partitions' next owner (maybe this worker) reads from the
            # last commit and rebuilds what this one had not committed yet.
            log.info("commit skipped during a rebalance: %s", error)
            return
        for item in offsets:
            self._committed[(item.topic, item.partition)] = item.offset

    # -- rebalances ----------------------------------------------------------------------------------
    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        try:
            self._commit(consumer, only=revoked)
        except KafkaException as error:  # e.g. the generation is already gone: the next owner replays
            log.warning("could not commit revoked partitions: %s", error)
        for number in {p for _, p in revoked}:
            state = self.stage1.joins.get(number)
            if state is not None:
                self._parked[number] = state
        self.stage1.drop_partitions(sorted(revoked))
        for tp in revoked:
            self._committed.pop(tp, None)
        log.info("data plane: revoked %s", sorted(revoked))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._restore(sorted({tp.partition for tp in partitions}))
        log.info("data plane: assigned %s", sorted((tp.topic, tp.partition) for tp in partitions))

    def _restore(self, numbers: list[int]) -> None:
        """The join state of each partition: kept from before the rebalance, or read from its changelog.

        Runs inside the rebalance callback, before any message of the partitions is processed; all
        partitions are read with one consumer, in short polls, so a small changelog costs milliseconds.
        """
        reader = Consumer({**self.settings.kafka_consumer(), "group.id": f"{self.group_id}-restore",
                           "enable.auto.commit": False})  # fmt: skip
        try:
            ends: dict[int, int] = {}
            for partition in numbers:
                low, high = reader.get_watermark_offsets(
                    TopicPartition(self.joins_topic, partition), timeout=30
                )
                parked = self._parked.pop(partition, None)
                if parked is not None and self._changelog_end.get(partition) == high:
                    self.stage1.joins[partition] = parked  # nobody wrote to it since: our state is current
                elif high > low:
                    self.stage1.joins.pop(partition, None)
                    ends[partition] = high
            if not ends:
                return
            started, applied = time.monotonic(), 0
            reader.assign([TopicPartition(self.joins_topic, p, OFFSET_BEGINNING) for p in ends])
            remaining = dict(ends)
            while remaining:
                for message in reader.consume(5000, timeout=0.05):
                    if message.error() is not None:
                        continue
                    partition = message.partition() or 0
                    self.stage1.join_state(partition).apply(message.value())
                    applied += 1
                    if (message.offset() or 0) + 1 >= remaining.get(partition, 0):
                        remaining.pop(partition, None)
                if remaining and time.monotonic() - started > 120:
                    raise DeliveryFailed(f"could not read {self.joins_topic} {sorted(remaining)} in 120 s")
            self._changelog_end.update(ends)
            entries = sum(len(self.stage1.join_state(p)) for p in ends)
            self.restored_entries += entries
            log.info(
                "restored the join state of partitions %s: %d entries from %d changelog messages in %.2f s",
                sorted(ends), entries, applied, time.monotonic() - started,
            )  # fmt: skip
        finally:
            reader.close()

    def _close(self, consumer: Consumer) -> None:
        """Leave the group (a static member's close alone does not), then close."""
        try:
            consumer.unsubscribe()
            deadline = time.monotonic() + LEAVE_TIMEOUT_SECONDS
            while consumer.memberid() and time.monotonic() < deadline:
                consumer.poll(0.1)
        except (KafkaException, RuntimeError) as error:
            log.info("leaving the group: %s", error)
        finally:
            consumer.close()
            self.producer.flush(10)
