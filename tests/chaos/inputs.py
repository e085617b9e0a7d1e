"""Scenarios of bad or odd input: fuzzed messages, poison events, event times far from the clock."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from modelmon.sdk import MonitorClient
from modelmon.settings import Settings
from sinks.queries import metric_totals
from tests.chaos.fuzz import LABELS, fuzzed_messages
from tests.chaos.harness import Counts, Result, World
from tests.chaos.traffic import label_message, prediction_message, produce_raw
from tests.workers import WorkerProcess, write_spec

T = TypeVar("T")
Raw = tuple[str, bytes | None, bytes | None]


def interleave(rng: random.Random, *streams: Sequence[T]) -> list[T]:
    """All items of ``streams`` in a seeded random mix that keeps each stream's own order."""
    positions = [0] * len(streams)
    mixed: list[T] = []
    while True:
        left = [len(s) - p for s, p in zip(streams, positions, strict=True)]
        if not any(left):
            return mixed
        k = rng.choices(range(len(streams)), weights=left)[0]
        mixed.append(streams[k][positions[k]])
        positions[k] += 1


def worker_problems(worker: WorkerProcess) -> list[str]:
    """A worker that must have stayed up, with no agent crash in its log."""
    problems = [] if worker.alive else [f"the worker exited with code {worker.process.returncode}"]
    text = worker.log_path.read_text(errors="replace")
    crashes = len(re.findall(r"Traceback|Crashed reason", text))
    if crashes:
        problems.append(f"{crashes} traceback(s) or agent crash(es) in the worker log")
    if text.count("Worker]: Ready") != 1:
        problems.append(f"the worker started {text.count('Worker]: Ready')} times")
    return problems


def good_predictions(model: str, n: int, first: datetime, span: timedelta, **features: str) -> list[Raw]:
    """``n`` valid predictions (event times ascending over ``span``), a label after every 4th one."""
    messages: list[Raw] = []
    step = span / n
    for i in range(n):
        extra = {name: value.format(i=i) for name, value in features.items()}
        pid = f"g{i}"
        key, value = prediction_message(
            model, first + step * i, pid=pid, features={"amount": float(i % 100), "country": "FR", **extra}
        )
        messages.append(("predictions", key, value))
        if i % 4 == 0:
            messages.append((LABELS, *label_message(model, pid, datetime.now(UTC))))
    return messages


def to_topics(settings: Settings, messages: list[Raw]) -> list[Raw]:
    names = {"predictions": settings.topics.predictions, LABELS: settings.topics.ground_truth}
    return [(names[topic], key, value) for topic, key, value in messages]


