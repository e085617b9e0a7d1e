"""The shared shape of every mergeable window aggregate in ``detectors``."""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, Self

_REGISTRY: dict[str, type[Aggregate]] = {}


class Aggregate(abc.ABC):
    """A mergeable, serialisable summary of a batch of events.

    Stage 1 of the stream topology builds one per partition and window with ``update_batch``;
    stage 2 ``merge``s them. ``merge`` must be associative and commutative, and
    ``from_dict(a.to_dict())`` must equal ``a``. Every concrete subclass registers itself under
    its ``kind`` so a partial read from Kafka can be rebuilt with :func:`aggregate_from_dict`.
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None) and cls.kind:
            if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
                raise TypeError(f"aggregate kind {cls.kind!r} is registered twice")
            _REGISTRY[cls.kind] = cls

    def __eq__(self, other: object) -> bool:
        """Equal when of the same class with the same state, compared through :meth:`to_dict`."""
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Aggregate)
        return same_state(self.to_dict(), other.to_dict())

    # Aggregates change in place, so they must not be dict keys or set members.
    __hash__ = None  # type: ignore[assignment]

    @abc.abstractmethod
    def update_batch(self, *args: Any, **kwargs: Any) -> None:
        """Fold a batch (numpy arrays) into this aggregate, in place."""

    @abc.abstractmethod
    def merge(self, other: Self) -> Self:
        """Return a new aggregate holding both; neither input is changed."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; includes ``"kind"``."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output."""


def same_state(left: Any, right: Any, rel_tol: float = 0.0, abs_tol: float = 0.0) -> bool:
    """Compare two ``to_dict`` outputs: NaN equals NaN, floats equal within ``rel_tol`` or ``abs_tol``.

    Floating-point sums merged in a different order can differ in the last bits, so the contract
    tests check associativity with a small ``rel_tol``; integer counts must match exactly.

    >>> same_state({"n": 2, "m": [0.1 + 0.2]}, {"n": 2, "m": [0.3]})
    False
    >>> same_state({"n": 2, "m": [0.1 + 0.2]}, {"n": 2, "m": [0.3]}, rel_tol=1e-12)
    True
    >>> same_state(float("nan"), float("nan"))
    True
    """
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(
            same_state(left[k], right[k], rel_tol, abs_tol) for k in left
        )
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(
            same_state(a, b, rel_tol, abs_tol) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, float) or isinstance(right, float):
        if not isinstance(left, int | float) or not isinstance(right, int | float):
            return False
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return left == right or math.isclose(left, right, rel_tol=rel_tol, abs_tol=abs_tol)
    return bool(left == right)


def registered_aggregates() -> dict[str, type[Aggregate]]:
    """Every concrete aggregate class by kind (import the modules that define them first)."""
    return dict(_REGISTRY)


def aggregate_from_dict(data: dict[str, Any]) -> Aggregate:
    """Rebuild any registered aggregate from its ``to_dict`` output."""
    kind = data.get("kind")
    if kind not in _REGISTRY:
        raise ValueError(f"unknown aggregate kind {kind!r}; valid: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind].from_dict(data)
