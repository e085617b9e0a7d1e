"""Window bundles: split/merge/replay invariance, exact sums, JSON round trip, binning and size."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from functools import cache
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.exact import exact_square_total, exact_total
from detectors.performance import RegressionAggregate, ScoreHistogramAggregate
from detectors.profiles import CategoricalAggregate, NumericAggregate, ReferenceProfile
from modelmon.events import PredictionEvent, parse_timestamp
from modelmon.spec import ModelSpec, parse_spec
from streams.bundle import SCORE_EDGES, BundleKey, JoinedPair, WindowBundle

KEY = BundleKey("m", "1", "", 1_700_000_040_000, 60_000)
START = parse_timestamp(KEY.window_start_ms)
CLASSES = ["a", "b", "c"]
FEATURES: dict[str, dict[str, Any]] = {
    "amount": {"type": "numerical", "min": 0, "max": 100, "required": True},
    "age": {"type": "numerical"},
    "country": {"type": "categorical", "allowed": ["DE", "FR", "IT"]},
    "is_new": {"type": "boolean"},
}
KINDS = {name: feature["type"] for name, feature in FEATURES.items()}


def make_spec(task: str, features: dict[str, dict[str, Any]] | None = None, **extra: Any) -> ModelSpec:
    data: dict[str, Any] = {"model_id": "m", "task": task, "features": features or FEATURES, **extra}
    if task == "multiclass":
        data.setdefault("classes", CLASSES)
    return parse_spec(data)


def _pick(rng: np.random.Generator, good: Any, odd: list[Any], p_odd: float = 0.08) -> Any:
    return odd[int(rng.integers(len(odd)))] if rng.random() < p_odd else good


def feature_values(rng: np.random.Generator, shift: dict[str, float] | None = None) -> dict[str, Any]:
    """One event's features: mostly valid, with missing, wrongly typed, out-of-range and unseen values."""
    shift = shift or {}
    values = {
        "amount": _pick(
            rng, float(rng.normal(50 + 20 * shift.get("amount", 0.0), 20)), [None, "abc", math.inf]
        ),
        "age": _pick(rng, _age(rng, shift.get("age")), [None]),
        "country": _pick(rng, str(rng.choice(["DE", "FR", "IT"], p=_country_p(shift))), [None, "ES", 7]),
        "is_new": _pick(rng, bool(rng.random() < 0.3 + 0.4 * shift.get("is_new", 0.0)), [None, 1, 0, "yes"]),
    }
    if rng.random() < 0.1:
        values["extra"] = "x"
    return values


def _age(rng: np.random.Generator, shift: float | None) -> int | float:
    age = int(rng.integers(18, 80))
    return age if shift is None else age + 15 * shift


def _country_p(shift: dict[str, float]) -> list[float]:
    s = shift.get("country", 0.0)
    return [0.5 - 0.3 * s, 0.3, 0.2 + 0.3 * s]


