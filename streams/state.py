"""Keyed state of the control plane (closed windows, change detectors, alert rules, retrain policy).

Each store is partitioned like the topic its keys come from (``monitor-partials`` or
``monitor-metrics``: by model id), held in memory or on disk (``MODELMON_TABLE_STORE``:
``memory://`` or ``rocksdb://``, rocksdict), and logged to a compacted changelog topic,
``<prefix><app id>-<name>-state``, that this module writes with confluent-kafka. Why not faust
tables: our agents process batches that mix partitions, and faust decides the partition of a table
write (its store's and its changelog's) from the event being iterated, which only its private API
can set. So the partition of a write is named here, by the caller, with
:func:`~streams.app.changelog_partition_of`.

Guarantee: a writer calls :meth:`StateStore.flush` before it releases the events whose effect it
wrote, so a committed input offset never passes an unlogged write. When a worker is assigned
partitions it first clears them and reads their changelog partitions from the start
(:meth:`StateStore.restore`), before the agent processes an event (faust's
``on_partitions_assigned`` signal); a compacted changelog keeps one record per key.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from modelmon.admin import TopicLayoutError, ensure_topics, topic_partitions
from modelmon.settings import Settings
from streams.app import StaleAssignment, write_partition

log = logging.getLogger(__name__)


class StateWriteFailed(RuntimeError):
    """A state change could not be logged: the events it came from must not be released."""


def state_topic(settings: Settings, name: str) -> str:
    return f"{settings.topic_prefix}{settings.app_id}-{name}-state"


class StateStore(MutableMapping[str, Any]):
    """A partitioned key-value store of JSON values with a changelog topic of its own.

    Reads look a key up in every partition held here; a write goes to the partition named by the
    caller (:func:`~streams.app.changelog_partition_of`), or to ``partition`` when there is none.
    """

    def __init__(self, settings: Settings, name: str, partitions: int, *, producer: Producer) -> None:
        self.settings = settings
        self.name = name
        self.topic = state_topic(settings, name)
        self.partitions = partitions
        self._producer = producer
        self._on_disk = settings.table_store.startswith("rocksdb")
        self._directory = Path(settings.worker_data_dir) / "state" / name
        self._parts: dict[int, MutableMapping[str, Any]] = {}
        self._where: dict[str, int] = {}
        self._owned: set[int] = set()  # assigned and restored: the partitions a write may go to
        self._failed: list[str] = []
        self._lock = threading.Lock()  # restores run in executor threads; one at a time per store

    # -- the mapping -------------------------------------------------------------------------------
    def _part(self, partition: int) -> MutableMapping[str, Any]:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = self._open(partition)
        return part

    def _open(self, partition: int) -> MutableMapping[str, Any]:
        if not self._on_disk:
            return {}
        from rocksdict import Rdict  # only with MODELMON_TABLE_STORE=rocksdb://

        path = self._directory / str(partition)
        shutil.rmtree(path, ignore_errors=True)  # rebuilt from the changelog on every assignment
        path.parent.mkdir(parents=True, exist_ok=True)
        return Rdict(str(path))  # type: ignore[return-value]

    def __getitem__(self, key: str) -> Any:
        partition = self._where.get(key)
        if partition is None:
            raise KeyError(key)
        return self._parts[partition][key]

    def __setitem__(self, key: str, value: Any) -> None:
        partition = write_partition()
        if partition is None:
            raise RuntimeError(f"write to state {self.name!r} outside changelog_partition_of(...)")
        self._check_owned(partition)
        old = self._where.get(key)
        if old is not None and old != partition:
            del self._parts[old][key]
        self._part(partition)[key] = value
        self._where[key] = partition
        self._log(partition, key, orjson.dumps(value))

    def __delitem__(self, key: str) -> None:
        partition = self._where[key]
        self._check_owned(partition)
        del self._where[key]
        del self._parts[partition][key]
        self._log(partition, key, None)

    def _check_owned(self, partition: int) -> None:
        # Work that started before a rebalance may try to write after it: the partition's state is
        # then someone else's (or being rebuilt here), and the write must not touch it.
        if partition not in self._owned:
            raise StaleAssignment(f"state {self.name}: partition {partition} is not held by this worker "
                                  "(revoked, or being restored)")  # fmt: skip

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._where))

    def __len__(self) -> int:
        return len(self._where)

    # -- the changelog ---------------------------------------------------------------------------
    def _log(self, partition: int, key: str, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key.encode(), partition=partition,
                                       on_delivery=self._delivered)  # fmt: skip
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed.append(f"{message.topic()}[{message.partition()}]: {error}")

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every write is in the changelog; raises :class:`StateWriteFailed` otherwise."""
        remaining = await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, timeout)
        if remaining or self._failed:
            failed, self._failed = self._failed, []
            raise StateWriteFailed(f"state {self.name}: {remaining} writes undelivered; {failed[:3]}")

    # -- assignment ------------------------------------------------------------------------------
    def disown(self, partitions: Iterable[int]) -> None:
        """Refuse writes to ``partitions`` from now on (called on the event loop before a restore)."""
        self._owned.difference_update(partitions)

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions (their next owner restores them from the changelog)."""
        revoked = set(partitions)
        self.disown(revoked)
        with self._lock:
            self._drop(revoked)

    def _drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            part = self._parts.pop(partition, None)
            if part is None:
                continue
            for key in [k for k, p in list(self._where.items()) if p == partition]:
                del self._where[key]
            close = getattr(part, "close", None)
            if close is not None:
                close()

    def restore(self, partitions: Iterable[int]) -> int:
        """Rebuild ``partitions`` from their changelog partitions (blocking); returns the records read.

        Writes to them are refused until the rebuild is done; call :meth:`disown` on the event loop
        first when writers may run meanwhile (another thread runs this).
        """
        wanted = sorted(set(partitions))
        self.disown(wanted)
        with self._lock:
            read = self._restore(wanted)
            self._owned.update(wanted)
            return read

    def _restore(self, wanted: list[int]) -> int:
        self._drop(wanted)
        reader = Consumer({**self.settings.kafka_consumer(), "group.id": f"{self.topic}-restore",
                           "enable.auto.commit": False})  # fmt: skip
        read = 0
        try:
            ends = {}
            for partition in wanted:
                self._parts[partition] = self._open(partition)
                low, high = reader.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=30)
                if high > low:
                    ends[partition] = high
            if not ends:
                return 0
            reader.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
            started = time.monotonic()
            while ends:
                for message in reader.consume(5000, timeout=0.05):
                    if message.error() is not None:
                        continue
                    partition, key = message.partition() or 0, (message.key() or b"").decode()
                    value = message.value()
                    read += 1
                    if value is None:
                        if key in self._parts[partition]:
                            del self._parts[partition][key]
                        self._where.pop(key, None)
                    else:
                        self._parts[partition][key] = orjson.loads(value)
                        self._where[key] = partition
                    if (message.offset() or 0) + 1 >= ends.get(partition, 0):
                        ends.pop(partition, None)
                if time.monotonic() - started > 120:
                    raise StateWriteFailed(f"state {self.name}: changelog {self.topic} not read in 120 s")
        finally:
            reader.close()
        log.info("restored state %s partitions %s: %d records, %d keys", self.name, wanted, read, len(self))
        return read


def ensure_state_topics(settings: Settings, names: Iterable[str], partitions: int) -> None:
    """The compacted changelog topics of the control plane's stores, one partition per partition of the
    topic their keys come from; a changelog with fewer partitions (created for another layout) is an
    error that says so, not a write to a partition that does not exist later."""
    topics = [state_topic(settings, name) for name in names]
    counts = ensure_topics(settings.kafka_common(), topics, partitions=partitions,
                           replication=settings.topic_replication, compacted=topics)  # fmt: skip
    short = {name: count for name, count in counts.items() if count < partitions}
    if short:
        shown = ", ".join(f"{name}: {count}" for name, count in sorted(short.items()))
        raise TopicLayoutError(
            f"state changelogs with fewer partitions than the {partitions} of the topic they are keyed by: "
            f"{shown}; they were created for another partition count: delete them (what they hold — saved"
            " closed windows, change-detector and alert state — then starts empty) or recreate the source"
            " topic with their count"
        )


class StateStores:
    """The stores keyed like one topic, restored and dropped with that topic's partitions in faust."""

    def __init__(
        self, app: Any, settings: Settings, topic: str, names: Iterable[str], producer: Producer
    ) -> None:
        self.topic = topic
        # As many as the source topic really has: a producer may have auto-created an input with the
        # broker's default count, and the metrics topic then differs from the inputs.
        partitions = topic_partitions(settings.kafka_common(), [topic]).get(topic)
        if partitions is None:
            raise TopicLayoutError(f"topic {topic} does not exist: the worker creates it at start")
        self.stores = {name: StateStore(settings, name, partitions, producer=producer) for name in names}
        ensure_state_topics(settings, self.stores, partitions)
        self._restored = asyncio.Event()

        @app.on_partitions_revoked.connect
        async def drop_state(app: Any, revoked: set[Any], **kwargs: Any) -> None:
            self._restored.clear()
            self.drop({tp.partition for tp in revoked if tp.topic == topic})

        @app.on_partitions_assigned.connect
        async def restore_state(app: Any, assigned: set[Any], **kwargs: Any) -> None:
            # faust resumes the stream as soon as its own tables are recovered, which may be before
            # this finishes: the agents wait for ready() before they touch the state.
            self._restored.clear()
            partitions = {tp.partition for tp in assigned if tp.topic == topic}
            for store in self.stores.values():
                store.disown(partitions)  # here, on the loop: no write slips in before the restore
            if partitions:
                await asyncio.get_running_loop().run_in_executor(None, self.restore, partitions)
            self._restored.set()

    async def ready(self) -> None:
        """Return once the state of the current assignment is restored."""
        await self._restored.wait()

    def __getitem__(self, name: str) -> StateStore:
        return self.stores[name]

    def drop(self, partitions: set[int]) -> None:
        for store in self.stores.values():
            store.drop(partitions)

    def restore(self, partitions: set[int]) -> None:
        for store in self.stores.values():
            store.restore(partitions)

    async def flush(self) -> None:
        """Every store shares the producer: one flush covers them all."""
        await next(iter(self.stores.values())).flush()


def state_producer(settings: Settings) -> Producer:
    """The producer of the control plane's changelogs (idempotent, acks from all replicas)."""
    return Producer({**settings.kafka_common(), "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                     "compression.type": "lz4"})  # fmt: skip
