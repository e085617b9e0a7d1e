"""Shadow agreement of two model versions on the same requests, from coordinated bottom-k samples.

Each version's window keeps, for the predictions that carry a request id, the ``k`` requests with
the smallest 64-bit hash of the request id (:func:`detectors.hashing.stable_text_hash`, one seed
for every version), each with the version's prediction: a :class:`ShadowSample`. Keeping "the k
smallest hashes of a union" does not depend on how the union was split or ordered, so ``merge`` is
exact and the sample of a merged window is the one a single worker seeing every event would keep.

Two versions' samples are *coordinated*: a request hashes to the same value in both. Let ``tau``
be the smaller of the two samples' thresholds (the k-th smallest hash of a full sample, +inf for a
sample that is not full). Every request either version served with a hash <= ``tau`` is in its
sample, so the requests present in both samples with hash <= ``tau`` are exactly the requests both
versions served whose hash is <= ``tau``: a uniform random sample (the hash is the randomness) of
the requests both served. :func:`agreement` counts on them how often the predictions agree. When
neither sample is full, ``tau`` is +inf and the count is over every shared request (``exact``).

A request id logged twice by one version in one window keeps one prediction (the smallest text or
number), so the sample does not depend on arrival order.

>>> a, b = ShadowSample(k=5), ShadowSample(k=5)
>>> a.update_batch(["r1", "r2", "r3"], ["x", "y", "x"])
>>> b.update_batch(["r1", "r2", "r3", "r4"], ["x", "x", "x", "y"])
>>> agreement(a, b)
Agreement(matched=3, agree=2, exact=True)
>>> ShadowSample(k=5).merge(a) == a, len(a), a.full
(True, 3, False)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from detectors.base import Aggregate
from detectors.hashing import stable_text_hash

SHADOW_SEED = 16
"""The hash seed of request ids: the same for every version, which is what coordinates the samples."""
DEFAULT_K = 512
REL_TOL, ABS_TOL = 1e-6, 1e-9
"""Two regression predictions agree when ``math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)``."""


@dataclass(frozen=True)
class Agreement:
    matched: int  # requests in both samples with hash <= tau
    agree: int  # of them, those with the same prediction
    exact: bool  # neither sample was full: every shared request was compared

    @property
    def share(self) -> float:
        return self.agree / self.matched if self.matched else math.nan


class ShadowSample(Aggregate):
    """The ``k`` smallest request-id hashes of a window, each with the version's prediction.

    Predictions are text (classifiers: the canonical class) or numbers (``numeric=True``:
    regression). ``update_batch(request_ids, predictions)``; rows whose request id is None or
    empty are left out by the caller or here.
    """

    kind = "shadow_sample"

    def __init__(self, k: int = DEFAULT_K, *, numeric: bool = False) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        self.k, self.numeric = k, numeric
        self._hashes = np.empty(0, dtype=np.uint64)
        self._values: list[Any] = []

    def __len__(self) -> int:
        return int(self._hashes.size)

    @property
    def full(self) -> bool:
        return len(self) >= self.k

    @property
    def threshold(self) -> int | None:
        """The largest kept hash when the sample is full (beyond it requests may be missing); else None."""
        return int(self._hashes[-1]) if self.full else None

    def items(self) -> dict[int, Any]:
        """Hash → prediction, in hash order."""
        return dict(zip(map(int, self._hashes), self._values, strict=True))

    def _value(self, value: Any) -> Any:
        return float(value) if self.numeric else str(value)

    def _keep(self, hashes: npt.NDArray[np.uint64], values: list[Any]) -> None:
        """Keep the ``k`` smallest distinct hashes of ``hashes``; a repeated hash keeps its smallest value."""
        if not values:
            return
        rank = np.argsort(np.asarray(values, dtype=float if self.numeric else str), kind="stable")
        order = rank[np.argsort(hashes[rank], kind="stable")]  # by hash, then by value
        hashes = hashes[order]
        first = np.concatenate([[True], hashes[1:] != hashes[:-1]])
        chosen = order[first][: self.k]
        self._hashes = hashes[first][: self.k]
        self._values = [values[i] for i in chosen.tolist()]

    def update_batch(self, request_ids: Sequence[str | None], predictions: Sequence[Any]) -> None:
        """Fold a batch: one request id (None: no request id, skipped) and one prediction per row."""
        rows = [(r, p) for r, p in zip(request_ids, predictions, strict=True) if r and p is not None]
        if self.numeric:
            rows = [(r, float(p)) for r, p in rows if _finite(p)]
        if not rows:
            return
        ids = [r for r, _ in rows]
        hashes = np.concatenate([self._hashes, stable_text_hash(ids, SHADOW_SEED)])
        self._keep(hashes, self._values + [self._value(p) for _, p in rows])

    def merge(self, other: Self) -> Self:
        if type(other) is not type(self) or (self.k, self.numeric) != (other.k, other.numeric):
            raise ValueError(f"cannot merge shadow samples k={self.k}/{other.k}, numeric={self.numeric}")
        out = type(self)(self.k, numeric=self.numeric)
        out._keep(np.concatenate([self._hashes, other._hashes]), self._values + other._values)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "k": self.k, "numeric": self.numeric,
            "hashes": [f"{h:016x}" for h in map(int, self._hashes)], "values": list(self._values),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        out = cls(int(data["k"]), numeric=bool(data["numeric"]))
        out._hashes = np.array([int(h, 16) for h in data["hashes"]], dtype=np.uint64)
        out._values = [out._value(v) for v in data["values"]]
        return out

    def __repr__(self) -> str:
        return f"ShadowSample(k={self.k}, n={len(self)}, numeric={self.numeric})"


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _same(a: Any, b: Any, numeric: bool) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL) if numeric else bool(a == b)


def agreement(a: ShadowSample, b: ShadowSample) -> Agreement:
    """How often two versions' predictions agree on the requests sampled in both (module docstring).

    >>> a, b = ShadowSample(k=2), ShadowSample(k=2)
    >>> a.update_batch(["r1", "r2", "r3"], ["x", "x", "x"])
    >>> b.update_batch(["r1", "r2", "r3"], ["x", "y", "x"])
    >>> agreement(a, b).matched, agreement(a, b).exact
    (2, False)
    """
    if a.numeric != b.numeric:
        raise ValueError("cannot compare a numeric shadow sample with a categorical one")
    limits = [t for t in (a.threshold, b.threshold) if t is not None]
    tau = min(limits) if limits else None
    left, right = a.items(), b.items()
    shared = [h for h in left.keys() & right.keys() if tau is None or h <= tau]
    agree = sum(_same(left[h], right[h], a.numeric) for h in shared)
    return Agreement(len(shared), agree, tau is None)
