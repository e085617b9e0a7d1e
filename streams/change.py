"""Stage 2's streaming change detectors: per-window metric series fed to ADWIN / Page-Hinkley / KSWIN.

For each (model, version, segment) stage 2 keeps these series, one value per closed window, as the
model spec's ``change.metrics`` chooses:

- ``error``: 1 - accuracy (classifiers) or ``mae`` (regressors), once the window has labels;
- ``drift_share``: the fraction of compared features that drifted, when a reference exists;
- ``feature_drift``: per feature (and ``__prediction__``) the score of the drift method that judged
  it (``psi``, ``ks``, ...); a feature whose method changes starts a new series.

Guarantees:

- **Once per window, in event-time order.** A series is fed the value of a window at the first
  emission of that window that has a value for the series, and only when the window starts after
  the last window fed to that series. A re-emission (late labels, revisions) never feeds a window
  twice, and a window that closes after a later one was fed is not fed at all: its value is still
  published as a metric, it just does not enter the detectors. Stage 2 closes ready windows in
  start order, so this happens only when a window closes late (after ``window_grace_seconds``
  without partials while later windows were already past their watermark).
- **Resumable.** The detectors' snapshots and the last fed window start of every series are saved
  in a faust table (``change-detectors``) after the window's points are published and before its
  partials are acknowledged, on the changelog partition of those partials. A restarted worker
  continues each series where it stopped, and a window replayed after a crash is not fed twice.
- **Nothing is held back by a bad snapshot.** A stored state that cannot be restored (a detector's
  settings changed in the spec, or an unreadable record) restarts that detector and is logged.

A detection is published as a ``MetricPoint`` ``change_detected`` (value 1) for the window where it
happened, ``feature`` = the series' feature, ``source = change/<series>/<detector>`` (so detectors
and series firing in one window are separate rows), ``details``: ``detector``, ``series``,
``series_metric``, ``value`` (fed), ``estimate`` and ``estimate_of``, ``n_seen``. Windows without a
detection publish nothing (see docs/metric-names.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, MutableMapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from faust.types import EventT

from detectors.change import ADWINDetector, ChangeDetector, KSWINDetector, from_snapshot, make
from modelmon import metrics as m
from modelmon.events import MetricPoint
from modelmon.spec import ChangeSpec, ModelSpec, SpecError, Task
from streams.app import changelog_partition_of
from streams.bundle import BundleKey

log = logging.getLogger(__name__)

CHANGE_METRIC = m.CHANGE_DETECTED
FRACTION_DRIFT_METHODS = frozenset({"ks", "jensen_shannon", "hellinger"})
"""Drift methods whose score is a fraction in [0, 1]: Page-Hinkley's default threshold fits them."""
DEFAULT_DETECTORS = ("adwin",)
FRACTION_DEFAULT_DETECTORS = ("adwin", "page_hinkley")


@dataclass(frozen=True)
class SeriesValue:
    """One window's value of one series."""

    series: str
    feature: str
    metric: str
    value: float
    fraction: bool
    point: MetricPoint

    def series_id(self, key: BundleKey) -> str:
        """The key of this series in the detector store (the window is not part of it)."""
        return f"{key.model_id}|{key.model_version}|{key.segment}|{self.series}|{self.feature}|{self.metric}"


def series_values(points: Iterable[MetricPoint], spec: ModelSpec) -> list[SeriesValue]:
    """The values the window's ``points`` (from ``streams.finalize``) give to the spec's series."""
    wanted = set(spec.change.metrics)
    values: list[SeriesValue] = []
    for point in points:
        if point.feature == "":
            if "error" in wanted and point.metric == m.ACCURACY:
                values.append(SeriesValue("error", "", m.ACCURACY, 1.0 - point.value, True, point))
            elif "error" in wanted and point.metric == m.MAE and spec.task is Task.REGRESSION:
                values.append(SeriesValue("error", "", m.MAE, point.value, False, point))
            elif "drift_share" in wanted and point.metric == m.DRIFT_SHARE:
                values.append(SeriesValue("drift_share", "", m.DRIFT_SHARE, point.value, True, point))
        elif "feature_drift" in wanted and point.details.get("method") == point.metric:
            fraction = point.metric in FRACTION_DRIFT_METHODS
            values.append(
                SeriesValue("feature_drift", point.feature, point.metric, point.value, fraction, point)
            )
    return [v for v in values if math.isfinite(v.value)]


def detector_names(change: ChangeSpec, fraction: bool) -> tuple[str, ...]:
    """The detectors run on a series: the spec's list, or by default adwin (+ page_hinkley on fractions).

    Page-Hinkley's ``delta`` and ``threshold`` are in the series' units; its defaults suit
    fractions, and would raise false alarms on a series in other units (mae, wasserstein).

    >>> detector_names(ChangeSpec(), fraction=False), detector_names(ChangeSpec(), fraction=True)
    (('adwin',), ('adwin', 'page_hinkley'))
    >>> detector_names(ChangeSpec(detectors=["kswin"]), fraction=False)
    ('kswin',)
    """
    if change.detectors is not None:
        return tuple(change.detectors)
    return FRACTION_DEFAULT_DETECTORS if fraction else DEFAULT_DETECTORS


