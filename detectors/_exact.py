"""Exact sums for mergeable aggregates: batch float sums kept as Fractions, so merge order never matters."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def exact_sum(values: np.ndarray) -> Fraction:
    """The sum of finite ``values`` as an exact Fraction.

    The batch is summed in float64 (pairwise) and that one float is converted exactly. Adding such
    Fractions across partials is exact, so ``merge`` of aggregates holding them is associative and
    commutative bit for bit, which float addition is not.

    >>> exact_sum(np.array([0.5, 0.25]))
    Fraction(3, 4)
    >>> exact_sum(np.array([1e308, 1e308])) == 2 * Fraction(1e308)
    True
    """
    if values.size == 0:
        return Fraction(0)
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.sum(values, dtype=np.float64))
    if math.isfinite(total):
        return Fraction(total)
    # The float sum overflowed although every term is finite: add the terms exactly instead.
    return sum((Fraction(v) for v in values.tolist()), Fraction(0))


def fraction_to_json(value: Fraction) -> str:
    """Exact text form (``"p/q"`` or ``"p"``) for ``to_dict``.

    >>> fraction_to_json(Fraction(3, 4))
    '3/4'
    """
    return str(value)


def fraction_from_json(text: str | float | int) -> Fraction:
    """Inverse of :func:`fraction_to_json`; plain numbers are accepted too.

    >>> fraction_from_json("3/4")
    Fraction(3, 4)
    """
    return Fraction(text)
