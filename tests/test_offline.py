"""modelmon.offline: the stream's numbers on two DataFrames, checked against the stream and by hand."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from detectors.profiles import ReferenceProfile
from modelmon.events import MetricPoint, PredictionEvent, parse_timestamp
from modelmon.offline import Columns, OfflineError, compare
from modelmon.offline.compute import event_rows, window_bundles
from streams.bundle import JoinedPair, WindowBundle
from streams.finalize import window_metrics
from streams.validation import InvalidEvent, check_against_spec
from tests.test_bundle import CLASSES, KEY, feature_values, make_spec, reference_for

N = 400


def messy_rows(task: str, n: int, seed: int) -> pd.DataFrame:
    """Rows of one stream window (KEY) with the bundle tests' odd values: missing, wrongly typed, out of
    range, unseen categories, duplicate ids; labels for about 70 % of the rows, late ones included."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    for i in range(n):
        ts = KEY.window_start_ms + int(rng.integers(0, KEY.window_ms))
        row: dict[str, Any] = {"score": None, "scores": None}
        if task == "binary":
            row["score"] = float(rng.random()) if rng.random() < 0.9 else None
            row["prediction"] = int((row["score"] or rng.random()) > 0.5)
            label: Any = [0, 1, "1", "0", True][int(rng.integers(5))]
        elif task == "multiclass":
            raw = rng.dirichlet(np.ones(3))
            row["scores"] = {c: float(p) for c, p in zip(CLASSES, raw, strict=True)}
            row["prediction"] = CLASSES[int(np.argmax(raw))]
            label = str(rng.choice(CLASSES))
        else:
            row["prediction"] = float(rng.normal(100, 30))
            label = row["prediction"] + float(rng.normal(0, 10))
        features = feature_values(rng, {"amount": 1.0, "country": 0.5})
        features.pop("extra", None)  # a frame has no unknown features: its other columns are not features
        row |= features
        row["prediction_id"] = f"p{i}" if rng.random() > 0.03 or not records else records[-1]["prediction_id"]
        row["ts"] = pd.Timestamp(ts, unit="ms", tz="UTC")
        row["ingest_ts"] = pd.Timestamp(ts + int(rng.integers(-100, 30_000)), unit="ms", tz="UTC")
        row["label"] = label if rng.random() < 0.7 else None
        row["label_ts"] = pd.Timestamp(ts + int(rng.integers(0, 3_600_000)), unit="ms", tz="UTC")
        records.append(row)
    frame = pd.DataFrame.from_records(records)
    for name in ("amount", "age", "country", "is_new", "label", "prediction"):
        frame[name] = pd.Series([r[name] for r in records], dtype=object)  # values exactly as the events'
    return frame


