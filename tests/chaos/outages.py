"""Scenarios where a dependency goes away: broker restart, ClickHouse down, SIGTERM without a broker."""

from __future__ import annotations

import signal
import subprocess
import time

from confluent_kafka import Consumer, TopicPartition

from modelmon.settings import Settings
from tests.chaos.crashes import recent_stream
from tests.chaos.faults import LevelCounter, OutageClient
from tests.chaos.harness import Result, World
from tests.chaos.traffic import PacedProducer
from tests.workers import wait_until, write_spec

#: The deadline of `worker_sigterm_no_broker`: MODELMON_SHUTDOWN_TIMEOUT (4 s) plus a second to exit.
SIGTERM_DEADLINE = 5.0


def broker_restart(world: World, result: Result) -> None:
    n, duration, down = (1_500, 8.0, 2.0) if world.quick else (10_000, 40.0, 10.0)
    broker = world.start_broker()
    port = int(broker.bootstrap.rpartition(":")[2])
    model = write_spec(world.models, model_id="brokerrestart")
    settings = world.settings()
    worker = world.start_worker(settings)
    world.say(f"starting the worker (broker on port {port}, data in {world.dir / 'broker'})")
    world.wait_ready([worker])
    world.start_sink(settings)
    stream = recent_stream(world, model, n, duration)
    at = world.rng.uniform(0.25, 0.45)
    world.say(
        f"producing {n:,} predictions over {duration:.0f} s; broker stopped at {at:.0%} for {down:.0f} s"
    )
    producer = PacedProducer(world.bootstrap, world.prefix, stream)
    ends = EndOffsets(settings)
    producer.start()
    wait_until(lambda: producer.fraction >= at or not producer.is_alive(), duration * 2, interval=0.05)
    before = ends.read()  # what the broker holds (and so acknowledged) just before the stop
    stopping = time.monotonic()
    broker.stop()  # SIGTERM: noida writes its snapshot (topics, messages, committed offsets)
    stop_seconds = time.monotonic() - stopping
    ends.close()
    world.say(f"broker stopped (SIGTERM) in {stop_seconds:.1f} s at {producer.sent:,} sent; the SDK buffers")
    time.sleep(down)
    restarting = time.monotonic()
    world.start_broker(port=port)
    ready = time.monotonic() - restarting
    world.say(f"broker restarted on port {port}: ready {ready:.2f} s after the start")
    ends = EndOffsets(settings)
    after = ends.read()
    ends.close()
    lost = "; ".join(
        f"{topic}[{partition}] held {end} messages just before the stop, {after[(topic, partition)]} after"
        for (topic, partition), end in sorted(before.items())
        if after[(topic, partition)] < end
    )
    if lost:
        world.say(f"acknowledged before the stop, gone after the restart: {lost}")
    result.measured.update(broker_stop_seconds=round(stop_seconds, 2), broker_ready_seconds=round(ready, 3))
    producer.join()
    world.say("stream sent; waiting for ClickHouse")
    result.produced = stream.expected()
    # An SDK that failed sends nothing more: do not wait long for counts that cannot come.
    stall = 20.0 if producer.error is not None else None
    result.stored, problems = world.settle(lambda: world.counts(model), result.produced, stall=stall)
    result.dead_got = world.dead_letters()
    result.notes.append(
        f"broker down {down:.0f} s from {at:.0%} of the stream (SIGTERM took {stop_seconds:.1f} s); "
        f"ready again {ready:.2f} s after its restart on the same port and data dir"
    )
    if producer.fatal:
        result.notes.append(f"the SDK's producer: {producer.fatal[:400]}")
    if lost:
        result.notes.append(f"messages the broker held before the SIGTERM and not after the restart: {lost}")
        problems.append("the broker lost messages it had acknowledged (see the note)")
    if not worker.alive:
        problems.append("the worker died")
    result.judge(producer.problems() + problems)


class EndOffsets:
    """The end offsets of ``predictions`` and ``ground-truth``: what the broker holds of the input."""

    def __init__(self, settings: Settings) -> None:
        self._topics = [settings.topics.predictions, settings.topics.ground_truth]
        self._consumer = Consumer({**settings.kafka_consumer(), "group.id": f"{settings.app_id}-chaos-ends"})
        metadata = self._consumer.list_topics(timeout=10).topics
        self._partitions = [TopicPartition(t, p) for t in self._topics for p in metadata[t].partitions]

    def read(self) -> dict[tuple[str, int], int]:
        return {
            (tp.topic, tp.partition): self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            for tp in self._partitions
        }

    def close(self) -> None:
        self._consumer.close()


