"""Choosing a drift method and judging many features at once: ``choose_method`` and ``detect_many``.

The chooser's rules by kind and size, the noise control of the final verdict (effect size and
Benjamini-Hochberg over the features), and the precedence of ``DriftOptions``. Each method's own
values are checked in ``tests/detectors/test_drift.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.drift import DriftInput, DriftOptions, choose_method, compute, detect_many, get_method
from detectors.profiles import ReferenceProfile
from modelmon.kinds import FeatureKind

TOL = 1e-9


# --- the chooser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "n_reference", "n_unique", "expected"),
    [
        ("numerical", 1000, 6, "ks"),
        ("numerical", 1001, 6, "wasserstein"),
        ("numerical", 500, 5, "jensen_shannon"),
        ("numerical", 50_000, 3, "jensen_shannon"),
        ("categorical", 1000, 3, "chi_square"),
        ("categorical", 1000, 2, "z_proportion"),
        ("categorical", 1001, 3, "jensen_shannon"),
        ("boolean", 100, 2, "z_proportion"),
        ("boolean", 5000, 2, "jensen_shannon"),
    ],
)
def test_choose_method(kind: str, n_reference: int, n_unique: int, expected: str) -> None:
    assert choose_method(kind, n_reference, n_unique) == expected
    assert kind in get_method(expected).kinds


def test_choose_method_avoids_distances_between_bounded_samples() -> None:
    assert choose_method("numerical", 50_000, 900, sampled=True) == "jensen_shannon"
    assert choose_method("numerical", 900, 900, sampled=True) == "ks"  # a test on samples stays valid


# --- noise control -----------------------------------------------------------------------------


def test_a_tiny_shift_on_a_million_rows_is_not_an_alarm() -> None:
    rng = np.random.default_rng(7)
    n = 1_000_000
    reference = {"tiny": rng.normal(0, 1, n), "real": rng.normal(0, 1, n)}
    current = {"tiny": rng.normal(0.02, 1, n), "real": rng.normal(0.5, 1, n)}
    raw = compute("ks", reference["tiny"], current["tiny"])
    assert raw.drifted and raw.p_value is not None and raw.p_value < 1e-20
    report = detect_many(reference, current, options=DriftOptions(method="ks"))
    tiny, real = report.features["tiny"], report.features["real"]
    assert tiny.result.drifted and not tiny.drifted
    assert tiny.effect_size is not None and tiny.effect_size < 0.05
    assert real.drifted and real.effect_size is not None and real.effect_size > 0.4
    assert report.drifted_features == ["real"] and report.share_drifted == 0.5


def test_benjamini_hochberg_removes_chance_alarms_over_many_features() -> None:
    rng = np.random.default_rng(3)
    reference = {f"f{i:02d}": rng.normal(0, 1, 400) for i in range(60)}
    current = {f"f{i:02d}": rng.normal(0, 1, 400) for i in range(60)}
    current["f00"] = rng.normal(1.0, 1, 400)
    options = DriftOptions(method="ks", min_effect={"ks": 0.0})
    raw = detect_many(reference, current, options=DriftOptions(method="ks", noise_control=False))
    controlled = detect_many(reference, current, options=options)
    assert len(raw.drifted_features) > 1  # chance alarms among 59 unchanged features
    assert controlled.drifted_features == ["f00"]
    adjusted = controlled.features["f00"].adjusted_p_value
    p_values = [controlled.features[name].result.p_value for name in sorted(reference)]
    assert adjusted == pytest.approx(stats.false_discovery_control(p_values)[0], abs=TOL)


def test_detect_many_on_a_profile_and_window_aggregates() -> None:
    rng = np.random.default_rng(4)
    columns = {
        "age": rng.normal(40, 10, 5000),
        "plan": rng.choice(["free", "pro", "team"], 5000),
        "churned": rng.random(5000) < 0.2,
    }
    profile = ReferenceProfile.from_data(
        columns, {"age": "numerical", "plan": "categorical", "churned": "boolean"}
    )
    windows = profile.window_aggregates()
    windows["age"].update_batch(rng.normal(55, 10, 3000))
    windows["plan"].update_batch(rng.choice(["free", "pro", "team"], 3000))
    windows["churned"].update_batch(rng.random(3000) < 0.2)
    report = detect_many(profile, windows)
    methods_used = {name: feature.result.method for name, feature in report.features.items()}
    # the reservoirs hold part of the data, so the large numerical reference gets binned JS
    assert methods_used == {"age": "jensen_shannon", "plan": "jensen_shannon", "churned": "jensen_shannon"}
    assert report.drifted_features == ["age"] and not report.dataset_drifted
    assert report.to_dict()["features"]["age"]["drifted"] is True


def test_detect_many_precedence_and_skips() -> None:
    rng = np.random.default_rng(6)
    reference: dict[str, DriftInput] = {
        "a": rng.normal(size=300),
        "b": rng.normal(size=300),
        "c": [np.nan],
        "d": rng.normal(size=9),
    }
    current: dict[str, DriftInput] = {"a": rng.normal(size=300), "b": rng.normal(size=300), "c": [1.0]}
    options = DriftOptions(
        method="psi",
        per_feature={"a": "hellinger"},
        per_method_threshold={"psi": 0.5},
        per_feature_threshold={"a": 0.9},
    )
    report = detect_many(reference, current, options=options)
    assert report.features["a"].result.method == "hellinger" and report.features["a"].result.threshold == 0.9
    assert report.features["b"].result.method == "psi" and report.features["b"].result.threshold == 0.5
    assert report.skipped == {"c": "the reference has no present values", "d": "no current data"}
    per_kind = detect_many(reference, current, options=DriftOptions(per_kind={"numerical": "kl_divergence"}))
    assert {f.result.method for f in per_kind.features.values()} == {"kl_divergence"}
    with pytest.raises(ValueError, match="unknown drift method 'psy'"):
        DriftOptions(method="psy")


def test_method_precedence_is_feature_then_kind_then_model_then_chooser() -> None:
    rng = np.random.default_rng(7)
    reference, current = rng.normal(size=300), rng.normal(size=300)
    by_kind = {"categorical": "chi_square"}
    options = DriftOptions(method="psi", per_kind=by_kind, per_feature={"a": "hellinger"})
    assert options.method_for("a", FeatureKind.NUMERICAL, reference, current) == "hellinger"
    assert options.method_for("b", FeatureKind.CATEGORICAL, reference, current) == "chi_square"
    assert options.method_for("b", FeatureKind.NUMERICAL, reference, current) == "psi"
    chosen = DriftOptions().method_for("b", FeatureKind.NUMERICAL, reference, current)
    assert chosen == choose_method("numerical", 300, 300) == "ks"


def test_the_dataset_drifts_at_the_drift_share_threshold() -> None:
    rng = np.random.default_rng(8)
    reference = {f"x{i}": rng.normal(0, 1, 800) for i in range(4)}
    current = {f"x{i}": rng.normal(1.0 if i == 0 else 0.0, 1, 800) for i in range(4)}
    default = detect_many(reference, current)
    assert default.share_drifted == 0.25 and not default.dataset_drifted
    low = detect_many(reference, current, options=DriftOptions(drift_share_threshold=0.25))
    assert low.drift_share_threshold == 0.25 and low.dataset_drifted
    with pytest.raises(ValueError, match="drift_share_threshold must be in"):
        DriftOptions(drift_share_threshold=0.0)
