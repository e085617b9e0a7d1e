"""streams.change: which series, fed once per window in order, restart-safe, same as river run directly."""

from __future__ import annotations

import doctest
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.change import make
from modelmon.events import MetricPoint
from modelmon.spec import SpecError, parse_spec
from streams.bundle import BundleKey
from streams.change import CHANGE_METRIC, ChangeTracker, series_values
from streams.finalize import window_metrics
from tests.test_bundle import build, make_events, make_spec, reference_for

BASE = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW_MS = 60_000
DOC = Path(__file__).resolve().parents[1] / "docs" / "metric-names.md"
ALL = ["adwin", "page_hinkley", "kswin"]
PARAMS = {
    "adwin": {"delta": 0.05},  # ADWIN's bound is wide for small fractions: the default detects late
    "page_hinkley": {"min_instances": 5, "threshold": 0.5},
    "kswin": {"window_size": 30, "stat_size": 10, "alpha": 0.001},
}


def spec_with(task: str = "binary", **change: Any) -> Any:
    return parse_spec(
        {"model_id": "m", "task": task, "features": {"x": {"type": "numerical"}}, "change": change}
    )


def key(window: int, segment: str = "") -> BundleKey:
    start = int((BASE + timedelta(minutes=window)).timestamp() * 1000)
    return BundleKey("m", "1", segment, start, WINDOW_MS)


def points(window: int, *, accuracy: float | None = None, psi: float | None = None) -> list[MetricPoint]:
    """A window's points as stage 2 publishes them (only those the series read, plus decoys)."""
    start = BASE + timedelta(minutes=window)
    common = {"model_id": "m", "window_start": start, "window_end": start + timedelta(minutes=1)}
    out = [MetricPoint(metric="events", value=100.0, source="stage2", revision=window, **common)]
    if accuracy is not None:
        out.append(MetricPoint(metric="accuracy", value=accuracy, source="stage2", revision=window, **common))
    if psi is not None:
        details = {"method": "psi", "drifted": psi >= 0.2}
        out.append(MetricPoint(metric="psi", feature="x", value=psi, details=details, **common))
        out.append(MetricPoint(metric="drifted", feature="x", value=float(psi >= 0.2), **common))
        out.append(MetricPoint(metric="missing_rate", feature="x", value=0.0, **common))
    return out


def step_series(n: int = 120, at: int = 60, seed: int = 3) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in np.where(np.arange(n) < at, 0.1, 0.35) + rng.normal(0, 0.02, n)]


def detections(update_points: list[MetricPoint]) -> list[tuple[datetime, str]]:
    return [(p.window_start, p.details["detector"]) for p in update_points]


def run(tracker: ChangeTracker, errors: list[float], windows: range) -> list[tuple[datetime, str]]:
    found: list[tuple[datetime, str]] = []
    for w in windows:
        update = tracker.feed(key(w), points(w, accuracy=1.0 - errors[w]))
        tracker.save(update, None)
        found += detections(update.points)
    return found


def test_series_come_from_the_window_metrics_of_stage2() -> None:
    for task, error_metric in (("binary", "accuracy"), ("regression", "mae")):
        events, ingest, pairs = make_events(task, 600, 5)
        reference = reference_for(task)
        bundle = build(task, events, ingest, pairs, reference=reference)
        spec = make_spec(task)
        emitted = window_metrics(bundle, spec, reference)
        by_key = {(p.metric, p.feature): p for p in emitted}
        values = {(v.series, v.feature): v for v in series_values(emitted, spec)}
        error = values.pop(("error", ""))
        expected = by_key[(error_metric, "")].value
        assert error.value == pytest.approx(1.0 - expected if task == "binary" else expected)
        assert values.pop(("drift_share", "")).value == by_key[("drift_share", "")].value
        drift_scores = {
            (p.feature, p.metric) for p in emitted if p.feature and p.metric == p.details.get("method")
        }
        assert {(v.feature, v.metric) for v in values.values()} == drift_scores
        assert {"amount", "__prediction__"} <= {feature for feature, _ in drift_scores}
        only_error = make_spec(task, change={"metrics": ["error"]})
        assert [v.series for v in series_values(emitted, only_error)] == ["error"]


