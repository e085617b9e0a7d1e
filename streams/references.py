"""The compacted ``reference-profiles`` topic: publishing reference profiles, and the catalog workers read."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Self

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from detectors.profiles import ReferenceProfile
from detectors.profiles.records import ReferenceRecord, newest_complete, profile_of, reference_records
from modelmon.admin import ensure_topics, topic_partitions
from modelmon.references import InvalidReferenceMessage
from modelmon.settings import Settings
from streams.idle import IdleCheck, pause_while_idle

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ReferenceCatalog",
    "ReferenceListener",
    "ReferencePublishError",
    "ensure_reference_topic",
    "publish_reference",
]

MAX_MESSAGE_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes`` (and Kafka's default limit): larger records are refused."""

IDLE_SLEEP_MAX = 1.0
"""Longest pause of an idle catalog between two looks at the topic (seconds)."""

QUIET_SECONDS = 1.0
"""With no message for this long, the catalog counts as caught up even if end offsets say otherwise."""

# Not idempotent: a retried duplicate is the same key and value, harmless on a compacted topic, and
# a one-shot idempotent producer spends ~0.5 s getting its producer id.
PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 5,
}

ReferenceListener = Callable[[str, str, ReferenceProfile | None], None]
"""Called as ``listener(model_id, model_version, profile)`` when a version's profile changes (None = gone)."""


class ReferencePublishError(RuntimeError):
    """A reference could not be published (too large, or not delivered)."""


def ensure_reference_topic(settings: Settings) -> str:
    """Create the compacted reference topic if it is missing; return its name."""
    name = settings.topics.reference_profiles
    ensure_topics(
        settings.kafka_common(),
        [name],
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
        compacted=[name],
    )
    return name


def publish_reference(
    settings_or_producer: Settings | Producer,
    model_id: str,
    version: str,
    profile: ReferenceProfile,
    source: str,
    *,
    topic: str | None = None,
    created_at: datetime | None = None,
    timeout: float = 30.0,
) -> int:
    """Publish one message per feature of ``profile``; return how many were delivered (all of them).

    With :class:`Settings`, the compacted topic is created if missing and a producer is made for
    the call. With a ``Producer`` (a worker's), ``topic`` is required and the topic must exist;
    the call flushes that producer. Raises :class:`ReferencePublishError` when a record exceeds
    :data:`MAX_MESSAGE_BYTES` (nothing is sent then) or a message is not delivered in ``timeout``.
    """
    records = reference_records(model_id, version, profile, source, created_at=created_at)
    messages = [(record.key.encode(), record.to_json(), record.feature) for record in records]
    too_large = [(feature, len(value)) for _, value, feature in messages if len(value) > MAX_MESSAGE_BYTES]
    if too_large:
        details = ", ".join(f"{feature} ({size} bytes)" for feature, size in too_large)
        raise ReferencePublishError(
            f"reference of {model_id} version {version}: record(s) over {MAX_MESSAGE_BYTES} bytes: "
            f"{details}; use a smaller sample size"
        )
    if isinstance(settings_or_producer, Settings):
        topic = topic or ensure_reference_topic(settings_or_producer)
        producer = Producer({**settings_or_producer.kafka_common(), **PRODUCER_CONFIG})
    elif topic is None:
        raise ValueError("publish_reference with a producer needs topic=")
    else:
        producer = settings_or_producer
    failures: list[str] = []
    delivered = 0

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        nonlocal delivered
        if error is None:
            delivered += 1
        else:
            failures.append(f"{(message.key() or b'').decode()}: {error.str()}")

    for key, value, _ in messages:
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
    remaining = producer.flush(timeout)
    if failures or remaining:
        problems = "; ".join(failures) or f"{remaining} message(s) not delivered within {timeout} s"
        raise ReferencePublishError(f"publishing the reference of {model_id} version {version}: {problems}")
    logger.info(
        "published reference %s version %s (%s): %d features to %s, largest message %d bytes",
        model_id, version, source, delivered, topic, max(len(value) for _, value, _ in messages),
    )  # fmt: skip
    return delivered


