"""How the data plane decodes input messages: msgspec ``Struct`` against pydantic and orjson (issue #12).

Usage (from the repository root)::

    .venv/bin/python bench/bench_decode.py                 # 100,000 messages, 5 rounds, a few seconds
    .venv/bin/python bench/bench_decode.py --messages 2000 --rounds 1

The messages are the pipeline bench's predictions (20 features: 16 numerical, 4 categorical; a
score; epoch-millisecond times), as the SDK writes them. Each decoder turns every message into a
typed, validated event; CPU time per message (``time.process_time``), best of ``--rounds``:

- ``orjson.loads`` only: a dict, nothing checked (the floor);
- msgspec ``Struct`` (``streams.decode.decode_prediction``): typed and checked in C, what the data
  plane uses;
- pydantic ``PredictionEvent.model_validate_json`` per message;
- ``orjson.loads`` + ``PredictionEvent.model_validate`` per message (the contract's own path,
  ``streams.validation.parse_event``);
- pydantic ``TypeAdapter(list[PredictionEvent]).validate_json`` on batches of 1,000 messages joined
  into one JSON array: batch validation, which would also need every producer to send arrays.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from pipeline_traffic import Traffic
from pydantic import TypeAdapter

from modelmon.events import PredictionEvent
from streams.decode import decode_prediction
from streams.validation import parse_event

BATCH = 1000


def messages(n: int, seed: int) -> list[bytes]:
    traffic = Traffic.generate(seed, 0.0)
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        k = i % len(traffic.features)
        body = {
            "prediction_id": f"00000000-0000-4000-8000-{i:012d}",
            "model_id": "bench",
            "model_version": "1",
            "ts": now_ms - i,
            "features": traffic.features[k],
            "prediction": traffic.predictions[k],
            "score": traffic.scores[k],
        }
        out.append(orjson.dumps(body))
    return out


def decoders() -> dict[str, Callable[[list[bytes]], int]]:
    adapter = TypeAdapter(list[PredictionEvent])

    def per_message(decode: Callable[[bytes], Any]) -> Callable[[list[bytes]], int]:
        return lambda values: len(list(map(decode, values)))

    def batched(values: list[bytes]) -> int:
        count = 0
        for start in range(0, len(values), BATCH):
            count += len(adapter.validate_json(b"[" + b",".join(values[start : start + BATCH]) + b"]"))
        return count

    return {
        "orjson.loads only (a dict, nothing checked)": per_message(orjson.loads),
        "msgspec Struct (streams.decode, the data plane's)": per_message(decode_prediction),
        "pydantic model_validate_json per message": per_message(PredictionEvent.model_validate_json),
        "orjson.loads + pydantic model_validate (the contract's parse_event)": per_message(
            lambda value: parse_event(value, PredictionEvent)
        ),
        f"pydantic TypeAdapter(list[...]).validate_json, arrays of {BATCH:,}": batched,
    }


def measure(decode: Callable[[list[bytes]], int], values: list[bytes], rounds: int) -> float:
    """Best CPU seconds of ``rounds`` runs over all ``values``."""
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        started = time.process_time()
        assert decode(values) == len(values)
        best = min(best, time.process_time() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages per round [100,000]")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best counts [5]")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be at least 1")
    values = messages(args.messages, args.seed)
    size = sum(map(len, values)) / len(values)
    print(f"{args.messages:,} prediction messages of {size:,.0f} bytes on average; best of {args.rounds}")
    rows = []
    for name, decode in decoders().items():
        seconds = measure(decode, values, args.rounds)
        rows.append((name, seconds / len(values) * 1e6, len(values) / seconds))
    width = max(len(name) for name, _, _ in rows)
    print(f"| {'decoder':<{width}} | µs CPU/message | messages/CPU-s |")
    print(f"|{'-' * (width + 2)}|---------------:|---------------:|")
    for name, micros, rate in rows:
        print(f"| {name:<{width}} | {micros:14.2f} | {rate:14,.0f} |")
    for name, micros, _ in rows:
        print(f"RESULT {name}: {micros:.2f} µs/message")
    given = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python", "bench/bench_decode.py", *given])
    print(f"Reproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