def test_default_detectors_add_page_hinkley_only_on_fraction_series() -> None:
    store: dict[str, Any] = {}
    tracker = ChangeTracker({"m": spec_with()}, store)
    tracker.save(tracker.feed(key(0), points(0, accuracy=0.9, psi=0.05)), None)
    assert sorted(store["m|1||error||accuracy"]["detectors"]) == ["adwin", "page_hinkley"]
    assert sorted(store["m|1||feature_drift|x|psi"]["detectors"]) == ["adwin"]  # psi is not in [0, 1]
    off = ChangeTracker({"m": spec_with(detectors=[])}, {})
    assert off.feed(key(0), points(0, accuracy=0.9, psi=0.05)).records == {}


@pytest.mark.parametrize("name", ALL)
def test_detections_equal_the_detector_run_directly_on_the_series(name: str) -> None:
    errors = step_series()
    direct = make(name, **PARAMS.get(name, {}))
    expected = [BASE + timedelta(minutes=i) for i, x in enumerate(errors) if direct.update(1.0 - (1.0 - x))]
    spec = spec_with(detectors=[name], params={name: PARAMS[name]} if name in PARAMS else {})
    found = run(ChangeTracker({"m": spec}, {}), errors, range(len(errors)))
    assert expected, "the step must be detected at all for this test to mean something"
    assert [start for start, _ in found] == expected
    assert all(start >= BASE + timedelta(minutes=60) for start in expected[:1])


def test_each_window_is_fed_once_and_older_windows_not_at_all() -> None:
    store: dict[str, Any] = {}
    spec = spec_with(detectors=["page_hinkley"], params={"page_hinkley": PARAMS["page_hinkley"]})
    tracker = ChangeTracker({"m": spec}, store)
    for w in (0, 1, 2):
        tracker.save(tracker.feed(key(w), points(w, accuracy=0.9)), None)
    record = json.dumps(store, sort_keys=True)
    assert store["m|1||error||accuracy"]["detectors"]["page_hinkley"]["n_seen"] == 3
    # A re-emission of window 2 (late labels: another accuracy) and a window older than 2.
    for w, accuracy in ((2, 0.1), (1, 0.1), (0, 0.5)):
        update = tracker.feed(key(w), points(w, accuracy=accuracy))
        assert update.points == [] and update.records == {}
        tracker.save(update, None)
    assert json.dumps(store, sort_keys=True) == record
    assert tracker.stats.fed == 3 and tracker.stats.not_fed_older == 2
    # A window without labels does not feed the error series; its later emission with labels does.
    tracker.save(tracker.feed(key(3), points(3)), None)
    assert store["m|1||error||accuracy"]["last_window_start_ms"] == key(2).window_start_ms
    tracker.save(tracker.feed(key(3), points(3, accuracy=0.8)), None)
    assert store["m|1||error||accuracy"]["last_window_start_ms"] == key(3).window_start_ms
    # Segments are separate series.
    tracker.save(tracker.feed(key(1, "country=DE"), points(1, accuracy=0.9)), None)
    assert store["m|1|country=DE|error||accuracy"]["detectors"]["page_hinkley"]["n_seen"] == 1


def test_a_restart_from_the_saved_state_detects_what_an_uninterrupted_run_does() -> None:
    errors = step_series(seed=8)
    spec = spec_with(detectors=ALL, params=PARAMS)
    uninterrupted = run(ChangeTracker({"m": spec}, {}), errors, range(len(errors)))
    assert {name for _, name in uninterrupted} == set(ALL)

    store: dict[str, Any] = {}
    before = run(ChangeTracker({"m": spec}, store), errors, range(50))
    # Crash after window 50 was fed and published but before its state was saved: replayed, fed again.
    lost = ChangeTracker({"m": spec}, store).feed(key(50), points(50, accuracy=1.0 - errors[50]))
    restored = json.loads(json.dumps(store))  # what the table's changelog gives back
    restarted = ChangeTracker({"m": spec}, restored)
    replayed = restarted.feed(key(49), points(49, accuracy=0.0))  # a replayed partial of a fed window
    assert replayed.records == {}
    after = run(restarted, errors, range(50, len(errors)))
    assert before + after == uninterrupted
    assert detections(lost.points) == [d for d in after if d[0] == BASE + timedelta(minutes=50)]


