"""Automatic references: profiles from window aggregates, and the stage-2 builder with in-memory doubles.

The real-component test (broker, worker, sink, chDB) is tests/test_e2e_auto_reference.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from detectors.bins import histogram
from detectors.hashing import row_keys_from_ids
from detectors.profiles import (
    CategoricalAggregate,
    CategoricalFeatureProfile,
    NumericAggregate,
    NumericalFeatureProfile,
    ReferenceProfile,
)
from detectors.profiles.sampling import union_sample
from modelmon.events import PredictionEvent, parse_timestamp
from modelmon.references import PREDICTION_FEATURE
from modelmon.spec import ModelSpec, SpecError, parse_spec
from streams.auto_reference import AutoReferenceBuilder, WindowPart, build_reference, reference_windows
from streams.bundle import UNBINNED, BundleKey, WindowBundle
from streams.window_key import window_id

WINDOW_MS = 60_000
T0 = 1_700_000_040_000 - 1_700_000_040_000 % WINDOW_MS


# -- profiles from aggregates ------------------------------------------------------------------------


def numeric_windows(
    values: np.ndarray, ids: np.ndarray, windows: int, sample_size: int
) -> list[NumericAggregate]:
    keys = row_keys_from_ids(ids)
    parts = []
    for chunk in np.array_split(np.arange(values.size), windows):
        window = NumericAggregate(UNBINNED, sample_size=sample_size)
        window.update_batch(values[chunk], row_keys=keys[chunk])
        parts.append(window)
    return parts


def test_numerical_profile_from_complete_windows_equals_the_profile_of_the_rows() -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.gamma(2.0, 10.0, 900), 1)  # rounded: repeated values, as real data has
    values[rng.random(900) < 0.05] = np.nan
    ids = np.array([f"id-{i}" for i in range(values.size)])
    built = NumericalFeatureProfile.from_aggregates(numeric_windows(values, ids, 4, sample_size=256))
    expected = NumericalFeatureProfile.from_values(values, sample_size=4096)
    for name in ("inner_edges", "bin_counts", "count", "missing", "min", "max", "n_unique"):
        assert built.to_dict()[name] == expected.to_dict()[name], name
    assert built.mean == pytest.approx(expected.mean, rel=1e-12)
    assert built.std == pytest.approx(expected.std, rel=1e-12)
    assert np.array_equal(built.sorted_sample, expected.sorted_sample)  # every value, another order


def test_complete_windows_beyond_the_sample_size_still_give_exact_bins() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(0, 1, 3000)
    ids = np.array([f"r{i}" for i in range(values.size)])
    built = NumericalFeatureProfile.from_aggregates(
        numeric_windows(values, ids, 3, sample_size=1000), sample_size=500
    )
    expected = NumericalFeatureProfile.from_values(values)
    assert np.array_equal(built.edges, expected.edges)
    assert np.array_equal(built.bin_counts, expected.bin_counts)
    # The sample: the 500 values of smallest row key, a uniform sample of all of them.
    smallest = values[np.argsort(row_keys_from_ids(ids))[:500]]
    assert np.array_equal(np.sort(built.sample), np.sort(smallest))


def test_union_sample_is_every_value_below_the_smallest_threshold() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, 20_000)
    ids = np.array([f"e{i}" for i in range(values.size)])
    keys = row_keys_from_ids(ids)
    windows = numeric_windows(values, ids, 20, sample_size=256)
    union_keys, union_values, complete = union_sample(w.sampler for w in windows)
    threshold = min(float(w.sampler.keys[-1]) for w in windows)
    chosen = keys <= threshold
    assert not complete
    assert np.array_equal(np.sort(union_values), np.sort(values[chosen]))
    assert np.array_equal(union_keys, np.sort(keys[chosen]))
    assert union_values.size > 10 * 256  # far more than one window's sample


def test_numerical_profile_from_sampled_windows_is_close_to_the_exact_one() -> None:
    rng = np.random.default_rng(6)
    values = rng.lognormal(3.0, 0.8, 40_000)
    ids = np.array([f"x{i}" for i in range(values.size)])
    built = NumericalFeatureProfile.from_aggregates(numeric_windows(values, ids, 40, sample_size=256))
    exact = NumericalFeatureProfile.from_values(values)
    assert (built.count, built.missing, built.min, built.max) == (exact.count, 0, exact.min, exact.max)
    assert built.mean == pytest.approx(exact.mean, rel=1e-12)
    assert built.std == pytest.approx(exact.std, rel=1e-12)
    assert int(built.bin_counts.sum()) == values.size
    # The edges are sample deciles: each bin holds 10 % of all values, give or take the quantile
    # error of an m-value sample (4 standard errors, sqrt(0.1 * 0.9 / m) each).
    m = built.sample.size
    assert m == 4096
    shares = histogram(values, built.edges) / values.size
    assert np.all(np.abs(shares - 0.1) <= 4 * np.sqrt(0.09 / m))
    assert np.all(np.abs(built.bin_counts / values.size - 0.1) <= 4 * np.sqrt(0.09 / m))


def categorical_windows(values: list[Any], windows: int, **options: Any) -> list[CategoricalAggregate]:
    parts = []
    for chunk in np.array_split(np.array(values, dtype=object), windows):
        window = CategoricalAggregate(["DE"], **options)
        window.update_batch(chunk)
        parts.append(window)
    return parts


def test_categorical_profile_from_windows_equals_the_profile_of_the_rows() -> None:
    rng = np.random.default_rng(7)
    values = list(rng.choice(["DE", "FR", "IT", "ES"], 500, p=[0.4, 0.3, 0.2, 0.1]))
    values[::17] = [None] * len(values[::17])
    built = CategoricalFeatureProfile.from_aggregates(categorical_windows(values, 5), max_categories=3)
    expected = CategoricalFeatureProfile.from_values(np.array(values, dtype=object), max_categories=3)
    assert built == expected
    assert built.other == expected.other > 0  # the fourth category, beyond max_categories


def test_categories_folded_by_the_windows_are_counted_as_other() -> None:
    values = [f"c{i % 40}" for i in range(400)]
    built = CategoricalFeatureProfile.from_aggregates(categorical_windows(values, 4, max_new_categories=10))
    assert built.count == 400
    assert built.categories.size == 10
    assert built.other == 400 - int(built.category_counts.sum()) == 300
    assert built.n_unique == 11  # a lower bound: 10 named, and at least one folded
    counts = CategoricalFeatureProfile.from_values(np.array(values, dtype=object)).counts()
    assert all(counts[name] == n for name, n in built.counts().items())


def test_reference_profile_from_aggregates_rejects_mixed_kinds_and_empty_features() -> None:
    numeric = numeric_windows(np.arange(5.0), np.array([f"{i}" for i in range(5)]), 1, 8)
    with pytest.raises(ValueError, match="mixed"):
        ReferenceProfile.from_aggregates({"x": [*numeric, CategoricalAggregate()]})
    with pytest.raises(ValueError, match="at least one present value"):
        ReferenceProfile.from_aggregates({"x": [NumericAggregate(UNBINNED)]})


# -- the builder ---------------------------------------------------------------------------------


def make_spec(task: str = "binary", **reference: Any) -> ModelSpec:
    data: dict[str, Any] = {
        "model_id": "m",
        "task": task,
        "features": {"amount": {"type": "numerical"}, "country": {"type": "categorical"}},
        "reference": reference or {"source": "first_n", "n": 250},
    }
    if task == "multiclass":
        data["classes"] = ["a", "b", "c"]
    return parse_spec(data)


def make_rows(window: int, n: int, seed: int, task: str = "binary") -> list[PredictionEvent]:
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        amount = None if rng.random() < 0.05 else float(np.round(rng.normal(50, 10), 2))
        prediction: Any = (
            str(rng.choice(["a", "b", "c"])) if task == "multiclass" else int(rng.random() < 0.5)
        )
        events.append(
            PredictionEvent(
                prediction_id=f"w{window}-{seed}-{i}",
                model_id="m",
                ts=parse_timestamp(T0 + window * WINDOW_MS + i),
                features={"amount": amount, "country": str(rng.choice(["DE", "FR", "IT"]))},
                prediction=prediction,
                score=float(np.round(rng.random(), 3)) if task == "binary" else None,
            )
        )
    return events


def window_bundle(
    spec: ModelSpec, window: int, events: list[PredictionEvent], segment: str = ""
) -> WindowBundle:
    key = BundleKey("m", "1", segment, T0 + window * WINDOW_MS, WINDOW_MS)
    bundle = WindowBundle.empty(key, spec, None)
    bundle.add_predictions(events, [T0] * len(events), spec)
    return bundle


def expected_profile(spec: ModelSpec, events: list[PredictionEvent], output: str) -> ReferenceProfile:
    columns: dict[str, Any] = {
        "amount": np.array([e.features["amount"] for e in events], dtype=object),
        "country": np.array([e.features["country"] for e in events], dtype=object),
        PREDICTION_FEATURE: np.array([getattr(e, output) for e in events], dtype=object),
    }
    kinds = {"amount": "numerical", "country": "categorical"}
    kinds[PREDICTION_FEATURE] = "numerical" if output == "score" else "categorical"
    return ReferenceProfile.from_data(columns, kinds)


class Doubles:
    """An in-memory catalog, publisher and closed-window store."""

    def __init__(self, spec: ModelSpec, *, failures: int = 0) -> None:
        self.spec = spec
        self.catalog: dict[tuple[str, str], ReferenceProfile] = {}
        self.published: list[tuple[str, str, ReferenceProfile, str]] = []
        self.saved: dict[str, Any] = {}
        self.failures = failures

    def publish(self, model_id: str, version: str, profile: ReferenceProfile, source: str) -> int:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("broker down")
        self.published.append((model_id, version, profile, source))
        return len(profile)

    def builder(self) -> AutoReferenceBuilder:
        return AutoReferenceBuilder(
            {"m": self.spec}, lambda m, v: self.catalog.get((m, v)), self.publish, self.saved
        )

    def close(self, builder: AutoReferenceBuilder, bundle: WindowBundle, ref: str = "") -> None:
        """What stage 2 does at a window's close: save its final parts, hand it to the builder."""
        self.saved[window_id(bundle.key, ref)] = {"base": bundle.to_dict(), "sources": {"s": 1}}
        builder.observe(bundle.key, ref, bundle, partition=0)
        asyncio.run(builder.build_ready())


