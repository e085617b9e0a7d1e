"""The control plane's state store on the real broker and rocksdict: a write that comes after its
partition was revoked, or while it is being restored, is refused (StaleAssignment) and never reaches the
changelog; a restored partition reopens on disk and holds every accepted write."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelmon.admin import TopicLayoutError, ensure_topics, topic_partitions
from modelmon.app.broker import EmbeddedBroker
from modelmon.settings import Settings
from streams.app import StaleAssignment, changelog_partition_of
from streams.state import StateStore, StateStores, ensure_state_topics, state_producer, state_topic
from tests.workers import make_settings

pytestmark = pytest.mark.integration


@dataclass
class Message:
    partition: int


@dataclass
class Event:
    message: Message


def on(partition: int) -> Any:
    """An event of ``partition`` as :func:`changelog_partition_of` reads it."""
    return Event(Message(partition))


@pytest.mark.parametrize("table_store", ["rocksdb://", "memory://"])
def test_writes_to_a_partition_not_held_are_refused_and_never_logged(
    kafka_broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path, table_store: str
) -> None:
    def worker(name: str) -> Settings:
        bootstrap = kafka_broker.bootstrap
        return make_settings(bootstrap, topic_prefix, tmp_path / name, tmp_path, table_store=table_store)

    settings = worker("a")
    ensure_state_topics(settings, ["closed-windows"], 2)
    producer = state_producer(settings)
    store = StateStore(settings, "closed-windows", 2, producer=producer)
    assert store.restore({0, 1}) == 0
    with changelog_partition_of(on(0)):
        store["a"] = {"n": 1}
    with changelog_partition_of(on(1)):
        store["b"] = {"n": 2}
    asyncio.run(store.flush())

    # What a rebalance does on the event loop before the restore runs in a thread: a window closed by
    # work that started earlier must not write into the partition being rebuilt (it once reopened the
    # partition's rocksdb directory under the restore: "lock hold by current process").
    store.disown({1})
    with pytest.raises(StaleAssignment, match="partition 1 is not held"), changelog_partition_of(on(1)):
        store["late"] = {"n": 3}
    with pytest.raises(StaleAssignment):
        del store["b"]
    assert store.restore({1}) == 1  # reopened on disk, rebuilt from the changelog: "b" only
    assert dict(store) == {"a": {"n": 1}, "b": {"n": 2}}
    with changelog_partition_of(on(1)):
        store["c"] = 3  # held again: accepted

    store.drop({0})  # revoked
    with pytest.raises(StaleAssignment), changelog_partition_of(on(0)):
        store["a"] = {"n": 4}
    assert "a" not in store
    asyncio.run(store.flush())

    # The next owner (another data directory) reads every accepted write and none of the refused ones.
    other = StateStore(worker("b"), "closed-windows", 2, producer=producer)
    other.restore({0, 1})
    assert dict(other) == {"a": {"n": 1}, "b": {"n": 2}, "c": 3}


class Signals:
    """The two faust signals StateStores connects to (the stores are not run here)."""

    def __init__(self) -> None:
        self.on_partitions_revoked = self.on_partitions_assigned = self

    def connect(self, handler: Any) -> Any:
        return handler


def test_changelogs_get_the_partition_count_of_their_source_topic_not_the_setting(
    kafka_broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    """A metrics topic with another count than MODELMON_TOPIC_PARTITIONS (inputs auto-created by a
    producer before the worker) once gave the alert state 2 partitions for 3: `_UNKNOWN_PARTITION`."""
    settings = make_settings(kafka_broker.bootstrap, topic_prefix, tmp_path, tmp_path, topic_partitions=2)
    source = f"{topic_prefix}monitor-metrics"
    ensure_topics(settings.kafka_common(), [source], partitions=3)
    stores = StateStores(Signals(), settings, source, ["alert-rules"], state_producer(settings))
    changelog = state_topic(settings, "alert-rules")
    assert topic_partitions(settings.kafka_common(), [changelog]) == {changelog: 3}
    store = stores["alert-rules"]
    store.restore({2})
    with changelog_partition_of(on(2)):
        store["m"] = {"keys": {}}
    asyncio.run(store.flush())  # delivered to partition 2 of the changelog

    # A changelog left from another layout, with fewer partitions than its source: a clear error.
    left = state_topic(settings, "retrain-policy")
    ensure_topics(settings.kafka_common(), [left], partitions=1, compacted=[left])
    with pytest.raises(TopicLayoutError, match=r"retrain-policy-state: 1; they were created for another"):
        StateStores(Signals(), settings, source, ["retrain-policy"], state_producer(settings))