class ReferenceCatalog:
    """The latest reference profile of every model version, read from the compacted topic.

    A background thread assigns itself every partition of the topic from the beginning (no consumer
    group: nothing is committed, every catalog reads everything) and keeps the latest record per
    key; a tombstone (empty value) removes a key. :meth:`get` assembles a version's newest complete
    publication. Reads are thread-safe. Invalid messages are logged and counted in ``invalid``.

    Partitions added to the topic after :meth:`start` are not read until a restart.
    """

    def __init__(self, settings: Settings, *, poll_timeout: float = 0.2) -> None:
        self.settings = settings
        self.topic = settings.topics.reference_profiles
        self.poll_timeout = poll_timeout
        self.listeners: list[ReferenceListener] = []
        self.invalid = 0
        self.consumed = 0
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], dict[str, ReferenceRecord]] = {}
        self._profiles: dict[tuple[str, str], ReferenceProfile] = {}
        self._chosen: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the consumer thread (creates the compacted topic first if it is missing)."""
        if self._thread is not None:
            raise RuntimeError("the catalog is already started")
        ensure_reference_topic(self.settings)
        self._thread = threading.Thread(target=self._run, name=f"reference-catalog:{self.topic}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and close its consumer. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_until_caught_up(self, timeout: float) -> bool:
        """Wait until every partition has been read to its end once; ``False`` after ``timeout`` s.

        The end is where a fetch reports end-of-partition (the high watermark of the Fetch
        response), not ListOffsets: Tansu 0.6.0 under-reports ListOffsets (measured: end offset 1
        for a partition holding 4 records written in one batch; docs/broker.md). As a fallback the
        topic also counts as read once no message has arrived for :data:`QUIET_SECONDS`.
        """
        return self._caught_up.wait(timeout)

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    @property
    def error(self) -> BaseException | None:
        """What stopped the consumer thread, if it stopped on an error."""
        return self._error

    # -- reads -------------------------------------------------------------------------------------

    def get(self, model_id: str, version: str) -> ReferenceProfile | None:
        """The profile of exactly this model version, or ``None`` (no fallback to another version)."""
        with self._lock:
            return self._profiles.get((model_id, version))

    def versions(self) -> list[tuple[str, str]]:
        """Every (model_id, model_version) with a complete profile."""
        with self._lock:
            return sorted(self._profiles)

    # -- the consumer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        consumer = Consumer(
            {
                **self.settings.kafka_consumer(),
                # Required by librdkafka even without subscribe(); unique, and never committed.
                "group.id": f"{self.settings.app_id}-references-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )
        try:
            count = topic_partitions(self.settings.kafka_common(), [self.topic]).get(self.topic, 0)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(count)])
            self._consume(consumer, set(range(count)))
        except Exception as error:  # the thread must not die silently
            self._error = error
            logger.exception("reference catalog on %s stopped", self.topic)
        finally:
            consumer.close()

    def _consume(self, consumer: Consumer, pending: set[int]) -> None:
        """Poll until stopped; ``pending`` = the partitions not yet read to their end."""
        # The quiet rule counts from the first fetch result only, so a slow first fetch is not
        # mistaken for an empty topic.
        last_message: float | None = None
        idle = 0.0
        read_to_end = IdleCheck(consumer)
        while not self._stop.is_set():
            message = consumer.poll(self.poll_timeout)
            now = time.monotonic()
            if message is None and self._caught_up.is_set() and read_to_end.caught_up():
                # Read to the end: wait without spinning (streams.idle). References change rarely;
                # a new one is read within IDLE_SLEEP_MAX seconds.
                idle = min(max(idle * 2, 0.05), IDLE_SLEEP_MAX)
                pause_while_idle(consumer, idle, self._stop)
                continue
            idle = 0.0
            if message is not None:
                last_message = last_message or now
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                elif error is not None:
                    logger.warning("reference topic %s: %s", self.topic, error.str())
                else:
                    last_message = now
                    self._apply(message)
            quiet = last_message is not None and now - last_message >= QUIET_SECONDS
            if not self._caught_up.is_set() and (not pending or quiet):
                logger.info("reference catalog caught up on %s: %d profiles", self.topic, len(self._profiles))
                self._caught_up.set()

    def _apply(self, message: Message) -> None:
        self.consumed += 1
        raw_key, value = message.key(), message.value()
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        try:
            key = (raw_key or b"").decode()
            if not value:
                self._remove(key)
                return
            record = ReferenceRecord.from_json(value)
            if record.key != key:
                raise InvalidReferenceMessage(f"key {key!r} does not match the record ({record.key!r})")
        except (InvalidReferenceMessage, UnicodeDecodeError) as error:
            self.invalid += 1
            logger.warning("invalid reference message %s (ignored): %s", where, error)
            return
        self._update((record.model_id, record.model_version), record.feature, record)

    def _remove(self, key: str) -> None:
        model_id, _, rest = key.partition("|")
        version, _, feature = rest.rpartition("|")
        self._update((model_id, version), feature, None)

    def _update(self, version_key: tuple[str, str], feature: str, record: ReferenceRecord | None) -> None:
        with self._lock:
            records = self._records.setdefault(version_key, {})
            if record is None:
                records.pop(feature, None)
            else:
                records[feature] = record
            chosen = newest_complete(records.values()) or []
            identity = [(r.reference_id, r.feature) for r in chosen]
            if identity == self._chosen.get(version_key, []):
                return  # e.g. a feature of a newer publication still arriving, or a duplicate
            profile = profile_of(chosen) if chosen else None
            if profile is None:
                self._chosen.pop(version_key, None)
                self._profiles.pop(version_key, None)
            else:
                self._chosen[version_key] = identity
                self._profiles[version_key] = profile
        self._notify(*version_key, profile)

    def _notify(self, model_id: str, version: str, profile: ReferenceProfile | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(model_id, version, profile)
            except Exception:
                logger.exception("reference listener %r failed on %s version %s", listener, model_id, version)
