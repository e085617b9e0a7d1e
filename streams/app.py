"""Builds the faust App from settings; topics, tables and agents live in their own modules."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import faust
from confluent_kafka import Consumer, TopicPartition
from faust.types import TP, EventT
from faust.types.auth import CredentialsT

from modelmon.settings import Settings

log = logging.getLogger(__name__)

SUPPORTED_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def broker_url(bootstrap: str) -> str:
    """faust's broker URL for a comma-separated bootstrap list.

    >>> broker_url("k1:9092,k2:9092")
    'kafka://k1:9092;kafka://k2:9092'
    """
    hosts = [host.strip() for host in bootstrap.split(",") if host.strip()]
    return ";".join(f"kafka://{host}" for host in hosts)


def _ssl_context(config: Mapping[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.get("ssl.ca.location"))
    certificate = config.get("ssl.certificate.location")
    if certificate:
        context.load_cert_chain(certificate, config.get("ssl.key.location"), config.get("ssl.key.password"))
    return context


def broker_credentials(config: Mapping[str, str]) -> CredentialsT | None:
    """faust credentials from the librdkafka settings in ``MODELMON_KAFKA_CONFIG``.

    The same settings then secure every client: the SDK, the sink and admin use librdkafka, the
    worker uses faust (aiokafka). Supported: ``security.protocol``, ``sasl.mechanism``
    (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI), ``sasl.username``, ``sasl.password``,
    ``sasl.kerberos.service.name``, ``ssl.ca.location``, ``ssl.certificate.location``,
    ``ssl.key.location``, ``ssl.key.password``.

    >>> broker_credentials({}) is None
    True
    >>> broker_credentials({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
    ...                     "sasl.username": "u", "sasl.password": "p"}).mechanism.value
    'SCRAM-SHA-512'
    """
    protocol = config.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in SUPPORTED_PROTOCOLS:
        valid = ", ".join(SUPPORTED_PROTOCOLS)
        raise ValueError(f"security.protocol {protocol!r} is not supported; valid: {valid}")
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(config) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    mechanism = config.get("sasl.mechanism", "PLAIN").upper()
    if mechanism == "GSSAPI":
        return faust.GSSAPICredentials(
            kerberos_service_name=config.get("sasl.kerberos.service.name", "kafka"), ssl_context=context
        )
    return faust.SASLCredentials(
        username=config.get("sasl.username"),
        password=config.get("sasl.password"),
        ssl_context=context,
        mechanism=mechanism,
    )


def worker_instance_id(settings: Settings, hostname: str | None = None) -> str:
    """The worker's static group membership id (Kafka ``group.instance.id``, KIP-345).

    Stable across restarts of one worker and distinct between workers: the host name plus a hash
    of the resolved ``worker_data_dir``, which each worker owns (two workers must not share one,
    see docs/deploy.md). Only ``[A-Za-z0-9._-]``, as Kafka requires.

    >>> from pathlib import Path
    >>> worker_instance_id(Settings(worker_data_dir=Path("/var/lib/modelmon/worker")), "box 1")
    'worker-box-1-deadb2cf15'
    """
    host = re.sub(r"[^A-Za-z0-9._-]", "-", hostname if hostname is not None else socket.gethostname())
    digest = hashlib.sha256(str(settings.worker_data_dir.resolve()).encode()).hexdigest()[:10]
    return f"worker-{host[:64] or 'host'}-{digest}"


def build_app(settings: Settings, *, partitions: int) -> faust.App:
    """The faust App of a modelmon worker.

    ``partitions`` is the partition count of the input topics: faust tables must have the same
    count as the topics they are co-partitioned with.
    """
    app = faust.App(
        settings.app_id,
        broker=broker_url(settings.kafka_bootstrap),
        broker_credentials=broker_credentials(settings.kafka_config),
        store="memory://",  # the agents' state is in streams.state, not in faust tables
        datadir=str(settings.worker_data_dir),
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        # Short session timeout: fast rebalances on the embedded brokers (see docs/broker.md).
        broker_session_timeout=settings.broker_session_timeout,
        # Static membership: a worker restarted after a crash (kill -9, OOM) takes over its old
        # member at once instead of waiting for it to expire. On noida-db this is what lets it
        # rejoin at all: noida never expires a member that stopped heartbeating, and keeps a dead
        # leader as leader (docs/broker.md, "Killed workers and group rejoin").
        consumer_group_instance_id=worker_instance_id(settings),
        broker_commit_interval=settings.commit_interval,
        producer_acks=-1,
        # Batch the worker's sends for up to 10 ms (faust's default 0 sends each join-table changelog
        # record alone): +26-35% events/s in bench/bench_pipeline.py.
        producer_linger=settings.producer_linger,
        # Stage 1 and 2 hold messages unacknowledged on purpose until their output is published;
        # waiting for them at shutdown would only delay it: they are replayed by the next owner.
        stream_wait_empty=False,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind="127.0.0.1",
    )
    return app


class StaleAssignment(RuntimeError):
    """Work of a partition this worker no longer holds (revoked, or being restored after a rebalance).

    Raised by a state write that comes too late; the work it belongs to is abandoned, not
    dead-lettered: its events were not acknowledged, and the partition's owner replays them.
    """


_WRITE_PARTITION: contextvars.ContextVar[int | None] = contextvars.ContextVar("write_partition", default=None)


def write_partition() -> int | None:
    """The partition named by the innermost :func:`changelog_partition_of` (None outside one)."""
    return _WRITE_PARTITION.get()


@contextmanager
def changelog_partition_of(event: EventT) -> Iterator[None]:
    """Make state writes inside the block go to the partition of ``event`` (``streams.state``).

    Our agents process batches that mix partitions: each write names the partition it belongs to.
    """
    token = _WRITE_PARTITION.set(event.message.partition)
    try:
        yield
    finally:
        _WRITE_PARTITION.reset(token)


class StartOffsets:
    """Where a partition of the worker's faust group must be read from after an assignment.

    The committed offset of the group, or the partition's first offset when nothing is committed
    (:meth:`streams.batching.EventBatcher._in_sequence` rewinds a partition that starts later).
    Looked up with confluent-kafka outside the event loop.
    """

    def __init__(self, settings: Settings) -> None:
        self._consumer = Consumer({**settings.kafka_consumer(), "group.id": settings.app_id,
                                   "enable.auto.commit": False})  # fmt: skip
        self._lock = asyncio.Lock()

    async def __call__(self, topic: str, partition: int) -> int:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(None, self._lookup, topic, partition)

    def _lookup(self, topic: str, partition: int) -> int:
        tp = TopicPartition(topic, partition)
        (committed,) = self._consumer.committed([tp], timeout=30)
        low, _ = self._consumer.get_watermark_offsets(tp, timeout=30)
        return max(committed.offset, low) if committed.offset >= 0 else low


def seeker(app: faust.App) -> Callable[[str, int, int], Awaitable[None]]:
    """faust's public ``Consumer.seek`` for a (topic, partition, offset)."""

    async def seek(topic: str, partition: int, offset: int) -> None:
        await app.consumer.seek(TP(topic, partition), offset)

    return seek


async def publish_all(topic: faust.TopicT, items: Sequence[tuple[bytes, bytes]]) -> None:
    """Send (key, value) pairs and return once the broker has acknowledged every one of them."""
    pending = [await topic.send(key=key, value=value) for key, value in items]
    await asyncio.gather(*pending)