def stream_bundle(frame: pd.DataFrame, task: str, reference: ReferenceProfile) -> WindowBundle:
    """What the stream folds for these rows: the contract events that pass stage 1's checks, in
    batches, and the joined pairs of the labelled ones (a dead-lettered prediction never joins)."""
    spec = make_spec(task)
    events, ingest, pairs = [], [], []
    for row in frame.to_dict("records"):
        score = None if row["score"] is None or math.isnan(row["score"]) else row["score"]
        ts = int(row["ts"].value // 1_000_000)
        event = PredictionEvent(
            prediction_id=row["prediction_id"], model_id="m", ts=parse_timestamp(ts),
            features={name: row[name] for name in spec.features}, prediction=row["prediction"],
            score=score, scores=row["scores"],
        )  # fmt: skip
        try:
            check_against_spec(event, {"m": spec})
        except InvalidEvent:
            continue
        events.append(event)
        ingest.append(int(row["ingest_ts"].value // 1_000_000))
        if row["label"] is not None:
            label_ts = int(row["label_ts"].value // 1_000_000)
            pairs.append(JoinedPair(row["prediction"], score, row["scores"], row["label"], ts, label_ts))
    bundle = WindowBundle.empty(KEY, spec, reference)
    for start in range(0, len(events), 97):
        bundle.add_predictions(events[start : start + 97], ingest[start : start + 97], spec)
    for start in range(0, len(pairs), 61):
        bundle.add_labels(pairs[start : start + 61], spec)
    return bundle


def keyed(points: list[MetricPoint]) -> dict[tuple[str, str], tuple[float, dict[str, Any], Any]]:
    return {(p.metric, p.feature): (p.value, p.details, (p.window_start, p.window_end)) for p in points}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_offline_equals_the_stream_on_the_same_events(task: str) -> None:
    frame = messy_rows(task, N, seed=5)
    reference = reference_for(task)
    spec = make_spec(task)
    stream = stream_bundle(frame, task, reference)
    rows = event_rows(frame, spec, Columns(), now_ms=0)
    (offline,) = window_bundles(rows, spec, reference, KEY.window_ms, "1")
    assert offline.key == KEY
    assert offline.to_dict() == stream.to_dict()  # the same state, however the stream batched it
    result = compare(reference, frame, spec, window="1m")
    expected = keyed(window_metrics(stream, spec, reference))
    assert keyed(result.points) == expected
    drift = {name for name, _ in expected if name in {"psi", "ks", "jensen_shannon", "wasserstein"}}
    assert drift, "the window is compared with the reference"
    assert ("duplicate_ids", "") in expected and expected[("duplicate_ids", "")][0] > 0
    assert expected[("type_violation_rate", "country")][0] > 0
    assert expected[("events", "")][0] < N and "required feature" in result.notes[0]  # as dead-lettered


def test_without_ingest_or_label_times_no_lateness_or_label_delay() -> None:
    frame = messy_rows("binary", 200, seed=6).drop(columns=["ingest_ts", "label_ts"])
    names = set(compare(reference_for("binary"), frame, make_spec("binary")).metrics["metric"])
    assert "accuracy" in names and "missing_rate" in names
    assert not {name for name in names if name.startswith(("lateness_", "label_delay_"))}


def test_ks_and_chi_square_equal_scipy_on_the_same_columns() -> None:
    rng = np.random.default_rng(1)
    reference = pd.DataFrame(
        {"x": rng.normal(0, 1, 1000), "c": rng.choice(list("abc"), 1000, p=[0.5, 0.3, 0.2])}
    )
    current = pd.DataFrame(
        {"x": rng.normal(0.3, 1, 200), "c": rng.choice(list("abc"), 200, p=[0.3, 0.3, 0.4])}
    )
    features = {
        "x": {"type": "numerical", "drift_method": "ks"},
        "c": {"type": "categorical", "drift_method": "chi_square"},
    }
    spec = {"task": "regression", "features": features}
    drift = compare(reference, current, spec).drift.set_index("feature")
    ks = stats.ks_2samp(reference["x"], current["x"])
    assert drift.loc["x", "method"] == "ks"
    assert drift.loc["x", "score"] == pytest.approx(ks.statistic, abs=1e-12)
    assert drift.loc["x", "p_value"] == pytest.approx(ks.pvalue, rel=1e-9)
    shares = reference["c"].value_counts(normalize=True).sort_index()
    counts = current["c"].value_counts().sort_index()
    chi = stats.chisquare(counts.to_numpy(), shares.to_numpy() * len(current))
    assert drift.loc["c", "score"] == pytest.approx(chi.statistic, rel=1e-12)
    assert ks.pvalue < 0.05 and bool(drift.loc["x", "drifted"])


def test_accuracy_and_mae_equal_hand_counts() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"f": rng.normal(size=300), "prediction": rng.integers(0, 2, 300)})
    frame["label"] = np.where(rng.random(300) < 0.75, frame["prediction"], 1 - frame["prediction"])
    frame.loc[:49, "label"] = None  # 50 unlabelled rows
    perf = compare(frame, frame, {"task": "binary", "features": {"f": {"type": "numerical"}}}).performance
    labelled = frame.dropna(subset=["label"])
    assert perf.loc[0, "events"] == 300 and perf.loc[0, "labels"] == 250
    assert perf.loc[0, "accuracy"] == (labelled["label"] == labelled["prediction"]).sum() / 250
    reg = pd.DataFrame(
        {"f": rng.normal(size=100), "prediction": rng.normal(size=100), "label": rng.normal(size=100)}
    )
    mae = compare(reg, reg, {"task": "regression", "features": {"f": {"type": "numerical"}}}).performance
    assert mae.loc[0, "mae"] == pytest.approx(np.mean(np.abs(reg["label"] - reg["prediction"])), rel=1e-12)


def test_windows_follow_the_timestamp_column_like_the_stream() -> None:
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2025-03-01 10:00", tz="UTC")
    current = pd.DataFrame({"x": rng.normal(size=600)})
    current["ts"] = start + pd.to_timedelta(np.repeat([5, 70, 130], 200), unit="min")
    result = compare(current, current, window="1h")
    assert sorted(set(result.metrics["window_start"])) == [
        start,
        start + timedelta(hours=1),
        start + timedelta(hours=2),
    ]
    assert result.performance["events"].tolist() == [200, 200, 200]


def test_kinds_and_task_are_inferred_without_a_spec() -> None:
    frame = pd.DataFrame({
        "n": [1.5, 2.5, 3.5, 4.5], "c": ["a", "b", "a", "b"], "b": [True, False, True, True],
        "prediction": ["x", "y", "z", "x"], "label": ["x", "y", "y", "x"],
    })  # fmt: skip
    spec = compare(frame, frame).spec
    assert {n: f.type for n, f in spec.features.items()} == {
        "n": "numerical",
        "c": "categorical",
        "b": "boolean",
    }
    assert spec.task == "multiclass" and spec.model_id == "offline"
    assert (
        compare(frame.assign(prediction=[0, 1, 1, 0]), frame.assign(prediction=[0, 1, 1, 0])).spec.task
        == "binary"
    )


def test_categorical_numbers_are_compared_as_text_and_segments_split() -> None:
    frame = pd.DataFrame({"zip": [10115, 10115, 80331, 80331], "region": ["n", "n", "s", "s"]})
    spec = {"task": "regression", "segments": ["region"], "features": {"zip": {"type": "categorical"}}}
    result = compare(frame, frame, spec)
    metrics = result.metrics
    violations = metrics[(metrics["metric"] == "type_violation_rate") & (metrics["segment"] == "")]
    assert violations["value"].tolist() == [0.0]
    assert result.reference["zip"].counts() == {"10115": 2, "80331": 2}
    assert set(metrics["segment"]) == {"", "region=n", "region=s"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r, c: compare(r, c.drop(columns=["x"]), {"features": {"x": {"type": "numerical"}}}),
         "the current DataFrame lacks the column(s) of feature(s) x"),
        (lambda r, c: compare(r.drop(columns=["x"]), c, {"features": {"x": {"type": "numerical"}}}),
         "the reference DataFrame lacks the column(s) of feature(s) x"),
        (lambda r, c: compare(r, c, {"features": {"x": {"type": "text"}}}),
         "field 'features.x.type'"),
        (lambda r, c: compare(r, c.iloc[:0]), "the current DataFrame has no rows"),
        (lambda r, c: compare(r.iloc[:0], c), "the reference DataFrame has no rows"),
        (lambda r, c: compare(r, c.to_dict()), "must be a pandas DataFrame"),
        (lambda r, c: compare(r, c, window="1h"), "window='1h' needs event times"),
        (lambda r, c: compare(r, c.assign(ts=1.0), window="1h"), "holds numbers, not times"),
        (lambda r, c: compare(r, c.assign(ts=pd.Timestamp(0, tz="UTC")), window="soon"), "is not a duration"),
        (lambda r, c: compare(r, c.assign(score=1.5)), "must hold probabilities in [0, 1]"),
        (lambda r, c: compare(r, c.assign(prediction=["no", "yes"] * 5)), "say which one is positive"),
        (lambda r, c: compare(r.assign(x="abc"), c), "the reference column 'x' is numerical but holds 'abc'"),
        (lambda r, c: compare(r, c, columns={"time": "t"}), "unknown column role(s) ['time']"),
    ],
)  # fmt: skip
def test_user_mistakes_get_a_clear_message(call: Any, message: str) -> None:
    frame = pd.DataFrame({"x": np.arange(10.0), "prediction": [0, 1] * 5})
    with pytest.raises(OfflineError) as error:
        call(frame, frame)
    assert message in str(error.value)