def make_events(
    task: str, n: int, seed: int, *, shift: dict[str, float] | None = None
) -> tuple[list[PredictionEvent], np.ndarray, list[JoinedPair]]:
    """Seeded predictions of one window, their ingest times, and labels for about 70 % of them."""
    rng = np.random.default_rng(seed)
    events: list[PredictionEvent] = []
    ingest: list[int] = []
    pairs: list[JoinedPair] = []
    for i in range(n):
        ts = KEY.window_start_ms + int(rng.integers(0, KEY.window_ms))
        score: float | None = None
        scores: dict[str, float] | None = None
        if task == "binary":
            score = float(rng.random()) if rng.random() < 0.9 else None
            prediction: Any = int((score if score is not None else rng.random()) > 0.5)
            label: Any = _pick(rng, int(rng.random() < 0.4 + 0.4 * (prediction == 1)), ["1", "0", True])
        elif task == "multiclass":
            raw = rng.dirichlet(np.ones(3))
            scores = {c: float(p) for c, p in zip(CLASSES, raw, strict=True) if p > 0.05}
            scores = scores if rng.random() < 0.85 else None
            prediction = CLASSES[int(np.argmax(raw))]
            label = prediction if rng.random() < 0.6 else str(rng.choice(CLASSES))
        else:
            prediction = float(rng.normal(100, 30))
            label = 0.0 if rng.random() < 0.03 else prediction + float(rng.normal(0, 10))
        pid = f"p{seed}-{i}" if rng.random() > 0.02 or not events else events[-1].prediction_id
        features = feature_values(rng, shift)
        event = PredictionEvent(
            prediction_id=pid, model_id="m", ts=parse_timestamp(ts), features=features,
            prediction=prediction, score=score, scores=scores,
        )  # fmt: skip
        events.append(event)
        ingest.append(ts + int(rng.integers(-100, 30_000)))
        if rng.random() < 0.7:
            delay = int(rng.integers(0, 3_600_000))
            pairs.append(JoinedPair(prediction, score, scores, label, ts, ts + delay))
    return events, np.array(ingest, dtype=np.int64), pairs


@cache
def reference_for(task: str, seed: int = 99, n: int = 4000) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    rows = [feature_values(rng) for _ in range(n)]
    columns: dict[str, Any] = {
        name: np.array([row.get(name) for row in rows], dtype=object) for name in FEATURES
    }
    columns["amount"] = np.array(
        [v if isinstance(v, float) else None for v in columns["amount"]], dtype=object
    )
    columns["country"] = np.array(
        [v if isinstance(v, str) else None for v in columns["country"]], dtype=object
    )
    columns["is_new"] = np.array(
        [v if isinstance(v, bool) else None for v in columns["is_new"]], dtype=object
    )
    kinds = dict(KINDS)
    if task == "binary":
        columns["__prediction__"], kinds["__prediction__"] = rng.random(n), "numerical"
    elif task == "regression":
        columns["__prediction__"], kinds["__prediction__"] = rng.normal(100, 30, n), "numerical"
    else:
        columns["__prediction__"], kinds["__prediction__"] = rng.choice(CLASSES, n), "categorical"
    return ReferenceProfile.from_data(columns, kinds, sample_size=1024)


@cache
def dataset(task: str, seed: int, n: int = 120) -> tuple[list[PredictionEvent], np.ndarray, list[JoinedPair]]:
    return make_events(task, n, seed)


def build(
    task: str,
    events: list[PredictionEvent],
    ingest: np.ndarray,
    pairs: list[JoinedPair],
    *,
    reference: ReferenceProfile | None = None,
    batch: int | None = None,
) -> WindowBundle:
    """One bundle fed with the events and pairs in batches of ``batch`` (default: one batch)."""
    spec = make_spec(task)
    bundle = WindowBundle.empty(KEY, spec, reference)
    step = batch or max(len(events), len(pairs), 1)
    for start in range(0, len(events), step):
        bundle.add_predictions(events[start : start + step], ingest[start : start + step], spec)
    for start in range(0, len(pairs), step):
        bundle.add_labels(pairs[start : start + step], spec)
    return bundle


def _cut(items: list[Any], cuts: list[int]) -> list[list[Any]]:
    bounds = [0, *sorted(min(c, len(items)) for c in cuts), len(items)]
    return [items[a:b] for a, b in pairwise(bounds)]


