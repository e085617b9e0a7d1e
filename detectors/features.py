"""The cleaning of raw feature values: missing values out, categories as text (kinds: modelmon.kinds)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias, cast

import numpy as np
import numpy.typing as npt

from modelmon.kinds import FeatureKind

FeatureValues: TypeAlias = npt.ArrayLike | Sequence[Any]
"""A 1-D batch of one feature's values: a numpy array or a sequence; ``None`` marks a missing value."""

_TRUE_TEXTS = np.array(["1", "1.0", "t", "true", "y", "yes"])
_FALSE_TEXTS = np.array(["0", "0.0", "f", "false", "n", "no"])


def _object_missing(values: np.ndarray) -> np.ndarray:
    # `x != x` is True only for NaN; comparing with None is elementwise on object arrays.
    return np.asarray(np.equal(values, cast(Any, None)) | (values != values), dtype=bool)


def numeric_values(values: FeatureValues) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_] | None]:
    """The present values as float64, and the mask of present rows (``None`` when all are present).

    ``None``, NaN and ±inf are missing: an infinite reading is a broken value, and keeping it would
    turn every mean, deviation and distance into ``inf``.

    >>> present, mask = numeric_values([1.0, None, 3, float("nan"), float("inf")])
    >>> present.tolist(), mask.tolist()
    ([1.0, 3.0], [True, False, True, False, False])
    >>> numeric_values(np.array([2.0, 4.0]))[1] is None
    True
    """
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1)
    if array.dtype == object:
        present = ~_object_missing(array)
        numbers = np.where(present, array, 0.0).astype(np.float64)
        present &= np.isfinite(numbers)
        return numbers[present], present
    numbers = array.astype(np.float64, copy=False)
    present = np.isfinite(numbers)
    if present.all():
        return numbers, None
    return numbers[present], present


def category_labels(
    values: FeatureValues, kind: FeatureKind = FeatureKind.CATEGORICAL
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_] | None]:
    """The present values as text labels, and the mask of present rows (``None`` when all are present).

    ``None`` and NaN are missing. A categorical value becomes ``str(value)``; a boolean one becomes
    ``"True"`` or ``"False"`` (from a bool, a number, or text such as ``"yes"``/``"0"``).

    >>> labels, mask = category_labels(["a", None, 1, float("nan")])
    >>> labels.tolist(), mask.tolist()
    (['a', '1'], [True, False, True, False])
    >>> category_labels([True, 0, "yes", None], kind="boolean")[0].tolist()
    ['True', 'False', 'True']
    """
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1)
    mask: npt.NDArray[np.bool_] | None = None
    if array.dtype == object:
        present = ~_object_missing(array)
        if not present.all():
            array, mask = array[present], present
    elif array.dtype.kind == "f":
        present = ~np.isnan(array)
        if not present.all():
            array, mask = array[present], present
    if kind == "boolean":
        return _boolean_labels(array), mask
    labels = array if array.dtype.kind == "U" else array.astype(str)
    return labels, mask


def _boolean_labels(array: np.ndarray) -> npt.NDArray[np.str_]:
    if array.dtype.kind in "biuf":
        truth = array.astype(bool)
    else:
        texts = np.char.lower(np.char.strip(array.astype(str)))
        truth = np.isin(texts, _TRUE_TEXTS)
        unknown = ~truth & ~np.isin(texts, _FALSE_TEXTS)
        if unknown.any():
            examples = ", ".join(repr(t) for t in np.unique(array[unknown].astype(str))[:5].tolist())
            raise ValueError(f"not a boolean value: {examples}")
    return np.where(truth, "True", "False")
