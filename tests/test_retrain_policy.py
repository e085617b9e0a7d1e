"""The retrain policy: triggers, one request per model per cooldown, evidence, idempotency, restore."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from modelmon.events import Alert, AlertState, MetricPoint, Severity
from modelmon.spec import parse_spec
from retrain_trigger.policy import RetrainPolicy

BASE = datetime(2026, 4, 1, tzinfo=UTC)
RULES = [
    {"name": "drift", "metric": "psi", "threshold": 0.2, "severity": "warning"},
    {"name": "acc", "metric": "accuracy", "feature": "", "op": "<", "threshold": 0.8, "severity": "critical"},
]


def spec(**retrain: Any) -> Any:
    return parse_spec(
        {
            "model_id": "m",
            "task": "binary",
            "features": {"a": {"type": "numerical", "important": True}, "b": {"type": "numerical"}},
            "alerts": RULES,
            "retrain": {"enabled": True, "cooldown": "1h", **retrain},
        }
    )


def alert(
    rule: str, window: int, *, state: AlertState = AlertState.FIRING, severity: str = "critical"
) -> Alert:
    start = BASE + timedelta(minutes=window)
    return Alert(
        alert_id=f"{rule}-{window}",
        dedup_key=f"m|{rule}||",
        model_id="m",
        model_version="7",
        rule=rule,
        state=state,
        severity=Severity(severity),
        metric="accuracy",
        value=0.6,
        threshold=0.8,
        window_start=start,
        window_end=start + timedelta(minutes=1),
        message="accuracy = 0.6 < 0.8 for 1 window",
        details={"op": "<", "for": 1, "windows": [{"value": 0.6}]},
    )


def point(window: int, value: float, metric: str = "accuracy", **extra: Any) -> MetricPoint:
    start = BASE + timedelta(minutes=window)
    return MetricPoint(
        model_id="m",
        metric=metric,
        window_start=start,
        window_end=start + timedelta(minutes=1),
        value=value,
        **extra,
    )


def test_two_firing_alerts_within_the_cooldown_give_one_request_with_evidence() -> None:
    policy = RetrainPolicy(spec(on_rules=["acc"]))
    first = policy.observe([alert("acc", 0)], [])
    assert first is not None
    assert policy.observe([alert("acc", 10)], []) is None  # 10 minutes later, cooldown 1h
    assert policy.suppressed == 1
    assert (first.model_id, first.model_version, first.alert_ids) == ("m", "7", ["acc-0"])
    (evidence,) = first.evidence
    assert evidence["rule"] == "acc" and evidence["alert_id"] == "acc-0"
    assert (evidence["value"], evidence["threshold"], evidence["op"]) == (0.6, 0.8, "<")
    assert evidence["window_start"] == BASE.isoformat()
    assert "acc" in first.reason
    # An hour after the first request's window: a new request, with another idempotency key.
    later = policy.observe([alert("acc", 61)], [])
    assert later is not None and later.idempotency_key != first.idempotency_key


def test_the_same_trigger_gives_the_same_idempotency_key() -> None:
    one = RetrainPolicy(spec(on_rules=["acc"])).observe([alert("acc", 0)], [])
    two = RetrainPolicy(spec(on_rules=["acc"])).observe([alert("acc", 0)], [])
    assert one is not None and two is not None
    assert (one.idempotency_key, one.request_id) == (two.idempotency_key, two.request_id)


def test_restored_state_keeps_the_cooldown() -> None:
    policy = RetrainPolicy(spec(on_rules=["acc"]))
    assert policy.observe([alert("acc", 0)], []) is not None
    restored = RetrainPolicy(spec(on_rules=["acc"]), json.loads(json.dumps(policy.snapshot())))
    assert restored.observe([alert("acc", 5)], []) is None


def test_which_alerts_trigger() -> None:
    listed = RetrainPolicy(spec(on_rules=["drift"]))
    assert listed.observe([alert("acc", 0)], []) is None  # critical, but not listed
    assert listed.observe([alert("drift", 0, severity="warning")], []) is not None
    by_severity = RetrainPolicy(spec(min_severity="critical"))
    assert by_severity.observe([alert("drift", 0, severity="warning")], []) is None
    assert by_severity.observe([alert("acc", 0, state=AlertState.PENDING)], []) is None
    assert by_severity.observe([alert("acc", 0, state=AlertState.RESOLVED)], []) is None
    assert by_severity.observe([alert("acc", 0)], []) is not None


def test_disabled_policy_never_requests() -> None:
    assert RetrainPolicy(spec(enabled=False, on_rules=["acc"])).observe([alert("acc", 0)], []) is None


def test_drift_on_k_important_features() -> None:
    policy = RetrainPolicy(spec(min_drifted_important_features=2))
    one = point(0, 1.0, "drifted_important_features", details={"features": ["a"]})
    assert policy.observe([], [one]) is None
    two = point(1, 2.0, "drifted_important_features", details={"features": ["a", "b"]})
    request = policy.observe([], [two])
    assert request is not None
    (evidence,) = request.evidence
    assert (evidence["kind"], evidence["value"], evidence["threshold"]) == ("drift", 2.0, 2.0)
    assert evidence["features"] == ["a", "b"]


def test_performance_below_x_for_n_windows() -> None:
    policy = RetrainPolicy(spec(performance_below=[{"metric": "accuracy", "threshold": 0.8, "for": 3}]))
    results = [policy.observe([], [point(w, v)]) for w, v in enumerate([0.7, 0.75, 0.9, 0.7, 0.7, 0.6])]
    assert [r is not None for r in results] == [False, False, False, False, False, True]
    request = results[-1]
    assert request is not None
    assert [w["value"] for w in request.evidence[0]["windows"]] == [0.7, 0.7, 0.6]
    assert request.alert_ids == []  # no alert rule behind it, the metric itself