TASKS = st.sampled_from(["binary", "multiclass", "regression"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=TASKS, seed=st.integers(0, 3), with_reference=st.booleans(), data=st.data())
def test_any_split_merged_in_any_order_equals_one_bundle(
    task: str, seed: int, with_reference: bool, data: st.DataObject
) -> None:
    events, ingest, pairs = dataset(task, seed)
    reference = reference_for(task) if with_reference else None
    n_parts = data.draw(st.integers(1, 5), label="parts")
    event_cuts = data.draw(st.lists(st.integers(0, len(events)), min_size=n_parts - 1, max_size=n_parts - 1))
    pair_cuts = data.draw(st.lists(st.integers(0, len(pairs)), min_size=n_parts - 1, max_size=n_parts - 1))
    parts = []
    indices = np.arange(len(events))
    for part_index, pair_part in zip(_cut(list(indices), event_cuts), _cut(pairs, pair_cuts), strict=True):
        batch = data.draw(st.integers(1, 50), label="batch size")
        chosen = [events[i] for i in part_index]
        part = build(task, chosen, ingest[part_index], pair_part, reference=reference, batch=batch)
        if data.draw(st.booleans(), label="through JSON"):  # stage 2 reads partials from Kafka
            part = WindowBundle.from_dict(json.loads(json.dumps(part.to_dict())))
        parts.append(part)
    while len(parts) > 1:  # merge a random pair (any order, any tree shape)
        i = data.draw(st.integers(0, len(parts) - 1))
        j = data.draw(st.integers(0, len(parts) - 2))
        j = j + 1 if j >= i else j
        left, right = parts[i], parts[j]
        parts = [p for k, p in enumerate(parts) if k not in (i, j)] + [left.merge(right)]
    expected = build(task, events, ingest, pairs, reference=reference)
    assert parts[0].to_dict() == expected.to_dict()


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_replay_rebuilds_the_identical_bundle(task: str) -> None:
    events, ingest, pairs = make_events(task, 600, seed=5)
    reference = reference_for(task)
    first = build(task, events, ingest, pairs, reference=reference, batch=64)
    replay = build(task, events, ingest, pairs, reference=reference, batch=97)
    assert json.dumps(first.to_dict()) == json.dumps(replay.to_dict())


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("with_reference", [True, False])
def test_dict_round_trip_is_exact_and_strict_json(task: str, with_reference: bool) -> None:
    events, ingest, pairs = make_events(task, 300, seed=2)
    reference = reference_for(task) if with_reference else None
    bundle = build(task, events, ingest, pairs, reference=reference)
    text = json.dumps(bundle.to_dict(), allow_nan=False)
    restored = WindowBundle.from_dict(json.loads(text))
    assert restored.to_dict() == bundle.to_dict()
    assert (restored.events, restored.labels) == (300, len(pairs))
    assert restored.merge(WindowBundle.empty(KEY, make_spec(task), reference)).to_dict()["events"] == 300


def test_extreme_values_keep_the_json_strict_and_the_sums_exact() -> None:
    spec = make_spec("regression")
    values = [1e300, -1e300, 5.0, 5e-324]
    events = [
        PredictionEvent(
            prediction_id=f"p{i}", model_id="m", ts=START, features={"amount": v, "age": v}, prediction=v
        )
        for i, v in enumerate(values)
    ]
    bundle = WindowBundle.empty(KEY, spec, None)
    bundle.add_predictions(events, [KEY.window_start_ms] * 4, spec)
    bundle.add_labels([JoinedPair(1e300, None, None, -1e300, 0, 1)], spec)
    data = bundle.to_dict()
    text = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)  # as stage 1 publishes it
    assert orjson.loads(text) == data == json.loads(json.dumps(data, allow_nan=False))
    age = bundle.features["age"]
    assert isinstance(age, NumericAggregate) and age.mean == float(sum(Fraction(v) for v in values) / 4)
    assert math.isfinite(age.std)


def test_empty_bundle_round_trips() -> None:
    bundle = WindowBundle.empty(KEY, make_spec("binary"), reference_for("binary"))
    assert WindowBundle.from_dict(json.loads(json.dumps(bundle.to_dict()))).to_dict() == bundle.to_dict()
    bundle.add_predictions([], [], make_spec("binary"))
    bundle.add_labels([], make_spec("binary"))
    assert bundle.events == bundle.labels == 0


