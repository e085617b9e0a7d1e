"""Jensen-Shannon distance (base 2) between reference and current proportions on shared bins."""

from __future__ import annotations

import numpy.typing as npt
from scipy.spatial import distance

from detectors.bins import proportions
from detectors.drift.registry import ANY_KIND, DriftMethod, register


def jensen_shannon_distance(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """``scipy.spatial.distance.jensenshannon(p, q, base=2)`` on the raw proportions: 0 to 1.

    >>> round(jensen_shannon_distance([50, 50], [25, 75]), 12)
    0.220895768849
    >>> jensen_shannon_distance([1, 0], [0, 1])
    1.0
    """
    return float(distance.jensenshannon(proportions(reference_counts), proportions(current_counts), base=2))


def _statistic(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[float, None]:
    return jensen_shannon_distance(reference_counts, current_counts), None


JENSEN_SHANNON = register(
    DriftMethod(
        name="jensen_shannon",
        display_name="Jensen-Shannon distance",
        kinds=ANY_KIND,
        default_threshold=0.1,
        is_p_value=False,
        needs="bins",
        statistic=_statistic,
    )
)
