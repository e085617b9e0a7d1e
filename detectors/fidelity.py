"""Data fidelity of model inputs per window: schema checks, lateness, duplicate ids and label coverage."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from detectors import value_types as vt
from detectors.base import Aggregate
from detectors.duplicates import DuplicateIdAggregate
from detectors.durations import LABEL_DELAY_EDGES, LATENESS_EDGES, DurationHistogram, to_seconds
from detectors.metric import Metric
from modelmon.kinds import FeatureKind, check_kind

_COUNTERS = (
    "missing", "present", "type_violations",
    "range_checked", "range_violations", "category_checked", "unseen",
)  # fmt: skip
_MISSING, _PRESENT, _TYPE, _RANGE_CHECKED, _RANGE, _CATEGORY_CHECKED, _UNSEEN = range(len(_COUNTERS))
_RANGE_CHECK, _ALLOWED_CHECK = 1, 2


@dataclass(frozen=True)
class FeatureSchema:
    """What one feature must look like; the detectors-side mirror of a model spec's feature.

    Parameters
    ----------
    name
        Feature name, as in the events.
    kind
        ``numerical`` (an int or finite float, not a bool), ``categorical`` (a string) or
        ``boolean`` (a bool, or the number 0 or 1).
    required
        Whether an event must carry it.
    min, max
        Inclusive valid range (numerical only).
    allowed
        Known categories (categorical only; kept as a frozenset); others count as unseen.

    Examples
    --------
    >>> FeatureSchema("country", "categorical", allowed=["DE", "FR"]).allowed == frozenset({"DE", "FR"})
    True
    >>> FeatureSchema("amount", "numerical", min=5, max=1)
    Traceback (most recent call last):
    ...
    ValueError: amount: min (5) is greater than max (1)
    """

    name: str
    kind: FeatureKind
    required: bool = False
    min: float | None = None
    max: float | None = None
    allowed: Collection[str] | None = None

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if self.kind != "numerical" and (self.min is not None or self.max is not None):
            raise ValueError(f"{self.name}: min/max apply to numerical features only")
        if self.kind != "categorical" and self.allowed is not None:
            raise ValueError(f"{self.name}: allowed applies to categorical features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.name}: min ({self.min}) is greater than max ({self.max})")
        if self.allowed is not None:
            object.__setattr__(self, "allowed", frozenset(str(value) for value in self.allowed))


def check_column(
    feature: FeatureSchema, column: Any, n: int, codes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Counters (in ``_COUNTERS`` order), the missing mask and the checks that apply, for one column.

    ``column`` None means the batch does not carry the feature: every event misses it. ``codes``:
    the column's :func:`~detectors.value_types.type_codes`, when the caller has them already.
    """
    counters = np.zeros(len(_COUNTERS), dtype=np.int64)
    checks = (_RANGE_CHECK if feature.min is not None or feature.max is not None else 0) | (
        _ALLOWED_CHECK if feature.allowed is not None else 0
    )
    if column is None:
        counters[_MISSING] = n
        return counters, np.ones(n, dtype=bool), checks
    codes = vt.type_codes(column) if codes is None else codes
    if codes.size != n:
        raise ValueError(f"column {feature.name!r} has {codes.size} values, the batch {n}")
    missing = codes == vt.MISSING
    if feature.kind == "numerical":
        valid = (codes == vt.INT) | (codes == vt.FLOAT)
        if checks & _RANGE_CHECK:
            values = vt.numbers(column, valid)
            low = values < feature.min if feature.min is not None else False
            high = values > feature.max if feature.max is not None else False
            counters[_RANGE_CHECKED] = values.size
            counters[_RANGE] = np.count_nonzero(low | high)
    elif feature.kind == "categorical":
        valid = codes == vt.TEXT
        if feature.allowed is not None:
            values = vt.texts(column, valid)
            counters[_CATEGORY_CHECKED] = values.size
            known = np.isin(values, np.array(sorted(feature.allowed), dtype=str))
            counters[_UNSEEN] = np.count_nonzero(~known)
    else:
        valid = codes == vt.BOOL
        numeric = (codes == vt.INT) | (codes == vt.FLOAT)
        if numeric.any():
            values = vt.numbers(column, numeric)
            valid[numeric] = (values == 0) | (values == 1)
    counters[_MISSING] = np.count_nonzero(missing)
    counters[_PRESENT] = n - counters[_MISSING]
    counters[_TYPE] = np.count_nonzero(~missing & ~valid)
    return counters, missing, checks