def test_exact_sums_match_fractions_whatever_the_magnitudes() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [rng.normal(0, 1, 500), rng.normal(0, 1e-300, 20), rng.normal(0, 1e150, 20), [5e-324, -0.0, 0.0]]
    )
    rng.shuffle(values)
    assert exact_total(values) == sum((Fraction(v) for v in values), Fraction(0))
    assert exact_square_total(values) == sum((Fraction(v) ** 2 for v in values), Fraction(0))
    halves = exact_total(values[:100]) + exact_total(values[100:])
    assert halves == exact_total(values)
    assert exact_total(np.zeros(0)) == 0


def test_canonical_sums_agree_with_the_detectors_aggregates() -> None:
    """Regression sums are the detectors' own (batch-independent); moments and log loss mean the same."""
    events, ingest, pairs = make_events("regression", 800, seed=4)
    bundle = build("regression", events, ingest, pairs, batch=100)
    direct = RegressionAggregate()
    direct.update_batch(
        np.array([p.label for p in pairs], dtype=float), np.array([p.prediction for p in pairs], dtype=float)
    )
    ours = bundle.regression
    assert ours is not None and ours.to_dict() == direct.to_dict()
    amounts = np.array([e.features["amount"] for e in events if isinstance(e.features["amount"], float)])
    amounts = amounts[np.isfinite(amounts)]
    window = bundle.features["amount"]
    assert isinstance(window, NumericAggregate)
    assert window.count == amounts.size
    assert window.mean == pytest.approx(amounts.mean(), rel=1e-14)
    assert window.std == pytest.approx(amounts.std(), rel=1e-12)
    for task in ("binary", "multiclass"):
        events, ingest, pairs = make_events(task, 800, seed=4)
        classified = build(task, events, ingest, pairs, batch=70)
        ours_scores, their_scores = classified.scores, classified._scores  # the detectors' own sum
        assert isinstance(ours_scores, ScoreHistogramAggregate) and their_scores is not None
        assert ours_scores.count == their_scores.count > 0
        assert ours_scores.log_loss().value == pytest.approx(their_scores.log_loss().value, rel=1e-12)


def test_binning_follows_the_reference() -> None:
    reference = reference_for("binary")
    spec = make_spec("binary")
    bundle = WindowBundle.empty(KEY, spec, reference)
    amount, country = bundle.features["amount"], bundle.features["country"]
    assert isinstance(amount, NumericAggregate) and isinstance(country, CategoricalAggregate)
    assert np.array_equal(amount.edges, reference["amount"].edges)  # type: ignore[union-attr]
    assert country.categories == tuple(reference["country"].categories.tolist())  # type: ignore[union-attr]
    assert bundle.prediction_values is not None
    assert np.array_equal(bundle.prediction_values.edges, reference["__prediction__"].edges)  # type: ignore[union-attr]
    plain = WindowBundle.empty(KEY, spec, None)
    assert plain.features["amount"].edges.tolist() == [-math.inf, math.inf]  # type: ignore[union-attr]
    assert plain.prediction_values is not None
    assert np.array_equal(plain.prediction_values.edges, SCORE_EDGES)
    regression = WindowBundle.empty(KEY, make_spec("regression"), None)
    assert regression.prediction_classes is None and regression.confusion is None
    multiclass = WindowBundle.empty(KEY, make_spec("multiclass"), None)
    assert multiclass.prediction_values is None and multiclass.prediction_classes is not None


