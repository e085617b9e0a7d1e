"""Drift on one scale, whatever the method: the distance of a feature's drift to its own line.

``ratio`` is ``>= 1`` exactly when the stored verdict is drift. A distance method (psi, wasserstein,
...) drifts when ``score >= threshold``: the ratio is ``score / threshold``. A p-value test
(chi_square, ks, ...) drifts when ``p < threshold``, and under noise control
(:mod:`detectors.drift.report`) only when the BH-adjusted p is below the threshold and
``effect_size >= min_effect``: the ratio is the smaller of ``log p / log threshold`` (0 at p = 1,
1 at p = threshold, higher for smaller p) and ``effect_size / min_effect``. So a large statistic
on a huge window with a tiny effect stays below 1.

The stream stores it on every drift point (``details.ratio``, :mod:`streams.finalize`); the
report's heatmap and the "What moved" panel read it (``dashboards.sql.DRIFT_RATIO`` keeps the same
formula in SQL for points stored before the field existed), and the attribution of alerts ranks
features by it (:mod:`detectors.attribution`).
"""

from __future__ import annotations

import math

from detectors.drift.registry import get_method

_SMALLEST_P = 1e-300
"""p-values below this count as this (log 0 is -inf): a ratio of about 690 / -log(threshold)."""


def drift_ratio(
    method: str,
    score: float,
    threshold: float,
    *,
    p_value: float | None = None,
    adjusted_p_value: float | None = None,
    effect_size: float | None = None,
    min_effect: float | None = None,
) -> float:
    """Score ÷ threshold for distances; min(log p ÷ log alpha, effect ÷ min_effect) for tests.

    >>> drift_ratio("psi", 0.5, 0.25)
    2.0
    >>> round(drift_ratio("ks", 0.1, 0.05, p_value=0.0025), 6)  # log 0.0025 / log 0.05 = 2
    2.0
    >>> round(drift_ratio("ks", 0.1, 0.05, p_value=1e-9, effect_size=0.05, min_effect=0.1), 6)
    0.5
    """
    if not get_method(method).is_p_value:
        if threshold <= 0:
            return math.inf if score > 0 else 0.0
        return score / threshold
    p = adjusted_p_value if adjusted_p_value is not None else p_value
    if p is None or not 0 < threshold < 1:
        return math.nan
    test = math.log(max(p, _SMALLEST_P)) / math.log(threshold)
    effect = math.inf
    if effect_size is not None and min_effect:
        effect = effect_size / min_effect
    return min(test, effect)
