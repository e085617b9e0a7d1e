"""Type codes of raw feature values (missing, bool, int, float, text, ...) for a whole column at once."""

from __future__ import annotations

from itertools import repeat
from typing import Any

import numpy as np

MISSING, BOOL, INT, FLOAT, NONFINITE, TEXT, OTHER = range(7)
"""Type codes: None/NaN, a boolean, an integer, a finite float, ±inf, a string, anything else."""

TYPE_NAMES = ("missing", "bool", "int", "float", "nonfinite", "text", "other")

_EXACT_TYPES: dict[type, int] = {bool: BOOL, np.bool_: BOOL, int: INT, float: FLOAT, str: TEXT, np.str_: TEXT}
_EXACT_TYPES |= {t: INT for t in (np.int8, np.int16, np.int32, np.int64)}
_EXACT_TYPES |= {t: INT for t in (np.uint8, np.uint16, np.uint32, np.uint64)}
_EXACT_TYPES |= {t: FLOAT for t in (np.float16, np.float32, np.float64, np.longdouble)}
_EXACT_TYPES[type(None)] = MISSING


def _code_of(value: Any) -> int:
    """The slow path, for subclasses of the usual types."""
    for base, code in ((bool, BOOL), (np.bool_, BOOL), (int, INT), (np.integer, INT), (str, TEXT)):
        if isinstance(value, base):
            return code
    return FLOAT if isinstance(value, float | np.floating) else OTHER


def type_codes(values: Any) -> np.ndarray:
    """One type code (int8) per value of a 1-D column; floats are split into finite, NaN and ±inf.

    Typed arrays are classified by dtype. Object arrays are classified through ``map(type, ...)``
    and a dict lookup, which run in C, so there is no Python-level loop per value.

    Examples
    --------
    >>> column = np.array([1.5, None, "a", True, 3, float("nan"), float("inf"), {}], dtype=object)
    >>> [TYPE_NAMES[c] for c in type_codes(column)]
    ['float', 'missing', 'text', 'bool', 'int', 'missing', 'nonfinite', 'other']
    >>> type_codes(np.array([0.5, np.nan])).tolist()
    [3, 0]
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"a feature column must be 1-D, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "f":
        return _float_codes(array)
    if kind in "biuUS":
        code = {"b": BOOL, "i": INT, "u": INT, "U": TEXT, "S": TEXT}[kind]
        return np.full(array.size, code, dtype=np.int8)
    if kind != "O":
        return np.full(array.size, OTHER, dtype=np.int8)
    looked_up = map(_EXACT_TYPES.get, map(type, array), repeat(OTHER))
    codes = np.fromiter(looked_up, dtype=np.int8, count=array.size)
    for i in np.flatnonzero(codes == OTHER):
        codes[i] = _code_of(array[i])
    floats = codes == FLOAT
    if floats.any():
        codes[floats] = _float_codes(array[floats].astype(np.float64))
    return codes


def _float_codes(array: np.ndarray) -> np.ndarray:
    codes = np.full(array.size, FLOAT, dtype=np.int8)
    codes[np.isinf(array)] = NONFINITE
    codes[np.isnan(array)] = MISSING
    return codes


def numbers(values: Any, mask: np.ndarray) -> np.ndarray:
    """The values at ``mask`` (ints, bools or floats by their codes) as float64."""
    selected = np.asarray(values)[mask]
    return selected.astype(np.float64) if selected.size else np.zeros(0)


def texts(values: Any, mask: np.ndarray) -> np.ndarray:
    """The values at ``mask`` (strings) as a numpy unicode array."""
    selected = np.asarray(values)[mask]
    return selected.astype(str) if selected.size else np.zeros(0, dtype=str)