def fuzz_10k(world: World, result: Result) -> None:
    n_fuzz, n_good = (1_000, 1_000) if world.quick else (10_000, 5_000)
    world.start_broker()
    model = write_spec(world.models, model_id="fuzz")
    settings = world.settings()
    worker = world.start_worker(settings)
    world.say("starting the worker")
    world.wait_ready([worker])
    world.start_sink(settings)
    now = datetime.now(UTC)
    fuzz = fuzzed_messages(world.rng, model, now, n_fuzz)
    good = good_predictions(model, n_good, now - timedelta(minutes=20), timedelta(minutes=20))
    bad: list[Raw] = [(f.topic, f.key, f.value) for f in fuzz]
    world.say(f"producing {n_good:,} good predictions mixed with {n_fuzz:,} fuzzed messages (raw, murmur2)")
    problems = produce_raw(world.bootstrap, to_topics(settings, interleave(world.rng, good, bad)))
    result.produced = {"events": n_good, "labels": len(good) - n_good}
    result.dead_expected = dict(Counter(f.error_type for f in fuzz))
    world.say("sent; waiting for ClickHouse")
    stored, waited = world.settle(lambda: world.counts(model), result.produced, dead_letters=n_fuzz)
    result.stored = stored
    result.dead_got = world.dead_letters()
    kinds = Counter(f.kind for f in fuzz)
    result.notes.append("fuzzed kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    result.judge(problems + waited + worker_problems(worker))


def count_fragments(settings: Settings) -> tuple[int, int]:
    """(whole partials, fragments) on ``monitor-partials`` so far."""
    from streams.partials import FRAGMENT_MAGIC  # the worker's modules: slow to import, needed here only
    from streams.topology import partials_topic_name

    topic = partials_topic_name(settings)
    consumer = Consumer({**settings.kafka_consumer(), "group.id": f"{settings.app_id}-chaos-partials"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        whole = fragments = 0
        while messages := consumer.consume(1000, timeout=1.0):
            for message in messages:
                if message.error() is None:
                    is_fragment = (message.value() or b"").startswith(FRAGMENT_MAGIC)
                    fragments += is_fragment
                    whole += not is_fragment
        return whole, fragments
    finally:
        consumer.close()


def poison_events(world: World, result: Result) -> None:
    n_good, rounds = (800, 1) if world.quick else (4_000, 3)
    world.start_broker()
    features = {
        "amount": {"type": "numerical", "min": 0, "required": True},
        "country": {"type": "categorical"},
        "comment": {"type": "categorical"},
    }
    model = write_spec(world.models, model_id="poison", features=features)
    # Partials over 8 kB go in fragments; the 900 kB string passes the message limit, hits the string one.
    settings = world.settings(max_partial_bytes=8_192, max_message_bytes=950_000)
    worker = world.start_worker(settings)
    world.say("starting the worker (MODELMON_MAX_PARTIAL_BYTES=8192, MODELMON_MAX_MESSAGE_BYTES=950000)")
    world.wait_ready([worker])
    world.start_sink(settings)
    now = datetime.now(UTC)
    # A unique 40-character category per event: a 500-event chunk's partial is ~25 kB, sent in fragments.
    good = good_predictions(
        model, n_good, now - timedelta(minutes=10), timedelta(minutes=10), comment="{i:08d}-" + "c" * 31
    )
    poison: list[tuple[str, Raw]] = []
    for _ in range(rounds):
        for ts in ("9999-12-31T23:59Z", "2100-01-01T00:00:00Z", "1970-01-01T00:00:00Z"):
            poison.append(("ts_out_of_range", ("predictions", *prediction_message(model, ts))))
        big_string = {"amount": 1.0, "country": "DE", "comment": "x" * 900_000}
        many = {f"f{i}": i for i in range(5_000)} | {"amount": 1.0}
        poison.append(("too_large", ("predictions", *prediction_message(model, now, features=big_string))))
        poison.append(("too_large", ("predictions", *prediction_message(model, now, features=many))))
        # Over MODELMON_MAX_MESSAGE_BYTES, under noida-db's 1 MB (it drops larger messages silently).
        poison.append(("too_large", ("predictions", b"big", b'{"model_id": "' + b"m" * 960_000 + b'"}')))
    world.rng.shuffle(poison)
    world.say(f"producing {n_good:,} good predictions with {len(poison)} poison events between them")
    problems = produce_raw(
        world.bootstrap, to_topics(settings, interleave(world.rng, good, [m for _, m in poison]))
    )
    result.produced = {"events": n_good, "labels": len(good) - n_good}
    result.dead_expected = dict(Counter(kind for kind, _ in poison))
    world.say("sent; waiting for ClickHouse")
    result.stored, waited = world.settle(
        lambda: world.counts(model), result.produced, dead_letters=len(poison)
    )
    result.dead_got = world.dead_letters()
    whole, fragments = count_fragments(settings)
    result.notes.append(f"{whole} whole partials and {fragments} fragments of at most 8192 bytes")
    if not fragments:
        problems.append("no partial was sent in fragments (the scenario did not exercise them)")
    result.judge(problems + waited + worker_problems(worker))


def event_time_outliers(world: World, result: Result) -> None:
    n_live, n_back = (1_000, 1_000) if world.quick else (5_000, 5_000)
    n_future, n_ancient = 300, 792
    world.start_broker()
    model = write_spec(world.models, model_id="outliers", max_event_age="400d")
    settings = world.settings()  # MODELMON_MAX_EVENT_AGE=7d; the model's spec allows 400 days
    worker = world.start_worker(settings)
    world.say("starting the worker (model spec max_event_age: 400d)")
    world.wait_ready([worker])
    world.start_sink(settings)
    now = datetime.now(UTC)
    back_start = now - timedelta(days=330)
    rng = world.rng
    live = [("live", now - timedelta(minutes=20) + timedelta(minutes=20) * i / n_live) for i in range(n_live)]
    back = [("backfill", back_start + timedelta(minutes=30) * i / n_back) for i in range(n_back)]
    y2100 = datetime(2100, 1, 1, tzinfo=UTC)
    future = [
        ("2100", y2100 + timedelta(seconds=s))
        for s in sorted(rng.uniform(0, 86_400) for _ in range(n_future))
    ]
    ancient = [
        ("1970", datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=s))
        for s in sorted(rng.uniform(0, 365) for _ in range(n_ancient))
    ]
    mixed = interleave(rng, live, back, future, ancient)
    world.say(
        f"producing with the SDK: {n_live:,} live, {n_back:,} backfill (330 days ago, model_version "
        f"'3-backfill'), {n_future} dated 2100 and {n_ancient} dated 1970, interleaved"
    )
    labels = Counter[str]()
    with MonitorClient(world.bootstrap, world.prefix, max_block=30.0) as client:
        for i, (kind, ts) in enumerate(mixed):
            version = "3-backfill" if kind == "backfill" else "1"
            pid = client.log_prediction(
                model,
                {"amount": float(i % 50), "country": "DE"},
                i % 2,
                score=0.3,
                model_version=version,
                ts=ts,
            )
            if kind in ("live", "backfill") and i % 5 == 0:
                client.log_ground_truth(model, pid, 1, ts=min(ts + timedelta(seconds=30), now))
                labels[kind] += 1
        undelivered = client.flush(60)
    result.produced = {
        "live events": n_live,
        "backfill events": n_back,
        "live labels": labels["live"],
        "backfill labels": labels["backfill"],
        "expired events": 0,
        "late events": 0,
    }
    result.dead_expected = {"ts_out_of_range": n_future + n_ancient}
    day_ago = now - timedelta(days=1)

    def read() -> Counts:
        client = world.clickhouse()
        events, joined = metric_totals(client, "events", model), metric_totals(client, "labels", model)
        expired = metric_totals(client, "expired_events", model)
        late = metric_totals(client, "late_events", model)
        return {
            "live events": int(sum(t.value for t in events if t.window_start >= day_ago)),
            "backfill events": int(sum(t.value for t in events if t.window_start < day_ago)),
            "live labels": int(sum(t.value for t in joined if t.window_start >= day_ago)),
            "backfill labels": int(sum(t.value for t in joined if t.window_start < day_ago)),
            "expired events": int(sum(t.value for t in expired)),
            # Events come in time order per partition: one dated 2100 moving a watermark makes the rest late.
            "late events": int(sum(t.value for t in late)),
        }

    world.say("sent; waiting for ClickHouse")
    result.stored, problems = world.settle(read, result.produced, dead_letters=n_future + n_ancient)
    result.dead_got = world.dead_letters()
    if undelivered:
        problems.append(f"SDK: {undelivered} undelivered")
    result.judge(problems + worker_problems(worker))
