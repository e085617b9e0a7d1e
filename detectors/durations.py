"""Mergeable histogram of durations (event lateness, label delay) on fixed bucket edges, exact sum, max."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Self

import numpy as np

from detectors.exact import exact_sum, fraction_from_json, fraction_to_json
from detectors.metric import Metric

LATENESS_EDGES: tuple[float, ...] = (0, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400)
"""Default bucket edges of event lateness (ingest time - event time), in seconds."""

LABEL_DELAY_EDGES: tuple[float, ...] = (
    0, 60, 300, 900, 3600, 10800, 21600, 43200, 86400, 172800, 259200, 604800, 1209600, 2592000,
)  # fmt: skip
"""Default bucket edges of label delay (label time - prediction time), in seconds: 1 min to 30 days."""


def to_seconds(values: Any) -> np.ndarray:
    """Timestamps or durations as float seconds: numbers are taken as seconds, datetime64 as epoch time.

    >>> to_seconds(np.array(["1970-01-01T00:01:00", "NaT"], dtype="datetime64[ms]")).tolist()
    [60.0, nan]
    """
    array = np.asarray(values)
    if array.dtype.kind in "Mm":
        nanos = array.astype("datetime64[ns]" if array.dtype.kind == "M" else "timedelta64[ns]")
        seconds = nanos.astype(np.int64) / 1e9
        return np.where(np.isnat(array), np.nan, seconds)
    return array.astype(np.float64).reshape(-1)


class DurationHistogram:
    """Counts of durations in buckets ``(-inf, e0), [e0, e1), ..., [e_last, inf)``, plus sum and max.

    Negative durations (clock skew, a label before its prediction) fall in the first bucket.
    Quantiles are reported as the upper edge of the bucket that holds them, capped at the
    maximum: an upper bound, exact to one bucket. Non-finite durations are counted in
    ``n_invalid`` and left out.

    Examples
    --------
    >>> h = DurationHistogram((0, 10, 60))
    >>> h.update(np.array([-1.0, 3.0, 4.0, 20.0, 7200.0]))
    >>> h.counts.tolist(), h.max
    ([1, 2, 1, 1], 7200.0)
    >>> h.quantile(0.5), h.quantile(0.99)
    (10.0, 7200.0)
    """

    def __init__(self, edges: Sequence[float]) -> None:
        edge_array = np.asarray(edges, dtype=np.float64)
        if edge_array.ndim != 1 or edge_array.size == 0 or not np.all(np.isfinite(edge_array)):
            raise ValueError(f"edges must be a non-empty sequence of finite numbers, got {edges!r}")
        if np.any(np.diff(edge_array) <= 0):
            raise ValueError(f"edges must be strictly increasing, got {list(edges)!r}")
        self.edges: tuple[float, ...] = tuple(float(e) for e in edge_array)
        self._edge_array = edge_array
        self._counts = np.zeros(edge_array.size + 1, dtype=np.int64)
        self._sum = Fraction(0)
        self._max = -np.inf
        self._n_invalid = 0

    @property
    def counts(self) -> np.ndarray:
        """A copy of the bucket counts (``len(edges) + 1`` of them)."""
        return self._counts.copy()

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    @property
    def max(self) -> float:
        """The largest duration seen (``-inf`` when none)."""
        return float(self._max)

    @property
    def n_invalid(self) -> int:
        return self._n_invalid

    def update(self, durations: np.ndarray) -> None:
        """Count a batch of durations in seconds."""
        values = np.asarray(durations, dtype=np.float64)
        finite = np.isfinite(values)
        self._n_invalid += int(values.size - np.count_nonzero(finite))
        values = values[finite]
        if values.size == 0:
            return
        buckets = np.searchsorted(self._edge_array, values, side="right")
        self._counts += np.bincount(buckets, minlength=self._counts.size)
        self._sum += exact_sum(values)
        self._max = max(self._max, float(values.max()))

    def merge(self, other: DurationHistogram) -> DurationHistogram:
        if self.edges != other.edges:
            raise ValueError(f"cannot merge duration histograms with edges {self.edges} and {other.edges}")
        out = DurationHistogram(self.edges)
        out._counts = self._counts + other._counts
        out._sum = self._sum + other._sum
        out._max = max(self._max, other._max)
        out._n_invalid = self._n_invalid + other._n_invalid
        return out

    def mean(self) -> float:
        return float(self._sum / self.count) if self.count else float("nan")

    def quantile(self, q: float) -> float:
        """Upper bound of the ``q`` quantile: its bucket's upper edge, or the max if smaller."""
        n = self.count
        if n == 0:
            return float("nan")
        bucket = int(np.searchsorted(np.cumsum(self._counts), q * n, side="left"))
        upper = self.edges[bucket] if bucket < len(self.edges) else self._max
        return float(min(upper, self._max))

    def metrics(self, prefix: str, reason: str) -> dict[str, Metric]:
        """``{prefix}mean``, ``_p50``, ``_p95``, ``_p99`` and ``_max``; NaN with ``reason`` when empty."""
        names = ("mean", "p50", "p95", "p99", "max")
        if self.count == 0:
            return {f"{prefix}_{name}": Metric.undefined(reason) for name in names}
        values = (self.mean(), self.quantile(0.5), self.quantile(0.95), self.quantile(0.99), self.max)
        return {f"{prefix}_{name}": Metric(value) for name, value in zip(names, values, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "counts": self._counts.tolist(),
            "sum": fraction_to_json(self._sum),
            "max": None if self.count == 0 else self.max,
            "n_invalid": self._n_invalid,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        out = cls(data["edges"])
        out._counts = np.array(data["counts"], dtype=np.int64).reshape(len(out.edges) + 1)
        out._sum = fraction_from_json(data["sum"])
        out._max = -np.inf if data["max"] is None else float(data["max"])
        out._n_invalid = int(data["n_invalid"])
        return out
