"""The sink's group membership: a sink killed with SIGKILL and restarted takes its partitions back
and every MetricPoint lands exactly once; a sink that stops cleanly leaves its group at once.

noida-db never expires a killed member, so without static membership (``group.instance.id``) a
restarted sink got no partitions; and a static member that closes without LeaveGroup keeps them
(docs/broker.md, docs/operations.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from modelmon.admin import ensure_topics
from modelmon.app.broker import EmbeddedBroker
from modelmon.events import MetricPoint, model_to_json
from modelmon.settings import Settings
from sinks.clickhouse import Client
from sinks.consumer import SINK_GROUP_SUFFIX, ClickHouseSink, sink_instance_id
from sinks.writer import ClickHouseWriter
from tests.workers import SinkProcess, make_settings, wait_until

pytestmark = pytest.mark.integration

RESTART_WITHIN = 30.0  # seconds from the restarted sink's start to its first commit
# Tansu 0.6.0 answers DescribeGroups without the members (measured), so they are checked elsewhere.
LISTS_MEMBERS = os.environ.get("MODELMON_TEST_BROKER", "noida").strip().lower() != "tansu"


def sink_settings(broker: EmbeddedBroker, prefix: str, tmp_path: Path, **extra: Any) -> Settings:
    settings = make_settings(
        broker.bootstrap,
        prefix,
        tmp_path,
        tmp_path / "models",
        sink_batch_size=100,
        sink_flush_seconds=0.2,
        **extra,
    )
    topics = settings.topics
    ensure_topics(
        settings.kafka_common(),
        [topics.monitor_metrics, topics.alerts, topics.retrain_requests, topics.dead_letter],
        partitions=settings.topic_partitions,
    )
    return settings


def metric_point(model_id: str, i: int, base: datetime) -> MetricPoint:
    """Point ``i``: 100 features per one-minute window, so every point has its own dedup key."""
    start = base + timedelta(minutes=i // 100)
    return MetricPoint(
        model_id=model_id,
        metric="events",
        feature=f"f{i % 100}",
        window_start=start,
        window_end=start + timedelta(minutes=1),
        value=float(i),
        source="test",
    )


class Committed:
    """The sink group's committed offsets on ``monitor-metrics``, read without joining the group."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.topic = settings.topics.monitor_metrics
        self.partitions = [TopicPartition(self.topic, p) for p in range(settings.topic_partitions)]
        self._consumer = Consumer({**settings.kafka_common(), "group.id": group})

    def offsets(self) -> list[int]:
        return [max(tp.offset, 0) for tp in self._consumer.committed(self.partitions, timeout=10)]

    def total(self) -> int:
        return sum(self.offsets())

    def close(self) -> None:
        self._consumer.close()


def produce_until(
    settings: Settings, model_id: str, stop: threading.Event, produced: list[int], rate: int = 1000
) -> None:
    """Send MetricPoints (about ``rate`` per second, in chunks of 20) until ``stop`` is set."""
    producer = Producer({**settings.kafka_common(), "enable.idempotence": True, "linger.ms": 5})
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)
    i = 0
    while not stop.is_set():
        for _ in range(20):
            point = metric_point(model_id, i, base)
            producer.produce(
                settings.topics.monitor_metrics, key=point.dedup_key(), value=model_to_json(point)
            )
            i += 1
        producer.poll(0)
        time.sleep(20 / rate)
    assert producer.flush(30) == 0
    produced.append(i)


def read_chdb(
    dsn: str, model_id: str, run: Callable[..., subprocess.CompletedProcess[str]]
) -> dict[str, Any]:
    """Rows of ``model_id`` in the chdb directory of a stopped sink, read in a new interpreter."""
    code = f"""
        import json
        from sinks.clickhouse import connect
        client = connect({dsn!r})
        where = "WHERE model_id = {model_id!r}"
        rows = client.query(f"SELECT count() FROM metric_points {{where}}").result_rows[0][0]
        values = [int(v) for (v,) in client.query(
            f"SELECT value FROM metric_points FINAL {{where}} ORDER BY value").result_rows]
        print(json.dumps({{"rows": rows, "values": values}}))
    """
    return dict(json.loads(run(code).stdout.strip().splitlines()[-1]))


def group_instance_ids(settings: Settings, group: str) -> list[str | None]:
    admin = AdminClient({**settings.kafka_common()})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return [member.group_instance_id for member in description.members]


