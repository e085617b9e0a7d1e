"""Stable, vectorised 64-bit hashing of text and row keys for deterministic sampling and capping.

Python's ``hash()`` of a string changes from process to process; these do not, so two workers
that see the same events keep the same sample and the same categories.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_UNIT = 2.0**-53


def _splitmix64(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    # The SplitMix64 finaliser: spreads FNV's weak low bits over the whole word.
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stable_text_hash(texts: npt.ArrayLike, seed: int = 0) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each text (FNV-1a over code points, then SplitMix64), the same in every process.

    The loop runs over character positions, each step vectorised over all the texts.

    >>> stable_text_hash(["a", "b", "a"]).tolist() == stable_text_hash(np.array(["a", "b", "a"])).tolist()
    True
    >>> h = stable_text_hash(["a", "b", "a"])
    >>> bool(h[0] == h[2]), bool(h[0] == h[1])
    (True, False)
    """
    array = np.ascontiguousarray(np.asarray(texts, dtype=str).reshape(-1))
    width = array.dtype.itemsize // 4
    with np.errstate(over="ignore"):
        start = _splitmix64(np.array([seed], dtype=np.uint64))[0] ^ _FNV_OFFSET
        hashes = np.full(array.size, start, dtype=np.uint64)
        if width and array.size:
            # One contiguous row of code points per character position.
            codes = np.ascontiguousarray(array.view(np.uint32).reshape(array.size, width).T, dtype=np.uint64)
            mixed = np.empty_like(hashes)
            for code in codes:
                np.bitwise_xor(hashes, code, out=mixed)
                present = code != 0
                if present.all():
                    np.multiply(mixed, _FNV_PRIME, out=hashes)
                else:
                    # numpy pads short texts with NUL; skipping NULs makes the hash independent of width.
                    np.multiply(mixed, _FNV_PRIME, out=hashes, where=present)
        return _splitmix64(hashes)


def unit_keys(hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    """Map 64-bit hashes to uniform floats in [0, 1) using their top 53 bits."""
    return (hashes >> np.uint64(11)).astype(np.float64) * _UNIT


def row_keys_from_ids(ids: npt.ArrayLike, seed: int = 0) -> npt.NDArray[np.float64]:
    """Sampling keys in [0, 1) from event ids (e.g. ``prediction_id``): the same event, the same key.

    Passing these as ``row_keys`` makes a window's sample independent of partitioning and replay,
    and keeps the same rows for every feature of the window.

    >>> keys = row_keys_from_ids(["p-1", "p-2", "p-1"], seed=7)
    >>> bool(keys[0] == keys[2]) and bool(0.0 <= keys.min()) and bool(keys.max() < 1.0)
    True
    """
    return unit_keys(stable_text_hash(ids, seed))
