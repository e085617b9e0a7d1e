"""Champion/challenger proportions test: by hand, against scipy, and by simulation (issue #16)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, chi2_contingency, norm

from detectors.versions import accumulate, compare_proportions, wilson


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
