"""The data plane with real workers, broker and ClickHouse: co-partitioned assignments with two and three
workers, joins whatever partitioner the producers used, three workers with one killed mid-stream."""

from __future__ import annotations

import ast
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from modelmon.app.broker import EmbeddedBroker
from modelmon.sdk import MonitorClient
from modelmon.settings import Settings
from sinks.consumer import ClickHouseSink
from sinks.writer import ClickHouseWriter
from streams.run import prepare_topics
from tests.workers import WorkerProcess, make_settings, wait_until, write_spec

pytestmark = pytest.mark.integration

BASE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=45)


INPUTS = ("predictions", "ground-truth", "monitor-repartition")


def assignments(worker: WorkerProcess) -> dict[str, set[int]]:
    """The data plane's assignment by a worker's log (empty when revoked last): topic -> partitions."""
    log = worker.log_path.read_text(errors="replace")
    found = re.findall(r"data plane: (assigned|revoked) (\[.*\])", log)
    out: dict[str, set[int]] = defaultdict(set)
    if found and found[-1][0] == "assigned":
        for topic, partition in ast.literal_eval(found[-1][1]):
            out[topic.rsplit(".", 1)[-1]].add(partition)
    return dict(out)


def settled(procs: list[WorkerProcess], partitions: int) -> bool:
    """Every worker holds partition p of all three inputs, and each partition is held once."""
    seen = [assignments(p) for p in procs]
    owned = [s.get("predictions", set()) for s in seen]
    return all(set(s) == set(INPUTS) and all(s[t] == s["predictions"] for t in INPUTS) for s in seen) and (
        sorted(p for parts in owned for p in parts) == list(range(partitions))
    )


def totals(client: Any, model_id: str, metric: str) -> dict[datetime, float]:
    rows = client.query(
        "SELECT window_start, sum(value) FROM metric_points FINAL WHERE model_id = {m:String} "
        "AND segment = '' AND feature = '' AND metric = {metric:String} AND source = 'stage2' "
        "GROUP BY window_start",
        parameters={"m": model_id, "metric": metric},
    ).result_rows
    return {start.astimezone(UTC): float(value) for start, value in rows}


