"""Stage 1 sets one poison event aside and folds its neighbours, without a trace of it in any partial.

Unit tests with doubles (a dict as the join table, recording topics, a recording acknowledger); the
real broker runs the same code in tests/test_e2e_poison.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from modelmon.events import DeadLetter
from modelmon.settings import Settings
from modelmon.spec import parse_spec
from streams.bundle import WindowBundle
from streams.partials import Partial
from streams.stage1 import Stage1

NOW_S = 1_767_225_600.0  # 2026-01-01T00:00Z
SPEC = parse_spec(
    {
        "model_id": "m",
        "task": "binary",
        "features": {"amount": {"type": "numerical"}, "country": {"type": "categorical"}},
    }
)


@dataclass
class Message:
    value: bytes
    offset: int
    topic: str = "predictions"
    partition: int = 0
    key: bytes | None = None
    timestamp: float = NOW_S


@dataclass
class Event:
    message: Message


@dataclass
class Topic:
    sent: list[bytes] = field(default_factory=list)

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class Acks:
    acked: list[int] = field(default_factory=list)

    async def ack(self, event: Event) -> None:
        self.acked.append(event.message.offset)


def prediction(offset: int, amount: float, ts: str = "2025-12-31T23:59:00Z") -> Event:
    body = {"prediction_id": f"p{offset}", "model_id": "m", "ts": ts, "prediction": 1, "score": 0.5,
            "features": {"amount": amount, "country": "DE"}}  # fmt: skip
    return Event(Message(orjson.dumps(body), offset))


def stage1(chunk_size: int = 4) -> tuple[Stage1, Topic, Topic]:
    settings = Settings(_env_file=None, chunk_size=chunk_size, max_partial_bytes=1_000_000)  # type: ignore[call-arg]
    partials, dead = Topic(), Topic()
    stage = Stage1(settings, {"m": SPEC}, {}, lambda m, v: None, partials, dead, clock=lambda: NOW_S)  # type: ignore[arg-type]
    return stage, partials, dead


def test_an_event_whose_fold_raises_is_dead_lettered_and_its_batch_neighbours_count(monkeypatch: Any) -> None:
    real = WindowBundle.add_predictions

    def add_predictions(self: WindowBundle, events: Any, ingest: Any, spec: Any) -> None:
        if any(e.features["amount"] == 13.0 for e in events):
            raise OverflowError("cannot convert float infinity to integer")
        real(self, events, ingest, spec)

    monkeypatch.setattr(WindowBundle, "add_predictions", add_predictions)
    stage, partials, dead = stage1()
    acks = Acks()
    batch = [
        prediction(0, 1.0),
        prediction(1, 13.0),
        prediction(2, 2.0),
        prediction(3, 3.0),
        prediction(4, 4.0),
    ]
    asyncio.run(stage.process(acks, batch))  # type: ignore[arg-type]
    letters = [DeadLetter.model_validate_json(v) for v in dead.sent]
    assert [(d.offset, d.error_type) for d in letters] == [(1, "processing_error")]
    assert "OverflowError: cannot convert float infinity to integer" in letters[0].reason
    # Offset 4 opened chunk 1, so chunk 0 (offsets 0-3) was published: three events, the poison one left out.
    (published,) = [Partial.from_json(v) for v in partials.sent]
    assert (published.source, published.bundle.events) == ("predictions|0|0", 3)
    assert sorted(acks.acked) == [0, 1, 1, 2, 3]  # the poison event after its letter, again with its chunk


@pytest.mark.parametrize(
    ("ts", "error_type"),
    [("9999-12-31T23:59:00Z", "ts_out_of_range"), ("2100-01-01T00:00:00Z", "ts_out_of_range"),
     ("1970-01-01T00:00:00Z", "ts_out_of_range")],
)  # fmt: skip
def test_event_times_far_from_the_clock_never_reach_a_window(ts: str, error_type: str) -> None:
    stage, partials, dead = stage1()
    batch = [prediction(0, 1.0), prediction(1, 2.0, ts=ts), prediction(2, 3.0), prediction(4, 4.0)]
    asyncio.run(stage.process(Acks(), batch))  # type: ignore[arg-type]
    assert [DeadLetter.model_validate_json(v).error_type for v in dead.sent] == [error_type]
    (published,) = [Partial.from_json(v) for v in partials.sent]
    assert published.bundle.events == 2
    assert published.watermark_ms == 1_767_225_540_000  # the good events' time: 2100 moved nothing
