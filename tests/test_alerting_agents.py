"""The alerting agents' logic with in-memory doubles (the real broker run is tests/test_e2e_alerting.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from modelmon.events import Alert, AlertState, MetricPoint, RetrainRequested, model_to_json
from modelmon.settings import WebhookTarget
from modelmon.spec import SpecError, parse_spec
from streams.alerting import AlertDispatcher, AlertEvaluator, pipeline_targets

BASE = datetime(2026, 4, 1, tzinfo=UTC)
SPEC = parse_spec(
    {
        "model_id": "m",
        "task": "binary",
        "features": {"a": {"type": "numerical"}},
        "alerts": [{"name": "psi-high", "metric": "psi", "threshold": 0.2}],
        "retrain": {"enabled": True, "on_rules": ["psi-high"]},
    }
)


class Journal(list[str]):
    """The order in which the agent did things."""


class TopicDouble:
    def __init__(self, name: str, journal: Journal) -> None:
        self.name, self.journal, self.sent = name, journal, list[bytes]()

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.journal.append(f"send {self.name}")
        self.sent.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class StoreDouble(dict[str, Any]):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def __setitem__(self, key: str, value: Any) -> None:
        self.journal.append("save")
        super().__setitem__(key, value)


class StreamDouble:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def ack(self, event: Any) -> None:
        self.journal.append(f"ack {event.message.offset}")


class EventDouble:
    """A faust event: its message, and weak-referenceable as faust's current event must be."""

    def __init__(self, message: SimpleNamespace) -> None:
        self.message = message


def event(offset: int, value: bytes, topic: str = "monitor-metrics") -> Any:
    message = SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"m", value=value, tp=(topic, 0))
    return EventDouble(message)


def psi(window: int, value: float) -> bytes:
    start = BASE + timedelta(minutes=window)
    point = MetricPoint(
        model_id="m",
        metric="psi",
        feature="a",
        window_start=start,
        window_end=start + timedelta(minutes=1),
        value=value,
        source="stage2",
    )
    return model_to_json(point)


def test_alerts_then_requests_are_published_before_the_state_is_saved_and_the_points_acked() -> None:
    journal = Journal()
    topics = {name: TopicDouble(name, journal) for name in ("alerts", "retrain", "dead")}
    evaluator = AlertEvaluator(
        {"m": SPEC},
        StoreDouble(journal),
        StoreDouble(journal),
        topics["alerts"],
        topics["retrain"],
        topics["dead"],
    )
    events = [event(0, psi(0, 0.5)), event(1, b"{not json"), event(2, psi(0, 0.5))]
    asyncio.run(evaluator.process(StreamDouble(journal), events))  # type: ignore[arg-type]
    assert journal == ["send dead", "send alerts", "send retrain", "save", "save", "ack 0", "ack 1", "ack 2"]
    (letter,) = [orjson.loads(v) for v in topics["dead"].sent]
    assert (letter["error_type"], letter["offset"]) == ("invalid_metric_point", 1)
    (alert,) = [
        Alert.model_validate_json(v) for v in topics["alerts"].sent
    ]  # the replay at offset 2: nothing
    assert alert.state.value == "firing"
    (request,) = [RetrainRequested.model_validate_json(v) for v in topics["retrain"].sent]
    assert request.alert_ids == [alert.alert_id]
    # The same points again (a replay after a restart with saved state): no output, nothing to save.
    journal.clear()
    asyncio.run(evaluator.process(StreamDouble(journal), [event(0, psi(0, 0.5))]))  # type: ignore[arg-type]
    assert journal == ["ack 0"]


def test_the_notifier_agent_acks_only_after_every_target_is_done() -> None:
    journal = Journal()
    release = asyncio.Event()
    sent: list[str] = []

    class SlowNotifier:
        async def submit(self, target: WebhookTarget, note: Any, on_done: Any) -> None:
            async def later() -> None:
                await release.wait()
                sent.append(target.format)
                await on_done(None)

            asyncio.get_running_loop().create_task(later())

    targets = [
        WebhookTarget(url="http://a/x"),
        WebhookTarget(url="http://b/x", format="slack", kinds=["alerts"]),
    ]
    dispatcher = AlertDispatcher(targets, {}, SlowNotifier())  # type: ignore[arg-type]

    async def scenario() -> None:
        alert = Alert(
            dedup_key="m|psi-high|a|",
            model_id="m",
            rule="psi-high",
            state="firing",
            metric="psi",
            value=0.5,
            threshold=0.2,
            window_start=BASE,
            window_end=BASE,
            details={"notify": True, "group_key": "g"},
        )
        pending = alert.model_copy(update={"state": AlertState.PENDING, "details": {"notify": False}})
        request = RetrainRequested(idempotency_key="k", model_id="m", reason="r")
        events = [
            event(0, model_to_json(alert)),
            event(1, model_to_json(pending)),
            event(2, model_to_json(request)),
        ]
        await dispatcher.process(StreamDouble(journal), events)  # type: ignore[arg-type]
        assert journal == ["ack 1"]  # the pending alert is not notified; the others wait for delivery
        release.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert sorted(journal) == ["ack 0", "ack 1", "ack 2"]
        assert sorted(sent) == ["json", "json", "slack"]  # alerts to both, the request to the json target

    asyncio.run(scenario())


def test_pipeline_webhook_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SPEC.model_copy(
        update={
            "retrain": SPEC.retrain.model_copy(
                update={"webhook": "https://airflow/api", "webhook_secret_env": "TEST_PIPELINE_SECRET"}
            )
        }
    )
    monkeypatch.delenv("TEST_PIPELINE_SECRET", raising=False)
    with pytest.raises(SpecError, match="TEST_PIPELINE_SECRET, which is not set"):
        pipeline_targets({"m": spec})
    monkeypatch.setenv("TEST_PIPELINE_SECRET", "abc")
    target = pipeline_targets({"m": spec})["m"]
    assert target.secret is not None and target.secret.get_secret_value() == "abc"
    assert target.kinds == ["retrain"]
