"""Retrain policy of one model: which alerts and metrics request retraining, and at most one per cooldown.

A ``RetrainRequested`` is triggered by any of (``retrain:`` in the model spec):

- a **firing alert** of a rule listed in ``on_rules``; with no ``on_rules``, a firing alert of severity
  ``min_severity`` or above;
- **drift on ≥ K important features**: stage 2's ``drifted_important_features`` point (whole model)
  reaches ``min_drifted_important_features``;
- **performance below X for N windows**: each ``performance_below`` entry is a model-level rule
  (metric < threshold for N consecutive windows), evaluated by the same engine as alert rules.

Guarantees: at most one request per model per ``cooldown``, measured in event time (window ends);
triggers inside the cooldown are counted and suppressed. The decision, the ``idempotency_key`` and the
``request_id`` depend only on the triggering alerts and points, so replaying them after a restart
(before the policy state was saved) yields the same request, which consumers act on once. State is
a plain dict (:meth:`RetrainPolicy.snapshot`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from modelmon import metrics
from modelmon.events import Alert, AlertState, MetricPoint, RetrainRequested, Severity, epoch_ms
from modelmon.spec import AlertRuleSpec, ModelSpec, parse_duration
from retrain_trigger.rules import RuleEngine

SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
DRIFTED_IMPORTANT = metrics.DRIFTED_IMPORTANT_FEATURES
PERFORMANCE_RULE_PREFIX = "retrain-performance-"


def idempotency_key(model_id: str, model_version: str, evidence: Sequence[dict[str, Any]]) -> str:
    """A key that names one request: the model and the triggers (kind, key, window) behind it.

    >>> first = [{"kind": "alert", "key": "m|r||", "window_start": "2026-01-01T00:00:00+00:00"}]
    >>> key = idempotency_key("m", "1", first)
    >>> key.startswith("retrain-m-1-"), key == idempotency_key("m", "1", [dict(first[0])])
    (True, True)
    """
    parts = sorted(f"{e['kind']}|{e['key']}|{e['window_start']}" for e in evidence)
    digest = hashlib.sha256("\n".join([model_id, model_version, *parts]).encode()).hexdigest()
    return f"retrain-{model_id}-{model_version}-{digest[:24]}"


class RetrainPolicy:
    """Turns the alerts and metric points of one model into at most one request per cooldown."""

    def __init__(self, spec: ModelSpec, state: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.config = spec.retrain
        self.cooldown_ms = int(parse_duration(self.config.cooldown).total_seconds() * 1000)
        performance_rules = [
            AlertRuleSpec.model_validate(
                {
                    "name": f"{PERFORMANCE_RULE_PREFIX}{trigger.metric}-{i}",
                    "metric": trigger.metric,
                    "feature": "",
                    "segment": "",
                    "op": "<",
                    "threshold": trigger.threshold,
                    "for": trigger.for_windows,
                    "severity": "critical",
                    "cooldown": "0s",
                }
            )
            for i, trigger in enumerate(self.config.performance_below)
        ]
        self.performance = RuleEngine(spec.model_copy(update={"alerts": performance_rules}))
        self.last_requested_end_ms: int | None = None
        self.last_idempotency_key = ""
        self.suppressed = 0
        if state:
            self.restore(state)

    def _alert_triggers(self, alert: Alert) -> bool:
        if alert.state is not AlertState.FIRING:
            return False
        if self.config.on_rules:
            return alert.rule in self.config.on_rules
        return SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[self.config.min_severity]

    def observe(self, alerts: Sequence[Alert], points: Sequence[MetricPoint]) -> RetrainRequested | None:
        """Fold one batch of this model's alert transitions and metric points; maybe request retraining."""
        if not self.config.enabled:
            return None
        evidence: list[dict[str, Any]] = []
        alert_ids: list[str] = []
        for alert in alerts:
            if self._alert_triggers(alert):
                evidence.append(_alert_evidence(alert, "alert"))
                alert_ids.append(alert.alert_id)
        for alert in self.performance.observe_all(points):
            if alert.state is AlertState.FIRING:
                evidence.append(_alert_evidence(alert, "performance"))
        floor = self.config.min_drifted_important_features
        if floor is not None:
            for point in points:
                whole_model = point.feature == "" and point.segment == ""
                if point.metric == DRIFTED_IMPORTANT and whole_model and point.value >= floor:
                    evidence.append(_drift_evidence(point, floor))
        if not evidence:
            return None
        end_ms = max(epoch_ms(datetime.fromisoformat(e["window_end"])) for e in evidence)
        last = self.last_requested_end_ms
        if last is not None and end_ms - last < self.cooldown_ms:
            self.suppressed += len(evidence)
            return None
        version = str(evidence[-1]["model_version"])
        key = idempotency_key(self.spec.model_id, version, evidence)
        self.last_requested_end_ms, self.last_idempotency_key = end_ms, key
        return RetrainRequested(
            request_id=str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16], version=4)),
            idempotency_key=key,
            model_id=self.spec.model_id,
            model_version=version,
            reason="; ".join(e["reason"] for e in evidence),
            evidence=evidence,
            alert_ids=alert_ids,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "last_requested_end_ms": self.last_requested_end_ms,
            "last_idempotency_key": self.last_idempotency_key,
            "suppressed": self.suppressed,
            "performance": self.performance.snapshot(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.last_requested_end_ms = data.get("last_requested_end_ms")
        self.last_idempotency_key = str(data.get("last_idempotency_key", ""))
        self.suppressed = int(data.get("suppressed", 0))
        self.performance.restore(data.get("performance", {}))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _alert_evidence(alert: Alert, kind: str) -> dict[str, Any]:
    rule = alert.rule
    # An estimated metric (before labels) is cited as such: an estimate, not a measurement.
    estimated = metrics.is_estimate(alert.metric)
    what = alert.metric.removeprefix(metrics.ESTIMATED_PREFIX).replace("_", " ")
    note = f" (estimated {what}, from scores before labels)" if estimated else ""
    return {
        "kind": kind,
        "key": alert.dedup_key,
        "rule": rule,
        "alert_id": alert.alert_id if kind == "alert" else None,
        "severity": alert.severity.value,
        "model_version": alert.model_version,
        "metric": alert.metric,
        "feature": alert.feature,
        "segment": alert.segment,
        "value": alert.value,
        "op": alert.details.get("op"),
        "threshold": alert.threshold,
        "for": alert.details.get("for"),
        "window_start": _iso(alert.window_start),
        "window_end": _iso(alert.window_end),
        "windows": alert.details.get("windows", []),
        "estimated": estimated,
        "reason": f"{kind} {rule}{note}: {alert.message}",
        **_attribution(alert.details),
    }


def _attribution(details: dict[str, Any]) -> dict[str, Any]:
    """The window's ranked features and segments (``streams.attribution``), when it has them."""
    attribution = details.get("attribution")
    return {"attribution": attribution} if attribution else {}


def _drift_evidence(point: MetricPoint, floor: int) -> dict[str, Any]:
    features = point.details.get("features", [])
    names = ", ".join(map(str, features))
    return {
        "kind": "drift",
        "key": f"{point.model_id}|{DRIFTED_IMPORTANT}",
        "model_version": point.model_version,
        "metric": DRIFTED_IMPORTANT,
        "value": point.value,
        "op": ">=",
        "threshold": float(floor),
        "features": features,
        "window_start": _iso(point.window_start),
        "window_end": _iso(point.window_end),
        "reason": f"drift on {point.value:g} important features (>= {floor}): {names}",
        **_attribution(point.details),
    }
