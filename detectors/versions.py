"""Champion/challenger: is one version's proportion (accuracy) different from another's?

``compare_proportions(successes_a, n_a, successes_b, n_b, level)`` compares two binomial
proportions, A the champion and B the challenger, and reports ``difference = p_b - p_a``:

* the **p-value** of the pooled two-proportion z-test (two-sided): under H0 ``p_a = p_b`` the common
  proportion is estimated from both samples, ``p = (s_a + s_b) / (n_a + n_b)``, and
  ``z = (p_b - p_a) / sqrt(p (1 - p) (1/n_a + 1/n_b))``. Its square is Pearson's chi-square of the
  2x2 table without continuity correction (``scipy.stats.chi2_contingency(..., correction=False)``,
  the check in the tests);
* the **interval** of the difference by Newcombe's hybrid score method (Newcombe 1998, method 10):
  the Wilson score interval of each proportion, combined. Unlike the Wald interval it stays inside
  [-1, 1] and keeps its coverage near 0 and 1, where accuracies live.

The test and the interval come from different approximations, so at the very edge of significance
the interval may just touch 0 while p is just under ``1 - level`` (or the reverse); the verdict is the
test's. Both assume independent trials: events within a window are treated as independent draws,
which correlated traffic (the same user many times) violates — then the test is too optimistic.

``accumulate(windows)`` sums the counts of several windows (per window: successes and n of each
version) and compares the totals: with a few hundred labels per window a 3-point difference is not
visible in one window, it is after enough windows. The counts come from the stored points:
``successes = round(accuracy * n)`` with ``n`` the labelled events the accuracy was computed on.

``compare_rates(windows)`` does the same from stored ``(value, denominator)`` pairs of any single
proportion: accuracy (denominator ``n``), binary precision (predicted positives, TP + FP) and binary
recall (actual positives, TP + FN). F1, ROC AUC, log loss and macro-averaged precision or recall are
not one proportion of one denominator, so they get no test.

>>> c = compare_proportions(56, 70, 48, 80)
>>> round(c.difference, 4), round(c.lower, 4), round(c.upper, 4)
(-0.2, -0.3339, -0.0524)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from scipy.stats import norm


@dataclass(frozen=True)
class ProportionComparison:
    """B (challenger) against A (champion)."""

    p_a: float
    p_b: float
    n_a: int
    n_b: int
    difference: float  # p_b - p_a
    z: float  # pooled two-proportion z statistic (0 when both proportions are 0 or 1)
    p_value: float  # two-sided
    lower: float  # Newcombe interval of the difference at ``level``
    upper: float
    level: float
    windows: int = 1

    @property
    def significant(self) -> bool:
        return self.p_value < 1 - self.level

    def verdict(self, name: str = "accuracy", a: str = "A", b: str = "B") -> str:
        """One line, e.g. ``v2 better by 3.1 points (95 % CI 1.2 to 5.0), p = 0.002 over 20 windows``."""
        points = 100 * abs(self.difference)
        ci = f"{100 * self.lower:+.1f} to {100 * self.upper:+.1f} points"
        over = f"{self.windows} window{'s' if self.windows != 1 else ''}, n = {self.n_a} vs {self.n_b}"
        tail = f"({self.level:.0%} CI {ci}), p = {self.p_value:.3g} over {over}"
        if not self.significant:
            shift = f"{100 * self.difference:+.1f} points"
            return f"{name}: no significant difference between v{b} and v{a}: {shift} {tail}"
        better = self.difference > 0
        return f"{name}: v{b} {'better' if better else 'worse'} than v{a} by {points:.1f} points {tail}"


def wilson(successes: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def compare_proportions(
    successes_a: float, n_a: float, successes_b: float, n_b: float, level: float = 0.95
) -> ProportionComparison:
    """Pooled two-proportion z-test and Newcombe interval of ``p_b - p_a`` (module docstring)."""
    if n_a <= 0 or n_b <= 0:
        raise ValueError(f"both versions need labelled events (n_a = {n_a}, n_b = {n_b})")
    if not (0 <= successes_a <= n_a and 0 <= successes_b <= n_b):
        raise ValueError("successes must lie between 0 and n")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    p_a, p_b = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (p_b - p_a) / se if se > 0 else 0.0
    p_value = float(2 * norm.sf(abs(z)))
    lo_a, hi_a = wilson(successes_a, n_a, level)
    lo_b, hi_b = wilson(successes_b, n_b, level)
    difference = p_b - p_a
    lower = difference - math.sqrt((p_b - lo_b) ** 2 + (hi_a - p_a) ** 2)
    upper = difference + math.sqrt((hi_b - p_b) ** 2 + (p_a - lo_a) ** 2)
    return ProportionComparison(p_a, p_b, round(n_a), round(n_b), difference, z, p_value, lower, upper, level)


def version_order(version: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key of versions, numbers compared as numbers: the challenger of a pair sorts last.

    >>> sorted(["10", "2", "1.10", "1.9", "b", "a"], key=version_order)
    ['1.9', '1.10', '2', '10', 'a', 'b']
    """
    parts = re.split(r"(\d+)", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)


def accumulate(
    windows: Iterable[tuple[float, float, float, float]], level: float = 0.95
) -> ProportionComparison:
    """Compare the summed counts of ``windows``, each ``(successes_a, n_a, successes_b, n_b)``."""
    sa = na = sb = nb = 0.0
    count = 0
    for window_sa, window_na, window_sb, window_nb in windows:
        sa, na, sb, nb = sa + window_sa, na + window_na, sb + window_sb, nb + window_nb
        count += 1
    return replace(compare_proportions(sa, na, sb, nb, level), windows=count)


def rate_counts(value: float, denominator: float) -> tuple[float, float]:
    """``(successes, n)`` of a stored proportion: ``successes = round(value * denominator)``.

    >>> rate_counts(0.7, 130)  # a recall of 91 found among 130 actual positives
    (91, 130)
    """
    if not (math.isfinite(value) and math.isfinite(denominator)) or denominator < 0 or not 0 <= value <= 1:
        raise ValueError(f"not a proportion of a count: value {value}, denominator {denominator}")
    return round(value * denominator), round(denominator)


def compare_rates(
    windows: Iterable[tuple[float, float, float, float]], level: float = 0.95
) -> ProportionComparison:
    """Compare one proportion metric of A and B from per-window ``(value_a, denominator_a, value_b,
    denominator_b)``: the counts of every window (:func:`rate_counts`) summed, then tested
    (:func:`accumulate`). A window where either version's denominator is 0 is left out (the proportion
    is undefined there); ``ValueError`` when no window is left."""
    counts = []
    for value_a, denominator_a, value_b, denominator_b in windows:
        if denominator_a > 0 and denominator_b > 0:
            counts.append((*rate_counts(value_a, denominator_a), *rate_counts(value_b, denominator_b)))
    if not counts:
        raise ValueError("no window where both versions have a denominator")
    return accumulate(counts, level)
