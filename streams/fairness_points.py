"""Stage 2's side of fairness: a window's group counts turned into metric points (docs/fairness.md).

Per group (``feature = "<attribute>=<group>"``): ``fairness_group_size`` always, and
``fairness_selection_rate``, ``fairness_tpr``, ``fairness_fpr`` when the group is large enough and
the rate defined. Per attribute (``feature = "<attribute>"``): ``fairness_groups_too_few`` and the
four gaps, when defined (two groups large enough). Undefined values are not emitted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from detectors.fairness import fairness_report
from modelmon import metrics as m
from modelmon.spec import ModelSpec
from streams.bundle import WindowBundle

Point = tuple[str, str, float, dict[str, Any]]
"""(metric, feature, value, details)."""


def fairness_points(bundle: WindowBundle, spec: ModelSpec) -> Iterator[Point]:
    """The fairness points of one window; none without a fairness spec or its aggregate."""
    if bundle.fairness is None or spec.fairness is None:
        return
    least = spec.fairness.min_group_size
    favourable = spec.fairness.favourable_class(spec.positive_class)
    for attribute, report in fairness_report(bundle.fairness, least).items():
        for group, c in report.counts.items():
            feature = m.fairness_group(attribute, group)
            too_few = group in report.too_few
            yield m.FAIRNESS_GROUP_SIZE, feature, float(c["n"]), {
                "too_few": too_few, "min_group_size": least, "labelled": c["labelled"],
                "positives": c["positives"], "attribute": attribute, "group": group,
            }  # fmt: skip
            rates = (
                (m.FAIRNESS_SELECTION_RATE, report.selection_rate, c["n"]),
                (m.FAIRNESS_TPR, report.tpr, c["positives"]),
                (m.FAIRNESS_FPR, report.fpr, c["labelled"] - c["positives"]),
            )
            for metric, values, n in rates:
                if group in values:
                    yield metric, feature, values[group], {"n": n, "attribute": attribute, "group": group}
        yield m.FAIRNESS_GROUPS_TOO_FEW, attribute, float(len(report.too_few)), {
            "groups": report.too_few, "min_group_size": least,
        }  # fmt: skip
        gaps = {
            m.DEMOGRAPHIC_PARITY_DIFFERENCE: (report.demographic_parity_difference, report.selection_rate),
            m.DEMOGRAPHIC_PARITY_RATIO: (report.demographic_parity_ratio, report.selection_rate),
            m.EQUAL_OPPORTUNITY_DIFFERENCE: (report.equal_opportunity_difference, report.tpr),
            m.EQUALIZED_ODDS_DIFFERENCE: (report.equalized_odds_difference, {**report.tpr, **report.fpr}),
        }
        for metric, (value, rates_of) in gaps.items():
            details: dict[str, Any] = {"groups": sorted(rates_of), "favourable": favourable}
            if rates_of and metric != m.EQUALIZED_ODDS_DIFFERENCE:
                details["lowest"] = min(rates_of, key=rates_of.__getitem__)
                details["highest"] = max(rates_of, key=rates_of.__getitem__)
            yield metric, attribute, value, details | {"too_few": report.too_few}
