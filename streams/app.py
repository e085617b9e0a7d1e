"""Builds the faust App from settings; topics, tables and agents live in their own modules."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
import ssl
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import faust
import faust.streams as faust_streams
from faust.types import EventT
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


def _leave_group_on_clean_stop(app: Any, *_: Any, **__: Any) -> None:
    """Let a cleanly stopping worker leave the group at once, as without static membership.

    aiokafka does not send LeaveGroup for a static member, so its partitions would wait for the
    session timeout on Kafka, and forever on noida-db (it never expires a silent member). Runs on
    ``on_before_shutdown``, after the consumer stopped fetching and before aiokafka closes it.
    """
    thread = getattr(getattr(app, "_consumer", None), "_thread", None)
    if thread is not None and getattr(thread, "_consumer", None) is None:
        return  # the Kafka consumer never started: there is no membership to end
    coordinator = getattr(getattr(thread, "_consumer", None), "_coordinator", None)
    if coordinator is not None and hasattr(coordinator, "_group_instance_id"):
        coordinator._group_instance_id = None
    elif getattr(app, "_consumer", None) is not None:  # pragma: no cover - faust/aiokafka moved these
        log.warning("could not reach aiokafka's group coordinator; this worker leaves by session timeout")


def build_app(settings: Settings, *, partitions: int) -> faust.App:
    """The faust App of a modelmon worker.

    ``partitions`` is the partition count of the input topics: faust tables must have the same
    count as the topics they are co-partitioned with.
    """
    app = faust.App(
        settings.app_id,
        broker=broker_url(settings.kafka_bootstrap),
        broker_credentials=broker_credentials(settings.kafka_config),
        store=settings.table_store,
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
    # mypy does not match this plain handler to mode's SignalHandlerT (mypy_extensions NamedArg).
    app.on_before_shutdown.connect(_leave_group_on_clean_stop)  # type: ignore[arg-type]
    seek_uncommitted_to_start(app)
    return app


def seek_uncommitted_to_start(app: faust.App) -> None:
    """Make faust's "seek to committed offsets" also rewind partitions that have no committed offset.

    After a rebalance faust rewinds every stream partition to its committed offset, because records
    fetched around the rebalance (during table recovery, or while the flow was stopped) are
    discarded without being processed. aiokafka's ``seek_to_committed`` only seeks partitions whose
    committed offset is above 0, so a partition with nothing committed yet kept its fetch position
    past the discarded records, and they were never processed by this worker (measured on the
    embedded broker: a second worker joining while the first had not committed yet processed none
    of its partitions' events). Stage 1 commits only when a chunk closes, so such partitions are
    common at the start. Here those partitions are rewound to offset 0 (the broker's reset policy,
    earliest, applies if the log starts later); re-reading is safe, as after any rebalance
    (streams.stage1: replay-safe join, a chunk's partials replaced by revision).
    Changelog partitions are left to faust's table recovery.
    """
    consumer = app.consumer
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_start() -> Mapping[Any, int]:
        committed = await seek_to_committed()
        changelogs = app.tables.changelog_topics
        for tp, offset in committed.items():
            if (offset is None or offset <= 0) and tp.topic not in changelogs:
                await consumer.seek(faust.types.TP(tp.topic, tp.partition), 0)
        return committed

    consumer.seek_to_committed = seek_to_committed_or_start  # type: ignore[method-assign]


@contextmanager
def changelog_partition_of(event: EventT) -> Iterator[None]:
    """Make table writes inside the block go to the changelog partition of ``event``.

    faust sends a table write to the changelog partition of the *current event*, a context
    variable; a batch mixes partitions, so each partition's keys are written under one of its own
    events. Only the context variable is set (and restored): the stream's ``current_event``
    attribute is left untouched.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


async def publish_all(topic: faust.TopicT, items: Sequence[tuple[bytes, bytes]]) -> None:
    """Send (key, value) pairs and return once the broker has acknowledged every one of them."""
    pending = [await topic.send(key=key, value=value) for key, value in items]
    await asyncio.gather(*pending)
