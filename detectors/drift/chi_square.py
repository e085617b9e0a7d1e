"""Pearson's chi-square goodness-of-fit test of current category counts against the reference's."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from detectors.bins import proportions, replace_zeros
from detectors.drift.registry import CATEGORIES_ONLY, DriftMethod, register


def chi_square_test(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[float, float]:
    """``scipy.stats.chisquare(current_counts, expected)`` with expected = p·n_current (p with zero
    proportions replaced by 1e-4), rescaled to the current total. One category: (0, 1).

    >>> statistic, p_value = chi_square_test([50, 50], [25, 75])  # expected 50, 50
    >>> statistic, round(p_value, 12)
    (25.0, 5.73303e-07)
    """
    current = np.asarray(current_counts, dtype=np.float64)
    if current.size < 2:
        return 0.0, 1.0
    expected = replace_zeros(proportions(reference_counts)) * current.sum()
    expected *= current.sum() / expected.sum()
    result = stats.chisquare(current, expected)
    return float(result.statistic), float(result.pvalue)


def _statistic(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[float, float]:
    return chi_square_test(reference_counts, current_counts)


CHI_SQUARE = register(
    DriftMethod(
        name="chi_square",
        display_name="Chi-square test",
        kinds=CATEGORIES_ONLY,
        default_threshold=0.05,
        is_p_value=True,
        needs="bins",
        statistic=_statistic,
        effect_method="jensen_shannon",
        min_effect=0.05,
    )
)
