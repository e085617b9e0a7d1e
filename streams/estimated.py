"""Estimated performance of a closed window: calibrated score bins → estimate, band and (with labels) error.

Stage 2 publishes, beside the realized metrics of the same window (:mod:`streams.finalize`), for
each metric ``<m>`` the estimator gives (``detectors.estimation``): ``estimated_<m>`` and its band
``estimated_<m>_lower`` / ``_upper``, computed from the window's score bins (every prediction,
labelled or not) and the reference's calibration. A window whose labels have joined also gets
``estimation_error_<m>`` = |estimated - realized|; late labels re-finalize the window, so the error
appears when they land. Without a calibrated reference nothing is estimated.

The band's random draws are seeded from the window's key: a replay publishes the same values.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from detectors.estimation import estimate
from detectors.profiles import ReferenceProfile
from modelmon import metrics as m
from modelmon.spec import Task
from streams.bundle import WindowBundle
from streams.window_key import BundleKey

log = logging.getLogger(__name__)

LEVEL = 0.95
"""Coverage of the band (``estimated_<m>_lower`` .. ``_upper``)."""
DRAWS = 400
"""Resamples of the window's scores behind the band."""

Point = tuple[str, float, dict[str, Any]]
"""(metric, value, details) of one model-level point."""


def window_seed(key: BundleKey) -> int:
    """A seed for the band's draws that depends on the window only (model, version, segment, window).

    >>> key = BundleKey("m", "1", "", 60_000, 60_000)
    >>> window_seed(key) == window_seed(BundleKey("m", "1", "", 60_000, 60_000)) != window_seed(
    ...     BundleKey("m", "1", "", 120_000, 60_000))
    True
    """
    text = f"{key.model_id}|{key.model_version}|{key.segment}|{key.window_start_ms}|{key.window_ms}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def estimated_points(
    bundle: WindowBundle, reference: ReferenceProfile | None, realized: Mapping[str, float]
) -> list[Point]:
    """The estimate, band and estimation error of one window (``realized``: its labelled metrics)."""
    calibration = reference.calibration if reference is not None else None
    bins = bundle.estimation
    if calibration is None or bins is None or bins.count == 0:
        return []
    binary = bundle.task is Task.BINARY
    try:
        estimates = estimate(
            bins, calibration, task="binary" if binary else "multiclass",
            positive=bins.classes[1] if binary else None, draws=DRAWS,
            seed=window_seed(bundle.key), level=LEVEL,
        )  # fmt: skip
    except ValueError as error:  # e.g. the window's classes are not the calibration's
        log.warning("%s: no performance estimate: %s", bundle.key, error)
        return []
    points: list[Point] = []
    for name, published, lower, upper, gap_name in zip(
        m.ESTIMATED_METRICS, m.ESTIMATES, m.ESTIMATE_LOWER, m.ESTIMATE_UPPER, m.ESTIMATION_ERRORS, strict=True
    ):
        found = estimates.get(name)
        if found is None:
            continue
        band = {"level": LEVEL, "estimated": True}
        details = {"n": bins.count, "lower": found.lower, "upper": found.upper, **band}
        points += [(published, found.value, details), (lower, found.lower, band), (upper, found.upper, band)]
        if name in realized:
            gap = abs(found.value - realized[name])
            counts = {"labels": bundle.labels, "events": bundle.events}
            points.append((gap_name, gap, {**counts, "estimated": found.value, "realized": realized[name]}))
    return points
