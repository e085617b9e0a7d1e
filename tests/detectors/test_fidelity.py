"""Fidelity checks: schema, type/range/unseen counts, lateness, duplicate ids, labels, merge properties."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import value_types as vt
from detectors.duplicates import DuplicateIdAggregate
from detectors.durations import DurationHistogram, to_seconds
from detectors.fidelity import FeatureSchema, FidelityAggregate
from detectors.metric import Metric

SCHEMA = [
    FeatureSchema("amount", "numerical", required=True, min=0, max=100),
    FeatureSchema("age", "numerical"),
    FeatureSchema("country", "categorical", allowed={"DE", "FR"}),
    FeatureSchema("channel", "categorical"),
    FeatureSchema("is_new", "boolean", required=True),
]


def rates(report: dict[str, dict[str, Metric]], feature: str) -> dict[str, float]:
    return {name: metric.value for name, metric in report[feature].items()}


def test_hand_worked_batch() -> None:
    columns = {
        "amount": np.array([5, 150.0, None, "12", -1, True], dtype=object),  # 1 missing, 2 wrong type
        "age": np.array([30.0, np.nan, np.inf, 41.0, 2.0, 3.0]),  # typed float: 1 missing, 1 not finite
        "country": np.array(["DE", "US", "FR", "XX", 7, None], dtype=object),
        "channel": np.array(["web"] * 6),
        "is_new": np.array([True, False, 1, 0, 2, "yes"], dtype=object),
        "colour": np.array([None, "red", None, None, "blue", None], dtype=object),
        "size": np.array([np.nan] * 5 + [3.0]),
    }
    agg = FidelityAggregate()
    agg.update_batch(columns, SCHEMA)
    report = agg.finalise()
    # amount: present 5; type violations "12" and True; in-type values 5, 150, -1: two out of [0, 100].
    assert rates(report, "amount") == {
        "missing_rate": 1 / 6,
        "type_violation_rate": 2 / 5,
        "range_violation_rate": 2 / 3,
    }
    assert rates(report, "age") == {"missing_rate": 1 / 6, "type_violation_rate": 1 / 5}
    # country: 7 is not text; of DE, US, FR, XX two are unseen.
    assert rates(report, "country") == {
        "missing_rate": 1 / 6,
        "type_violation_rate": 1 / 5,
        "unseen_category_rate": 2 / 4,
    }
    assert rates(report, "channel") == {"missing_rate": 0.0, "type_violation_rate": 0.0}
    assert rates(report, "is_new") == {"missing_rate": 0.0, "type_violation_rate": 2 / 6}
    assert rates(report, "colour") == {"unknown_feature_rate": 2 / 6}
    assert rates(report, "size") == {"unknown_feature_rate": 1 / 6}
    window = rates(report, "")
    assert window["events"] == 6
    assert window["required_missing_event_rate"] == 1 / 6  # amount is None in event 2
    assert window["unknown_feature_event_rate"] == 3 / 6  # events 1, 4, 5
    assert math.isnan(window["lateness_mean"]) and report[""]["lateness_mean"].reason
    assert report[""]["duplicate_rate"].reason == "no prediction ids"


def test_absent_column_counts_every_event_as_missing() -> None:
    agg = FidelityAggregate()
    agg.update_batch({"age": np.array([1.0, 2.0])}, SCHEMA)
    report = agg.finalise()
    assert rates(report, "amount")["missing_rate"] == 1.0
    assert report["amount"]["type_violation_rate"].reason == "no values present"
    assert report["amount"]["range_violation_rate"].reason == "no values of the right type"
    assert rates(report, "")["required_missing_event_rate"] == 1.0


def test_type_codes_cover_python_and_numpy_scalars() -> None:
    column = np.array(
        [np.int32(3), np.float32(2.5), np.str_("x"), np.bool_(False), 10**30, float("-inf"), b"raw", None],
        dtype=object,
    )
    names = [vt.TYPE_NAMES[code] for code in vt.type_codes(column)]
    assert names == ["int", "float", "text", "bool", "int", "nonfinite", "other", "missing"]
    assert vt.type_codes(np.array([True, False])).tolist() == [vt.BOOL, vt.BOOL]
    assert vt.type_codes(np.array(["a"])).tolist() == [vt.TEXT]
    assert vt.type_codes(np.array([1], dtype=np.uint8)).tolist() == [vt.INT]


def test_lateness_histogram_and_quantile_bounds() -> None:
    rng = np.random.default_rng(2)
    event_ts = rng.uniform(1e9, 1e9 + 3600, 5000)
    ingest_ts = event_ts + rng.exponential(20, 5000) - 0.5
    lateness = ingest_ts - event_ts
    agg = FidelityAggregate()
    for idx in np.array_split(np.arange(5000), 7):
        agg.update_batch({}, [], event_ts=event_ts[idx], ingest_ts=ingest_ts[idx])
    edges, counts = agg.histogram("lateness")
    expected, _ = np.histogram(lateness, bins=[-np.inf, *edges, np.inf])
    assert counts == expected.tolist()
    window = rates(agg.finalise(), "")
    assert window["lateness_mean"] == pytest.approx(lateness.mean(), abs=1e-9)
    assert window["lateness_max"] == lateness.max()
    for q in (50, 95, 99):
        reported = window[f"lateness_p{q}"]
        assert np.quantile(lateness, q / 100) <= reported
        assert reported in (*edges, lateness.max())


def test_datetime64_timestamps_are_seconds() -> None:
    event = np.array(["2024-05-01T12:00:00", "2024-05-01T12:00:00"], dtype="datetime64[ms]")
    ingest = event + np.array([1500, 90_000], dtype="timedelta64[ms]")
    agg = FidelityAggregate()
    agg.update_batch({}, [], event_ts=event, ingest_ts=ingest)
    window = rates(agg.finalise(), "")
    assert window["lateness_max"] == 90.0
    assert window["lateness_mean"] == pytest.approx(45.75)
    assert to_seconds(np.array([2.5])).tolist() == [2.5]


def test_label_coverage_and_delay() -> None:
    agg = FidelityAggregate()
    agg.update_batch({"amount": np.arange(10.0)}, SCHEMA[:1])
    agg.update_labels(
        prediction_ts=np.array([0.0, 10.0, 20.0]), label_ts=np.array([30.0, 3610.0, 20.0 + 86400 * 2])
    )
    window = rates(agg.finalise(), "")
    assert window["label_coverage"] == 0.3
    assert window["label_delay_max"] == 172800.0
    assert window["label_delay_mean"] == pytest.approx((30 + 3600 + 172800) / 3)
    assert window["label_delay_p50"] == 10800.0  # the median 3600 is in bucket [3600, 10800)


def test_duplicates_are_exact_below_capacity() -> None:
    rng = np.random.default_rng(4)
    ids = np.array([f"pred-{i}" for i in rng.integers(0, 3000, 4000)])
    agg = DuplicateIdAggregate(capacity=8192)
    for part in np.array_split(ids, 9):
        agg.update_batch(part)
    assert agg.exact
    assert agg.duplicates() == ids.size - np.unique(ids).size
    assert agg.n_ids == ids.size


def test_duplicates_past_capacity_are_an_unbiased_sample() -> None:
    rng = np.random.default_rng(5)
    distinct = np.array([f"p{i:07d}" for i in range(100_000)])
    repeated = rng.choice(distinct, 5_000, replace=False)
    ids = np.concatenate([distinct, repeated])
    rng.shuffle(ids)
    parts = []
    for chunk in np.array_split(ids, 8):
        agg = DuplicateIdAggregate(capacity=4096)
        agg.update_batch(chunk)
        parts.append(agg)
    merged = parts[0]
    for other in parts[1:]:
        merged = merged.merge(other)
    assert not merged.exact and merged.level >= 5
    assert len(merged.to_dict()["repeated"]) < 4096
    assert merged.duplicates() == pytest.approx(5_000, rel=0.3)
    assert merged.n_ids == 105_000
    single = DuplicateIdAggregate(capacity=4096)
    single.update_batch(ids)
    assert single.to_dict() == merged.to_dict()


def test_unknown_features_keep_the_first_names_exactly() -> None:
    left, right = FidelityAggregate(max_unknown_features=2), FidelityAggregate(max_unknown_features=2)
    left.update_batch({"zeta": np.array([1, 1]), "beta": np.array([1, None], dtype=object)}, [])
    right.update_batch({"alpha": np.array([1, 1]), "zeta": np.array([1, 1])}, [])
    merged = left.merge(right).finalise()
    assert sorted(name for name in merged if name) == ["alpha", "beta"]
    assert merged["beta"]["unknown_feature_rate"].value == 1 / 4
    assert merged[""]["unknown_feature_event_rate"].value == 1.0


def test_schema_and_batch_are_validated() -> None:
    with pytest.raises(ValueError, match="valid: boolean, categorical, numerical"):
        FeatureSchema("x", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numerical features only"):
        FeatureSchema("x", "categorical", min=1)
    with pytest.raises(ValueError, match="categorical features only"):
        FeatureSchema("x", "boolean", allowed=["a"])
    agg = FidelityAggregate()
    with pytest.raises(ValueError, match="differ in length"):
        agg.update_batch({"a": np.zeros(2), "b": np.zeros(3)}, [])
    with pytest.raises(ValueError, match="both event_ts and ingest_ts"):
        agg.update_batch({"a": np.zeros(2)}, [], event_ts=np.zeros(2))
    with pytest.raises(ValueError, match="pass n_events"):
        agg.update_batch({}, [])
    with pytest.raises(ValueError, match="strictly increasing"):
        DurationHistogram((0, 5, 5))
    with pytest.raises(ValueError, match="cannot merge fidelity settings"):
        FidelityAggregate(id_capacity=5).merge(FidelityAggregate())


def test_events_without_features_count_with_n_events() -> None:
    agg = FidelityAggregate()
    agg.update_batch({}, SCHEMA, n_events=3)
    assert agg.n_events == 3
    assert agg.finalise()["amount"]["missing_rate"] == Metric(1.0)


# --- merge properties (hypothesis) ---------------------------------------------------------------------

cell = st.one_of(
    st.none(), st.floats(-10, 200), st.just(float("nan")), st.sampled_from(["DE", "US", "web"]), st.booleans()
)
event = st.tuples(
    st.fixed_dictionaries({"amount": cell, "country": cell, "is_new": cell}, optional={"extra": cell}),
    st.floats(0, 1000),
    st.floats(-5, 5000),
    st.sampled_from([f"id{i}" for i in range(12)] + [None]),
)
batches = st.lists(event, max_size=20)
SMALL_SCHEMA = [SCHEMA[0], SCHEMA[2], SCHEMA[4]]


def _fidelity(batch: list[Any]) -> FidelityAggregate:
    agg = FidelityAggregate(id_capacity=4, max_unknown_features=1)
    if not batch:
        return agg
    names = ("amount", "country", "is_new", "extra")
    columns = {name: np.array([features.get(name) for features, *_ in batch], dtype=object) for name in names}
    event_ts = np.array([ts for _, ts, _, _ in batch])
    agg.update_batch(
        columns,
        SMALL_SCHEMA,
        event_ts=event_ts,
        ingest_ts=event_ts + np.array([late for _, _, late, _ in batch]),
        prediction_ids=np.array([pid for *_, pid in batch], dtype=object),
    )
    agg.update_labels(event_ts[::2], event_ts[::2] + 60)
    return agg


@settings(max_examples=60, deadline=None)
@given(batches, batches, batches)
def test_fidelity_merge_is_exactly_associative_and_commutative(
    a: list[Any], b: list[Any], c: list[Any]
) -> None:
    x, y, z = _fidelity(a), _fidelity(b), _fidelity(c)
    before = x.to_dict()
    assert x.merge(y).to_dict() == y.merge(x).to_dict()
    assert x.merge(y).merge(z).to_dict() == x.merge(y.merge(z)).to_dict()
    assert x.to_dict() == before
    assert FidelityAggregate.from_dict(json.loads(json.dumps(x.to_dict(), allow_nan=False))) == x


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), max_size=30), min_size=1, max_size=5))
def test_duplicate_merge_equals_one_aggregate_fed_everything(parts: list[list[int]]) -> None:
    single = DuplicateIdAggregate(capacity=8)
    merged = DuplicateIdAggregate(capacity=8)
    for part in parts:
        ids = np.array([f"id{i}" for i in part], dtype=object)
        single.update_batch(ids)
        one = DuplicateIdAggregate(capacity=8)
        one.update_batch(ids)
        merged = one.merge(merged)
    assert merged.to_dict() == single.to_dict()
    if merged.exact:
        flat = [i for part in parts for i in part]
        assert merged.duplicates() == len(flat) - len(set(flat))