def _batch_length(arrays: Iterable[Any], n_events: int | None) -> int:
    lengths = {int(np.shape(a)[0]) for a in arrays if a is not None}
    if n_events is not None:
        lengths.add(int(n_events))
    if len(lengths) > 1:
        raise ValueError(f"the columns and arrays of one batch differ in length: {sorted(lengths)}")
    if not lengths:
        raise ValueError("cannot tell the batch size from no columns and no arrays: pass n_events")
    return lengths.pop()


class FidelityAggregate(Aggregate):
    """Fidelity counters of one window, mergeable across partitions; :meth:`finalise` gives the rates.

    Per schema feature: missing, type violations, out-of-range values (numerical with min/max),
    unseen categories (categorical with ``allowed``). Per window: events missing a required
    feature, events carrying features the schema does not know (the first
    ``max_unknown_features`` names, in sort order, are counted by name: an exact bottom-k, so
    merging stays associative), event lateness (``ingest_ts - event_ts``) and label delay
    (``label_ts - prediction_ts``) on fixed bucket edges in seconds, duplicate prediction ids
    (:class:`~detectors.duplicates.DuplicateIdAggregate`) and label coverage.

    Parameters
    ----------
    lateness_edges, label_delay_edges
        Bucket edges in seconds (strictly increasing).
    id_capacity
        Distinct prediction ids counted exactly before sampling (see ``detectors.duplicates``).
    max_unknown_features
        Unknown feature names kept by name.

    Examples
    --------
    >>> schema = [FeatureSchema("amount", "numerical", required=True, min=0),
    ...           FeatureSchema("country", "categorical", allowed={"DE", "FR"})]
    >>> agg = FidelityAggregate()
    >>> agg.update_batch(
    ...     {"amount": np.array([10.0, -1.0, None, "7"], dtype=object),
    ...      "country": np.array(["DE", "US", "FR", None], dtype=object),
    ...      "colour": np.array([None, "red", None, None], dtype=object)},
    ...     schema,
    ...     event_ts=np.array([100.0, 100.0, 101.0, 102.0]),
    ...     ingest_ts=np.array([100.5, 103.0, 101.0, 200.0]),
    ...     prediction_ids=np.array(["a", "b", "c", "a"]),
    ... )
    >>> agg.update_labels(prediction_ts=np.array([100.0, 101.0]), label_ts=np.array([400.0, 3701.0]))
    >>> report = agg.finalise()
    >>> {name: round(m.value, 3) for name, m in report["amount"].items()}
    {'missing_rate': 0.25, 'type_violation_rate': 0.333, 'range_violation_rate': 0.5}
    >>> {name: round(m.value, 3) for name, m in report["country"].items()}
    {'missing_rate': 0.25, 'type_violation_rate': 0.0, 'unseen_category_rate': 0.333}
    >>> report["colour"]
    {'unknown_feature_rate': Metric(value=0.25, reason=None)}
    >>> [report[""][name].value for name in ("events", "required_missing_event_rate", "duplicate_rate")]
    [4.0, 0.25, 0.25]
    >>> [report[""][name].value for name in ("lateness_p50", "lateness_max", "label_coverage")]
    [1.0, 98.0, 0.5]
    """

    kind = "fidelity"
    _TOTALS = ("_n_events", "_n_labelled", "_required_missing_events", "_unknown_events", "_unknown_values")

    def __init__(
        self,
        lateness_edges: Iterable[float] = LATENESS_EDGES,
        label_delay_edges: Iterable[float] = LABEL_DELAY_EDGES,
        id_capacity: int = 8192,
        max_unknown_features: int = 100,
    ) -> None:
        if isinstance(max_unknown_features, bool) or not isinstance(max_unknown_features, int):
            raise ValueError(f"max_unknown_features must be an integer >= 0, got {max_unknown_features!r}")
        if max_unknown_features < 0:
            raise ValueError(f"max_unknown_features must be an integer >= 0, got {max_unknown_features!r}")
        self._lateness = DurationHistogram(tuple(lateness_edges))
        self._label_delay = DurationHistogram(tuple(label_delay_edges))
        self._ids = DuplicateIdAggregate(id_capacity)
        self.lateness_edges = self._lateness.edges
        self.label_delay_edges = self._label_delay.edges
        self.id_capacity = id_capacity
        self.max_unknown_features = max_unknown_features
        self._n_events = 0
        self._n_labelled = 0
        self._required_missing_events = 0
        self._unknown_events = 0
        self._unknown_values = 0
        self._unknown: dict[str, int] = {}
        self._features: dict[str, np.ndarray] = {}
        self._checks: dict[str, int] = {}

    def _settings(self) -> dict[str, Any]:
        return {
            "lateness_edges": list(self.lateness_edges),
            "label_delay_edges": list(self.label_delay_edges),
            "id_capacity": self.id_capacity,
            "max_unknown_features": self.max_unknown_features,
        }

    @property
    def n_events(self) -> int:
        return self._n_events

    @property
    def duplicate_ids(self) -> DuplicateIdAggregate:
        """The window's duplicate-id counter (read it, do not update it)."""
        return self._ids

    def histogram(self, which: str) -> tuple[tuple[float, ...], list[int]]:
        """Bucket edges and counts of ``"lateness"`` or ``"label_delay"`` (for dashboards)."""
        histograms = {"lateness": self._lateness, "label_delay": self._label_delay}
        if which not in histograms:
            raise ValueError(f"unknown histogram {which!r}; valid: {', '.join(histograms)}")
        return histograms[which].edges, histograms[which].counts.tolist()

    def update_batch(
        self,
        columns: Mapping[str, Any],
        schema: Iterable[FeatureSchema],
        *,
        event_ts: Any = None,
        ingest_ts: Any = None,
        prediction_ids: Any = None,
        n_events: int | None = None,
        codes: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Check one batch: ``columns`` maps feature name to a 1-D array (None/NaN = missing).

        ``event_ts`` and ``ingest_ts`` are epoch seconds (or datetime64), given together. ``codes``:
        the columns' type codes, when the caller computed them already.
        """
        codes = codes or {}
        if (event_ts is None) != (ingest_ts is None):
            raise ValueError("event lateness needs both event_ts and ingest_ts")
        n = _batch_length([*columns.values(), event_ts, ingest_ts, prediction_ids], n_events)
        features = list(schema)
        names = {feature.name for feature in features}
        if len(names) != len(features):
            raise ValueError("the schema names a feature twice")
        self._n_events += n
        required_missing = np.zeros(n, dtype=bool)
        for feature in features:
            counters, missing, checks = check_column(
                feature, columns.get(feature.name), n, codes.get(feature.name)
            )
            previous = self._features.get(feature.name)
            self._features[feature.name] = counters if previous is None else previous + counters
            self._checks[feature.name] = self._checks.get(feature.name, 0) | checks
            if feature.required:
                required_missing |= missing
        self._required_missing_events += int(np.count_nonzero(required_missing))
        carries_unknown = np.zeros(n, dtype=bool)
        unknown: dict[str, int] = {}
        for name in sorted(set(columns) - names):
            known = codes.get(name)
            present = (vt.type_codes(columns[name]) if known is None else known) != vt.MISSING
            if present.any():
                carries_unknown |= present
                unknown[name] = int(np.count_nonzero(present))
        self._unknown_events += int(np.count_nonzero(carries_unknown))
        self._unknown_values += sum(unknown.values())
        self._unknown = self._bottom_names(self._unknown, unknown)
        if event_ts is not None:
            self._lateness.update(to_seconds(ingest_ts) - to_seconds(event_ts))
        if prediction_ids is not None:
            self._ids.update_batch(prediction_ids)

    def update_labels(self, prediction_ts: Any, label_ts: Any) -> None:
        """Count labels joined to this window's predictions, with their times (epoch seconds)."""
        delays = to_seconds(label_ts) - to_seconds(prediction_ts)
        self._n_labelled += int(delays.size)
        self._label_delay.update(delays)

    def _bottom_names(self, left: Mapping[str, int], right: Mapping[str, int]) -> dict[str, int]:
        names = sorted(set(left) | set(right))[: self.max_unknown_features]
        return {name: left.get(name, 0) + right.get(name, 0) for name in names}

    def merge(self, other: Self) -> Self:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(self).__name__} with {type(other).__name__}")
        if self._settings() != other._settings():
            raise ValueError(f"cannot merge fidelity settings {self._settings()} and {other._settings()}")
        out = type(self)(**self._settings())
        for name in self._TOTALS:
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out._unknown = out._bottom_names(self._unknown, other._unknown)
        zeros = np.zeros(len(_COUNTERS), dtype=np.int64)
        for name in sorted(set(self._features) | set(other._features)):
            out._features[name] = self._features.get(name, zeros) + other._features.get(name, zeros)
            out._checks[name] = self._checks.get(name, 0) | other._checks.get(name, 0)
        out._lateness = self._lateness.merge(other._lateness)
        out._label_delay = self._label_delay.merge(other._label_delay)
        out._ids = self._ids.merge(other._ids)
        return out

    def _feature_rates(self, name: str) -> dict[str, Metric]:
        counts, checks = self._features[name], self._checks[name]
        rates = {
            "missing_rate": Metric.ratio(counts[_MISSING], counts[_MISSING] + counts[_PRESENT], "no events"),
            "type_violation_rate": Metric.ratio(counts[_TYPE], counts[_PRESENT], "no values present"),
        }
        if checks & _RANGE_CHECK:
            rates["range_violation_rate"] = Metric.ratio(
                counts[_RANGE], counts[_RANGE_CHECKED], "no values of the right type"
            )
        if checks & _ALLOWED_CHECK:
            rates["unseen_category_rate"] = Metric.ratio(
                counts[_UNSEEN], counts[_CATEGORY_CHECKED], "no values of the right type"
            )
        return rates

    def finalise(self) -> dict[str, dict[str, Metric]]:
        """Rates by feature name; key ``""`` holds the window-level metrics.

        Per schema feature: ``missing_rate`` (of events), ``type_violation_rate`` (of present
        values), ``range_violation_rate`` and ``unseen_category_rate`` (of values of the right
        type; only where the schema sets min/max or allowed). Per unknown feature:
        ``unknown_feature_rate`` (of events). Window level: ``events``,
        ``required_missing_event_rate``, ``unknown_feature_event_rate``, ``duplicate_rate``,
        ``duplicate_count``, ``lateness_{mean,p50,p95,p99,max}``, ``label_coverage`` (labels
        joined / events) and ``label_delay_{mean,p50,p95,p99,max}``, all in seconds.
        """
        n = self._n_events
        window = {
            "events": Metric(float(n)),
            "required_missing_event_rate": Metric.ratio(self._required_missing_events, n, "empty window"),
            "unknown_feature_event_rate": Metric.ratio(self._unknown_events, n, "empty window"),
            "duplicate_rate": self._ids.duplicate_rate(),
            "duplicate_count": Metric(self._ids.duplicates()),
        }
        window |= self._lateness.metrics("lateness", "no event and ingest times")
        window["label_coverage"] = Metric.ratio(self._n_labelled, n, "empty window")
        window |= self._label_delay.metrics("label_delay", "no labels joined")
        report: dict[str, dict[str, Metric]] = {"": window}
        for name in sorted(self._features):
            report[name] = self._feature_rates(name)
        for name, count in self._unknown.items():
            report.setdefault(name, {})["unknown_feature_rate"] = Metric.ratio(count, n, "empty window")
        return report

    def _feature_dict(self, name: str) -> dict[str, int]:
        counters = dict(zip(_COUNTERS, self._features[name].tolist(), strict=True))
        return counters | {"checks": self._checks[name]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **self._settings(),
            "n_events": self._n_events,
            "n_labelled": self._n_labelled,
            "required_missing_events": self._required_missing_events,
            "unknown_events": self._unknown_events,
            "unknown_values": self._unknown_values,
            "unknown": dict(sorted(self._unknown.items())),
            "features": {name: self._feature_dict(name) for name in sorted(self._features)},
            "lateness": self._lateness.to_dict(),
            "label_delay": self._label_delay.to_dict(),
            "ids": self._ids.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        out = cls(
            lateness_edges=data["lateness_edges"],
            label_delay_edges=data["label_delay_edges"],
            id_capacity=int(data["id_capacity"]),
            max_unknown_features=int(data["max_unknown_features"]),
        )
        out._n_events = int(data["n_events"])
        out._n_labelled = int(data["n_labelled"])
        out._required_missing_events = int(data["required_missing_events"])
        out._unknown_events = int(data["unknown_events"])
        out._unknown_values = int(data["unknown_values"])
        out._unknown = {str(name): int(count) for name, count in data["unknown"].items()}
        for name, counters in data["features"].items():
            out._features[name] = np.array([int(counters[c]) for c in _COUNTERS], dtype=np.int64)
            out._checks[name] = int(counters["checks"])
        out._lateness = DurationHistogram.from_dict(data["lateness"])
        out._label_delay = DurationHistogram.from_dict(data["label_delay"])
        out._ids = DuplicateIdAggregate.from_dict(data["ids"])
        return out

    def __repr__(self) -> str:
        return f"FidelityAggregate(n_events={self._n_events}, features={sorted(self._features)})"
