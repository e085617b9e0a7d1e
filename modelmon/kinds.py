"""Feature kinds: how a model spec declares a feature, and how the detectors summarise it.

One type for both: the spec validates ``type:`` against it (pydantic, an enum), and the detectors
compare, hash and serialise a kind as the plain string it is (a :class:`~enum.StrEnum` member).
"""

from __future__ import annotations

from enum import StrEnum


class FeatureKind(StrEnum):
    """How a feature is summarised: binned on reference deciles, or counted per category.

    A member is a ``str``, equal to its value, so plain strings work wherever a kind is compared,
    looked up or written to JSON:

    >>> FeatureKind.NUMERICAL == "numerical", f"{FeatureKind.BOOLEAN} features", FeatureKind.CATEGORICAL
    (True, 'boolean features', 'categorical')
    """

    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"

    def __repr__(self) -> str:
        # Shown as the string it is (in reprs of profiles, dicts and messages), like the spec writes it.
        return repr(self.value)


FEATURE_KINDS: tuple[FeatureKind, ...] = tuple(sorted(FeatureKind))
"""Every kind, sorted by name."""


def check_kind(kind: str) -> FeatureKind:
    """Return ``kind`` as a feature kind, else raise ``ValueError`` naming the valid ones.

    >>> check_kind("numerical") is FeatureKind.NUMERICAL
    True
    >>> check_kind("text")
    Traceback (most recent call last):
    ...
    ValueError: unknown feature kind 'text'; valid: boolean, categorical, numerical
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; valid: {', '.join(FEATURE_KINDS)}")
    return FeatureKind(kind)
