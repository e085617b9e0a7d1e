"""Alert rules of one model: the pending → firing → resolved lifecycle per dedup key, fed with metric points.

Guarantees:

- **Deterministic.** Decisions depend only on the metric points seen (their windows, values and
  revisions), never on the wall clock: ``for``, cooldown and hysteresis count windows and event time
  (window ends). Alert ids and timestamps are derived from the dedup key and the windows, so feeding
  the same points again after a restart yields the same ``Alert`` events, byte for byte.
- **One window counts once.** A window re-published with a higher ``revision`` (late labels)
  replaces its value and the rule is re-evaluated; it never counts as another window. A lower or equal
  revision of a known window is ignored.
- **One open alert per key** (``model|rule|feature|segment``) until it resolves; a firing alert stays
  firing without further events while the condition holds or sits between the two thresholds.
- **Snapshot/restore** as plain JSON-able dicts (:meth:`RuleEngine.snapshot`), for a faust table.

Windows without a value (an undefined statistic is not published) neither count towards ``for``
nor break a streak: "consecutive" means consecutive among the windows that have a value.
"""

from __future__ import annotations

import hashlib
import operator
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from detectors.attribution import combine_segments, headline
from modelmon.events import Alert, AlertState, MetricPoint, epoch_ms
from modelmon.spec import AlertRuleSpec, ModelSpec, parse_duration

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
IGNORED_SOURCE_PREFIX = "count/"
"""Per-partition partial counts: not a window's value, so rules skip them."""

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def episode_alert_id(dedup_key: str, started_ms: int) -> str:
    """The id shared by every transition of one alert episode (stable across replays).

    >>> episode_alert_id("m|r||", 0) == episode_alert_id("m|r||", 0)
    True
    """
    digest = hashlib.sha256(f"{dedup_key}|{started_ms}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def matches(rule: AlertRuleSpec, point: MetricPoint) -> bool:
    """Whether ``point`` is one the rule watches (metric, feature and segment selectors)."""
    if point.metric != rule.metric or point.source.startswith(IGNORED_SOURCE_PREFIX):
        return False
    if rule.feature != "any" and point.feature != rule.feature:
        return False
    return rule.segment == "any" or point.segment == rule.segment


def dedup_key(model_id: str, rule: str, feature: str, segment: str) -> str:
    return f"{model_id}|{rule}|{feature}|{segment}"


@dataclass
class KeyState:
    """The lifecycle of one dedup key, plus the last windows' values it is decided on."""

    rule: str
    status: str = INACTIVE
    alert_id: str = ""
    started_ms: int = 0
    last_fired_end_ms: int | None = None
    model_version: str = "1"
    windows: dict[int, list[Any]] = field(default_factory=dict)
    """window_start_ms → [value, revision, window_end_ms] (+ [segment lines] of its attribution)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "status": self.status,
            "alert_id": self.alert_id,
            "started_ms": self.started_ms,
            "last_fired_end_ms": self.last_fired_end_ms,
            "model_version": self.model_version,
            "windows": [[start, *entry] for start, entry in sorted(self.windows.items())],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyState:
        return cls(
            rule=str(data["rule"]),
            status=str(data["status"]),
            alert_id=str(data["alert_id"]),
            started_ms=int(data["started_ms"]),
            last_fired_end_ms=data.get("last_fired_end_ms"),
            model_version=str(data.get("model_version", "1")),
            windows={int(w[0]): [float(w[1]), int(w[2]), int(w[3]), *w[4:5]] for w in data["windows"]},
        )


class Rule:
    """One alert rule's condition, hysteresis and timing, compiled from its spec."""

    def __init__(self, spec: AlertRuleSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.compare = _OPS[spec.op]
        self.threshold = spec.threshold
        self.resolve_threshold = spec.threshold if spec.resolve_threshold is None else spec.resolve_threshold
        self.for_windows = spec.for_windows
        self.cooldown_ms = int(parse_duration(spec.cooldown).total_seconds() * 1000)
        self.history = max(self.for_windows, 1) + 1

    def bad(self, value: float) -> bool:
        return bool(self.compare(value, self.threshold))

    def clear(self, value: float) -> bool:
        """Beyond the resolve threshold (hysteresis): the rule's condition fails at ``resolve_threshold``."""
        return not self.compare(value, self.resolve_threshold)


class RuleEngine:
    """All alert rules of one model; :meth:`observe` returns the ``Alert`` transitions a point causes.

    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary", "features": {"x": {"type": "numerical"}},
    ...     "alerts": [{"name": "acc", "metric": "accuracy", "feature": "", "op": "<", "threshold": 0.8,
    ...                 "resolve_threshold": 0.85, "for": 2}]})
    >>> engine = RuleEngine(spec)
    >>> def point(minute, value):
    ...     start = datetime(2026, 1, 1, 0, minute, tzinfo=UTC)
    ...     return MetricPoint(model_id="m", metric="accuracy", value=value, window_start=start,
    ...                        window_end=start.replace(minute=minute + 1), source="stage2")
    >>> [[a.state.value for a in engine.observe(point(m, v))] for m, v in enumerate([0.7, 0.6, 0.82, 0.9])]
    [['pending'], ['firing'], [], ['resolved']]
    """

    def __init__(self, spec: ModelSpec, state: dict[str, Any] | None = None) -> None:
        self.model_id = spec.model_id
        self.rules = {rule.name: Rule(rule) for rule in spec.alerts}
        self.keys: dict[str, KeyState] = {}
        self.stale_points = 0
        if state:
            self.restore(state)

    def observe(self, point: MetricPoint) -> list[Alert]:
        """Fold one metric point into every rule that watches it; return the transitions, in order."""
        transitions: list[Alert] = []
        for rule in self.rules.values():
            if matches(rule.spec, point):
                transitions.extend(self._observe_rule(rule, point))
        return transitions

    def observe_all(self, points: Iterable[MetricPoint]) -> list[Alert]:
        """:meth:`observe` for points sorted by window (points of one window keep their order)."""
        ordered = sorted(points, key=lambda p: epoch_ms(p.window_start))
        return [alert for point in ordered for alert in self.observe(point)]

    def _observe_rule(self, rule: Rule, point: MetricPoint) -> list[Alert]:
        key = dedup_key(self.model_id, rule.name, point.feature, point.segment)
        state = self.keys.setdefault(key, KeyState(rule.name))
        start, end = epoch_ms(point.window_start), epoch_ms(point.window_end)
        known = state.windows.get(start)
        if known is not None and known[1] >= point.revision:
            return []  # a replay, or an older revision of a window already counted
        if known is None and len(state.windows) >= rule.history and start < min(state.windows):
            self.stale_points += 1  # older than every window the decision still depends on
            return []
        segments = (point.details.get("attribution") or {}).get("segments")
        state.windows[start] = [point.value, point.revision, end, *([segments] if segments else [])]
        state.model_version = point.model_version
        for old in sorted(state.windows)[: -rule.history]:
            del state.windows[old]
        return self._evaluate(rule, key, state, point)

    def _evaluate(self, rule: Rule, key: str, state: KeyState, point: MetricPoint) -> list[Alert]:
        ordered = sorted(state.windows.items())
        streak = 0
        for _, (value, *_) in reversed(ordered):
            if not rule.bad(value):
                break
            streak += 1
        _, (last_value, _, last_end, *_) = ordered[-1]
        cooling = (
            state.last_fired_end_ms is not None and last_end - state.last_fired_end_ms < rule.cooldown_ms
        )
        if state.status == FIRING:
            if rule.clear(last_value):
                state.status = INACTIVE
                return [self._alert(rule, key, state, point, AlertState.RESOLVED, ordered[-1:])]
            return []
        out: list[Alert] = []
        if streak > 0 and state.status == INACTIVE:
            state.status, state.started_ms = PENDING, ordered[len(ordered) - streak][0]
            state.alert_id = episode_alert_id(key, state.started_ms)
            if streak < rule.for_windows or cooling:
                out.append(self._alert(rule, key, state, point, AlertState.PENDING, ordered[-streak:]))
        if state.status == PENDING:
            if streak >= rule.for_windows and not cooling:
                state.status, state.last_fired_end_ms = FIRING, last_end
                out.append(self._alert(rule, key, state, point, AlertState.FIRING, ordered[-streak:]))
            elif streak == 0:
                state.status = INACTIVE  # cleared before it fired: closes the pending alert, not notified
                out.append(
                    self._alert(rule, key, state, point, AlertState.RESOLVED, ordered[-1:], fired=False)
                )
        return out

    def _alert(
        self,
        rule: Rule,
        key: str,
        state: KeyState,
        point: MetricPoint,
        new: AlertState,
        windows: list[tuple[int, list[Any]]],
        *,
        fired: bool = True,
    ) -> Alert:
        """The event of a transition; ``windows`` is its evidence, the last one the deciding window."""
        last_start, (value, _, last_end, *_) = windows[-1]
        threshold = rule.resolve_threshold if new is AlertState.RESOLVED else rule.threshold
        label = f"{rule.spec.metric}{f'[{point.feature}]' if point.feature else ''}"
        where = f" in segment {point.segment}" if point.segment else ""
        if new is AlertState.RESOLVED:
            verdict = "back beyond" if fired else "cleared before firing, beyond"
            message = f"{label}{where} = {value:.6g}: {verdict} {threshold:g}"
        else:
            count = f"{len(windows)} window{'s' if len(windows) != 1 else ''}"
            message = f"{label}{where} = {value:.6g} {rule.spec.op} {threshold:g} for {count}"
            if new is AlertState.PENDING and len(windows) >= rule.for_windows:
                message += f" (in cooldown: fires {rule.spec.cooldown} after the previous firing)"
        attribution = point.details.get("attribution") if new is not AlertState.RESOLVED else None
        streak = [entry[3] for _, entry in windows if len(entry) > 3]
        if attribution and len(streak) > 1:  # segments ranked over the windows that decided, not one
            attribution = {**attribution, "segments": combine_segments(streak)}
        if attribution and headline(attribution):
            message += f" ({headline(attribution)})"
        return Alert(
            alert_id=state.alert_id,
            dedup_key=key,
            model_id=self.model_id,
            model_version=state.model_version,
            rule=rule.name,
            state=new,
            severity=rule.spec.severity,
            metric=rule.spec.metric,
            feature=point.feature,
            segment=point.segment,
            value=value,
            threshold=threshold,
            window_start=datetime.fromtimestamp(last_start / 1000, tz=UTC),
            window_end=datetime.fromtimestamp(last_end / 1000, tz=UTC),
            message=message,
            # Event time of the transition, so a replayed transition is the same ClickHouse row.
            ts=datetime.fromtimestamp(last_end / 1000, tz=UTC),
            details={
                "op": rule.spec.op,
                "for": rule.for_windows,
                "fire_threshold": rule.threshold,
                "resolve_threshold": rule.resolve_threshold,
                "notify": new is AlertState.FIRING or (new is AlertState.RESOLVED and fired),
                "group_key": f"{self.model_id}|{rule.name}|{new.value}|{last_start}",
                "windows": [
                    {"window_start": _iso(start), "window_end": _iso(entry[2]), "value": entry[0]}
                    for start, entry in windows
                ],
                **({"attribution": attribution} if attribution else {}),
            },
        )

    def open_alerts(self) -> dict[str, str]:
        """dedup key → status, for keys that are pending or firing."""
        return {key: state.status for key, state in self.keys.items() if state.status != INACTIVE}

    def snapshot(self) -> dict[str, Any]:
        """The engine's state as plain data (JSON-able)."""
        return {"keys": {key: state.to_dict() for key, state in self.keys.items()}}

    def restore(self, data: dict[str, Any]) -> None:
        """Load a :meth:`snapshot`; keys of rules no longer in the spec are dropped."""
        keys = {key: KeyState.from_dict(value) for key, value in data.get("keys", {}).items()}
        self.keys = {key: state for key, state in keys.items() if state.rule in self.rules}