def test_change_points_carry_the_series_and_the_detector() -> None:
    spec = spec_with(detectors=["page_hinkley"], params={"page_hinkley": PARAMS["page_hinkley"]})
    tracker = ChangeTracker({"m": spec}, {})
    found: list[MetricPoint] = []
    for w in range(12):
        update = tracker.feed(key(w), points(w, psi=0.01 if w < 6 else 1.5))
        tracker.save(update, None)
        found += update.points
    assert found, "a jump of psi from 0.01 to 1.5 is a change"
    point = found[0]
    assert point.window_start >= BASE + timedelta(minutes=6)
    assert (point.metric, point.feature, point.value) == (CHANGE_METRIC, "x", 1.0)
    assert point.source == "change/feature_drift/page_hinkley"
    assert point.details["series"] == "feature_drift" and point.details["series_metric"] == "psi"
    assert point.details["value"] == 1.5 and point.details["estimate_of"] == "running_mean"
    assert 0.01 < point.details["estimate"] < 1.5


def test_changed_detector_settings_restart_the_detector() -> None:
    store: dict[str, Any] = {}
    old = spec_with(detectors=["page_hinkley"])
    tracker = ChangeTracker({"m": old}, store)
    for w in range(3):
        tracker.save(tracker.feed(key(w), points(w, accuracy=0.9)), None)
    new = spec_with(detectors=["page_hinkley"], params={"page_hinkley": {"threshold": 2.0}})
    store["m|1||error||accuracy"]["detectors"]["page_hinkley"]["state"] = "garbage"
    restarted = ChangeTracker({"m": new}, store)
    restarted.save(restarted.feed(key(3), points(3, accuracy=0.9)), None)
    saved = store["m|1||error||accuracy"]["detectors"]["page_hinkley"]
    assert saved["n_seen"] == 1 and saved["params"]["threshold"] == 2.0
    assert restarted.stats.restarted == 1
    store["m|1||error||accuracy"]["detectors"]["page_hinkley"]["state"] = {"mean": 1}  # unreadable
    again = ChangeTracker({"m": new}, store)
    again.save(again.feed(key(4), points(4, accuracy=0.9)), None)
    assert (
        again.stats.restarted == 1
        and store["m|1||error||accuracy"]["detectors"]["page_hinkley"]["n_seen"] == 1
    )


def test_bad_change_settings_are_refused_with_the_field_named() -> None:
    with pytest.raises(SpecError, match=r"model 'm': field 'change.params.kswin': stat_size must be"):
        ChangeTracker({"m": spec_with(detectors=["kswin"], params={"kswin": {"stat_size": 0}})}, {})
    with pytest.raises(SpecError, match=r"change.params.adwin.*unexpected keyword argument 'wrong'"):
        ChangeTracker({"m": spec_with(params={"adwin": {"wrong": 1}})}, {})
    for change, message in (
        ({"detectors": ["adwin", "adwin"]}, "detectors must not repeat entries"),
        ({"detectors": ["adwin"], "params": {"kswin": {}}}, "params given for ['kswin'], which do not run"),
        ({"metrics": ["accuracy"]}, "metrics"),
        ({"detectors": ["cusum"]}, "detectors"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            spec_with(**change)


def test_change_detected_is_documented() -> None:
    assert f"`{CHANGE_METRIC}`" in DOC.read_text()


def test_the_worker_doc_example_runs() -> None:
    text = (DOC.parent / "worker.md").read_text()
    section = text.split("## Change detection in the stream", 1)[1].split("\n## ", 1)[0]
    test = doctest.DocTestParser().get_doctest(section, {}, "worker.md", "worker.md", 0)
    assert len(test.examples) > 5
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_spec_check_refuses_bad_detector_settings(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from modelmon.app.cli import cli
    from tests.workers import write_spec

    write_spec(tmp_path, "fraud", change={"detectors": ["kswin"], "params": {"kswin": {"stat_size": 0}}})
    result = CliRunner().invoke(cli, ["spec", "check", str(tmp_path)], prog_name="modelmon")
    assert result.exit_code == 2
    assert "model 'fraud': field 'change.params.kswin': stat_size must be an integer >= 1" in result.output
