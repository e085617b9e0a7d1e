"""Hellinger distance between reference and current proportions on shared bins."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from detectors.bins import proportions
from detectors.drift.registry import ANY_KIND, DriftMethod, register


def hellinger_distance(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """sqrt(Σ (√p - √q)²) / √2 on the raw proportions: 0 (same) to 1 (disjoint).

    >>> round(hellinger_distance([50, 50], [25, 75]), 12)
    0.184591911283
    >>> hellinger_distance([1, 0], [0, 1])
    1.0
    """
    difference = np.sqrt(proportions(reference_counts)) - np.sqrt(proportions(current_counts))
    return float(math.sqrt(float(difference @ difference)) / math.sqrt(2.0))


def _statistic(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[float, None]:
    return hellinger_distance(reference_counts, current_counts), None


HELLINGER = register(
    DriftMethod(
        name="hellinger",
        display_name="Hellinger distance",
        kinds=ANY_KIND,
        default_threshold=0.1,
        is_p_value=False,
        needs="bins",
        statistic=_statistic,
    )
)
