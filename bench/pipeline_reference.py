"""Reference points without the worker: SDK produce, confluent-kafka and faust consume-only rates."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from pipeline_phases import Results
from pipeline_processes import BENCH_DIR, Child, cpu_seconds, own_cpu_seconds, python_script, worker_env
from pipeline_traffic import POOL_SIZE, THROUGHPUT_MODEL, Traffic, produce

from modelmon.settings import Settings

SCRIPT = BENCH_DIR / "bench_pipeline.py"  # runs floor_main in a child with --floor


def consume_confluent(bootstrap: str, topics: list[str], expected: int) -> tuple[int, float]:
    """Read ``expected`` messages raw (no parsing) with confluent-kafka; returns (messages, seconds)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-consume-{os.getpid()}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe(topics)
    seen, first, deadline = 0, 0.0, time.monotonic() + 300
    while seen < expected and time.monotonic() < deadline:
        batch = consumer.consume(5000, timeout=1.0)
        good = sum(1 for m in batch if m.error() is None)
        if good and not first:
            first = time.perf_counter()
        seen += good
    elapsed = time.perf_counter() - first if first else float("nan")
    consumer.close()
    return seen, elapsed


def floor_main(mode: str, out: Path, expected: int) -> None:
    """Child process: a faust app whose only agent reads predictions + ground-truth and counts them.

    ``mode`` ``noop`` does nothing per message (faust's own per-message cost); ``validate`` parses
    and validates each message as stage 1 does (JSON, the pydantic contract, the model spec);
    ``packed`` reads messages that each hold a JSON array of events and validates each message in
    one ``TypeAdapter(list[PredictionEvent]).validate_json`` call plus the spec check per event.
    Writes {"messages", "events", "seconds"} to ``out`` once ``expected`` events were taken.
    """
    import faust
    from pydantic import TypeAdapter, ValidationError

    from modelmon.events import GroundTruthEvent, PredictionEvent
    from modelmon.spec import load_specs
    from streams.app import build_app
    from streams.validation import InvalidEvent, check_against_spec, parse_event

    packed = TypeAdapter(list[PredictionEvent])
    settings = Settings()
    specs = load_specs(settings.models_path)
    app = build_app(settings, partitions=settings.topic_partitions)
    predictions = settings.topics.predictions
    topic = app.topic(predictions, settings.topics.ground_truth, key_serializer="raw", value_serializer="raw")
    state = {"seen": 0, "events": 0, "first": 0.0, "invalid": 0, "done": False}

    def handle(message: Any) -> int:
        """Validate one message as ``mode`` says; returns the number of events it held."""
        if mode == "validate":
            if message.topic == predictions:
                check_against_spec(parse_event(message.value, PredictionEvent), specs)
            else:
                parse_event(message.value, GroundTruthEvent)
        elif mode == "packed":
            batch = packed.validate_json(message.value)
            for item in batch:
                check_against_spec(item, specs)
            return len(batch)
        return 1

    @app.agent(topic, name="bench-floor")
    async def floor(stream: Any) -> None:
        # The plain per-message iteration, as the worker's agents read (streams/batching.py).
        async for event in stream.events():
            if not state["first"]:
                state["first"] = time.perf_counter()
            try:
                state["events"] += handle(event.message)
            except (InvalidEvent, ValidationError):
                state["invalid"] += 1
            state["seen"] += 1
            if state["events"] >= expected and not state["done"]:
                state["done"] = True
                seconds = time.perf_counter() - state["first"]
                result = {"messages": state["seen"], "events": state["events"], "seconds": seconds}
                out.write_text(json.dumps({**result, "invalid": state["invalid"]}))

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def run_floor(
    mode: str,
    settings: Settings,
    workdir: Path,
    expected: int,
    extra_env: dict[str, str],
    uvloop: bool = False,
) -> dict:
    """Run :func:`floor_main` in a subprocess; returns its result plus its CPU seconds."""
    out = workdir / f"floor-{mode}.json"
    floor_settings = settings.model_copy(
        update={"app_id": f"bench-floor-{mode}", "worker_data_dir": workdir / f"floor-{mode}"}
    )
    args = [
        *python_script(str(SCRIPT), uvloop),
        "--floor",
        mode,
        "--floor-out",
        str(out),
        "--floor-expected",
        str(expected),
    ]
    child = Child(args, worker_env(floor_settings, extra_env), workdir / f"floor-{mode}.log")
    cpu_start = cpu_seconds(child.pid)
    try:
        deadline = time.monotonic() + max(120.0, expected / 500)
        while not out.exists():
            if not child.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"faust {mode} reader failed or timed out:\n{child.log_tail()}")
            time.sleep(0.2)
        cpu = cpu_seconds(child.pid) - cpu_start
    finally:
        child.stop()
    result = json.loads(out.read_text())
    result["cpu_seconds"] = cpu  # whole process, start-up included
    return result


