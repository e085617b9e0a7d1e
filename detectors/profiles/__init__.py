"""Reference profiles and the mergeable window aggregates that are compared with them."""

from detectors.profiles.categorical import CategoricalAggregate
from detectors.profiles.feature_profiles import (
    CategoricalFeatureProfile,
    FeatureProfile,
    NumericalFeatureProfile,
)
from detectors.profiles.numeric import NumericAggregate, combine_moments
from detectors.profiles.reference import ProfileSpec, ReferenceProfile, WindowAggregate
from detectors.profiles.sampling import BottomKSample

__all__ = [
    "BottomKSample",
    "CategoricalAggregate",
    "CategoricalFeatureProfile",
    "FeatureProfile",
    "NumericAggregate",
    "NumericalFeatureProfile",
    "ProfileSpec",
    "ReferenceProfile",
    "WindowAggregate",
    "combine_moments",
]
