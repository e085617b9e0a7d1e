"""The reference profile: per feature bin edges, counts, summary statistics and a sample, as JSON.

The per-feature profiles it maps names to live in :mod:`detectors.profiles.feature_profiles`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from detectors.base import same_state
from detectors.features import FeatureValues
from detectors.profiles.categorical import CategoricalAggregate
from detectors.profiles.feature_profiles import (
    CategoricalFeatureProfile,
    FeatureProfile,
    NumericalFeatureProfile,
)
from detectors.profiles.numeric import NumericAggregate
from modelmon.kinds import FeatureKind, check_kind

if TYPE_CHECKING:
    from detectors.estimation import Calibration

__all__ = [
    "CategoricalFeatureProfile",
    "FeatureProfile",
    "NumericalFeatureProfile",
    "ProfileSpec",
    "ReferenceProfile",
    "WindowAggregate",
]

ProfileSpec = Mapping[str, str]
"""Which features to profile and how: feature name → ``"numerical"``, ``"categorical"`` or ``"boolean"``."""


WindowAggregate = NumericAggregate | CategoricalAggregate


class ReferenceProfile(Mapping[str, FeatureProfile]):
    """The reference distribution of a model's features: a read-only mapping name → feature profile.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> profile = ReferenceProfile.from_data(
    ...     {"age": rng.normal(40, 10, 1000), "plan": rng.choice(["free", "pro"], 1000)},
    ...     {"age": "numerical", "plan": "categorical"},
    ...     sample_size=100,
    ... )
    >>> profile.spec == {"age": "numerical", "plan": "categorical"}
    True
    >>> profile["age"].bin_counts.tolist()
    [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    >>> profile["plan"].counts()
    {'free': 477, 'pro': 523}
    >>> ReferenceProfile.from_json(profile.to_json()) == profile
    True

    ``calibration`` (optional) maps the model's scores to the probability of being right, fitted on
    a labelled reference (``detectors.estimation``); stage 2 estimates performance with it. It is
    not a feature: iterating the profile, and drift, see only the features.

    ``importances`` (optional) maps features to their importance estimated on a labelled reference
    (mutual information with the label, :func:`detectors.attribution.mutual_information`); alerts
    rank drifted features by it when the spec gives none.
    """

    def __init__(
        self,
        features: Mapping[str, FeatureProfile],
        *,
        calibration: Calibration | None = None,
        importances: Mapping[str, float] | None = None,
    ) -> None:
        self._features = dict(features)
        self.calibration = calibration
        self.importances = {name: float(v) for name, v in (importances or {}).items() if name in features}

    def with_calibration(self, calibration: Calibration | None) -> ReferenceProfile:
        """The same features (and importances) with ``calibration``."""
        return ReferenceProfile(self._features, calibration=calibration, importances=self.importances)

    @classmethod
    def from_data(
        cls,
        columns: Mapping[str, FeatureValues],
        spec: ProfileSpec,
        *,
        sample_size: int = 4096,
        max_categories: int = 200,
        seed: int = 0,
    ) -> Self:
        """Profile each feature of ``spec`` from ``columns`` (feature → 1-D values)."""
        absent = [name for name in spec if name not in columns]
        if absent:
            raise ValueError(f"spec names features with no column: {', '.join(absent)}")
        features: dict[str, FeatureProfile] = {}
        for name, kind_name in spec.items():
            kind = check_kind(kind_name)
            if kind == "numerical":
                features[name] = NumericalFeatureProfile.from_values(
                    columns[name], sample_size=sample_size, seed=seed
                )
            else:
                features[name] = CategoricalFeatureProfile.from_values(
                    columns[name], kind=kind, max_categories=max_categories
                )
        return cls(features)

    @classmethod
    def from_aggregates(
        cls,
        windows: Mapping[str, Sequence[WindowAggregate]],
        *,
        sample_size: int = 4096,
        max_categories: int = 200,
    ) -> Self:
        """Profile each feature from its window aggregates (feature → the windows' aggregates).

        See :meth:`NumericalFeatureProfile.from_aggregates` and
        :meth:`CategoricalFeatureProfile.from_aggregates` for what is exact.
        """
        features: dict[str, FeatureProfile] = {}
        for name, aggregates in windows.items():
            numeric = [a for a in aggregates if isinstance(a, NumericAggregate)]
            categorical = [a for a in aggregates if isinstance(a, CategoricalAggregate)]
            if numeric and categorical:
                raise ValueError(f"feature {name!r}: numeric and categorical window aggregates mixed")
            if numeric:
                features[name] = NumericalFeatureProfile.from_aggregates(numeric, sample_size=sample_size)
            else:
                features[name] = CategoricalFeatureProfile.from_aggregates(
                    categorical, max_categories=max_categories
                )
        return cls(features)

    @property
    def spec(self) -> dict[str, FeatureKind]:
        """Feature name → kind."""
        return {name: feature.kind for name, feature in self._features.items()}

    def __getitem__(self, name: str) -> FeatureProfile:
        return self._features[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._features)

    def __len__(self) -> int:
        return len(self._features)

    def window_aggregates(
        self, *, sample_size: int = 1024, max_new_categories: int = 100, seed: int = 0
    ) -> dict[str, WindowAggregate]:
        """One empty window aggregate per feature, binned on (or pinned to) this reference."""
        return {
            name: feature.window_aggregate(
                sample_size=sample_size, max_new_categories=max_new_categories, seed=seed
            )
            for name, feature in self._features.items()
        }

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "features": {name: feature.to_dict() for name, feature in self._features.items()}
        }
        if self.calibration is not None:
            data["calibration"] = self.calibration.to_dict()
        if self.importances:
            data["importances"] = dict(self.importances)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        features: dict[str, FeatureProfile] = {}
        for name, item in data["features"].items():
            if check_kind(item["kind"]) == "numerical":
                features[name] = NumericalFeatureProfile.from_dict(item)
            else:
                features[name] = CategoricalFeatureProfile.from_dict(item)
        calibration = None
        if data.get("calibration") is not None:
            from detectors.estimation import Calibration  # here: estimation may import the profiles

            calibration = Calibration.from_dict(data["calibration"])
        return cls(features, calibration=calibration, importances=data.get("importances"))

    def to_json(self) -> str:
        """Strict JSON (no NaN or infinity)."""
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReferenceProfile) and same_state(self.to_dict(), other.to_dict())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReferenceProfile({self.spec})"