def test_rows_the_stream_would_dead_letter_are_left_out_and_said_so() -> None:
    frame = pd.DataFrame({"x": [1.0, None, 3.0, 4.0], "prediction": [0.5, 1.5, "high", 2.5]})
    spec = {"task": "regression", "features": {"x": {"type": "numerical", "required": True}}}
    result = compare(frame.iloc[[0, 3]], frame, spec)
    assert result.performance.loc[0, "events"] == 2
    assert len(result.notes) == 2 and "required feature" in result.notes[0]


@pytest.mark.integration
def test_the_report_is_modelmon_reports(tmp_path: Any, clickhouse_dsn: str) -> None:
    if not clickhouse_dsn.startswith("chdb://"):
        pytest.skip("the offline report renders on the embedded engine")
    frame = messy_rows("binary", 300, seed=7)
    result = compare(reference_for("binary"), frame, make_spec("binary"), window="1m")
    page = result.save_report(tmp_path / "report", engine=clickhouse_dsn)
    pictures = sorted(p.name for p in page.parent.glob("*.png"))
    kinds = ["drift-heatmap", "fidelity-lateness", "fidelity-missing", "performance", "what-moved"]
    assert pictures == [f"m-{kind}.png" for kind in kinds]
    html = page.read_text(encoding="utf-8")
    assert html.count("src='data:image/png;base64,") == 5 and ">m</h2>" in html
    single = result.to_html(tmp_path / "one.html", engine=clickhouse_dsn)
    assert single.read_text(encoding="utf-8").count("data:image/png;base64,") == 5


def test_a_reference_frame_is_profiled_like_the_same_reference_file(tmp_path: Any) -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500), "score": rng.random(500)}
    )
    frame.loc[::7, "x"] = None
    frame.to_csv(tmp_path / "reference.csv", index=False)
    spec = {"task": "binary", "features": {"x": {"type": "numerical"}, "c": {"type": "categorical"}}}
    from_frame = compare(frame, frame, spec).reference
    assert compare(tmp_path / "reference.csv", frame, spec).reference == from_frame
    assert set(from_frame) == {"x", "c", "__prediction__"}
