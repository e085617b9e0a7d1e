"""Group fairness of a binary classifier: per-group counts, mergeable, and the rates and gaps they give.

:class:`FairnessAggregate` counts, per sensitive attribute and group, the predictions (``n``), the
favourable predictions (``selected``), the labelled predictions (``labelled``), those labelled
favourable (``positives``), and among them the favourable predictions (``true_positives``), and the
favourable predictions among the labelled unfavourable ones (``false_positives``). Counts add, so
partials merge exactly. :func:`fairness_report` turns them into per-group rates and the gaps:

* selection rate = selected / n (all predictions, labelled or not);
* true-positive rate (TPR) = true_positives / positives;
* false-positive rate (FPR) = false_positives / (labelled - positives);
* demographic parity difference = max - min selection rate over the groups; ratio = min / max;
* equal opportunity difference = max - min TPR; equalized odds difference = the larger of the TPR
  and the FPR difference.

A group with fewer than ``min_group_size`` predictions is reported as too few: no rate, in no gap.
Its TPR and FPR also need ``min_group_size`` labelled predictions, and at least one labelled
favourable (TPR) or unfavourable (FPR) one, else they are undefined (fairlearn counts 0 / 0 as 0).
A gap needs two groups with the rate; otherwise it is undefined (NaN). Formulas are those of
fairlearn 0.15 (``demographic_parity_*``, ``equalized_odds_difference``, ``MetricFrame``), checked
in tests/detectors/test_fairness.py.

>>> agg = FairnessAggregate()
>>> groups = np.array(["a", "a", "b", "b", "b", None], dtype=object)
>>> agg.update_predictions("g", groups, np.array([1, 0, 1, 1, 0, 1], dtype=bool))
>>> agg.update_labels("g", groups, np.array([1, 0, 1, 1, 0, 1], dtype=bool),
...                   np.array([1, 1, 0, 1, 0, 0], dtype=bool))
>>> agg.counts("g")["b"]
{'n': 3, 'selected': 2, 'labelled': 3, 'positives': 1, 'true_positives': 1, 'false_positives': 1}
>>> report = fairness_report(agg, min_group_size=1)["g"]
>>> report.selection_rate, report.demographic_parity_difference
({'a': 0.5, 'b': 0.6666666666666666}, 0.16666666666666663)
>>> report.tpr, report.fpr, report.equalized_odds_difference
({'a': 0.5, 'b': 1.0}, {'b': 0.5}, nan)
>>> fairness_report(agg, min_group_size=3)["g"].too_few
['a']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from detectors.base import Aggregate

COUNTS = ("n", "selected", "labelled", "positives", "true_positives", "false_positives")
"""The counts kept per (attribute, group), in the order of the stored arrays."""
_N, _SELECTED, _LABELLED, _POSITIVES, _TP, _FP = range(len(COUNTS))


def _group_codes(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct present groups (text), each row's index into them, and the mask of present rows."""
    values = np.asarray(groups, dtype=object)
    present = np.fromiter((v is not None for v in values), bool, values.size)
    names, index = np.unique(values[present].astype(str), return_inverse=True)
    return names, index, present


