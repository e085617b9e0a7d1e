"""Drift between two model versions' prediction distributions in one window.

* **Classifiers:** Pearson's chi-square test of homogeneity on the two versions' predicted-class
  counts (a 2 x classes table; classes empty in both versions are dropped), without continuity
  correction: ``scipy.stats.chi2_contingency(table, correction=False)``. Exact on the window's counts.
* **Regression:** the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) on the two
  versions' prediction samples (the uniform bottom-k sample of each window,
  :mod:`detectors.profiles.sampling`). An approximation: the test has the power of the samples
  (256 rows each by default), not of the whole windows.

Drift is called when ``p_value < threshold`` (0.05 by default). A comparison needs at least one
prediction in each version (and two classes in total for the chi-square); otherwise it is None.

>>> d = classes_drift({"a": 50, "b": 50}, {"a": 80, "b": 20})
>>> d.method, round(d.statistic, 3), d.p_value < 0.05, d.n_a, d.n_b
('chi_square', 19.78, True, 100, 100)
>>> classes_drift({"a": 5}, {"a": 7}) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2_contingency, ks_2samp

DEFAULT_THRESHOLD = 0.05


@dataclass(frozen=True)
class VersionDrift:
    method: str  # "chi_square" or "ks"
    statistic: float
    p_value: float
    n_a: int
    n_b: int
    threshold: float = DEFAULT_THRESHOLD

    @property
    def drifted(self) -> bool:
        return self.p_value < self.threshold


def classes_drift(
    counts_a: Mapping[str, int], counts_b: Mapping[str, int], threshold: float = DEFAULT_THRESHOLD
) -> VersionDrift | None:
    """Chi-square test of homogeneity of two versions' predicted-class counts."""
    classes = sorted(c for c in set(counts_a) | set(counts_b) if counts_a.get(c, 0) + counts_b.get(c, 0) > 0)
    table = np.array([[counts_a.get(c, 0) for c in classes], [counts_b.get(c, 0) for c in classes]])
    n_a, n_b = int(table[0].sum()), int(table[1].sum())
    if len(classes) < 2 or n_a == 0 or n_b == 0:
        return None
    result = chi2_contingency(table, correction=False)
    return VersionDrift("chi_square", float(result.statistic), float(result.pvalue), n_a, n_b, threshold)


def values_drift(
    sample_a: npt.ArrayLike, sample_b: npt.ArrayLike, threshold: float = DEFAULT_THRESHOLD
) -> VersionDrift | None:
    """Two-sample KS test of two versions' prediction samples (NaN left out)."""
    a, b = (np.asarray(s, dtype=float) for s in (sample_a, sample_b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return None
    result = ks_2samp(a, b)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    return VersionDrift("ks", statistic, p_value, int(a.size), int(b.size), threshold)