def run_references(
    settings: Settings, traffic: Traffic, workdir: Path, args: argparse.Namespace, results: Results
) -> None:
    from modelmon.sdk import MonitorClient
    from streams.run import prepare_topics

    n = args.reference_events
    ref = settings.model_copy(update={"topic_prefix": "ref."})
    prepare_topics(ref)
    print(f"[reference] SDK producing {n:,} events (no worker running)", flush=True)
    cpu0 = own_cpu_seconds()
    with MonitorClient(settings.kafka_bootstrap, ref.topic_prefix) as client:
        messages, seconds = produce(client, traffic, THROUGHPUT_MODEL, n)
    results.reference["sdk"] = {
        "events": n,
        "messages": messages,
        "seconds": seconds,
        "events_per_s": n / seconds,
        "cpu_s": own_cpu_seconds() - cpu0,
    }
    print(f"  SDK: {n / seconds:,.0f} events/s ({messages / seconds:,.0f} messages/s)", flush=True)
    topics = [ref.topics.predictions, ref.topics.ground_truth]
    got, seconds = consume_confluent(settings.kafka_bootstrap, topics, messages)
    results.reference["confluent"] = {"messages": got, "seconds": seconds, "messages_per_s": got / seconds}
    print(f"  confluent-kafka consume only: {got / seconds:,.0f} messages/s", flush=True)
    for mode in [m for m in args.floors if m != "packed"]:
        print(f"  faust agent ({mode}) reading the same {messages:,} messages ...", flush=True)
        result = run_floor(mode, ref, workdir, messages, args.extra_env, args.uvloop)
        result["messages_per_s"] = result["messages"] / result["seconds"]
        results.reference[f"faust-{mode}"] = result
        print(f"  faust agent ({mode}): {result['messages_per_s']:,.0f} messages/s", flush=True)
    if "packed" in args.floors:
        packed = settings.model_copy(update={"topic_prefix": "refpacked."})
        prepare_topics(packed)
        print(f"  packing {n:,} predictions, {args.pack} per message (what a packing SDK would send) ...")
        cpu0 = own_cpu_seconds()
        sent, seconds = produce_packed(packed, traffic, n, args.pack)
        results.reference["sdk-packed"] = {
            "events": n, "messages": sent, "seconds": seconds, "events_per_s": n / seconds,
            "cpu_s": own_cpu_seconds() - cpu0, "pack": args.pack,
        }  # fmt: skip
        print(f"  packed produce: {n / seconds:,.0f} events/s", flush=True)
        result = run_floor("packed", packed, workdir, n, args.extra_env, args.uvloop)
        result["messages_per_s"] = result["messages"] / result["seconds"]
        result["events_per_s"] = result["events"] / result["seconds"]
        result["pack"] = args.pack
        results.reference["faust-packed"] = result
        print(f"  faust agent (packed, validate): {result['events_per_s']:,.0f} events/s", flush=True)


def produce_packed(settings: Settings, traffic: Traffic, n: int, pack: int) -> tuple[int, float]:
    """``n`` predictions as JSON arrays of ``pack`` events per message (no labels); (messages, seconds).

    Each event is validated and serialised as the SDK does; only the Kafka message is shared.
    """
    from confluent_kafka import Producer

    from modelmon.events import PredictionEvent, model_to_json
    from modelmon.sdk import DEFAULT_PRODUCER_CONFIG

    producer = Producer({**DEFAULT_PRODUCER_CONFIG, "bootstrap.servers": settings.kafka_bootstrap})
    topic, messages = settings.topics.predictions, 0
    started = time.perf_counter()
    for first in range(0, n, pack):
        items = []
        for i in range(first, min(n, first + pack)):
            k = i % POOL_SIZE
            fields = {"model_id": THROUGHPUT_MODEL, "features": traffic.features[k],
                      "prediction": traffic.predictions[k], "score": traffic.scores[k]}  # fmt: skip
            items.append(model_to_json(PredictionEvent.model_validate(fields)))
        while True:
            try:
                producer.produce(topic, key=str(first).encode(), value=b"[" + b",".join(items) + b"]")
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        messages += 1
    undelivered = producer.flush(120)
    seconds = time.perf_counter() - started
    del producer  # librdkafka's client goes now, not when the broker is already gone
    if undelivered:
        raise RuntimeError("packed produce: messages still undelivered after 120 s")
    return messages, seconds