def test_first_n_builds_once_from_the_first_windows_in_event_time_order() -> None:
    spec = make_spec()
    doubles = Doubles(spec)
    builder = doubles.builder()
    rows = {w: make_rows(w, 100, seed=w) for w in range(5)}
    for w in (1, 0):  # out of order: 200 events, not yet 250
        doubles.close(builder, window_bundle(spec, w, rows[w]))
    assert doubles.published == []
    doubles.close(builder, window_bundle(spec, 2, rows[2]))
    assert len(doubles.published) == 1
    model_id, version, profile, source = doubles.published[0]
    assert (model_id, version, source) == ("m", "1", "first_n")
    assert _close(profile, expected_profile(spec, rows[0] + rows[1] + rows[2], "score"))
    for w in (3, 4):  # later windows never rebuild it
        doubles.close(builder, window_bundle(spec, w, rows[w]))
    assert len(doubles.published) == 1 and builder.stats.built == 1


def _close(built: ReferenceProfile, expected: ReferenceProfile) -> bool:
    """Equal but for the order of the samples and the last bits of mean and std."""
    assert built.spec == expected.spec
    for name in built:
        left, right = built[name].to_dict(), expected[name].to_dict()
        if left["kind"] == "numerical":
            assert np.array_equal(np.sort(left.pop("sample")), np.sort(right.pop("sample")))
            for stat in ("mean", "std"):
                assert left.pop(stat) == pytest.approx(right.pop(stat), rel=1e-12)
        assert left == right, name
    return True


