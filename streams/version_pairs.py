"""Stage 2's comparison of two versions of one model in the same window (docs/versions.md).

When a whole-model window (segment ``""``) of a version is emitted, every other version of the
model with a window of the same start and length still held in memory (``Stage2.windows``: open,
or among the ``keep_closed`` newest closed ones) is compared with it, and for each pair:

* ``version_prediction_drift``: value = p-value of the test that both versions' predictions have
  one distribution (:mod:`detectors.version_drift`: chi-square of the predicted-class counts of a
  classifier, KS on the prediction samples of a regressor); details ``method``, ``statistic``,
  ``p_value``, ``threshold``, ``drifted`` (p < threshold), ``n_a``, ``n_b``, ``versus``;
* ``version_agreement`` (only when some sampled request was served by both): value = share of the
  shared sampled requests on which both predict the same (:mod:`detectors.shadow`); details
  ``matched``, ``agreed``, ``lower``/``upper`` (95 % Wilson interval), ``exact``, ``versus``.

Both are published under the later version of the pair (:func:`detectors.versions.version_order`,
the challenger) with ``feature = "versus=<earlier version>"``, at the emission of either side:
a newer revision replaces the older, so the stored point compares the latest states of both.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from detectors.profiles.sampling import BottomKSample
from detectors.shadow import ShadowSample, agreement
from detectors.version_drift import VersionDrift, classes_drift, values_drift
from detectors.versions import version_order, wilson
from modelmon import metrics as m
from modelmon.events import MetricPoint
from modelmon.spec import Task
from streams.bundle import BundleKey, WindowBundle
from streams.window_state import WindowStates

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Side:
    """One version's window, its parts (one per reference it was folded on) combined."""

    def __init__(self, bundles: list[WindowBundle]) -> None:
        self.task = bundles[0].task
        self.classes: dict[str, int] = {}
        self.sample: BottomKSample | None = None
        self.shadow: ShadowSample | None = None
        for bundle in bundles:
            if bundle.prediction_classes is not None:
                for name, count in bundle.prediction_classes.counts().items():
                    self.classes[name] = self.classes.get(name, 0) + count
            values = bundle.prediction_values
            if values is not None:
                self.sample = values.sampler if self.sample is None else _merged(self.sample, values.sampler)
            if bundle.shadow is not None:
                self.shadow = bundle.shadow if self.shadow is None else _merged(self.shadow, bundle.shadow)

    def drift(self, other: _Side) -> VersionDrift | None:
        if self.task is Task.REGRESSION:
            if self.sample is None or other.sample is None:
                return None
            return values_drift(self.sample.values, other.sample.values)
        return classes_drift(self.classes, other.classes)


def _merged(left: Any, right: Any) -> Any:
    try:
        return left.merge(right)
    except ValueError:  # folded with other sample settings: the first part's stands for the window
        return left


def _side(windows: WindowStates, key: BundleKey) -> _Side | None:
    states = [windows[(key, ref)] for ref in sorted(windows.refs.get(key, ()))]
    bundles = [b for b in (s.merged() for s in states) if b is not None]
    return _Side(bundles) if bundles else None


def version_pair_points(
    windows: WindowStates, versions: Iterable[tuple[str, str]], key: BundleKey
) -> list[MetricPoint]:
    """The pair points of ``key``'s window with every other version's held window of the same span.

    ``versions``: the (model id, version) pairs stage 2 has seen (its watermarks' keys).
    """
    if key.segment:
        return []
    others = sorted({v for model, v in versions if model == key.model_id and v != key.model_version})
    this = _side(windows, key) if others else None
    points: list[MetricPoint] = []
    for version in others:
        other = _side(windows, replace(key, model_version=version))
        if this is None or other is None or this.task is not other.task:
            continue
        sides = {key.model_version: this, version: other}
        early, late = sorted(sides, key=lambda v: (version_order(v), v))  # '01' and '1': by text
        points += pair_points(replace(key, model_version=late), early, sides[early], sides[late])
    return points


def pair_points(key: BundleKey, early: str, a: _Side, b: _Side) -> list[MetricPoint]:
    """``key``: the later version's window; ``a`` the earlier version's side, ``b`` the later's."""
    revision = time.time_ns() // 1000
    out: list[tuple[str, float, Mapping[str, Any]]] = []
    drift = a.drift(b)
    if drift is not None and np.isfinite(drift.p_value):
        out.append((m.VERSION_PREDICTION_DRIFT, drift.p_value, {
            "method": drift.method, "statistic": drift.statistic, "p_value": drift.p_value,
            "threshold": drift.threshold, "drifted": drift.drifted, "n_a": drift.n_a, "n_b": drift.n_b,
        }))  # fmt: skip
    if a.shadow is not None and b.shadow is not None and a.shadow.numeric == b.shadow.numeric:
        shared = agreement(a.shadow, b.shadow)
        if shared.matched > 0:
            lower, upper = wilson(shared.agree, shared.matched)
            out.append((m.VERSION_AGREEMENT, shared.share, {
                "matched": shared.matched, "agreed": shared.agree, "lower": lower, "upper": upper,
                "exact": shared.exact,
            }))  # fmt: skip
    start = _EPOCH + timedelta(milliseconds=key.window_start_ms)
    end = start + timedelta(milliseconds=key.window_ms)
    return [
        MetricPoint(
            model_id=key.model_id,
            model_version=key.model_version,
            segment="",
            source="stage2",
            metric=metric,
            feature=m.versus(early),
            window_start=start,
            window_end=end,
            value=float(value),
            revision=revision,
            details={**details, "versus": early},
        )
        for metric, value, details in out
    ]