def test_wrongly_typed_values_stay_out_of_drift_but_count_in_fidelity() -> None:
    spec = make_spec("binary")
    rows: list[dict[str, Any]] = [
        {"amount": "abc", "age": 30, "country": 7, "is_new": "yes"},
        {"amount": 12.5, "age": True, "country": "DE", "is_new": 1},
        {"amount": math.inf, "age": None, "country": "ES", "is_new": 2},
    ]
    events = [
        PredictionEvent(prediction_id=f"p{i}", model_id="m", ts=START, features=row, prediction=1)
        for i, row in enumerate(rows)
    ]
    bundle = WindowBundle.empty(KEY, spec, None)
    bundle.add_predictions(events, [KEY.window_start_ms] * 3, spec)
    amount, age = bundle.features["amount"], bundle.features["age"]
    country, is_new = bundle.features["country"], bundle.features["is_new"]
    assert isinstance(amount, NumericAggregate) and isinstance(age, NumericAggregate)
    assert (amount.count, amount.missing, age.count) == (1, 2, 1)
    assert isinstance(country, CategoricalAggregate) and isinstance(is_new, CategoricalAggregate)
    assert country.counts() == {"DE": 1, "ES": 1} and is_new.counts() == {"True": 1}
    report = bundle.fidelity.finalise()
    assert report["amount"]["type_violation_rate"].value == pytest.approx(2 / 3)
    assert report["is_new"]["type_violation_rate"].value == pytest.approx(2 / 3)


def test_merge_refuses_other_windows_and_other_references() -> None:
    spec = make_spec("binary")
    bundle = WindowBundle.empty(KEY, spec, reference_for("binary"))
    later = BundleKey(
        KEY.model_id, KEY.model_version, KEY.segment, KEY.window_start_ms + KEY.window_ms, 60_000
    )
    with pytest.raises(ValueError, match="cannot merge bundles"):
        bundle.merge(WindowBundle.empty(later, spec, None))
    with pytest.raises(ValueError, match="different references"):
        bundle.merge(WindowBundle.empty(KEY, spec, None))
    with pytest.raises(ValueError, match="ingest_ts_ms has 1 entries for 0 events"):
        bundle.add_predictions([], [1], spec)
    with pytest.raises(ValueError, match="unsupported bundle format"):
        WindowBundle.from_dict({**bundle.to_dict(), "version": 99})


def test_twenty_features_serialise_well_under_one_megabyte() -> None:
    rng = np.random.default_rng(8)
    features: dict[str, dict[str, Any]] = {
        f"num{i}": {"type": "numerical", "min": -5, "max": 5} for i in range(14)
    }
    features |= {f"cat{i}": {"type": "categorical"} for i in range(4)}
    features |= {f"flag{i}": {"type": "boolean"} for i in range(2)}
    spec = make_spec("binary", features)
    n = 20_000
    columns: dict[str, Any] = {f"num{i}": rng.normal(0, 1, n) for i in range(14)}
    # High-cardinality categories: 500 distinct values, beyond the 100 new categories counted by name.
    columns |= {f"cat{i}": rng.choice([f"v{j}" for j in range(500)], n) for i in range(4)}
    columns |= {f"flag{i}": rng.random(n) < 0.5 for i in range(2)}
    reference = ReferenceProfile.from_data(
        {name: values[:4000] for name, values in columns.items()},
        {name: feature["type"] for name, feature in features.items()},
    )
    rows = [{name: values[i].item() for name, values in columns.items()} for i in range(n)]
    events = [
        PredictionEvent(prediction_id=f"id-{i}", model_id="m", ts=parse_timestamp(KEY.window_start_ms + i),
                        features=row, prediction=int(i % 2), score=float(rng.random()))
        for i, row in enumerate(rows)
    ]  # fmt: skip
    pairs = [JoinedPair(e.prediction, e.score, None, int(rng.integers(0, 2)), 0, 1000) for e in events]
    bundle = WindowBundle.empty(KEY, spec, reference)
    for start in range(0, n, 5000):
        bundle.add_predictions(events[start : start + 5000], np.full(5000, KEY.window_start_ms + 10**6), spec)
        bundle.add_labels(pairs[start : start + 5000], spec)
    size = len(json.dumps(bundle.to_dict()))
    print(f"\nserialised bundle, 20 features, {n} events, sample_size 256: {size} bytes")
    assert size < 400_000