def test_a_restarted_builder_seeds_from_the_closed_windows_and_builds_the_same_profile() -> None:
    spec = make_spec()
    rows = {w: make_rows(w, 100, seed=10 + w) for w in range(3)}
    first = Doubles(spec)
    builder = first.builder()
    for w in range(3):
        first.close(builder, window_bundle(spec, w, rows[w]))
    again = Doubles(spec)
    again.saved = {k: v for k, v in first.saved.items() if not k.startswith(f"m|1||{T0 + 2 * WINDOW_MS}|")}
    restarted = again.builder()  # "crashed" after windows 0 and 1 were saved
    again.close(restarted, window_bundle(spec, 2, rows[2]))
    assert len(again.published) == 1
    assert again.published[0][2] == first.published[0][2]  # identical, so stage 1's reference id too


def test_no_build_when_the_catalog_has_a_reference_or_for_segments_and_binned_windows() -> None:
    spec = make_spec()
    doubles = Doubles(spec)
    builder = doubles.builder()
    rows = make_rows(0, 300, seed=1)
    doubles.close(builder, window_bundle(spec, 0, rows, segment="region=eu"))
    doubles.close(builder, window_bundle(spec, 1, rows), ref="abc123")
    assert doubles.published == [] and builder.progress == {}
    doubles.catalog[("m", "1")] = expected_profile(spec, rows, "score")  # e.g. loaded from a file
    doubles.close(builder, window_bundle(spec, 2, rows))
    assert doubles.published == [] and ("m", "1") in builder.done