def start_workers(settings: Settings, tmp_path: Path, n: int) -> list[WorkerProcess]:
    return [
        # Each worker owns its data dir: it names the worker's static group memberships.
        WorkerProcess(
            settings.model_copy(update={"worker_data_dir": tmp_path / f"w{i}"}), tmp_path / f"w{i}.log"
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("workers", [2, 3])
def test_each_worker_owns_partition_p_of_every_input_topic(tmp_path: Path, workers: int) -> None:
    with EmbeddedBroker("noida") as broker:
        settings = make_settings(broker.bootstrap, "cp.", tmp_path, tmp_path / "models", topic_partitions=6)
        write_spec(tmp_path / "models")
        prepare_topics(settings)
        procs = start_workers(settings, tmp_path, workers)
        try:
            assert wait_until(lambda: settled(procs, 6), 120), [assignments(p) for p in procs]
        finally:
            for p in procs:
                p.stop()


def test_joins_are_exact_whatever_partitioner_the_producers_used(
    kafka_broker: EmbeddedBroker, topic_prefix: str, clickhouse_client: Any, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    model_id = write_spec(models)
    settings = make_settings(
        kafka_broker.bootstrap, topic_prefix, tmp_path, models, topic_partitions=4, table_store="rocksdb://",
        allowed_lateness_seconds=0, window_grace_seconds=2.0, idle_flush_seconds=0.5,
    )  # fmt: skip
    prepare_topics(settings)
    topics = settings.topics
    crc32 = Producer({"bootstrap.servers": kafka_broker.bootstrap, "partitioner": "consistent_random"})
    unkeyed = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    sdk = MonitorClient(kafka_broker.bootstrap, topic_prefix)
    # Predictions by one producer, their labels by another: every pairing of the three partitioners.
    ways = ["sdk", "crc32", "none"]
    expected_correct: dict[datetime, int] = defaultdict(int)
    expected_labels: dict[datetime, int] = defaultdict(int)
    n = 900
    for i in range(n):
        pid = f"mix-{uuid.uuid4()}"
        ts = BASE + timedelta(milliseconds=2000 * i)
        prediction, label = i % 2, (i // 3) % 2
        features = {"amount": float(i), "country": "DE"}
        body = {"prediction_id": pid, "model_id": model_id, "ts": int(ts.timestamp() * 1000),
                "features": features, "prediction": prediction, "score": 0.6}  # fmt: skip
        label_body = {
            "prediction_id": pid,
            "model_id": model_id,
            "label": label,
            "ts": int(ts.timestamp() * 1000),
        }
        by, label_by = ways[i % 3], ways[(i // 3) % 3]
        send(by, topics.predictions, pid, body, sdk, crc32, unkeyed)
        if i % 4:
            send(label_by, topics.ground_truth, pid, label_body, sdk, crc32, unkeyed)
            window = ts.replace(second=0, microsecond=0)
            expected_labels[window] += 1
            expected_correct[window] += prediction == label
    assert sdk.flush(30) == 0 and crc32.flush(30) == 0 and unkeyed.flush(30) == 0
    procs = start_workers(settings, tmp_path, 2)
    sink = ClickHouseSink(settings, ClickHouseWriter(clickhouse_client))
    sink.start_thread()
    try:

        def done() -> bool:
            return sum(totals(clickhouse_client, model_id, "labels").values()) >= sum(
                expected_labels.values()
            )

        assert wait_until(done, 180), (
            [p.log()[-2000:] for p in procs],
            totals(clickhouse_client, model_id, "labels"),
        )
        wait_until(lambda: False, timeout=3)
        assert sum(totals(clickhouse_client, model_id, "events").values()) == n
        assert totals(clickhouse_client, model_id, "labels") == {
            w: float(c) for w, c in expected_labels.items()
        }
        accuracy = totals(clickhouse_client, model_id, "accuracy")
        assert accuracy == pytest.approx(
            {w: expected_correct[w] / expected_labels[w] for w in expected_labels}
        )
        routed = [int(m) for p in procs for m in re.findall(r"'routed': (\d+)", p.log_path.read_text())]
        assert routed and max(routed) > 0  # the crc32 and unkeyed events did go through monitor-repartition
        assert all(p.alive for p in procs)
    finally:
        sink.stop()
        for p in procs:
            p.stop()


def send(way: str, topic: str, pid: str, body: dict[str, Any], sdk: MonitorClient, crc32: Producer,
         unkeyed: Producer) -> None:  # fmt: skip
    value = orjson.dumps(body)
    if way == "sdk":
        sdk.produce_raw(topic, value, key=pid)  # the SDK's producer: murmur2 of the key
    elif way == "crc32":
        crc32.produce(topic, value=value, key=pid.encode())  # kcat's and librdkafka's default
    else:
        unkeyed.produce(topic, value=value)  # no key: sticky partitions


def test_three_workers_one_killed_mid_stream_count_exactly(
    kafka_broker: EmbeddedBroker, topic_prefix: str, clickhouse_client: Any, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    model_id = write_spec(models)
    settings = make_settings(
        kafka_broker.bootstrap, topic_prefix, tmp_path, models, topic_partitions=6, chunk_size=300,
        batch_size=200, allowed_lateness_seconds=0, window_grace_seconds=2.0, idle_flush_seconds=0.5,
    )  # fmt: skip
    prepare_topics(settings)
    procs = start_workers(settings, tmp_path, 3)
    sink = ClickHouseSink(settings, ClickHouseWriter(clickhouse_client))
    sink.start_thread()
    total = 6000

    def produce(indices: range) -> None:
        with MonitorClient(kafka_broker.bootstrap, topic_prefix) as client:
            for i in indices:
                ts = BASE + timedelta(milliseconds=300 * i)
                pid = client.log_prediction(model_id, {"amount": float(i)}, i % 2, score=0.4, ts=ts)
                if i % 2:
                    client.log_ground_truth(model_id, pid, 1, ts=ts)

    counted = lambda: sum(totals(clickhouse_client, model_id, "events").values())  # noqa: E731
    try:
        # The kill comes in a settled group. (noida-db can leave a group rebalancing for good when a
        # static member is replaced while the group's first rebalance is still under way: seen once
        # under load, all three data planes polling and none assigned for 3 minutes.)
        assert wait_until(lambda: settled(procs, 6), 120), [assignments(p) for p in procs]
        produce(range(total // 2))
        assert wait_until(lambda: counted() > 0, 120), [p.log()[-2000:] for p in procs]
        procs[1].kill()  # mid-stream: its held chunks and join state are read again by the restarted one
        produce(range(total // 2, total))
        procs[1] = WorkerProcess(
            settings.model_copy(update={"worker_data_dir": tmp_path / "w1"}), tmp_path / "w1b.log"
        )
        assert wait_until(lambda: counted() >= total, 180), (counted(), [p.log()[-2000:] for p in procs])
        wait_until(lambda: False, timeout=3)
        assert counted() == total
        assert sum(totals(clickhouse_client, model_id, "labels").values()) == total // 2
        assert all(p.alive for p in procs)
    finally:
        sink.stop()
        for p in procs:
            p.stop()
