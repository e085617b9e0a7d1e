"""Scenarios where a process dies by SIGKILL mid-stream: one worker, one of three, and the sink."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from modelmon.settings import Settings
from sinks.consumer import SINK_GROUP_SUFFIX
from tests.chaos.harness import Counts, Result, World
from tests.chaos.report import REPO
from tests.chaos.traffic import PacedProducer, Stream
from tests.workers import wait_until, write_spec


def recent_stream(world: World, model_id: str, n: int, duration: float) -> Stream:
    """``n`` predictions over ``duration`` seconds, event times spread over the last hour: 30 one-minute
    windows (quick: 10, each window costs the worker a close)."""
    span = timedelta(minutes=10 if world.quick else 30)
    first = datetime.now(UTC) - timedelta(minutes=50)
    return Stream(model_id, n, duration, first, span / n)


def kill_moments(world: World, kills: int, duration: float, min_gap: float = 1.5) -> list[float]:
    """``kills`` seeded moments within the stream (seconds after it starts), at least ``min_gap`` apart."""
    moments: list[float] = []
    for moment in sorted(world.rng.uniform(0.05, 0.95) * duration for _ in range(kills)):
        moments.append(max(moment, moments[-1] + min_gap) if moments else moment)
    return moments


def kill9_random(world: World, result: Result) -> None:
    n, duration, kills = (2_000, 8.0, 2) if world.quick else (20_000, 60.0, 10)
    world.start_broker()
    model = write_spec(world.models, model_id="kill9")
    settings = world.settings()
    worker = world.start_worker(settings)
    world.say("starting the worker")
    world.wait_ready([worker])
    world.start_sink(settings)
    stream = recent_stream(world, model, n, duration)
    moments = kill_moments(world, kills, duration)
    world.say(
        f"producing {n:,} predictions and {stream.labels:,} labels over {duration:.0f} s; "
        f"SIGKILL at {', '.join(f'{m:.1f}' for m in moments)} s"
    )
    producer = PacedProducer(world.bootstrap, world.prefix, stream)
    producer.start()
    while not producer.started_at and producer.is_alive():
        time.sleep(0.01)
    for k, moment in enumerate(moments, 1):
        time.sleep(max(0.0, producer.started_at + moment - time.monotonic()))
        world.workers[-1].kill()
        world.say(f"kill {k}/{kills}: {producer.sent:,} sent, {world.counts(model)['events']:,} counted")
        world.start_worker(settings)
    producer.join()
    world.say("stream sent; waiting for ClickHouse to hold every event and label")
    result.produced = stream.expected()
    result.stored, problems = world.settle(lambda: world.counts(model), result.produced)
    result.dead_got = world.dead_letters()
    result.notes.append(f"{kills} SIGKILLs at {', '.join(f'{m:.1f}' for m in moments)} s into the stream")
    if not world.workers[-1].alive:
        problems.append("the last restarted worker died")
    result.judge(producer.problems() + problems)


def three_workers_one_killed(world: World, result: Result) -> None:
    n, duration = (1_000, 6.0) if world.quick else (10_000, 40.0)
    world.start_broker()
    model = write_spec(world.models, model_id="three")
    settings = world.settings(topic_partitions=6)
    # Each worker owns a data dir: it names the worker's static group membership.
    own = [settings.model_copy(update={"worker_data_dir": world.dir / f"data-w{i}"}) for i in range(3)]
    current = [world.start_worker(own[i], f"w{i}") for i in range(3)]
    world.say("starting 3 workers on 6 partitions")
    world.wait_ready(current, timeout=150)
    world.start_sink(settings)
    stream = recent_stream(world, model, n, duration)
    victim = world.rng.randrange(3)
    at = world.rng.uniform(0.3, 0.6)
    world.say(f"producing {n:,} predictions over {duration:.0f} s; SIGKILL of w{victim} at {at:.0%}")
    producer = PacedProducer(world.bootstrap, world.prefix, stream)
    producer.start()
    wait_until(lambda: producer.fraction >= at or not producer.is_alive(), duration * 2, interval=0.05)
    current[victim].kill()
    world.say(f"killed w{victim}: {producer.sent:,} sent, {world.counts(model)['events']:,} counted")
    time.sleep(world.rng.uniform(0.5, 2.0))
    current[victim] = world.start_worker(own[victim], f"w{victim}")
    world.say(f"restarted w{victim} (same static membership)")
    producer.join()
    world.say("stream sent; waiting for ClickHouse")
    result.produced = stream.expected()
    result.stored, problems = world.settle(lambda: world.counts(model), result.produced)
    result.dead_got = world.dead_letters()
    result.notes.append(f"w{victim} killed after {at:.0%} of the stream and restarted")
    problems += [f"w{i} is not running at the end" for i, w in enumerate(current) if not w.alive]
    result.judge(producer.problems() + problems)


# -- the sink as a child process ------------------------------------------------------------------


class MetricsTally:
    """Events and labels of a model as ClickHouse's ``FINAL`` counts them, read straight from
    ``monitor-metrics``: tells when the worker has published everything while the sink child owns
    the chDB directory (which no other process may open)."""

    def __init__(self, settings: Settings, model_id: str) -> None:
        self.model_id = model_id
        topic = settings.topics.monitor_metrics
        self._consumer = Consumer({**settings.kafka_consumer(), "group.id": f"{settings.app_id}-chaos-tally"})
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self._points: dict[tuple[str, ...], tuple[int, float]] = {}

    def read(self) -> Counts:
        while messages := self._consumer.consume(2000, timeout=0.3):
            for message in messages:
                if message.error() or not message.value():
                    continue
                p = orjson.loads(message.value() or b"{}")
                if p.get("model_id") != self.model_id or p.get("segment") or p.get("feature"):
                    continue
                if p.get("metric") not in ("events", "labels"):
                    continue
                key = (p["metric"], p.get("model_version", ""), p["window_start"], p.get("source", ""))
                revision = int(p.get("revision", 0))
                if key not in self._points or revision >= self._points[key][0]:
                    self._points[key] = (revision, float(p["value"]))
        totals = {"events": 0.0, "labels": 0.0}
        for (metric, *_), (_, value) in self._points.items():
            totals[metric] += value
        return {k: int(v) for k, v in totals.items()}

    def close(self) -> None:
        self._consumer.close()


def sink_progress(settings: Settings) -> tuple[int, int]:
    """(committed, end): the sink group's committed offsets and the end offsets, summed over its topics."""
    topics = settings.topics
    names = [topics.monitor_metrics, topics.alerts, topics.retrain_requests, topics.dead_letter]
    consumer = Consumer({**settings.kafka_consumer(), "group.id": settings.app_id + SINK_GROUP_SUFFIX})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        tps = [TopicPartition(t, p) for t in names if t in metadata for p in metadata[t].partitions]
        committed = end = 0
        for tp in consumer.committed(tps, timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            committed += min(high, max(tp.offset, low))
            end += high
        return committed, end
    finally:
        consumer.close()


def sink_lag(settings: Settings) -> int:
    committed, end = sink_progress(settings)
    return end - committed


READ_CHDB = """
import json, sys
from sinks.clickhouse import connect
from sinks.queries import dead_letters_by_type, events_per_model, metric_totals
client = connect(sys.argv[1])
model = sys.argv[2]
raw = client.query("SELECT count() FROM metric_points WHERE model_id = {m:String} AND metric = 'events' "
                   "AND segment = ''", parameters={"m": model}).result_rows[0][0]
labels = sum(t.value for t in metric_totals(client, "labels", model))
print(json.dumps({"events": events_per_model(client).get(model, 0), "labels": int(labels),
                  "dead": dead_letters_by_type(client), "raw_event_rows": int(raw)}))
"""


def read_chdb_in_new_interpreter(dsn: str, model_id: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", READ_CHDB, dsn, model_id],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reading {dsn} failed: {done.stderr.strip().splitlines()[-1:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def sink_killed(world: World, result: Result) -> None:
    n, duration = (1_500, 6.0) if world.quick else (10_000, 40.0)
    world.start_broker()
    model = write_spec(world.models, model_id="sinkkill")
    # Small sink batches: the kill lands between many insert+commit cycles.
    settings = world.settings(sink_batch_size=50, sink_flush_seconds=0.1)
    worker = world.start_worker(settings)
    world.say("starting the worker, then the sink (`python -m modelmon sink`, owns the chDB directory)")
    world.wait_ready([worker])
    sink = world.start_sink_process(settings)
    stream = recent_stream(world, model, n, duration)
    at = world.rng.uniform(0.3, 0.6)
    world.say(f"producing {n:,} predictions over {duration:.0f} s; SIGKILL of the sink at {at:.0%}")
    tally = MetricsTally(settings, model)
    producer = PacedProducer(world.bootstrap, world.prefix, stream)
    producer.start()
    wait_until(lambda: producer.fraction >= at or not producer.is_alive(), duration * 2, interval=0.05)
    wait_until(lambda: sink_progress(settings)[0] > 0, 60, interval=0.2)  # it has committed some
    sink.kill()
    world.say(f"killed the sink: {producer.sent:,} sent, {tally.read()['events']:,} events published")
    time.sleep(world.rng.uniform(0.5, 2.0))
    sink = world.start_sink_process(settings)
    world.say("restarted the sink (same static membership)")
    producer.join()
    world.say("stream sent; waiting until the worker published everything and the sink committed it")
    expected = stream.expected()
    published, problems = world.settle(tally.read, expected, settle=0.0)
    tally.close()
    caught_up = lambda: sink_lag(settings) == 0 or not sink.alive  # noqa: E731
    if not wait_until(caught_up, 120, interval=0.5):
        problems.append(f"the sink's lag is still {sink_lag(settings)}")
    time.sleep(3.0)  # anything left (late revisions) must be committed too
    wait_until(caught_up, 60, interval=0.5)
    if not sink.alive:
        problems.append(f"the restarted sink exited by itself (code {sink.process.returncode})")
    code = sink.stop()
    if code != 0:
        problems.append(f"the restarted sink exited with {code} on SIGTERM")
    stored = read_chdb_in_new_interpreter(world.dsn, model)
    result.produced = expected
    result.stored = {"events": int(stored["events"]), "labels": int(stored["labels"])}  # type: ignore[call-overload]
    result.dead_got = dict(stored["dead"])  # type: ignore[call-overload]
    result.notes.append(
        f"sink killed after {at:.0%} of the stream; {stored['raw_event_rows']} `events` rows stored before "
        f"dedup (replayed batches), counted once with FINAL; the worker published {published['events']:,}"
    )
    if not worker.alive:
        problems.append("the worker died")
    result.judge(producer.problems() + problems)
