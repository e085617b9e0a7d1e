"""The drift-method registry: each method registers one record under a stable name."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from modelmon.kinds import FeatureKind, check_kind

MethodNeeds = Literal["bins", "samples"]
"""What a method reads: counts on shared bins/categories, or the values (or samples) themselves."""

Statistic = Callable[..., tuple[float, float | None]]
"""``(reference_counts, current_counts)`` or ``(reference, current, reference_std)`` → (score, p-value)."""

ANY_KIND: frozenset[FeatureKind] = frozenset(FeatureKind)
NUMERICAL_ONLY: frozenset[FeatureKind] = frozenset({FeatureKind.NUMERICAL})
CATEGORIES_ONLY: frozenset[FeatureKind] = frozenset({FeatureKind.CATEGORICAL, FeatureKind.BOOLEAN})

_METHODS: dict[str, DriftMethod] = {}


@dataclass(frozen=True)
class DriftMethod:
    """A drift method: its stable name, where it applies and how its verdict is made.

    ``statistic`` takes counts on shared bins when ``needs == "bins"``, and present values (or
    reservoir samples) plus the reference's standard deviation when ``needs == "samples"``. A
    p-value test drifts when ``p_value < threshold``; a distance when ``score >= threshold``.
    ``effect_method`` and ``min_effect`` give a p-value test the smallest effect worth flagging
    under noise control (see :mod:`detectors.drift.report`). ``sorted_input`` says a sample method
    depends only on each side's sorted values: it then gets them sorted ascending, and a reference
    profile's sorted sample is computed once instead of at every comparison.
    """

    name: str
    display_name: str
    kinds: frozenset[FeatureKind]
    default_threshold: float
    is_p_value: bool
    needs: MethodNeeds
    statistic: Statistic
    effect_method: str | None = None
    min_effect: float | None = None
    sorted_input: bool = False

    def __post_init__(self) -> None:
        for kind in self.kinds:
            check_kind(kind)
        check_threshold(self.default_threshold, is_p_value=self.is_p_value)
        if self.is_p_value != (self.effect_method is not None and self.min_effect is not None):
            raise ValueError(
                f"{self.name}: p-value tests, and only they, name an effect_method and min_effect"
            )

    def is_drift(self, score: float, p_value: float | None, threshold: float) -> bool:
        """The verdict of this method alone, without noise control."""
        if self.is_p_value:
            return p_value is not None and p_value < threshold
        return score >= threshold


@dataclass(frozen=True)
class DriftResult:
    """One method's comparison of one feature: ``threshold`` is the one applied."""

    method: str
    score: float
    p_value: float | None
    threshold: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "score": self.score,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


def check_threshold(threshold: float, *, is_p_value: bool) -> float:
    """A p-value threshold is a significance level in (0, 1); a distance threshold is finite and >= 0."""
    value = float(threshold)
    if is_p_value and not 0.0 < value < 1.0:
        raise ValueError(f"a p-value threshold must be in (0, 1), got {threshold!r}")
    if not is_p_value and not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"a distance threshold must be finite and >= 0, got {threshold!r}")
    return value


def register(method: DriftMethod) -> DriftMethod:
    """Add ``method`` under its name; a name can be registered once."""
    if method.name in _METHODS and _METHODS[method.name] != method:
        raise ValueError(f"drift method {method.name!r} is registered twice")
    _METHODS[method.name] = method
    return method


def methods() -> dict[str, DriftMethod]:
    """Every registered drift method by name, sorted by name.

    >>> list(methods())  # doctest: +NORMALIZE_WHITESPACE
    ['chi_square', 'cramer_von_mises', 'hellinger', 'jensen_shannon', 'kl_divergence', 'ks', 'psi',
     'wasserstein', 'z_proportion']
    >>> methods()["psi"].default_threshold, methods()["ks"].is_p_value
    (0.2, True)
    """
    return dict(sorted(_METHODS.items()))


def get_method(name: str) -> DriftMethod:
    """The method registered as ``name``; ``ValueError`` naming the valid ones otherwise.

    >>> get_method("PSI")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown drift method 'PSI'; valid: chi_square, cramer_von_mises, hellinger, ...
    """
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown drift method {name!r}; valid: {', '.join(sorted(_METHODS))}") from None


def methods_for(kind: FeatureKind) -> list[str]:
    """Names of the methods that apply to ``kind``, sorted."""
    return sorted(name for name, method in _METHODS.items() if kind in method.kinds)
