"""Canonical text form of class labels, so 1, 1.0, True and "1" name the same class."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

_EXACT_INT = 2.0**53


def canonical_label(value: Any) -> str | None:
    """The text a single label is compared by; ``None`` for a missing label (None or NaN).

    Integral numbers lose their fraction (``1.0`` → ``"1"``), booleans become ``"1"``/``"0"``
    (the spec's default positive class is ``"1"``), other floats use their shortest repr.

    >>> [canonical_label(v) for v in (1, 1.0, True, "1", 0.5, None, float("nan"), "cat")]
    ['1', '1', '1', '1', '0.5', None, None, 'cat']
    """
    if isinstance(value, str):
        return value
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        if number.is_integer() and abs(number) < _EXACT_INT:
            return str(int(number))
        return repr(number)
    return str(value)


def canonical_labels(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Canonical text of a batch of labels and the mask of non-missing ones.

    Typed arrays (bool, int, float, str) are converted without a Python loop; object arrays go
    element by element through :func:`canonical_label`.

    >>> text, valid = canonical_labels(np.array([1.0, 2.5, np.nan]))
    >>> text.tolist(), valid.tolist()
    (['1', '2.5', ''], [True, True, False])
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "b":
        return np.where(array, "1", "0"), np.ones(array.shape, bool)
    if kind in "iu":
        return array.astype(str), np.ones(array.shape, bool)
    if kind in "US":
        return array.astype(str), np.ones(array.shape, bool)
    if kind == "f":
        valid = ~np.isnan(array)
        text = array.astype(str)
        integral = valid & (np.abs(array) < _EXACT_INT)
        integral[integral] = array[integral] == np.round(array[integral])
        text[integral] = array[integral].astype(np.int64).astype(str)
        text[~valid] = ""
        return text, valid
    items = [canonical_label(v) for v in array.tolist()]
    valid = np.fromiter((item is not None for item in items), bool, count=len(items))
    text = np.array([item or "" for item in items], dtype=str) if items else np.array([], dtype=str)
    return text, valid


def canonical_label_set(values: Iterable[Any]) -> list[str]:
    """Sorted distinct canonical labels; a missing label raises ``ValueError``.

    >>> canonical_label_set([2, "1", 1.0])
    ['1', '2']
    """
    out: set[str] = set()
    for value in values:
        label = canonical_label(value)
        if label is None:
            raise ValueError(f"a class label cannot be missing, got {value!r}")
        out.add(label)
    return sorted(out)
