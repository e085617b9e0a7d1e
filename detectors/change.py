"""Streaming change detectors for per-window metric series: river's ADWIN, Page-Hinkley and KSWIN, resumable.

Every detector has one convention: ``update(x) -> bool`` is True when a change is detected at
``x`` (``drift_detected`` repeats the last answer); after a detection the next update starts
afresh, as in river. Non-finite values (a NaN metric of an empty window) are skipped: they return
False and change nothing. ``snapshot()`` returns a JSON-serialisable dict of the settings and the
whole state; ``restore(snapshot)`` (or :func:`from_snapshot`) continues exactly where it stopped,
so a worker restart does not reset the detectors.
"""

from __future__ import annotations

import abc
import base64
import inspect
import math
from typing import Any, ClassVar

from river import drift


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_between(name: str, value: Any, low: float, high: float, *, high_closed: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and low < value
    ok = ok and (value <= high if high_closed else value < high)
    if not ok:
        interval = f"({low}, {high}]" if high_closed else f"({low}, {high})"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class ChangeDetector(abc.ABC):
    """A river drift detector behind one ``update`` convention, with JSON snapshots.

    Settings are public attributes named as the constructor arguments; state is private and
    built in ``_reset``.
    """

    name: ClassVar[str]
    _river: drift.ADWIN | drift.PageHinkley | drift.KSWIN

    def _reset(self) -> None:
        self._river = self._make_river()
        self._drift_detected = False
        self._n_seen = 0
        self._n_detections = 0

    @abc.abstractmethod
    def _make_river(self) -> Any:
        """A fresh river detector with these settings."""

    @abc.abstractmethod
    def _state(self) -> dict[str, Any]:
        """The river detector's state as JSON-serialisable values."""

    @abc.abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Put :meth:`_state` output back into ``self._river``."""

    @property
    def drift_detected(self) -> bool:
        """Whether the last :meth:`update` detected a change."""
        return self._drift_detected

    @property
    def n_seen(self) -> int:
        """Values fed (non-finite ones are not counted)."""
        return self._n_seen

    @property
    def n_detections(self) -> int:
        """Changes detected so far."""
        return self._n_detections

    def update(self, x: float) -> bool:
        """Feed the next value of the series; True when a change is detected at it."""
        value = float(x)
        if not math.isfinite(value):
            self._drift_detected = False
            return False
        self._river.update(value)
        self._n_seen += 1
        self._drift_detected = bool(self._river.drift_detected)
        self._n_detections += self._drift_detected
        return self._drift_detected

    def get_params(self) -> dict[str, Any]:
        """The settings, by constructor argument name."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def clone(self) -> ChangeDetector:
        """A fresh detector with the same settings."""
        return type(self)(**self.get_params())

    def snapshot(self) -> dict[str, Any]:
        """Settings and full state as a JSON-serialisable dict."""
        return {
            "name": self.name,
            "params": self.get_params(),
            "n_seen": self._n_seen,
            "n_detections": self._n_detections,
            "drift_detected": self._drift_detected,
            "state": self._state(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take the settings and state of a :meth:`snapshot` of the same kind of detector."""
        if data.get("name") != self.name:
            raise ValueError(f"a {data.get('name')!r} snapshot cannot restore a {self.name!r} detector")
        type(self).__init__(self, **data["params"])  # validates the settings and resets
        self._load_state(data["state"])
        self._n_seen = int(data["n_seen"])
        self._n_detections = int(data["n_detections"])
        self._drift_detected = bool(data["drift_detected"])

    def __getstate__(self) -> dict[str, Any]:
        return self.snapshot()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.restore(state)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


class ADWINDetector(ChangeDetector):
    """ADWIN: a change when two sub-windows of an adaptive window differ in mean beyond a bound.

    Parameters
    ----------
    delta
        Confidence of the bound, in (0, 1); smaller = fewer false alarms, later detection.
    clock
        Check for a change every ``clock`` values. 1 here (river: 32): a metric series has one
        value per window, so checking each costs nothing and does not delay detection.
    max_buckets
        Buckets of each size kept before merging (memory vs precision).
    min_window_length
        Smallest sub-window compared.
    grace_period
        Values seen before the first check.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> series = [rng.gauss(0.10, 0.02) for _ in range(100)] + [rng.gauss(0.30, 0.02) for _ in range(100)]
    >>> detector = ADWINDetector()
    >>> [i for i, x in enumerate(series) if detector.update(x)]  # the step is at 100
    [184]
    >>> round(detector.estimation, 2)
    0.3

    References
    ----------
    Bifet, A. and Gavaldà, R. (2007). Learning from time-changing data with adaptive windowing. SDM.

    Notes
    -----
    ADWIN's cut bound has a term ``(2 / 3m) ln(2 / delta')`` that takes values to span [0, 1];
    on a short series of small values (a few hundred windows of an error rate) it detects late,
    as above. Page-Hinkley reacts faster there.
    """

    name = "adwin"

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 1,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        _check_between("delta", delta, 0.0, 1.0)
        _check_int("clock", clock, 1)
        _check_int("max_buckets", max_buckets, 1)
        _check_int("min_window_length", min_window_length, 1)
        _check_int("grace_period", grace_period, 0)
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self._reset()

    def _make_river(self) -> drift.ADWIN:
        return drift.ADWIN(**self.get_params())

    def _state(self) -> dict[str, Any]:
        # The window lives in river's Rust extension, whose pickle state is compact bytes.
        window = self._river._helper.__getstate__()  # type: ignore[union-attr]
        return {"window": base64.b64encode(window).decode("ascii"), "river_drift": self._river.drift_detected}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._river._helper.__setstate__(base64.b64decode(state["window"]))  # type: ignore[union-attr]
        self._river._drift_detected = bool(state["river_drift"])

    @property
    def estimation(self) -> float:
        """Mean of the current window."""
        return float(self._river.estimation)  # type: ignore[union-attr]


class PageHinkleyDetector(ChangeDetector):
    """Page-Hinkley (a CUSUM): a change when the cumulative deviation from the mean exceeds ``threshold``.

    Parameters
    ----------
    min_instances
        Values seen before the first check (river: 30).
    delta
        Drift tolerated per value, in the series' units.
    threshold
        Detection threshold (lambda), in the series' units (river: 50). The default suits rates and
        scores in [0, 1]; scale it with the series. With per-window noise ``sigma``, a false alarm
        per excursion has probability about ``exp(-2 * delta * threshold / sigma**2)``.
    alpha
        Forgetting factor of the cumulative sums, in (0, 1].
    mode
        ``"up"`` (increases), ``"down"`` (decreases) or ``"both"``.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> series = [rng.gauss(0.10, 0.02) for _ in range(100)] + [rng.gauss(0.30, 0.02) for _ in range(100)]
    >>> detector = PageHinkleyDetector()
    >>> [i for i, x in enumerate(series) if detector.update(x)]  # the step is at 100
    [105]

    References
    ----------
    Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100-115.
    """

    name = "page_hinkley"
    MODES = ("up", "down", "both")

    def __init__(
        self,
        min_instances: int = 10,
        delta: float = 0.005,
        threshold: float = 1.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
    ) -> None:
        _check_int("min_instances", min_instances, 1)
        if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 <= delta < math.inf:
            raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
        _check_between("threshold", threshold, 0.0, math.inf)
        _check_between("alpha", alpha, 0.0, 1.0, high_closed=True)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}; got {mode!r}")
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self._reset()

    def _make_river(self) -> drift.PageHinkley:
        return drift.PageHinkley(**self.get_params())

    def _state(self) -> dict[str, Any]:
        river = self._river
        return {
            "mean_n": float(river._x_mean.n),  # type: ignore[union-attr]
            "mean": float(river._x_mean._mean),  # type: ignore[union-attr]
            "sum_increase": float(river._sum_increase),  # type: ignore[union-attr]
            "sum_decrease": float(river._sum_decrease),  # type: ignore[union-attr]
            "min_increase": _finite_or_none(river._min_increase),  # type: ignore[union-attr]
            "max_decrease": _finite_or_none(river._max_decrease),  # type: ignore[union-attr]
            "river_drift": river.drift_detected,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        river: Any = self._river
        river._x_mean.n = state["mean_n"]
        river._x_mean._mean = state["mean"]
        river._sum_increase = state["sum_increase"]
        river._sum_decrease = state["sum_decrease"]
        river._min_increase = math.inf if state["min_increase"] is None else state["min_increase"]
        river._max_decrease = -math.inf if state["max_decrease"] is None else state["max_decrease"]
        river._drift_detected = bool(state["river_drift"])


class KSWINDetector(ChangeDetector):
    """KSWIN: a change when a Kolmogorov-Smirnov test finds the newest values unlike older ones.

    Parameters
    ----------
    alpha
        Significance of each KS test, in (0, 1). The test runs at every value, so false alarms add
        up: 1e-4 here (river: 0.005, which on 300 windows of noise alarms in about 1 run in 5).
    window_size
        Values kept; at least ``2 * stat_size`` (older values are sampled without replacement).
    stat_size
        Newest values tested against as many sampled older ones.
    seed
        Seed of that sampling; the default 0 makes runs repeatable (river: None). None = random.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> series = [rng.gauss(0.10, 0.02) for _ in range(100)] + [rng.gauss(0.30, 0.02) for _ in range(100)]
    >>> detector = KSWINDetector()
    >>> [i for i, x in enumerate(series) if detector.update(x)]
    [115]

    References
    ----------
    Raab, C., Heusinger, M. and Schleif, F.-M. (2020). Reactive soft prototype computing for
    concept drift streams. Neurocomputing 416, 340-351.
    """

    name = "kswin"

    def __init__(
        self, alpha: float = 0.0001, window_size: int = 100, stat_size: int = 30, seed: int | None = 0
    ) -> None:
        _check_between("alpha", alpha, 0.0, 1.0)
        _check_int("stat_size", stat_size, 1)
        _check_int("window_size", window_size, 2 * stat_size)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self.alpha = alpha
        self.window_size = window_size
        self.stat_size = stat_size
        self.seed = seed
        self._reset()

    def _make_river(self) -> drift.KSWIN:
        return drift.KSWIN(**self.get_params())

    def _state(self) -> dict[str, Any]:
        river: Any = self._river
        version, internal, gauss_next = river._rng.getstate()
        return {
            "window": [float(v) for v in river.window],
            "n": int(river.n),
            "p_value": float(river.p_value),
            "rng": [version, list(internal), gauss_next],
            "river_drift": river.drift_detected,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        river: Any = self._river
        river.window.extend(state["window"])
        river.n = int(state["n"])
        river.p_value = float(state["p_value"])
        version, internal, gauss_next = state["rng"]
        river._rng.setstate((version, tuple(internal), gauss_next))
        river._drift_detected = bool(state["river_drift"])


_DETECTORS: dict[str, type[ChangeDetector]] = {
    cls.name: cls for cls in (ADWINDetector, KSWINDetector, PageHinkleyDetector)
}


def detectors() -> dict[str, type[ChangeDetector]]:
    """Every change detector class by its stable name.

    >>> sorted(detectors())
    ['adwin', 'kswin', 'page_hinkley']
    """
    return dict(_DETECTORS)


def make(name: str, **params: Any) -> ChangeDetector:
    """A change detector by name with its settings.

    >>> make("page_hinkley", threshold=2.0)
    PageHinkleyDetector(min_instances=10, delta=0.005, threshold=2.0, alpha=0.9999, mode='both')
    >>> make("cusum")
    Traceback (most recent call last):
    ...
    ValueError: unknown change detector 'cusum'; valid: adwin, kswin, page_hinkley
    """
    if name not in _DETECTORS:
        raise ValueError(f"unknown change detector {name!r}; valid: {', '.join(sorted(_DETECTORS))}")
    return _DETECTORS[name](**params)


def from_snapshot(data: dict[str, Any]) -> ChangeDetector:
    """Rebuild a detector from its :meth:`ChangeDetector.snapshot`."""
    detector = make(data["name"], **data["params"])
    detector.restore(data)
    return detector
