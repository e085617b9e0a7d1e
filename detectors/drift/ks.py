"""The two-sample Kolmogorov-Smirnov test on numerical values (or reservoir samples)."""

from __future__ import annotations

import numpy.typing as npt
from scipy import stats

from detectors.drift.registry import NUMERICAL_ONLY, DriftMethod, register


def ks_test(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    """``scipy.stats.ks_2samp``: (largest gap between the two empirical CDFs, p-value).

    >>> ks_test([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    (0.5, 0.7714285714285716)
    """
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def _statistic(reference: npt.ArrayLike, current: npt.ArrayLike, reference_std: float) -> tuple[float, float]:
    return ks_test(reference, current)


KS = register(
    DriftMethod(
        name="ks",
        display_name="Kolmogorov-Smirnov test",
        kinds=NUMERICAL_ONLY,
        default_threshold=0.05,
        is_p_value=True,
        needs="samples",
        statistic=_statistic,
        effect_method="wasserstein",
        min_effect=0.1,
    )
)
