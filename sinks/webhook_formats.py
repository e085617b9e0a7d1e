"""Webhook payload formats: modelmon's JSON envelope, Slack incoming-webhook messages, Alertmanager v4."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from detectors.attribution import top_lines
from modelmon.events import Alert, AlertState, RetrainRequested

NEVER = "0001-01-01T00:00:00Z"
"""Alertmanager's ``endsAt`` of an alert that has not ended."""


@dataclass
class Notification:
    """One notification: a group of alert transitions, or one retrain request; plus where it came from."""

    kind: Literal["alerts", "retrain"]
    alerts: list[Alert] = field(default_factory=list)
    request: RetrainRequested | None = None
    topic: str = ""
    partition: int | None = None
    offset: int | None = None

    @property
    def delivery_id(self) -> str:
        """Stable across replays: receivers can drop a notification they already handled."""
        if self.request is not None:
            return self.request.idempotency_key
        parts = sorted(f"{a.alert_id}|{a.state.value}" for a in self.alerts)
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    @property
    def group_key(self) -> str:
        if self.request is not None:
            return f"{self.request.model_id}|retrain"
        first = self.alerts[0]
        return str(first.details.get("group_key") or f"{first.model_id}|{first.rule}|{first.state.value}")


def _event_json(event: Alert | RetrainRequested) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event.model_dump_json())
    return data


def render_json(note: Notification) -> dict[str, Any]:
    if note.request is not None:
        return {"kind": "retrain_requested", "retrain_request": _event_json(note.request)}
    first = note.alerts[0]
    return {
        "kind": "alerts",
        "group_key": note.group_key,
        "model_id": first.model_id,
        "rule": first.rule,
        "state": first.state.value,
        "alerts": [_event_json(a) for a in note.alerts],
    }


def _alert_line(alert: Alert) -> str:
    where = f" ({alert.segment})" if alert.segment else ""
    moved = "".join(f"\n    ↳ {line}" for line in top_lines(alert.details.get("attribution")))
    return f"• `{alert.feature or alert.metric}`{where}: {alert.message}{moved}"


def _request_attribution(request: RetrainRequested) -> dict[str, Any] | None:
    """The first attribution among a retrain request's evidence (``streams.attribution``)."""
    return next((e["attribution"] for e in request.evidence if e.get("attribution")), None)


def render_slack(note: Notification) -> dict[str, Any]:
    if note.request is not None:
        request = note.request
        title = f":repeat: Retrain requested for *{request.model_id}* (version {request.model_version})"
        moved = "".join(f"\n↳ {line}" for line in top_lines(_request_attribution(request)))
        body = f"{title}\n{request.reason}{moved}\nidempotency key `{request.idempotency_key}`"
        return {"text": body, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": body}}]}
    first = note.alerts[0]
    icon = ":rotating_light:" if first.state is AlertState.FIRING else ":white_check_mark:"
    count = f" ({len(note.alerts)} alerts)" if len(note.alerts) > 1 else ""
    title = f"{icon} [{first.state.value.upper()}] *{first.rule}* on *{first.model_id}*{count}"
    body = "\n".join([title, *(_alert_line(a) for a in note.alerts)])
    return {"text": body, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": body}}]}


def _common(items: list[dict[str, str]]) -> dict[str, str]:
    if not items:
        return {}
    return {k: v for k, v in items[0].items() if all(other.get(k) == v for other in items[1:])}


def _alertmanager_alert(alert: Alert) -> dict[str, Any]:
    labels = {
        "alertname": alert.rule,
        "model_id": alert.model_id,
        "model_version": alert.model_version,
        "metric": alert.metric,
        "feature": alert.feature,
        "segment": alert.segment,
        "severity": alert.severity.value,
    }
    resolved = alert.state is AlertState.RESOLVED
    return {
        "status": "resolved" if resolved else "firing",
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": {
            "summary": alert.message,
            "value": repr(alert.value),
            "threshold": repr(alert.threshold),
            "alert_id": alert.alert_id,
            **_attribution_annotation(alert.details.get("attribution")),
        },
        "startsAt": alert.window_start.isoformat(),
        "endsAt": alert.window_end.isoformat() if resolved else NEVER,
        "generatorURL": "",
        "fingerprint": hashlib.sha256(alert.dedup_key.encode()).hexdigest()[:16],
    }


def _attribution_annotation(attribution: dict[str, Any] | None) -> dict[str, str]:
    """What moved, top three features and segments, one per line (the JSON format has all)."""
    lines = top_lines(attribution)
    return {"attribution": "\n".join(lines)} if lines else {}


def render_alertmanager(note: Notification) -> dict[str, Any]:
    alerts: list[dict[str, Any]]
    if note.request is not None:
        request = note.request
        alerts = [
            {
                "status": "firing",
                "labels": {"alertname": "RetrainRequested", "model_id": request.model_id},
                "annotations": {
                    "summary": request.reason,
                    "idempotency_key": request.idempotency_key,
                    **_attribution_annotation(_request_attribution(request)),
                },
                "startsAt": request.requested_at.isoformat(),
                "endsAt": NEVER,
                "generatorURL": "",
                "fingerprint": hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:16],
            }
        ]
    else:
        alerts = [_alertmanager_alert(a) for a in note.alerts]
    labels: list[dict[str, str]] = [a["labels"] for a in alerts]
    common = _common(labels)
    return {
        "version": "4",
        "groupKey": note.group_key,
        "truncatedAlerts": 0,
        "status": "resolved" if all(a["status"] == "resolved" for a in alerts) else "firing",
        "receiver": "modelmon",
        "groupLabels": {k: common[k] for k in ("alertname", "model_id") if k in common},
        "commonLabels": common,
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": "",
        "alerts": alerts,
    }


RENDERERS: dict[str, Callable[[Notification], dict[str, Any]]] = {
    "json": render_json,
    "slack": render_slack,
    "alertmanager": render_alertmanager,
}


def encode_body(note: Notification, fmt: str) -> bytes:
    """The request body of ``note`` in ``fmt`` (compact UTF-8 JSON)."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown webhook format {fmt!r}; valid: {', '.join(RENDERERS)}")
    return json.dumps(RENDERERS[fmt](note), separators=(",", ":"), ensure_ascii=False).encode()
