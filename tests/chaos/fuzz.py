"""Fuzzed input messages for `fuzz_10k`, each with the dead-letter error_type stage 1 must give it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

PREDICTIONS, LABELS = "predictions", "ground-truth"


@dataclass(frozen=True)
class Fuzzed:
    """One bad message: the topic it goes to (``predictions`` / ``ground-truth``), key, value, and the
    ``error_type`` of the dead letter it must become."""

    topic: str
    key: bytes | None
    value: bytes | None
    error_type: str
    kind: str


def _pid() -> str:
    return uuid.uuid4().hex


def _prediction(model_id: str, now: datetime, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prediction_id": _pid(),
        "model_id": model_id,
        "ts": now.isoformat(),
        "features": {"amount": 1.5, "country": "DE"},
        "prediction": 1,
        "score": 0.4,
    }
    body.update(fields)
    return body


def _label(model_id: str, now: datetime, **fields: Any) -> dict[str, Any]:
    return {"prediction_id": _pid(), "model_id": model_id, "label": 1, "ts": now.isoformat(), **fields}


def _topic(rng: random.Random) -> str:
    return PREDICTIONS if rng.random() < 0.7 else LABELS


def random_bytes(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    value = b"\xff" + rng.randbytes(rng.randint(0, 300))  # 0xff starts no JSON text
    return Fuzzed(_topic(rng), rng.randbytes(8), value, "invalid_json", "random bytes")


def truncated_json(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    whole = orjson.dumps(_prediction(model_id, now))
    return Fuzzed(
        PREDICTIONS, None, whole[: rng.randint(1, len(whole) - 1)], "invalid_json", "truncated JSON"
    )


def nan_or_huge(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    literal = rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
    field = rng.choice(["features.amount", "score", "prediction"])
    body = orjson.dumps(_prediction(model_id, now, score=0.123456789))
    if field == "features.amount":
        body = body.replace(b'"amount":1.5', b'"amount":' + literal.encode())
    elif field == "score":
        body = body.replace(b'"score":0.123456789', b'"score":' + literal.encode())
    else:
        body = body.replace(b'"prediction":1', b'"prediction":' + literal.encode())
    return Fuzzed(PREDICTIONS, None, body, "invalid_json", "NaN / 1e400")


def deep_nesting(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    deep = opener * 10_000 + b"1" + closer * 10_000
    body = orjson.dumps(_prediction(model_id, now, features={"amount": 0})).replace(
        b'"amount":0', b'"amount":' + deep
    )
    return Fuzzed(PREDICTIONS, None, body, "invalid_json", "10,000-deep nesting")


def many_features(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    features: dict[str, float] = {f"f{i}": i for i in range(5_000)}
    features["amount"] = 1.0
    return Fuzzed(
        PREDICTIONS,
        None,
        orjson.dumps(_prediction(model_id, now, features=features)),
        "too_large",
        "5,000-key feature map",
    )


def wrong_types(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    wrong: dict[str, Any] = rng.choice(
        [
            {"features": [1, 2, 3]},
            {"features": {"amount": {"nested": 1}}},
            {"prediction": {"class": 1}},
            {"prediction": [1]},
            {"score": "high"},
            {"score": 7.5},
            {"tags": ["a", "b"]},
            {"ts": True},
            {"ts": 10**17},  # year 3,170,843: out of datetime's range
            {"prediction_id": 12},
            {"unexpected_field": 1},
        ]
    )
    return Fuzzed(
        PREDICTIONS,
        None,
        orjson.dumps(_prediction(model_id, now, **wrong)),
        "contract_violation",
        "wrong types",
    )


def wrong_label(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    body = _label(model_id, now)
    body.pop(rng.choice(["label", "prediction_id"]))
    return Fuzzed(LABELS, None, orjson.dumps(body), "contract_violation", "wrong types")


def unknown_model(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    other = f"no-such-model-{rng.randrange(1000)}"
    topic = _topic(rng)
    body = _prediction(other, now) if topic == PREDICTIONS else _label(other, now)
    return Fuzzed(topic, None, orjson.dumps(body), "unknown_model", "unknown model id")


def missing_model_id(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    topic = _topic(rng)
    body = _prediction(model_id, now) if topic == PREDICTIONS else _label(model_id, now)
    if rng.random() < 0.8:
        del body["model_id"]
    else:
        body["model_id"] = ""
    return Fuzzed(topic, None, orjson.dumps(body), "missing_model_id", "missing model_id")


def empty_value(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    value, error_type = rng.choice(
        [
            (None, "empty_message"),
            (b"", "invalid_json"),
            (b"   ", "invalid_json"),
            (b"{}", "missing_model_id"),
            (b"[]", "not_an_object"),
            (b"null", "not_an_object"),
            (b'"text"', "not_an_object"),
            (b"42", "not_an_object"),
            (orjson.dumps(_prediction(model_id, now, features={})), "missing_required_feature"),
            (orjson.dumps(_prediction(model_id, now, features={"amount": None})), "missing_required_feature"),
        ]
    )
    topic = PREDICTIONS if error_type == "missing_required_feature" else _topic(rng)
    return Fuzzed(topic, rng.randbytes(4), value, error_type, "empty values")


def far_ts(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    ts = rng.choice(
        [
            "9999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
            (now + timedelta(hours=rng.uniform(1, 1000))).isoformat(),
            (now - timedelta(days=rng.uniform(8, 10_000))).isoformat(),
            "1970-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            0,
        ]
    )
    topic = _topic(rng)
    body = _prediction(model_id, now, ts=ts) if topic == PREDICTIONS else _label(model_id, now, ts=ts)
    return Fuzzed(topic, None, orjson.dumps(body), "ts_out_of_range", "ts far in the future / past")


def oversize_string(rng: random.Random, model_id: str, now: datetime) -> Fuzzed:
    text = "x" * rng.randint(4_097, 20_000)
    where = rng.choice(["feature", "feature name", "tag", "prediction", "model_id"])
    if where == "feature":
        body = _prediction(model_id, now, features={"amount": 1.0, "country": text})
    elif where == "feature name":
        body = _prediction(model_id, now, features={"amount": 1.0, text: 1})
    elif where == "tag":
        body = _prediction(model_id, now, tags={"region": text})
    elif where == "prediction":
        body = _prediction(model_id, now, prediction=text)
    else:
        body = _prediction(text, now)
    return Fuzzed(PREDICTIONS, None, orjson.dumps(body), "too_large", "oversize strings")


Maker = Callable[[random.Random, str, datetime], Fuzzed]
#: Every kind of fuzzed message with its weight: the large ones (20-60 kB each) less often.
MAKERS: list[tuple[Maker, int]] = [
    (random_bytes, 3),
    (truncated_json, 3),
    (nan_or_huge, 3),
    (deep_nesting, 1),
    (many_features, 1),
    (wrong_types, 3),
    (wrong_label, 1),
    (unknown_model, 3),
    (missing_model_id, 3),
    (empty_value, 3),
    (far_ts, 3),
    (oversize_string, 1),
]


def fuzzed_messages(rng: random.Random, model_id: str, now: datetime, count: int) -> list[Fuzzed]:
    """``count`` fuzzed messages, kinds drawn with :data:`MAKERS`' weights."""
    makers, weights = zip(*MAKERS, strict=True)
    return [maker(rng, model_id, now) for maker in rng.choices(makers, weights, k=count)]
