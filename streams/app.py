"""Builds the faust App from settings; topics, tables and agents live in their own modules."""

from __future__ import annotations

import faust

from modelmon.settings import Settings


def broker_url(bootstrap: str) -> str:
    """faust's broker URL for a comma-separated bootstrap list.

    >>> broker_url("k1:9092,k2:9092")
    'kafka://k1:9092;kafka://k2:9092'
    """
    hosts = [host.strip() for host in bootstrap.split(",") if host.strip()]
    return ";".join(f"kafka://{host}" for host in hosts)


def build_app(settings: Settings, *, partitions: int) -> faust.App:
    """The faust App of a modelmon worker.

    ``partitions`` is the partition count of the input topics: faust tables must have the same
    count as the topics they are co-partitioned with.
    """
    return faust.App(
        settings.app_id,
        broker=broker_url(settings.kafka_bootstrap),
        store=settings.table_store,
        datadir=str(settings.worker_data_dir),
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        # Short session timeout: fast rebalances on the embedded brokers (see docs/broker.md).
        broker_session_timeout=settings.broker_session_timeout,
        broker_commit_interval=settings.commit_interval,
        producer_acks=-1,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind="127.0.0.1",
    )
