"""pytest fixtures for a real Kafka-protocol broker: one per session, kind from MODELMON_TEST_BROKER."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from modelmon.app.broker import EmbeddedBroker
from modelmon.app.broker_modes import broker_from_env

__all__ = ["kafka_broker", "topic_prefix"]


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker]:
    """The started broker of the test session: noida-db (default), Tansu, or an external Kafka.

    Set ``MODELMON_TEST_BROKER=tansu`` or ``external`` (with ``MODELMON_TEST_KAFKA=host:port``).
    Tests share it, so each test names its topics and groups with ``topic_prefix``.
    """
    with broker_from_env() as broker:
        yield broker


@pytest.fixture
def topic_prefix() -> str:
    """A prefix unique to one test, for topic names and consumer group ids, e.g. ``t1a2b3c4d.``."""
    return f"t{uuid.uuid4().hex[:8]}."
