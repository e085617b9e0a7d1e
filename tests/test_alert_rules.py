"""The alert rule engine on hand-worked series: for, hysteresis, cooldown, revisions, grouping, restore."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelmon.events import Alert, MetricPoint
from modelmon.spec import SpecError, parse_spec
from retrain_trigger.rules import RuleEngine

BASE = datetime(2026, 4, 1, tzinfo=UTC)


def spec_with(*rules: dict[str, Any]) -> Any:
    return parse_spec(
        {
            "model_id": "m",
            "task": "binary",
            "features": {"a": {"type": "numerical"}, "b": {"type": "numerical"}, "c": {"type": "numerical"}},
            "alerts": list(rules),
        }
    )


PSI = {"name": "psi-high", "metric": "psi", "op": ">=", "threshold": 0.2, "resolve_threshold": 0.1, "for": 3}


def point(window: int, value: float, *, metric: str = "psi", feature: str = "a", **extra: Any) -> MetricPoint:
    start = BASE + timedelta(minutes=window)
    return MetricPoint(
        model_id="m",
        metric=metric,
        feature=feature,
        window_start=start,
        window_end=start + timedelta(minutes=1),
        value=value,
        **{"source": "stage2", **extra},
    )


def states(alerts: list[Alert]) -> list[str]:
    return [a.state.value for a in alerts]


def run(engine: RuleEngine, values: list[float], **extra: Any) -> list[list[str]]:
    return [states(engine.observe(point(w, v, **extra))) for w, v in enumerate(values)]


def test_for_three_windows_fires_once_stays_firing_and_resolves_under_hysteresis() -> None:
    # Worked by hand: bad = psi >= 0.2; clear = psi < 0.1 (resolve threshold); for = 3.
    # w0 0.05 ok | w1 0.25 bad: pending | w2 0.3 bad | w3 0.4 bad: 3 in a row, firing | w4 0.5 still firing
    # w5 0.15 between the thresholds: still firing | w6 0.3 | w7 0.08 < 0.1: resolved | w8 0.05 nothing
    engine = RuleEngine(spec_with(PSI))
    values = [0.05, 0.25, 0.3, 0.4, 0.5, 0.15, 0.3, 0.08, 0.05]
    assert run(engine, values) == [[], ["pending"], [], ["firing"], [], [], [], ["resolved"], []]


def test_transition_events_carry_the_evidence() -> None:
    engine = RuleEngine(spec_with(PSI))
    alerts = [a for w, v in enumerate([0.25, 0.3, 0.4, 0.05]) for a in engine.observe(point(w, v))]
    pending, firing, resolved = alerts
    assert {a.alert_id for a in alerts} == {pending.alert_id}  # one episode, one id
    assert {a.dedup_key for a in alerts} == {"m|psi-high|a|"}
    assert (firing.value, firing.threshold, firing.severity.value) == (0.4, 0.2, "warning")
    assert firing.window_start == BASE + timedelta(minutes=2)
    assert firing.ts == firing.window_end  # event time of the transition
    assert [w["value"] for w in firing.details["windows"]] == [0.25, 0.3, 0.4]
    assert (resolved.value, resolved.threshold) == (0.05, 0.1)
    assert [a.details["notify"] for a in alerts] == [False, True, True]
    assert "for 3 windows" in firing.message


def test_for_one_fires_at_once_without_pending() -> None:
    engine = RuleEngine(spec_with({**PSI, "for": 1}))
    assert run(engine, [0.3, 0.3, 0.05]) == [["firing"], [], ["resolved"]]


@pytest.mark.parametrize(
    ("op", "threshold", "resolve", "values", "expected"),
    [
        # accuracy < 0.8 fires; resolves only at >= 0.85
        ("<", 0.8, 0.85, [0.7, 0.82, 0.84, 0.85], [["firing"], [], [], ["resolved"]]),
        # > is strict: exactly at the threshold is not bad
        (">", 0.2, None, [0.2, 0.21, 0.2], [[], ["firing"], ["resolved"]]),
        # <= without resolve_threshold resolves as soon as the value is above the threshold
        ("<=", 0.5, None, [0.5, 0.5000001], [["firing"], ["resolved"]]),
    ],
)
def test_operators_and_hysteresis(
    op: str, threshold: float, resolve: float | None, values: list[float], expected: list[list[str]]
) -> None:
    rule = {"name": "r", "metric": "psi", "op": op, "threshold": threshold, "resolve_threshold": resolve}
    assert run(RuleEngine(spec_with(rule)), values) == expected


def test_pending_that_clears_closes_without_notifying() -> None:
    engine = RuleEngine(spec_with(PSI))
    first, second = (engine.observe(point(w, v)) for w, v in enumerate([0.3, 0.15]))
    assert states(first) == ["pending"] and states(second) == ["resolved"]
    assert second[0].details["notify"] is False
    assert "cleared before firing" in second[0].message
    assert engine.open_alerts() == {}


def test_a_re_emitted_window_updates_its_value_and_does_not_count_twice() -> None:
    engine = RuleEngine(spec_with({**PSI, "for": 2}))
    assert states(engine.observe(point(0, 0.3))) == ["pending"]
    # Late labels: window 0 again, higher revision. Still one window: no firing.
    assert engine.observe(point(0, 0.35, revision=5)) == []
    # The same revision again, or an older one, changes nothing.
    assert engine.observe(point(0, 0.01, revision=5)) == []
    assert engine.observe(point(0, 0.01, revision=1)) == []
    assert states(engine.observe(point(1, 0.3))) == ["firing"]
    firing_windows = engine.keys["m|psi-high|a|"].windows
    assert sorted(v[0] for v in firing_windows.values()) == [0.3, 0.35]


def test_a_revision_that_clears_the_deciding_window_resolves() -> None:
    engine = RuleEngine(spec_with({**PSI, "for": 1}))
    assert states(engine.observe(point(0, 0.3))) == ["firing"]
    assert states(engine.observe(point(0, 0.02, revision=1))) == ["resolved"]


def test_cooldown_holds_a_refire_pending_in_event_time() -> None:
    # for = 1, cooldown 5 minutes, one-minute windows. Fired with window 0 (ends at minute 1).
    # Bad again at window 2: ends at minute 3, only 2 minutes later: pending. Window 5 ends at minute 6:
    # 5 minutes after the last firing: fires again.
    engine = RuleEngine(spec_with({**PSI, "for": 1, "cooldown": "5m"}))
    values = [0.3, 0.05, 0.3, 0.3, 0.3, 0.3]
    assert run(engine, values) == [["firing"], ["resolved"], ["pending"], [], [], ["firing"]]


def test_many_features_give_one_alert_each_grouped_into_one_notification() -> None:
    engine = RuleEngine(spec_with({**PSI, "for": 1}))
    points = [point(0, v, feature=f) for f, v in (("a", 0.3), ("b", 0.5), ("c", 0.01))]
    alerts = engine.observe_all(points)
    assert sorted(a.dedup_key for a in alerts) == ["m|psi-high|a|", "m|psi-high|b|"]
    assert len({a.details["group_key"] for a in alerts}) == 1
    assert len({a.alert_id for a in alerts}) == 2


def test_selectors_of_feature_segment_and_metric() -> None:
    rules = [
        {"name": "only-a", "metric": "psi", "feature": "a", "threshold": 0.2},
        {"name": "model", "metric": "accuracy", "feature": "", "segment": "", "op": "<", "threshold": 0.8},
    ]
    engine = RuleEngine(spec_with(*rules))
    assert engine.observe(point(0, 0.9, feature="b")) == []
    assert [a.rule for a in engine.observe(point(0, 0.9, feature="a"))] == ["only-a"]
    assert engine.observe(point(0, 0.5, metric="accuracy", feature="", segment="country=DE")) == []
    assert engine.observe(point(0, 0.5, metric="accuracy", feature="", source="count/p0")) == []
    assert [a.rule for a in engine.observe(point(1, 0.5, metric="accuracy", feature=""))] == ["model"]


def test_restore_from_a_snapshot_continues_exactly() -> None:
    values = [0.05, 0.25, 0.3, 0.4, 0.5, 0.15, 0.3, 0.08, 0.05]
    whole = RuleEngine(spec_with(PSI))
    expected = [a.model_dump() for w, v in enumerate(values) for a in whole.observe(point(w, v))]
    first = RuleEngine(spec_with(PSI))
    got = [a.model_dump() for w, v in enumerate(values[:4]) for a in first.observe(point(w, v))]
    saved = json.loads(json.dumps(first.snapshot()))  # what a faust table holds
    second = RuleEngine(spec_with(PSI), saved)
    # A replay of points already folded in (a restart before the commit) changes nothing...
    assert [second.observe(point(w, v)) for w, v in enumerate(values[:4])] == [[]] * 4
    got += [a.model_dump() for w, v in enumerate(values[4:], start=4) for a in second.observe(point(w, v))]
    assert got == expected  # ...and the rest goes on as if never interrupted, ids and timestamps included


def test_state_of_a_removed_rule_is_dropped_on_restore() -> None:
    engine = RuleEngine(spec_with(PSI))
    engine.observe(point(0, 0.3))
    other = RuleEngine(spec_with({**PSI, "name": "renamed"}), engine.snapshot())
    assert other.keys == {}


def test_a_window_older_than_the_kept_history_is_ignored() -> None:
    engine = RuleEngine(spec_with({**PSI, "for": 1}))  # keeps the last two windows
    run(engine, [0.05, 0.05, 0.05])
    assert engine.observe(point(0, 0.9, revision=1)) == []
    assert engine.stale_points == 1


def test_resolve_threshold_on_the_wrong_side_is_refused() -> None:
    with pytest.raises(SpecError, match=r"resolve_threshold \(0.3\) must not be above threshold \(0.2\)"):
        spec_with({**PSI, "resolve_threshold": 0.3})
    with pytest.raises(SpecError, match="must not be below threshold"):
        spec_with(
            {"name": "acc", "metric": "accuracy", "op": "<", "threshold": 0.8, "resolve_threshold": 0.7}
        )
