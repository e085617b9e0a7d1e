"""Champion/challenger proportions test: by hand, against scipy, and by simulation (issue #16)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, chi2_contingency, norm

from detectors.versions import accumulate, compare_proportions, compare_rates, rate_counts, wilson


def test_pooled_z_by_hand() -> None:
    # 450/500 vs 470/500: pooled p = 0.92, se = sqrt(0.92 * 0.08 * 2 / 500) = 0.017158
    c = compare_proportions(450, 500, 470, 500)
    se = math.sqrt(0.92 * 0.08 * (2 / 500))
    assert c.difference == pytest.approx(0.04)
    assert c.z == pytest.approx(0.04 / se) and c.z == pytest.approx(2.33126, abs=1e-5)
    assert c.p_value == pytest.approx(2 * (1 - norm.cdf(0.04 / se)), rel=1e-12)
    assert c.p_value == pytest.approx(0.01974, abs=1e-5)  # normal table: 1 - 0.99013 at z = 2.331
    assert c.significant


@pytest.mark.parametrize(
    ("sa", "na", "sb", "nb"), [(450, 500, 470, 500), (30, 41, 12, 25), (800, 1000, 805, 990)]
)
def test_z_squared_is_pearson_chi_square_of_the_2x2_table(sa: int, na: int, sb: int, nb: int) -> None:
    c = compare_proportions(sa, na, sb, nb)
    chi2, p, _, _ = chi2_contingency([[sa, na - sa], [sb, nb - sb]], correction=False)
    assert c.z**2 == pytest.approx(chi2, rel=1e-10)
    assert c.p_value == pytest.approx(p, rel=1e-9)


def test_wilson_matches_scipy() -> None:
    for k, n in ((0, 10), (7, 10), (56, 70), (999, 1000)):
        ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_newcombe_interval_hand_worked_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10: 56/70 - 48/80 = 0.2,
    # interval 0.0524 to 0.3339; 9/10 - 3/10 = 0.6, interval 0.1705 to 0.8090.
    c = compare_proportions(48, 80, 56, 70)
    assert (c.difference, c.lower, c.upper) == pytest.approx((0.2, 0.0524, 0.3339), abs=5e-5)
    c = compare_proportions(3, 10, 9, 10)
    assert (c.lower, c.upper) == pytest.approx((0.1705, 0.8090), abs=5e-5)


def test_identical_and_degenerate_counts() -> None:
    c = compare_proportions(10, 10, 20, 20)
    assert c.z == 0 and c.p_value == 1 and not c.significant and c.lower < 0 < c.upper
    with pytest.raises(ValueError):
        compare_proportions(1, 0, 1, 1)
    with pytest.raises(ValueError):
        compare_proportions(5, 4, 1, 1)


def test_accumulate_sums_counts_over_windows() -> None:
    c = accumulate([(90, 100, 95, 100), (180, 200, 190, 200)])
    assert c.windows == 2 and (c.n_a, c.n_b) == (300, 300)
    assert c.p_value == compare_proportions(270, 300, 285, 300).p_value


WINDOWS, LABELS, BASE = 20, 500, 0.85


def _simulate(seed: int, lift: float) -> tuple[bool, float]:
    rng = np.random.default_rng(seed)
    a = rng.binomial(LABELS, BASE, WINDOWS)
    b = rng.binomial(LABELS, BASE + lift, WINDOWS)
    c = accumulate(((sa, LABELS, sb, LABELS) for sa, sb in zip(a, b, strict=True)), level=0.95)
    return c.significant, c.difference


def test_identical_challenger_false_positive_rate_at_most_the_level() -> None:
    """100 seeds, identical versions: significant in at most 5 % of them (observed: printed)."""
    verdicts = [_simulate(seed, 0.0)[0] for seed in range(100)]
    rate = sum(verdicts) / len(verdicts)
    print(f"false-positive rate over 100 seeds: {rate:.2f}")
    assert rate <= 0.05


def test_challenger_three_points_better_is_found_after_enough_windows() -> None:
    """+3 points (0.85 → 0.88), 20 windows of 500 labels each: power about 0.99."""
    results = [_simulate(seed, 0.03) for seed in range(100)]
    power = sum(sig and diff > 0 for sig, diff in results) / len(results)
    print(f"power for +3 points over 100 seeds: {power:.2f}")
    assert power >= 0.95
    # ... and one window alone is not enough (power well under one half)
    rng = np.random.default_rng(7)
    single = [
        compare_proportions(rng.binomial(LABELS, BASE), LABELS, rng.binomial(LABELS, BASE + 0.03), LABELS)
        for _ in range(200)
    ]
    assert sum(c.significant for c in single) / len(single) < 0.5


def test_interval_coverage_by_simulation() -> None:
    rng = np.random.default_rng(3)
    pa, pb, n = 0.9, 0.93, 300
    covered = 0
    for _ in range(2000):
        c = compare_proportions(rng.binomial(n, pa), n, rng.binomial(n, pb), n)
        covered += c.lower <= pb - pa <= c.upper
    assert 0.93 <= covered / 2000 <= 0.97


# -- precision and recall: proportions of their own denominators --------------------------------------


def test_compare_rates_by_hand() -> None:
    # recall 60/80 (A) and 78/90 (B) in window 1, 30/40 and 36/40 in window 2: summed 90/120 vs 114/130;
    # pooled 204/250 = 0.816, se = sqrt(0.816 * 0.184 * (1/120 + 1/130)) = 0.049053, z = 0.126923 / se
    c = compare_rates([(60 / 80, 80, 78 / 90, 90), (30 / 40, 40, 36 / 40, 40)])
    assert (c.windows, c.n_a, c.n_b) == (2, 120, 130)
    assert (c.p_a, c.p_b) == pytest.approx((0.75, 114 / 130))
    pooled = 204 / 250
    z = (114 / 130 - 0.75) / math.sqrt(pooled * (1 - pooled) * (1 / 120 + 1 / 130))
    assert c.z == pytest.approx(z, rel=1e-12) and z == pytest.approx(2.5875, abs=1e-4)
    assert c.p_value == pytest.approx(2 * norm.sf(z), rel=1e-12) and c.significant
    assert c.verdict("recall", "1", "2").startswith("recall: v2 better than v1 by 12.7 points")


def test_compare_rates_p_value_is_scipy_chi_square() -> None:
    windows = [(0.62, 50, 0.7, 60), (41 / 57, 57, 33 / 49, 49), (0.5, 10, 0.8, 15)]
    successes_a = sum(round(v * n) for v, n, _, _ in windows)
    successes_b = sum(round(v * n) for _, _, v, n in windows)
    n_a, n_b = sum(w[1] for w in windows), sum(w[3] for w in windows)
    table = [[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]]
    _, p, _, _ = chi2_contingency(table, correction=False)
    assert compare_rates(windows).p_value == pytest.approx(p, rel=1e-9)


def test_rate_counts_rounding_and_empty_denominators() -> None:
    assert rate_counts(1 / 3, 3) == (1, 3) and rate_counts(0.0, 0) == (0, 0)
    with pytest.raises(ValueError):
        rate_counts(float("nan"), 10)
    # a window without positive predictions for one version is left out; none left: an error
    c = compare_rates([(0.5, 10, 0.6, 10), (0.0, 0, 0.7, 10)])
    assert c.windows == 1 and c.n_a == 10
    with pytest.raises(ValueError):
        compare_rates([(0.0, 0, 0.7, 10)])


RATE_WINDOWS, RATE_LABELS, PREVALENCE, RECALL = 30, 500, 0.2, 0.70


def _recall_windows(seed: int, lift: float) -> list[tuple[float, float, float, float]]:
    """Per window the stored (recall, actual positives) of A and of B, B's recall raised by ``lift``."""
    rng = np.random.default_rng(seed)
    positives = rng.binomial(RATE_LABELS, PREVALENCE, (2, RATE_WINDOWS))
    found = rng.binomial(positives, [[RECALL], [RECALL + lift]])
    recall = found / positives
    return list(zip(recall[0], positives[0], recall[1], positives[1], strict=True))


def test_recall_identical_versions_false_positive_rate_at_most_the_level() -> None:
    """100 seeds, 30 windows of ~100 actual positives per version, same recall 0.70."""
    rate = sum(compare_rates(_recall_windows(seed, 0.0)).significant for seed in range(100)) / 100
    print(f"recall, identical versions: false-positive rate over 100 seeds: {rate:.2f}")
    assert rate <= 0.05


def test_recall_five_points_better_is_found_after_enough_windows() -> None:
    """+5 points recall (0.70 → 0.75), 30 windows of ~100 actual positives: power about 0.99."""
    results = [compare_rates(_recall_windows(seed, 0.05)) for seed in range(100)]
    power = sum(c.significant and c.difference > 0 for c in results) / len(results)
    print(f"recall +5 points: power over 100 seeds: {power:.2f}")
    assert power >= 0.9
    single = [compare_rates(_recall_windows(seed, 0.05)[:1]) for seed in range(100)]
    assert sum(c.significant for c in single) / len(single) < 0.5  # one window is not enough
