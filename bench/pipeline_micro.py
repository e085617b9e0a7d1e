"""Per-event CPU cost of each hot-path step, in process (no Kafka, no faust)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pipeline_traffic import THROUGHPUT_MODEL, WINDOW_MS, Traffic


def _per_event_us(fn: Callable[[], Any], n_events: int, min_seconds: float = 0.3) -> float:
    """CPU microseconds per event (process time: robust to other jobs sharing the cores)."""
    fn()  # warm-up
    best = math.inf
    for _ in range(3):
        rounds, started = 0, time.process_time()
        while True:
            fn()
            rounds += 1
            elapsed = time.process_time() - started
            if elapsed >= min_seconds / 3:
                break
        best = min(best, elapsed / (rounds * n_events) * 1e6)
    return best


def microbench(traffic: Traffic, model_dir: Path) -> list[tuple[str, float]]:
    """Microseconds per event of the steps stage 1 runs per message (one core, no Kafka, no faust)."""
    from pydantic import TypeAdapter

    from modelmon.events import PredictionEvent, model_to_json
    from modelmon.spec import load_specs
    from streams.bundle import WindowBundle
    from streams.join import on_prediction, prediction_record
    from streams.stage1 import bundle_keys
    from streams.validation import check_against_spec, parse_event

    specs = load_specs(model_dir)
    spec = specs[THROUGHPUT_MODEL]
    n = 1000
    events = [
        PredictionEvent(
            model_id=THROUGHPUT_MODEL,
            features=traffic.features[i],
            prediction=traffic.predictions[i],
            score=traffic.scores[i],
        )
        for i in range(n)
    ]
    payloads = [model_to_json(e) for e in events]
    sdk_fields = [
        {
            "model_id": THROUGHPUT_MODEL,
            "model_version": "1",
            "features": dict(traffic.features[i]),
            "prediction": traffic.predictions[i],
            "score": traffic.scores[i],
            "scores": None,
            "tags": {},
        }
        for i in range(n)
    ]  # what MonitorClient.log_prediction validates
    packed = b"[" + b",".join(payloads) + b"]"
    batch_adapter = TypeAdapter(list[PredictionEvent])
    keys = bundle_keys(spec, events[0], WINDOW_MS)
    ingest = np.full(n, int(time.time() * 1000), dtype=np.int64)

    def validate_each() -> None:
        for p in payloads:
            check_against_spec(parse_event(p, PredictionEvent), specs)

    def join_each() -> None:
        store: dict[str, Any] = {}
        for e in events:
            ts = int(e.ts.timestamp() * 1000)
            record = prediction_record(
                e.model_id,
                e.model_version,
                ts,
                e.prediction,
                e.score,
                e.scores,
                [k.segment for k in bundle_keys(spec, e, WINDOW_MS)],
                "t|0|1",
            )
            on_prediction(store, e.prediction_id, record)

    def bundle_add() -> None:
        WindowBundle.empty(keys[0], spec, None).add_predictions(events, ingest, spec)

    def bundle_ship() -> None:
        bundle = WindowBundle.empty(keys[0], spec, None)
        bundle.add_predictions(events, ingest, spec)
        WindowBundle.from_dict(orjson.loads(orjson.dumps(bundle.to_dict())))

    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "SDK: PredictionEvent.model_validate + model_to_json",
            lambda: [model_to_json(PredictionEvent.model_validate(f)) for f in sdk_fields],
        ),
        ("stage 1: orjson.loads only", lambda: [orjson.loads(p) for p in payloads]),
        ("stage 1: parse_event + check_against_spec (orjson + pydantic, per message)", validate_each),
        (
            "alternative: one TypeAdapter(list[PredictionEvent]).validate_json per 1000 (packed)",
            lambda: batch_adapter.validate_json(packed),
        ),
        ("stage 1: join record + on_prediction (plain dict, no faust table)", join_each),
        ("stage 1: WindowBundle.add_predictions, batches of 1000", bundle_add),
        ("stage 1->2: + to_dict, orjson, from_dict of the bundle (per 1000 events)", bundle_ship),
    ]
    return [(name, _per_event_us(fn, n)) for name, fn in steps]
