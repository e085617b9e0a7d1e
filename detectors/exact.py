"""Exact sums for mergeable aggregates, kept as Fractions so merge order never matters.

Two kinds:

- :func:`exact_sum` converts one batch's float64 sum exactly: merges are exact, but the same values
  fed in other batches can differ in the last bits (each batch's float sum rounds on its own).
- :func:`exact_total` and :func:`exact_square_total` add every value (or its square) exactly: the
  same whatever the batching, so a replay that batches events differently rebuilds identical sums.
  Every finite float64 is m·2**e with an integer |m| < 2**53; mantissas are split into limbs,
  summed per exponent with bincount (exact while each float64 partial sum stays below 2**53) and
  combined as Python ints. No Python loop runs per value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt

_ROWS = 1 << 16  # rows per bincount: sums of up to 2**16 weights below 2**37 stay below 2**53
_LOW26, _LIMB18 = (1 << 26) - 1, (1 << 18) - 1


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


def _total(parts: Sequence[tuple[int, np.ndarray]], exponents: np.ndarray) -> Fraction:
    """Σ_i Σ_(shift, w) w[i]·2**(shift + exponents[i]), exactly, for integer weights below 2**37."""
    if exponents.size == 0:
        return Fraction(0)
    offset = int(exponents.min())
    bins = exponents - offset
    total = 0
    for shift, weights in parts:
        for start in range(0, bins.size, _ROWS):
            chunk = slice(start, start + _ROWS)
            sums = np.bincount(bins[chunk], weights=weights[chunk].astype(np.float64))
            nonzero = np.flatnonzero(sums)
            pairs = zip(nonzero.tolist(), sums[nonzero].tolist(), strict=True)
            total += sum(int(s) << (b + shift) for b, s in pairs)
    return Fraction(total) * Fraction(2) ** offset


def _mantissas(values: npt.NDArray[np.float64]) -> tuple[np.ndarray, np.ndarray]:
    mantissa, exponent = np.frexp(np.asarray(values, dtype=np.float64).reshape(-1))
    return (mantissa * 2.0**53).astype(np.int64), exponent.astype(np.int64) - 53


def exact_total(values: npt.NDArray[np.float64]) -> Fraction:
    """The exact sum of finite values: the same however they are batched and merged.

    >>> exact_total(np.array([0.1, 0.2])) == Fraction(0.1) + Fraction(0.2)
    True
    >>> float(exact_total(np.array([1e16, 1.0, -1e16])))
    1.0
    """
    m, e = _mantissas(values)
    return _total([(26, m >> 26), (0, m & _LOW26)], e)


def exact_square_total(values: npt.NDArray[np.float64]) -> Fraction:
    """The exact sum of the squares of finite values (the squares are not rounded either).

    >>> exact_square_total(np.array([0.1, 3.0])) == Fraction(0.1) ** 2 + 9
    True
    """
    m, e = _mantissas(values)
    m = np.abs(m)
    high, mid, low = m >> 36, (m >> 18) & _LIMB18, m & _LIMB18
    parts = [(72, high * high), (54, 2 * high * mid), (36, 2 * high * low + mid * mid)]
    return _total([*parts, (18, 2 * mid * low), (0, low * low)], 2 * e)


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
