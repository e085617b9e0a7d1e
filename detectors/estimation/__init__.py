"""Performance estimation without labels: calibrated score bins per window (confidence-based, streaming).

See docs/estimation.md. Binned isotonic calibration fitted on a labelled reference
(:class:`Calibration`), mergeable per-window histograms of every prediction's scores
(:class:`ScoreBins`), and expected metrics with a sampling band at window close (:func:`estimate`).
"""

from detectors.estimation.bins import N_BINS, ScoreBins, bin_index, binary_scores
from detectors.estimation.calibration import Calibration, pool_adjacent_violators
from detectors.estimation.estimate import ESTIMATED_METRICS, TASKS, Estimate, estimate, estimate_from_arrays

__all__ = [
    "ESTIMATED_METRICS",
    "N_BINS",
    "TASKS",
    "Calibration",
    "Estimate",
    "ScoreBins",
    "bin_index",
    "binary_scores",
    "estimate",
    "estimate_from_arrays",
    "pool_adjacent_violators",
]