def settings_of(change: ChangeSpec, name: str) -> dict[str, Any]:
    """The spec's settings of detector ``name`` ({} = its defaults)."""
    for detector, params in change.params.items():
        if detector == name:
            return dict(params)
    return {}


def check_change_spec(spec: ModelSpec) -> None:
    """Build every detector the spec configures once, so bad ``change.params`` fail at start."""
    for name in set(detector_names(spec.change, True)) | set(detector_names(spec.change, False)):
        try:
            make(name, **settings_of(spec.change, name))
        except (TypeError, ValueError) as error:
            raise SpecError(
                f"model {spec.model_id!r}: field 'change.params.{name}': {error} "
                "(fix: see docs/model-specs.md, 'Change detection')"
            ) from None


def estimate(detector: ChangeDetector) -> tuple[float | None, str]:
    """What the detector currently estimates, and what that number is."""
    if isinstance(detector, ADWINDetector):
        return detector.estimation, "window_mean"
    state = detector.snapshot()["state"]
    if isinstance(detector, KSWINDetector):
        return state["p_value"], "ks_p_value"
    return state["mean"], "running_mean"


@dataclass
class ChangeStats:
    fed: int = 0
    not_fed_older: int = 0
    detections: int = 0
    restarted: int = 0


@dataclass
class ChangeUpdate:
    """The outcome of feeding one window: points to publish and series records to save afterwards."""

    points: list[MetricPoint] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


class ChangeTracker:
    """Feeds closed windows' series to the change detectors; state lives in ``store``.

    ``store`` maps a series id to ``{"last_window_start_ms": int, "detectors": {name: snapshot}}``:
    a faust table in the worker, a dict in tests. :meth:`feed` does not change it; :meth:`save`
    does, once the window's points are published.
    """

    def __init__(self, specs: Mapping[str, ModelSpec], store: MutableMapping[str, Any]) -> None:
        for spec in specs.values():
            check_change_spec(spec)
        self.specs = specs
        self.store = store
        self.stats = ChangeStats()

    def feed(self, key: BundleKey, points: list[MetricPoint]) -> ChangeUpdate:
        """Feed the window ``key``'s values (from its ``points``) to the series not fed this window yet."""
        update = ChangeUpdate()
        spec = self.specs.get(key.model_id)
        if spec is None:
            return update
        for value in series_values(points, spec):
            names = detector_names(spec.change, value.fraction)
            if not names:
                continue
            series_id = value.series_id(key)
            record = self.store.get(series_id)
            if record and int(record["last_window_start_ms"]) >= key.window_start_ms:
                if int(record["last_window_start_ms"]) > key.window_start_ms:
                    self.stats.not_fed_older += 1
                continue  # this window was fed already, or a later one was
            detectors = self._load(series_id, record, names, spec.change)
            snapshots: dict[str, Any] = {}
            for name, detector in detectors.items():
                if detector.update(value.value):
                    update.points.append(self._point(value, name, detector))
                snapshots[name] = detector.snapshot()
            self.stats.fed += 1
            update.records[series_id] = {"last_window_start_ms": key.window_start_ms, "detectors": snapshots}
        self.stats.detections += len(update.points)
        return update

    def save(self, update: ChangeUpdate, anchor: EventT | None) -> None:
        """Store the fed series' state; table writes go to ``anchor``'s changelog partition."""
        with changelog_partition_of(anchor) if anchor is not None else nullcontext():
            for series_id, record in update.records.items():
                self.store[series_id] = record

    def _load(
        self, series_id: str, record: Mapping[str, Any] | None, names: Iterable[str], change: ChangeSpec
    ) -> dict[str, ChangeDetector]:
        saved = (record or {}).get("detectors", {})
        detectors: dict[str, ChangeDetector] = {}
        for name in names:
            fresh = make(name, **settings_of(change, name))
            snapshot = saved.get(name)
            detectors[name] = fresh
            if snapshot is None:
                continue
            if snapshot.get("params") != fresh.get_params():
                log.info("%s: %s settings changed in the spec; the detector starts afresh", series_id, name)
                self.stats.restarted += 1
                continue
            try:
                detectors[name] = from_snapshot(snapshot)
            except (KeyError, TypeError, ValueError) as error:
                log.warning(
                    "%s: %s state unreadable (%s); the detector starts afresh", series_id, name, error
                )
                self.stats.restarted += 1
        return detectors

    @staticmethod
    def _point(value: SeriesValue, name: str, detector: ChangeDetector) -> MetricPoint:
        number, what = estimate(detector)
        source = value.point
        return MetricPoint(
            model_id=source.model_id,
            model_version=source.model_version,
            segment=source.segment,
            metric=CHANGE_METRIC,
            feature=value.feature,
            window_start=source.window_start,
            window_end=source.window_end,
            value=1.0,
            source=f"change/{value.series}/{name}",
            revision=source.revision,
            details={
                "detector": name,
                "series": value.series,
                "series_metric": value.metric,
                "value": value.value,
                "estimate": number if number is not None and math.isfinite(number) else None,
                "estimate_of": what,
                "n_seen": detector.n_seen,
            },
        )
