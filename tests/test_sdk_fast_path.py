"""The SDK's fast check of ordinary values agrees with the contract: same calls accepted, same events sent.

A double stands in for confluent-kafka's producer here (what is sent is the subject); tests/test_sdk.py
sends through the real broker.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from modelmon.events import GroundTruthEvent, PredictionEvent
from modelmon.sdk import MonitorClient


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value, key))

    def poll(self, timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return 0


def client() -> MonitorClient:
    monitor = MonitorClient("127.0.0.1:9", **{"log_level": 0})
    monitor._producer = Producer()  # type: ignore[assignment]
    return monitor


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=5),
    st.just([1]), st.just(b"x"), st.just(1.5 + 0j),
)  # fmt: skip
names = st.one_of(st.text(max_size=4), st.integers(0, 3))
arguments = st.fixed_dictionaries(
    {
        "model_id": st.one_of(st.just("m"), st.just(""), st.integers(0, 1)),
        "features": st.one_of(st.dictionaries(names, scalars, max_size=4), st.just([("a", 1)])),
        "prediction": st.one_of(scalars, st.floats()),
    },
    optional={
        "model_version": st.one_of(st.just("2"), st.just(""), st.integers(0, 1)),
        "prediction_id": st.one_of(st.just("p-1"), st.just(""), st.integers(0, 1)),
        "score": st.one_of(st.none(), st.floats(-0.5, 1.5), st.integers(-1, 2), st.just("0.5")),
        "scores": st.one_of(st.none(), st.dictionaries(names, st.floats(-0.5, 1.5), max_size=2)),
        "ts": st.one_of(
            st.integers(-(10**16), 10**16),
            st.booleans(),
            st.just("2024-05-01T12:00:00+02:00"),
            st.just("yesterday"),
            st.datetimes(timezones=st.just(UTC)),
            st.datetimes(),
        ),
        "tags": st.one_of(
            st.none(), st.dictionaries(names, st.one_of(st.text(max_size=3), st.integers()), max_size=2)
        ),
    },
)


def contract(arguments: dict[str, Any]) -> PredictionEvent:
    """What the contract itself makes of the same call (the slow path, as the SDK had it)."""
    fields = {k: v for k, v in arguments.items() if v is not None or k in ("score", "scores")}
    fields["features"] = dict(arguments["features"])
    fields["tags"] = dict(arguments.get("tags") or {})
    fields.setdefault("prediction_id", "generated")
    return PredictionEvent.model_validate(fields)


@settings(max_examples=1500, deadline=None)
@given(arguments)
def test_log_prediction_accepts_and_sends_what_the_contract_accepts(arguments: dict[str, Any]) -> None:
    monitor = client()
    try:
        expected = contract(arguments)
    except (ValidationError, TypeError, ValueError):
        with pytest.raises(ValidationError):
            monitor.log_prediction(**arguments)
        assert monitor._producer.sent == []  # type: ignore[attr-defined]
        return
    pid = monitor.log_prediction(**arguments)
    ((topic, value, key),) = monitor._producer.sent  # type: ignore[attr-defined]
    sent = PredictionEvent.model_validate(orjson.loads(value))
    assert (topic, key.decode(), sent.prediction_id) == ("predictions", pid, pid)
    if "prediction_id" not in arguments or arguments["prediction_id"] is None:
        assert uuid.UUID(pid).version == 4
    ignore = {"prediction_id", "ts", "features"}
    assert sent.model_dump(exclude=ignore) == expected.model_dump(exclude=ignore)
    # NaN and ±inf features are sent as null (JSON has neither), as pydantic's JSON did.
    assert sent.features == {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in expected.features.items()
    }
    if "ts" in arguments:
        assert sent.ts == expected.ts.replace(microsecond=expected.ts.microsecond // 1000 * 1000)


def test_ids_are_uuid4_and_unique() -> None:
    monitor = client()
    ids = [monitor.log_prediction("m", {"x": 1.0}, 1) for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert {uuid.UUID(pid).version for pid in ids} == {4}


def test_ground_truth_fast_path_sends_what_the_contract_reads() -> None:
    monitor = client()
    monitor.log_ground_truth("m", "p-1", 1, ts=datetime(2024, 5, 1, 10, tzinfo=UTC))
    monitor.log_ground_truth("m", "p-2", "yes", ts="2024-05-01T12:00:00+02:00")
    events = [GroundTruthEvent.model_validate(orjson.loads(v)) for _, v, _ in monitor._producer.sent]  # type: ignore[attr-defined]
    assert [(e.prediction_id, e.label, e.ts.isoformat()) for e in events] == [
        ("p-1", 1, "2024-05-01T10:00:00+00:00"),
        ("p-2", "yes", "2024-05-01T10:00:00+00:00"),
    ]
    with pytest.raises(ValidationError):
        monitor.log_ground_truth("m", "p-3", float("nan"))


def test_a_producer_that_failed_for_good_is_replaced_and_logging_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from confluent_kafka import KafkaError, KafkaException

    import modelmon.sdk as sdk

    made: list[Any] = []

    class Fenced(Producer):
        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__()
            self.fatal = not made  # the first producer fails for good, as after broker data loss
            made.append(self)

        def produce(self, topic: str, value: bytes, key: bytes) -> None:
            if self.fatal:
                raise KafkaException(
                    KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "out of order", fatal=True)
                )
            super().produce(topic, value, key)

        def purge(self) -> None:
            pass

        def flush(self, timeout: float = 0) -> int:
            return 0

    monkeypatch.setattr(sdk, "Producer", Fenced)
    monitor = MonitorClient("127.0.0.1:9", **{"log_level": 0})
    pid = monitor.log_prediction("m", {"x": 1.0}, 1)
    assert len(made) == 2 and monitor.renewals == 1
    ((topic, _, key),) = made[1].sent
    assert (topic, key.decode()) == ("predictions", pid)


def test_what_a_failed_producer_held_is_sent_again_on_the_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import KafkaError, KafkaException

    import modelmon.sdk as sdk

    made: list[Any] = []

    class Message:
        def __init__(self, topic: str, value: bytes, key: bytes) -> None:
            self._t, self._v, self._k = topic, value, key

        def topic(self) -> str:
            return self._t

        def value(self) -> bytes:
            return self._v

        def key(self) -> bytes:
            return self._k

    class Failing(Producer):
        """Takes two messages, then fails for good; purge reports what it held, as librdkafka does."""

        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__()
            self.report = config["on_delivery"]
            self.first = not made
            made.append(self)

        def produce(self, topic: str, value: bytes, key: bytes) -> None:
            if self.first and len(self.sent) == 2:
                # What librdkafka raises once the producer is in its fatal state: no fatal flag.
                fatal = KafkaError(KafkaError._FATAL, "Unable to produce message: Local: Fatal error")
                raise KafkaException(fatal)
            super().produce(topic, value, key)

        def purge(self) -> None:
            for topic, value, key in self.sent:
                self.report(KafkaError(KafkaError._PURGE_INFLIGHT), Message(topic, value, key))

        def flush(self, timeout: float = 0) -> int:
            return 0

    monkeypatch.setattr(sdk, "Producer", Failing)
    monitor = MonitorClient("127.0.0.1:9", **{"log_level": 0})
    ids = [monitor.log_prediction("m", {"x": float(i)}, 1) for i in range(3)]
    assert len(made) == 2 and monitor.renewals == 1
    assert sorted(key.decode() for _, _, key in made[1].sent) == sorted(ids)  # none lost
    assert monitor.failed == 0 and monitor.flush(0) == 0