class FairnessAggregate(Aggregate):
    """Per (attribute, group) counts of predictions and labelled pairs; merges by addition.

    A missing group value (``None``) is left out. Group values are text; the caller makes them
    canonical (``streams.fairness``).
    """

    kind = "fairness"

    def __init__(self, attributes: Iterable[str] = ()) -> None:
        self._counts: dict[str, dict[str, np.ndarray]] = {name: {} for name in attributes}

    @property
    def attributes(self) -> list[str]:
        return sorted(self._counts)

    def counts(self, attribute: str) -> dict[str, dict[str, int]]:
        """Group → count name → count, for one attribute (groups sorted)."""
        groups = self._counts.get(attribute, {})
        return {g: dict(zip(COUNTS, map(int, groups[g]), strict=True)) for g in sorted(groups)}

    def _add(self, attribute: str, groups: np.ndarray, columns: dict[int, np.ndarray]) -> None:
        names, index, present = _group_codes(groups)
        table = self._counts.setdefault(attribute, {})
        sums = np.zeros((len(COUNTS), names.size), dtype=np.int64)
        for slot, mask in columns.items():
            sums[slot] = np.bincount(index, weights=mask[present], minlength=names.size).astype(np.int64)
        for i, name in enumerate(names.tolist()):
            table[name] = table.get(name, np.zeros(len(COUNTS), dtype=np.int64)) + sums[:, i]

    def update_predictions(self, attribute: str, groups: np.ndarray, selected: np.ndarray) -> None:
        """Fold predictions: each row's group and whether its prediction is the favourable outcome."""
        selected = np.asarray(selected, dtype=bool)
        self._add(attribute, groups, {_N: np.ones(selected.size, dtype=bool), _SELECTED: selected})

    def update_labels(
        self, attribute: str, groups: np.ndarray, selected: np.ndarray, positive: np.ndarray
    ) -> None:
        """Fold labelled pairs: group, favourable prediction, favourable label."""
        selected, positive = np.asarray(selected, dtype=bool), np.asarray(positive, dtype=bool)
        self._add(attribute, groups, {
            _LABELLED: np.ones(selected.size, dtype=bool), _POSITIVES: positive,
            _TP: selected & positive, _FP: selected & ~positive,
        })  # fmt: skip

    def update_batch(
        self, attribute: str, groups: np.ndarray, selected: np.ndarray, positive: np.ndarray | None = None
    ) -> None:
        """Predictions when ``positive`` is None, else labelled pairs."""
        if positive is None:
            self.update_predictions(attribute, groups, selected)
        else:
            self.update_labels(attribute, groups, selected, positive)

    def merge(self, other: Self) -> Self:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(self).__name__} with {type(other).__name__}")
        out = type(self)()
        for source in (self, other):
            for attribute, groups in source._counts.items():
                table = out._counts.setdefault(attribute, {})
                for name, counts in groups.items():
                    table[name] = table.get(name, np.zeros(len(COUNTS), dtype=np.int64)) + counts
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "counts": {
                attribute: {name: groups[name].tolist() for name in sorted(groups)}
                for attribute, groups in sorted(self._counts.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        out = cls()
        for attribute, groups in data["counts"].items():
            out._counts[attribute] = {
                name: np.asarray(counts, dtype=np.int64) for name, counts in groups.items()
            }
        return out


@dataclass
class AttributeReport:
    """One attribute's per-group rates (only groups large enough) and gaps (NaN when undefined)."""

    attribute: str
    counts: dict[str, dict[str, int]]
    min_group_size: int
    selection_rate: dict[str, float] = field(default_factory=dict)
    tpr: dict[str, float] = field(default_factory=dict)
    fpr: dict[str, float] = field(default_factory=dict)
    too_few: list[str] = field(default_factory=list)
    """Groups with fewer than ``min_group_size`` predictions (no rate, not in any gap)."""
    demographic_parity_difference: float = math.nan
    demographic_parity_ratio: float = math.nan
    equal_opportunity_difference: float = math.nan
    equalized_odds_difference: float = math.nan


def _rates(
    counts: Mapping[str, Mapping[str, int]], numerator: str, denominator: str | None, least: int
) -> dict[str, float]:
    """numerator / denominator per group of at least ``least`` predictions (and labelled predictions
    for TPR and FPR) whose denominator is not zero; ``None``: the labelled unfavourable ones."""
    out = {}
    for group, c in counts.items():
        den = c["labelled"] - c["positives"] if denominator is None else c[denominator]
        size = c["n"] if denominator == "n" else c["labelled"]
        if den >= 1 and c["n"] >= least and size >= least:
            out[group] = c[numerator] / den
    return out


def _difference(rates: Mapping[str, float]) -> float:
    return max(rates.values()) - min(rates.values()) if len(rates) >= 2 else math.nan


def fairness_report(agg: FairnessAggregate, min_group_size: int = 30) -> dict[str, AttributeReport]:
    """Per attribute: rates per group and the gaps between groups (module docstring)."""
    reports = {}
    for attribute in agg.attributes:
        counts = agg.counts(attribute)
        report = AttributeReport(attribute, counts, min_group_size)
        report.selection_rate = _rates(counts, "selected", "n", min_group_size)
        report.tpr = _rates(counts, "true_positives", "positives", min_group_size)
        report.fpr = _rates(counts, "false_positives", None, min_group_size)
        report.too_few = [g for g, c in counts.items() if c["n"] < min_group_size]
        selection = report.selection_rate
        report.demographic_parity_difference = _difference(selection)
        if len(selection) >= 2 and max(selection.values()) > 0:
            report.demographic_parity_ratio = min(selection.values()) / max(selection.values())
        report.equal_opportunity_difference = _difference(report.tpr)
        fpr_gap = _difference(report.fpr)
        report.equalized_odds_difference = max(report.equal_opportunity_difference, fpr_gap)
        if math.isnan(fpr_gap) or math.isnan(report.equal_opportunity_difference):
            report.equalized_odds_difference = math.nan
        reports[attribute] = report
    return reports
