"""Builds the faust App from settings; topics, tables and agents live in their own modules."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import faust
from faust.types.auth import CredentialsT

from modelmon.settings import Settings

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


def build_app(settings: Settings, *, partitions: int) -> faust.App:
    """The faust App of a modelmon worker.

    ``partitions`` is the partition count of the input topics: faust tables must have the same
    count as the topics they are co-partitioned with.
    """
    return faust.App(
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
        broker_commit_interval=settings.commit_interval,
        producer_acks=-1,
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind="127.0.0.1",
    )
