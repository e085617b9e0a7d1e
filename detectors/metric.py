"""The result type of every finalised metric: a value, or NaN with the reason it is undefined."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple


class Metric(NamedTuple):
    """One finalised statistic.

    ``value`` is a float; when the statistic is undefined for the window (empty window, a single
    class, a zero denominator) it is NaN and ``reason`` says why. Finalisers never raise for such
    cases, so a stream processor can always emit a point.

    Examples
    --------
    >>> Metric(0.75)
    Metric(value=0.75, reason=None)
    >>> Metric.undefined("empty window")
    Metric(value=nan, reason='empty window')
    >>> Metric.undefined("empty window").defined
    False
    """

    value: float
    reason: str | None = None

    @classmethod
    def undefined(cls, reason: str) -> Metric:
        """A NaN metric with the reason it could not be computed."""
        return cls(math.nan, reason)

    @classmethod
    def ratio(cls, numerator: float | Fraction, denominator: float | Fraction, reason: str) -> Metric:
        """``numerator / denominator``, or NaN with ``reason`` when the denominator is zero.

        >>> Metric.ratio(1, 4, "no events")
        Metric(value=0.25, reason=None)
        >>> Metric.ratio(0, 0, "no events")
        Metric(value=nan, reason='no events')
        """
        if denominator == 0:
            return cls.undefined(reason)
        return cls(float(numerator / denominator))

    @property
    def defined(self) -> bool:
        """Whether the value is a number (not NaN)."""
        return not math.isnan(self.value)
