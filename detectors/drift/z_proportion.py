"""The two-proportion z-test for a boolean (or two-category) feature."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from detectors.drift.registry import CATEGORIES_ONLY, DriftMethod, register


def two_proportion_z_test(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike
) -> tuple[float, float]:
    """|z| and the two-sided p-value for the share of the second category (``"True"`` for booleans).

    z = (q - p) / sqrt(s(1 - s)(1/n_ref + 1/n_cur)), with p, q the reference and current shares and
    s the pooled share. One category on both sides, or a pooled share of 0 or 1, gives (0, 1).

    >>> z, p_value = two_proportion_z_test([50, 50], [25, 75])  # shares 0.5 vs 0.75, pooled 0.625
    >>> round(z, 12), round(p_value, 12)
    (3.651483716701, 0.000260729633)
    """
    reference = np.asarray(reference_counts, dtype=np.float64)
    current = np.asarray(current_counts, dtype=np.float64)
    if reference.size > 2 or current.size > 2:
        raise ValueError(f"z_proportion compares two categories, got {max(reference.size, current.size)}")
    if reference.size < 2:
        return 0.0, 1.0
    n_reference, n_current = float(reference.sum()), float(current.sum())
    pooled = (reference[1] + current[1]) / (n_reference + n_current)
    variance = pooled * (1.0 - pooled) * (1.0 / n_reference + 1.0 / n_current)
    if variance <= 0.0:
        return 0.0, 1.0
    z = abs(current[1] / n_current - reference[1] / n_reference) / math.sqrt(variance)
    return float(z), float(2.0 * stats.norm.sf(z))


def _statistic(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[float, float]:
    return two_proportion_z_test(reference_counts, current_counts)


Z_PROPORTION = register(
    DriftMethod(
        name="z_proportion",
        display_name="Two-proportion z-test",
        kinds=CATEGORIES_ONLY,
        default_threshold=0.05,
        is_p_value=True,
        needs="bins",
        statistic=_statistic,
        effect_method="jensen_shannon",
        min_effect=0.05,
    )
)
