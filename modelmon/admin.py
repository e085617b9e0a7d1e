"""Kafka topic administration: create the topics modelmon needs and read their partition counts."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

logger = logging.getLogger(__name__)

BootstrapOrConfig = str | Mapping[str, Any] | AdminClient


class TopicAdminError(RuntimeError):
    """A topic could not be created, or did not show up in the metadata in time."""


class TopicLayoutError(RuntimeError):
    """Topics that must agree on their partition counts do not (created apart, or auto-created)."""


REBALANCING_ERRORS = frozenset({
    KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._ASSIGNMENT_LOST, KafkaError._NO_OFFSET, KafkaError._STATE,
    # The group coordinator is not known (yet) or moved: after a broker restart, for one.
    KafkaError._WAIT_COORD, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
})  # fmt: skip
"""Errors of an offset commit while the consumer group rebalances or looks for its coordinator: skip
the commit; what it covered is committed by a later one, or read again by the partitions' next owner
(whose outputs replace the earlier copies)."""


def admin_client(bootstrap_or_config: BootstrapOrConfig) -> AdminClient:
    """An ``AdminClient`` from a bootstrap string, a librdkafka config mapping, or the client itself."""
    if isinstance(bootstrap_or_config, AdminClient):
        return bootstrap_or_config
    if isinstance(bootstrap_or_config, str):
        return AdminClient({"bootstrap.servers": bootstrap_or_config})
    return AdminClient(dict(bootstrap_or_config))


def _cluster_metadata(admin: AdminClient, timeout: float) -> ClusterMetadata:
    # Always the all-topics request: a metadata request naming a topic auto-creates it on noida-db
    # (1 partition) and Tansu (4 partitions), whatever allow.auto.create.topics says.
    return admin.list_topics(timeout=timeout)


def topic_partitions(
    bootstrap_or_config: BootstrapOrConfig,
    names: Iterable[str] | None = None,
    timeout: float = 10.0,
) -> dict[str, int]:
    """Partition count of each existing topic (of ``names`` only, when given), without creating any.

    Topics in ``names`` that do not exist (or report an error) are left out of the result.
    """
    metadata = _cluster_metadata(admin_client(bootstrap_or_config), timeout)
    wanted = None if names is None else set(names)
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if topic.error is None and topic.partitions and (wanted is None or name in wanted)
    }


def ensure_topics(
    bootstrap_or_config: BootstrapOrConfig,
    names: Iterable[str],
    partitions: int,
    replication: int = 1,
    compacted: Iterable[str] = (),
    timeout: float = 30.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, int]:
    """Create the topics of ``names`` that are missing, wait until the metadata shows all of them.

    Idempotent: existing topics are left as they are (a concurrent creator is fine), so the
    returned partition count of a topic that already existed may differ from ``partitions``;
    that is logged as a warning. Topics in ``compacted`` (a subset of ``names``) get
    ``cleanup.policy=compact``; ``configs`` adds topic settings per name (e.g. ``retention.ms``) to
    the topics it creates. Returns ``{name: partition count}`` for every name.

    Measured: CreateTopics with N partitions and ``cleanup.policy`` works on noida-db 0.2.3 and
    Tansu 0.6.0; noida-db refuses ``replication > 1`` (one broker), Tansu accepts and ignores it.
    """
    wanted = list(dict.fromkeys(names))
    to_compact = set(compacted)
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if replication < 1:
        raise ValueError(f"replication must be >= 1, got {replication}")
    if not to_compact <= set(wanted):
        raise ValueError(f"compacted topics not in names: {sorted(to_compact - set(wanted))}")
    admin = admin_client(bootstrap_or_config)
    deadline = time.monotonic() + timeout
    existing = topic_partitions(admin, wanted, timeout=timeout)
    missing = [name for name in wanted if name not in existing]
    if missing:
        _create(admin, missing, partitions, replication, to_compact, timeout, configs or {})
    counts = _wait_for_topics(admin, wanted, deadline)
    for name, count in counts.items():
        if name in existing and count != partitions:
            logger.warning("topic %s already exists with %d partitions, not %d", name, count, partitions)
    return counts


def _create(
    admin: AdminClient,
    names: list[str],
    partitions: int,
    replication: int,
    compacted: set[str],
    timeout: float,
    configs: Mapping[str, Mapping[str, str]],
) -> None:
    new_topics = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication,
            config={**({"cleanup.policy": "compact"} if name in compacted else {}), **configs.get(name, {})},
        )
        for name in names
    ]
    futures = admin.create_topics(new_topics, request_timeout=timeout, operation_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                logger.debug("topic %s was created concurrently", name)
                continue
            raise TopicAdminError(f"could not create topic {name!r}: {error.str()}") from exc
        logger.info("created topic %s (%d partitions)", name, partitions)


def _wait_for_topics(admin: AdminClient, names: list[str], deadline: float) -> dict[str, int]:
    while True:
        counts = topic_partitions(admin, names, timeout=max(deadline - time.monotonic(), 1.0))
        if len(counts) == len(names):
            return {name: counts[name] for name in names}
        if time.monotonic() > deadline:
            absent = sorted(set(names) - set(counts))
            raise TopicAdminError(f"topics not visible in the metadata in time: {', '.join(absent)}")
        time.sleep(0.05)
