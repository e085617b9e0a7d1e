"""Feature importance on a labelled reference: mutual information of each feature with the label.

Computed once, when a reference file with a ``label`` column is loaded
(:func:`detectors.profiles.files.load_reference_file`), and stored with the reference profile
(``ReferenceProfile.importances``). A numerical feature is discretised on the reference profile's
own bins (the bins drift is measured on), a categorical one by its values; a missing value is a
value of its own. A numerical label (regression) is discretised into deciles. Rows without a label
are left out. The unit is nats; only the ratios between features matter to the ranking.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from detectors.attribution import contingency, mutual_information
from detectors.profiles.feature_profiles import FeatureProfile, NumericalFeatureProfile

LABEL_BINS = 10
"""Quantile bins of a numerical label."""


def feature_codes(profile: FeatureProfile, values: np.ndarray) -> np.ndarray:
    """One integer per value: the reference bin (numerical; -1 = missing) or the value's text."""
    if isinstance(profile, NumericalFeatureProfile):
        numbers = np.asarray(values, dtype=np.float64)
        codes = np.searchsorted(profile.edges, numbers, side="right") - 1
        return np.where(np.isnan(numbers), -1, codes)
    texts = np.array(["\0missing" if v is None else str(v) for v in values], dtype=str)
    return np.unique(texts, return_inverse=True)[1]


def label_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, rows with a label): text labels by value, numerical ones by decile."""
    if labels.dtype.kind == "f":
        present = ~np.isnan(labels)
        edges = np.unique(np.quantile(labels[present], np.linspace(0, 1, LABEL_BINS + 1)[1:-1]))
        return np.searchsorted(edges, labels[present], side="right"), present
    present = np.array([v is not None for v in labels], dtype=bool)
    return np.unique(labels[present].astype(str), return_inverse=True)[1], present


def reference_importances(
    profiles: Mapping[str, FeatureProfile], columns: Mapping[str, np.ndarray], labels: np.ndarray
) -> dict[str, float]:
    """feature → mutual information (nats) with ``labels``, for each profiled feature with a column."""
    codes, present = label_codes(labels)
    if not codes.size:
        return {}
    return {
        name: mutual_information(contingency(feature_codes(profile, columns[name])[present], codes))
        for name, profile in profiles.items()
        if name in columns
    }
