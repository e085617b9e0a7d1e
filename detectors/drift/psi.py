"""PSI, the population stability index, on reference-decile bins or categories."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.bins import proportions, replace_zeros
from detectors.drift.registry import ANY_KIND, DriftMethod, register


def population_stability_index(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """PSI = Σ (q - p)·ln(q / p), with p, q the reference and current proportions per bin and every
    zero proportion replaced by 1e-4.

    >>> round(population_stability_index([50, 50], [25, 75]), 12)  # 0.25·ln 2 + 0.25·ln 1.5
    0.274653072167
    >>> population_stability_index([10, 0], [10, 0])
    0.0
    """
    p = replace_zeros(proportions(reference_counts))
    q = replace_zeros(proportions(current_counts))
    return float(np.sum((q - p) * np.log(q / p)))


def _statistic(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[float, None]:
    return population_stability_index(reference_counts, current_counts), None


PSI = register(
    DriftMethod(
        name="psi",
        display_name="Population Stability Index",
        kinds=ANY_KIND,
        default_threshold=0.2,
        is_p_value=False,
        needs="bins",
        statistic=_statistic,
    )
)