def test_sink_killed_mid_stream_and_restarted_stores_every_point_once(
    kafka_broker: EmbeddedBroker,
    topic_prefix: str,
    tmp_path: Path,
    python_subprocess: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # Its own chdb directory: an embedded engine belongs to one process (the sink child); this
    # test reads it in a new interpreter once the last sink has exited.
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    settings = sink_settings(kafka_broker, topic_prefix, tmp_path, clickhouse_dsn=dsn)
    group = settings.app_id + SINK_GROUP_SUFFIX
    model_id = f"model-{uuid.uuid4().hex[:8]}"
    committed = Committed(settings, group)
    stop_producing = threading.Event()
    produced: list[int] = []
    producer = threading.Thread(target=produce_until, args=(settings, model_id, stop_producing, produced))
    first = SinkProcess(settings, tmp_path / "sink-1.log")
    second: SinkProcess | None = None
    try:
        producer.start()
        # Mid-stream: the first sink has inserted and committed some batches, more keep coming.
        assert wait_until(lambda: committed.total() >= 300, timeout=90), first.log()
        first.kill()
        killed_at = committed.total()
        assert producer.is_alive()

        restarted = time.monotonic()
        second = SinkProcess(settings, tmp_path / "sink-2.log")
        assert wait_until(lambda: committed.total() > killed_at, timeout=RESTART_WITHIN, interval=0.2), (
            f"the restarted sink committed nothing in {RESTART_WITHIN:.0f} s\n{second.log()}"
        )
        took = time.monotonic() - restarted
        # It replaced the killed member: one member, under the sink's static instance id.
        if LISTS_MEMBERS:
            assert group_instance_ids(settings, group) == [sink_instance_id(settings)]

        time.sleep(1.0)  # the restarted sink consumes a live stream for a while
        stop_producing.set()
        producer.join(60)
        assert produced and not producer.is_alive()
        total = produced[0]
        # Every partition committed up to its end: nothing was skipped past the kill.
        assert wait_until(lambda: committed.total() == total, timeout=60), (committed.offsets(), total)
        assert second.stop() == 0, second.log()
    finally:
        stop_producing.set()
        producer.join(60)
        first.stop()
        if second is not None:
            second.stop()
        committed.close()

    stored = read_chdb(dsn, model_id, python_subprocess)
    print(f"killed at {killed_at}/{total} committed; restarted sink's first commit after {took:.1f} s")
    # At least once into the table, exactly once after ReplacingMergeTree's dedup.
    assert stored["rows"] >= total
    assert stored["values"] == list(range(total))


def test_sink_that_stops_cleanly_leaves_its_group_at_once(
    kafka_broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path, clickhouse_client: Client
) -> None:
    settings = sink_settings(kafka_broker, topic_prefix, tmp_path)
    group = settings.app_id + SINK_GROUP_SUFFIX
    model_id = f"model-{uuid.uuid4().hex[:8]}"
    producer = Producer(settings.kafka_common())
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)
    for i in range(50):
        point = metric_point(model_id, i, base)
        producer.produce(settings.topics.monitor_metrics, key=point.dedup_key(), value=model_to_json(point))
    assert producer.flush(15) == 0
    committed = Committed(settings, group)
    sink = ClickHouseSink(settings, ClickHouseWriter(clickhouse_client))
    assert sink.instance_id == sink_instance_id(settings)
    sink.start_thread()
    try:
        assert wait_until(lambda: committed.total() == 50, timeout=60)
        if LISTS_MEMBERS:
            assert group_instance_ids(settings, group) == [sink.instance_id]
    finally:
        stopping = time.monotonic()
        sink.stop()
        print(f"sink stopped in {time.monotonic() - stopping:.2f} s")
        committed.close()
    assert sink._thread is not None and not sink._thread.is_alive()

    # A static member that closed without LeaveGroup would stay in the group for the session
    # timeout on Kafka, and for ever on noida-db: this newcomer would get no partitions.
    newcomer = Consumer({**settings.kafka_common(), "group.id": group, "session.timeout.ms": 6000})
    newcomer.subscribe([settings.topics.monitor_metrics])
    joined = time.monotonic()
    try:
        assert wait_until(
            lambda: (newcomer.poll(0.1), len(newcomer.assignment()) == settings.topic_partitions)[1],
            timeout=15,
            interval=0,
        ), group_instance_ids(settings, group)
        print(
            f"a new member had the stopped sink's partitions {time.monotonic() - joined:.1f} s after joining"
        )
    finally:
        newcomer.close()