def clickhouse_down(world: World, result: Result) -> None:
    n, duration, outage = (2_000, 14.0, 8.0) if world.quick else (12_000, 90.0, 60.0)
    world.start_broker()
    model = write_spec(world.models, model_id="chdown")
    settings = world.settings()
    faulty = OutageClient(world.clickhouse())
    sink_log = LevelCounter("sinks.consumer")
    worker = world.start_worker(settings)
    world.say("starting the worker; the in-process sink writes through a fault-injecting client")
    world.wait_ready([worker])
    sink = world.start_sink(settings, faulty)
    stream = recent_stream(world, model, n, duration)
    world.say(f"producing {n:,} predictions over {duration:.0f} s; ClickHouse down for {outage:.0f} s")
    producer = PacedProducer(world.bootstrap, world.prefix, stream)
    producer.start()
    # Mid-stream: the first windows are stored, the stream goes on.
    wait_until(lambda: world.counts(model)["events"] > 0 or producer.fraction > 0.6, duration * 2)
    faulty.down.set()
    time.sleep(1.0)  # an insert that started before the outage may still land
    before = world.counts(model)["events"]
    world.say(f"ClickHouse down at {producer.sent:,} sent, {before:,} counted")
    time.sleep(outage - 1.0)
    faulty.down.clear()
    during = world.counts(model)["events"]
    world.say(f"ClickHouse back at {producer.sent:,} sent; {faulty.refused} inserts refused meanwhile")
    producer.join()
    world.say("stream sent; waiting for ClickHouse")
    result.produced = stream.expected()
    result.stored, problems = world.settle(lambda: world.counts(model), result.produced)
    result.dead_got = world.dead_letters()
    result.notes.append(
        f"{faulty.refused} inserts refused during the {outage:.0f} s outage ({before:,} events counted "
        f"before it, {during:,} after it); the sink retried {sink.stats.write_retries} times, logged as "
        f"transient {sink_log.counts.get('WARNING', 0)}, as not transient {sink_log.counts.get('ERROR', 0)}"
    )
    if sink_log.counts.get("ERROR", 0):
        problems.append("the sink took the injected connection error for a non-transient one")
    if during != before:
        problems.append(f"ClickHouse counts changed during the outage ({before} to {during})")
    if not faulty.refused:
        problems.append("no insert was attempted during the outage")
    if not worker.alive:
        problems.append("the worker died")
    result.judge(producer.problems() + problems)


def worker_sigterm_no_broker(world: World, result: Result) -> None:
    n = 300
    broker = world.start_broker()
    model = write_spec(world.models, model_id="sigterm")
    settings = world.settings()
    worker = world.start_worker(settings)
    world.say("starting the worker")
    world.wait_ready([worker])
    sink = world.start_sink(settings)
    stream = recent_stream(world, model, n, 1.0)
    producer = PacedProducer(world.bootstrap, world.prefix, stream)
    producer.start()
    producer.join()
    world.say(f"{n} predictions sent; waiting until the worker has processed them")
    result.produced = stream.expected()
    # The counts only show the worker was up and working: no need to watch for replays here.
    result.stored, problems = world.settle(lambda: world.counts(model), result.produced, settle=0.0)
    result.dead_got = world.dead_letters()
    sink.stop()
    broker.stop()
    world.say("broker stopped; 1 s later the worker gets SIGTERM")
    time.sleep(1.0)
    worker.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        code: int | None = worker.process.wait(60)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - sent
    result.measured["exit_seconds"] = round(took, 2)
    world.say(f"the worker exited {took:.2f} s after SIGTERM (exit code {code})")
    result.notes.append(
        f"worker exited {took:.2f} s after SIGTERM with its broker stopped "
        f"(deadline {SIGTERM_DEADLINE:.0f} s; MODELMON_SHUTDOWN_TIMEOUT {settings.shutdown_timeout:g} s), "
        f"exit code {code}"
    )
    if code is None:
        problems.append("the worker was still running 60 s after SIGTERM")
    elif took > SIGTERM_DEADLINE:
        problems.append(f"exited {took:.1f} s after SIGTERM, deadline {SIGTERM_DEADLINE:.0f} s")
    result.judge(producer.problems() + problems)
