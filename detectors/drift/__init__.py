"""Drift methods by stable name, their computation on raw values or summaries, and many-feature reports."""

from detectors.drift import (  # noqa: F401  (each module registers its method on import)
    chi_square,
    cramer_von_mises,
    hellinger,
    jensen_shannon,
    kl_divergence,
    ks,
    psi,
    wasserstein,
    z_proportion,
)
from detectors.drift.calculator import compute
from detectors.drift.chooser import choose_method
from detectors.drift.inputs import DriftInput, NoDataError
from detectors.drift.registry import DriftMethod, DriftResult, get_method, methods, methods_for, register
from detectors.drift.report import DriftOptions, DriftReport, FeatureDrift, detect_many

__all__ = [
    "DriftInput",
    "DriftMethod",
    "DriftOptions",
    "DriftReport",
    "DriftResult",
    "FeatureDrift",
    "NoDataError",
    "choose_method",
    "compute",
    "detect_many",
    "get_method",
    "methods",
    "methods_for",
    "register",
]
