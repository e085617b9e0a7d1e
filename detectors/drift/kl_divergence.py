"""Kullback-Leibler divergence of the current distribution from the reference, on shared bins."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.bins import proportions, replace_zeros
from detectors.drift.registry import ANY_KIND, DriftMethod, register


def kl_divergence(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """KL(current ‖ reference) = Σ q·ln(q / p), every zero proportion replaced by 1e-4.

    >>> round(kl_divergence([50, 50], [25, 75]), 12)  # 0.25·ln 0.5 + 0.75·ln 1.5
    0.130812035941
    """
    p = replace_zeros(proportions(reference_counts))
    q = replace_zeros(proportions(current_counts))
    return float(np.sum(q * np.log(q / p)))


def _statistic(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[float, None]:
    return kl_divergence(reference_counts, current_counts), None


KL_DIVERGENCE = register(
    DriftMethod(
        name="kl_divergence",
        display_name="Kullback-Leibler divergence",
        kinds=ANY_KIND,
        default_threshold=0.1,
        is_p_value=False,
        needs="bins",
        statistic=_statistic,
    )
)
