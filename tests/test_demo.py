"""`modelmon demo`: the scripted traffic (unit), and one real run (broker, worker, sink, chDB, webhook).

The end-to-end run is a subprocess: the demo opens its own embedded chDB, and a test process may hold
only one chDB engine (tests/clickhouse_fixtures.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.profiles.files import load_reference_file
from modelmon.app.scenario import Scenario, drift_features, hit_segment, write_training_file
from modelmon.app.synthetic import MALFORMED_KINDS, malformed_messages
from modelmon.spec import load_specs
from sinks.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.http_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]
SPECS = load_specs(ROOT / "models")
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "demo-test-secret"


def scenario_steps(**overrides: Any) -> tuple[Scenario, list[Any]]:
    scenario = Scenario(**{"events": 600, "windows": 20, "start": START, **overrides})
    return scenario, list(scenario.steps(SPECS))


# -- the scenario, without Kafka ------------------------------------------------------------------


def test_every_prediction_once_in_event_time_order_and_labels_after_their_prediction() -> None:
    scenario, steps = scenario_steps()
    predictions = [s for s in steps if s.kind == "prediction"]
    assert Counter(s.model_id for s in predictions) == {model: 600 for model in SPECS}
    assert len({s.prediction_id for s in predictions}) == len(predictions)
    assert [s.ts for s in predictions] == sorted(s.ts for s in predictions)
    assert predictions[0].ts == START and predictions[-1].ts < scenario.end
    sent_at = {s.prediction_id: (i, s.ts) for i, s in enumerate(steps) if s.kind == "prediction"}
    labels = [(i, s) for i, s in enumerate(steps) if s.kind == "label"]
    for position, label in labels:
        before, ts = sent_at[label.prediction_id]
        assert position > before and label.ts >= ts


def test_some_labels_never_come_and_some_come_after_the_window_closed() -> None:
    scenario, steps = scenario_steps(events=3000)
    predicted = {s.prediction_id: s.ts for s in steps if s.kind == "prediction"}
    delays = np.array(
        [(s.ts - predicted[s.prediction_id]).total_seconds() for s in steps if s.kind == "label"]
    )
    coverage = len(delays) / len(predicted)
    # Binomial(6000, 0.9): 4 standard deviations either side.
    assert abs(coverage - scenario.label_fraction) < 4 * np.sqrt(0.9 * 0.1 / len(predicted))
    very_late = np.mean(delays >= scenario.very_late_seconds[0])
    assert 0.01 < very_late < 0.05
    assert 5 < np.median(delays) < 20  # exponential, mean 15 s: median 15 ln 2 = 10.4 s


def test_malformed_burst_is_sent_once_at_its_window() -> None:
    scenario, steps = scenario_steps(malformed=12)
    bursts = [i for i, s in enumerate(steps) if s.kind == "malformed"]
    assert len(bursts) == 12 and bursts == list(range(bursts[0], bursts[0] + 12))
    first_after = next(s for s in steps[bursts[-1] :] if s.kind == "prediction")
    assert first_after.ts == scenario.window_start(scenario.burst_window)
    first_model = next(iter(SPECS))
    expected = malformed_messages(12, first_model, first_after.ts, seed=scenario.seed)
    assert [steps[i].raw for i in bursts] == [body for _, body in expected]
    assert {kind for kind, _ in expected} == set(MALFORMED_KINDS)


def _by_window(scenario: Scenario, steps: list[Any], model_id: str) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for step in steps:
        if step.kind == "prediction" and step.model_id == model_id:
            window = int((step.ts - scenario.origin).total_seconds() // scenario.window_seconds)
            out.setdefault(window, []).append(step.item)
    return out


def test_covariate_drift_moves_only_the_chosen_features_and_only_in_its_windows() -> None:
    scenario, steps = scenario_steps(events=1200)
    windows = _by_window(scenario, steps, "house-prices")
    moved = drift_features(SPECS["house-prices"])
    assert moved == ("area_m2", "age_years")
    start, end = scenario.covariate

    def mean(feature: str, selected: range) -> float:
        return float(np.mean([item.features[feature] for w in selected for item in windows[w]]))

    before, during = range(0, start), range(start, end)
    # area_m2: mean 1002.5, sd (2000 - 5) / 8 = 249.4; a 2 sd shift moves the mean by ~499.
    assert mean("area_m2", during) - mean("area_m2", before) == pytest.approx(2 * 249.375, rel=0.1)
    assert mean("age_years", during) - mean("age_years", before) == pytest.approx(2 * 62.5, rel=0.1)
    assert abs(mean("rooms", during) - mean("rooms", before)) < 0.5  # sd 6.25, n ~ 240
    after = range(end, scenario.concept[0])
    assert abs(mean("area_m2", after) - mean("area_m2", before)) < 60


def test_concept_drift_degrades_accuracy_and_error_most_in_the_hit_segment() -> None:
    scenario, steps = scenario_steps(events=1200)
    labels = {s.prediction_id: s.label for s in steps if s.kind == "label"}
    ids = {id(s.item): s.prediction_id for s in steps if s.kind == "prediction"}
    start, end = scenario.concept
    normal, drifted = range(0, scenario.covariate[0]), range(start, end)

    def pairs(model_id: str, selected: range, tag: str | None = None) -> list[tuple[Any, Any]]:
        windows = _by_window(scenario, steps, model_id)
        return [
            (i.prediction, labels[ids[id(i)]])
            for w in selected
            for i in windows[w]
            if ids[id(i)] in labels and (tag is None or i.tags[tag[0]] == tag[1])
        ]

    def accuracy(selected: range, segment: tuple[str, ...] | None = None) -> float:
        return float(np.mean([p == y for p, y in pairs("fraud-detector", selected, segment)]))

    def mae(selected: range, segment: tuple[str, ...] | None = None) -> float:
        return float(np.mean([abs(p - y) for p, y in pairs("house-prices", selected, segment)]))

    assert hit_segment(SPECS["fraud-detector"]) == ("country", "DE")
    assert hit_segment(SPECS["house-prices"]) == ("region", "north")
    # 0.91 before; 0.44 in expectation during (45° everywhere, 180° in DE, the population moved 2 sd).
    assert accuracy(normal) > 0.85 and accuracy(drifted) < 0.5
    others = [accuracy(drifted, ("country", c)) for c in ("FR", "US", "GB", "NL")]
    assert accuracy(drifted, ("country", "DE")) < min(others) - 0.1
    assert mae(normal) < 10_000 and mae(drifted) > 30_000
    others = [mae(drifted, ("region", r)) for r in ("south", "east", "west")]
    assert mae(drifted, ("region", "north")) > max(others)
    # The new population: the covariate-drift features move again, only during the concept drift.
    windows = _by_window(scenario, steps, "house-prices")
    calm = range(scenario.covariate[1], start)
    during = np.mean([i.features["area_m2"] for w in drifted for i in windows[w]])
    before = np.mean([i.features["area_m2"] for w in calm for i in windows[w]])
    assert during - before == pytest.approx(2 * 249.375, rel=0.15)


def test_the_reference_file_profiles_every_feature_and_the_output(tmp_path: Path) -> None:
    for model_id, spec in SPECS.items():
        path = write_training_file(spec, tmp_path / f"{model_id}.csv", rows=300)
        loaded = load_reference_file(path, spec)
        assert loaded.rows == 300
        assert set(loaded.profile) == {*spec.features, "__prediction__"}
        # A binary model's output is profiled from its score; the 0/1 prediction column is left out.
        assert loaded.ignored == (["prediction"] if spec.task.value == "binary" else [])


def test_scenario_rejects_a_run_too_short_for_its_phases() -> None:
    with pytest.raises(ValueError, match="at least 12"):
        Scenario(events=100, windows=8)
    with pytest.raises(ValueError, match="at least windows"):
        Scenario(events=10, windows=20)


# -- one real run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("demo")
    with WebhookReceiver() as receiver:
        command = [
            sys.executable, "-m", "modelmon", "demo", "--json", "--events", "720", "--windows", "12",
            "--rate", "0", "--malformed", "20", "--seed", "3", "--workdir", str(workdir / "run"),
            "--webhook", receiver.url("/hook"), "--webhook-secret", SECRET,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELMON_")}
        result = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=ROOT, env=env)
        requests = receiver.at("/hook")
    return {"result": result, "requests": requests, "workdir": workdir / "run"}


@pytest.mark.integration
def test_demo_exits_0_with_the_json_summary(demo_run: dict[str, Any]) -> None:
    result = demo_run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert {"events", "dead_letter", "alerts", "retrain_requests", "report"} <= set(summary)
    assert summary["complete"] is True
    assert summary["events"] == 1440 and summary["events_per_model"] == {m: 720 for m in SPECS}
    assert summary["dead_letter"] == 20
    assert set(summary["dead_letter_by_type"]) == {
        "invalid_json", "missing_model_id", "unknown_model", "contract_violation", "not_an_object",
    }  # fmt: skip
    assert [item["kind"] for item in summary["timeline"]] == [
        "covariate_drift",
        "malformed_burst",
        "concept_drift",
    ]
    with pytest.raises(ProcessLookupError):
        os.kill(summary["worker_pid"], 0)  # the worker was stopped and reaped


@pytest.mark.integration
def test_demo_drift_fires_and_resolves_concept_drift_fires_and_requests_retraining(
    demo_run: dict[str, Any],
) -> None:
    summary = json.loads(demo_run["result"].stdout)
    episodes = summary["alerts"]["episodes"]
    assert summary["alerts"]["fired"] == len(episodes) and summary["alerts"]["resolved"] >= 2
    for model_id, spec in SPECS.items():
        drift = [e for e in episodes if e["model_id"] == model_id and e["rule"] == "feature-drift"]
        assert {e["feature"] for e in drift} & set(drift_features(spec)), drift
        covariate_end = summary["timeline"][0]["event_time_end"]
        covariate = [e for e in drift if e["fired_window_start"] < covariate_end]
        assert all(e["resolved_window_start"] for e in covariate if e["feature"] in drift_features(spec))
    performance = {(e["model_id"], e["rule"]) for e in episodes if e["rule"] != "feature-drift"}
    assert performance == {("fraud-detector", "accuracy-drop"), ("house-prices", "error-up")}
    concept_start = summary["timeline"][-1]["event_time_start"]
    # Attribution (#16): the performance alerts name the features that moved with the new population
    # and the segment the concept drift hit hardest.
    for e in episodes:
        if e["rule"] != "feature-drift":
            tag, value = hit_segment(SPECS[e["model_id"]]) or ("", "")
            assert "moved: " in e["message"] and f"worst segment {tag}={value}" in e["message"], e
            named = set(e["message"].split("moved: ")[1].split())
            assert set(drift_features(SPECS[e["model_id"]])) & named, e
    assert all(e["fired_window_start"] >= concept_start for e in episodes if e["rule"] != "feature-drift")
    requests = {r["model_id"]: r for r in summary["retrain_requests"]}
    assert set(requests) == set(SPECS)
    fraud = requests["fraud-detector"]["evidence"]
    assert fraud[0]["kind"] == "alert" and fraud[0]["rule"] == "accuracy-drop" and fraud[0]["value"] < 0.8
    house = requests["house-prices"]["evidence"]
    assert {e["kind"] for e in house} <= {"drift", "alert"} and house[0]["value"] >= house[0]["threshold"]


@pytest.mark.integration
def test_demo_writes_the_report(demo_run: dict[str, Any]) -> None:
    report = Path(json.loads(demo_run["result"].stdout)["report"])
    assert report == demo_run["workdir"].resolve() / "report" / "index.html"
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert len(list(report.parent.glob("*.png"))) >= 4


@pytest.mark.integration
def test_the_printed_status_command_reads_the_demo_data(demo_run: dict[str, Any]) -> None:
    status, report = json.loads(demo_run["result"].stdout)["commands"]
    assert report.startswith(status.rsplit(" modelmon", 1)[0]) and " modelmon report --since " in report
    *assignments, program, command = status.split()
    assert (program, command) == ("modelmon", "status")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELMON_")}
    env |= dict(assignment.split("=", 1) for assignment in assignments)
    result = subprocess.run(
        [sys.executable, "-m", "modelmon", command, "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {row["model_id"]: row for row in json.loads(result.stdout)["models"]}
    assert set(rows) == set(SPECS)
    for row in rows.values():  # the demo loads a reference file per model before its traffic
        assert row["events"] and row["compared"] and row["reference"]["state"] == "loaded", row
        assert row["reference"]["source"].startswith("file:")


@pytest.mark.integration
def test_demo_sends_signed_alerts_and_retrain_requests_to_the_webhook(demo_run: dict[str, Any]) -> None:
    requests = demo_run["requests"]
    kinds = Counter(json.loads(r.body)["kind"] for r in requests)
    assert kinds["alerts"] >= 1 and kinds["retrain_requested"] >= 1, kinds
    for request in requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        signature, stamp = headers[SIGNATURE_HEADER.lower()], headers[TIMESTAMP_HEADER.lower()]
        assert verify_signature(SECRET, request.body, signature, stamp, tolerance_seconds=3600)


def test_every_demo_command_in_the_docs_parses() -> None:
    import re
    import shlex

    from modelmon.app.cli.traffic import demo

    text = (ROOT / "docs" / "demo.md").read_text()
    commands = [
        line.split("#", 1)[0].split("|", 1)[0].split(">", 1)[0]
        for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
        if line.startswith(".venv/bin/modelmon demo")
    ]
    assert len(commands) >= 4
    for command in commands:
        args = shlex.split(command)[2:]
        with demo.make_context("demo", args) as context:
            assert context.params["events"] >= context.params["windows"]
