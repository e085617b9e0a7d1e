"""The two-sample Cramér-von Mises test on numerical values (or reservoir samples)."""

from __future__ import annotations

import numpy.typing as npt
from scipy import stats

from detectors.drift.registry import NUMERICAL_ONLY, DriftMethod, register


def cramer_von_mises_test(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    """``scipy.stats.cramervonmises_2samp``: (criterion, p-value); each side needs two values.

    >>> statistic, p_value = cramer_von_mises_test([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    >>> round(statistic, 12), round(p_value, 12)
    (0.34375, 0.114285714286)
    """
    result = stats.cramervonmises_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def _statistic(reference: npt.ArrayLike, current: npt.ArrayLike, reference_std: float) -> tuple[float, float]:
    return cramer_von_mises_test(reference, current)


CRAMER_VON_MISES = register(
    DriftMethod(
        name="cramer_von_mises",
        display_name="Cramer-von Mises test",
        kinds=NUMERICAL_ONLY,
        default_threshold=0.05,
        is_p_value=True,
        needs="samples",
        statistic=_statistic,
        effect_method="wasserstein",
        min_effect=0.1,
    )
)