def test_a_failed_publication_is_retried_later() -> None:
    spec = make_spec()
    doubles = Doubles(spec, failures=1)
    builder = doubles.builder()
    doubles.close(builder, window_bundle(spec, 0, make_rows(0, 300, seed=2)))
    assert doubles.published == [] and builder.stats.publish_failures == 1
    asyncio.run(builder.build_ready())  # within the backoff: not yet
    assert doubles.published == []
    builder.progress[("m", "1")].retry_at = 0.0
    asyncio.run(builder.build_ready())
    assert len(doubles.published) == 1


def test_first_period_takes_the_windows_within_the_period() -> None:
    spec = make_spec(source="first_period", period="2m")
    doubles = Doubles(spec)
    builder = doubles.builder()
    rows = {w: make_rows(w, 30, seed=20 + w) for w in range(3)}
    doubles.close(builder, window_bundle(spec, 0, rows[0]))
    assert doubles.published == []
    doubles.close(builder, window_bundle(spec, 1, rows[1]))  # ends at 2m: the period has passed
    assert [p[3] for p in doubles.published] == ["first_period"]
    assert _close(doubles.published[0][2], expected_profile(spec, rows[0] + rows[1], "score"))


@pytest.mark.parametrize(("task", "output"), [("multiclass", "prediction"), ("regression", "prediction")])
def test_the_model_output_is_profiled_as_for_a_file(task: str, output: str) -> None:
    spec = make_spec(task)
    rows = make_rows(0, 250, seed=30, task=task)  # within the window sample (256): exact
    if task == "regression":
        rows = [e.model_copy(update={"prediction": float(i % 17)}) for i, e in enumerate(rows)]
    profile = build_reference(spec, [WindowPart.of(window_bundle(spec, 0, rows))])
    expected = expected_profile(spec, rows, output)
    if task == "regression":
        expected = ReferenceProfile(
            {
                **expected,
                PREDICTION_FEATURE: NumericalFeatureProfile.from_values([e.prediction for e in rows]),
            }
        )
    assert _close(profile, expected)


def test_reference_windows_needs_enough_events_or_a_finished_period() -> None:
    parts = [WindowPart(T0 + w * WINDOW_MS, WINDOW_MS, 10, {}, None, None) for w in range(6)]
    assert reference_windows(make_spec(source="first_n", n=45), parts[:4]) is None
    assert len(reference_windows(make_spec(source="first_n", n=45), parts) or []) == 5
    ninety = make_spec(source="first_period", period="90s")  # not a whole number of windows
    assert reference_windows(ninety, parts[:1]) is None
    assert [p.start_ms for p in reference_windows(ninety, parts[:2]) or []] == [T0, T0 + WINDOW_MS]


def test_rolling_references_are_rejected_at_spec_load() -> None:
    with pytest.raises(SpecError, match=r"'rolling'.*not supported yet; use first_n, first_period or file"):
        make_spec(source="rolling")


def test_a_version_without_a_reference_is_logged_once_with_its_progress(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = make_spec(source="first_n", n=5000)
    doubles = Doubles(spec)
    builder = doubles.builder()
    with caplog.at_level("INFO", logger="streams.auto_reference"):
        for w in range(3):
            doubles.close(builder, window_bundle(spec, w, make_rows(w, 100 + w, seed=w)))
    waiting = [r.getMessage() for r in caplog.records if "no reference yet" in r.getMessage()]
    assert waiting == [
        "model m version 1: no reference yet: 100 of 5,000 events (first_n); drift starts when it is "
        "complete, or run `modelmon reference load m`"
    ]
    assert [r.levelname for r in caplog.records if "no reference yet" in r.getMessage()] == ["INFO"]


def test_a_file_reference_not_loaded_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    spec = make_spec(source="file", path="train.csv")
    doubles = Doubles(spec)
    builder = doubles.builder()
    with caplog.at_level("INFO", logger="streams.auto_reference"):
        for w in range(2):
            doubles.close(builder, window_bundle(spec, w, make_rows(w, 50, seed=w)))
        doubles.catalog[("m", "1")] = expected_profile(spec, make_rows(0, 50, seed=0), "score")
        doubles.close(builder, window_bundle(spec, 2, make_rows(2, 50, seed=2)))
    assert [r.getMessage() for r in caplog.records] == [
        "model m version 1: no reference yet: file train.csv not loaded; drift starts after "
        "`modelmon reference load m`"
    ]
    assert doubles.published == [] and builder.progress == {}
