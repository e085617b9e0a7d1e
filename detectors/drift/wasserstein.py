"""The Wasserstein (earth mover's) distance in units of the reference's standard deviation."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from detectors.drift.registry import NUMERICAL_ONLY, DriftMethod, register


def normalised_wasserstein(
    reference: npt.ArrayLike, current: npt.ArrayLike, reference_std: float | None = None
) -> float:
    """``scipy.stats.wasserstein_distance(reference, current) / np.std(reference)``.

    ``reference_std`` overrides ``np.std(reference)``: a profile's sample is scaled by the std of
    the whole reference. A constant reference (std 0) leaves the distance unscaled.

    >>> normalised_wasserstein([0.0, 2.0], [1.0, 3.0])  # moved by 1, reference std 1
    1.0
    >>> normalised_wasserstein([5.0, 5.0], [7.0])
    2.0
    """
    reference_values = np.asarray(reference, dtype=np.float64)
    std = float(np.std(reference_values)) if reference_std is None else float(reference_std)
    distance = float(stats.wasserstein_distance(reference_values, current))
    return distance / std if std > 0 else distance


def _statistic(reference: npt.ArrayLike, current: npt.ArrayLike, reference_std: float) -> tuple[float, None]:
    return normalised_wasserstein(reference, current, reference_std), None


WASSERSTEIN = register(
    DriftMethod(
        name="wasserstein",
        display_name="Wasserstein distance (normed)",
        kinds=NUMERICAL_ONLY,
        default_threshold=0.1,
        is_p_value=False,
        needs="samples",
        statistic=_statistic,
    )
)
