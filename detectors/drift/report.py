"""Drift over many features at once, with false-alarm control for large windows.

On a window of a million rows every p-value test finds *some* difference, and over dozens of
features a few tests fire by chance alone. So, unless ``noise_control=False``, a p-value test's
feature is flagged only when

1. its p-value, adjusted by Benjamini-Hochberg over all the p-value tests of the report (false
   discovery rate control), is below its threshold, and
2. its effect is big enough to matter: the method's ``effect_method`` score (normalised Wasserstein
   for KS and Cramér-von Mises, Jensen-Shannon for chi-square and the z-test) is at least its
   ``min_effect`` (0.1 and 0.05 by default).

Distance methods (PSI, Wasserstein, ...) already measure the size of a change and keep their verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from detectors.drift.calculator import compute
from detectors.drift.chooser import choose_method
from detectors.drift.inputs import DriftInput, NoDataError, is_sampled, reference_size, resolve_kind
from detectors.drift.registry import DriftResult, get_method
from modelmon.kinds import FeatureKind, check_kind


@dataclass(frozen=True)
class DriftOptions:
    """How :func:`detect_many` picks each feature's method and threshold, and its noise control.

    Method: ``per_feature`` > ``per_kind`` > ``method`` > :func:`choose_method` (:meth:`method_for`).
    Threshold: ``per_feature_threshold`` > ``per_method_threshold`` > the method's default
    (:meth:`threshold_for`).
    ``drift_share_threshold``: the share of drifted features at which the whole data set counts as
    drifted (the measured share is :attr:`DriftReport.share_drifted`).
    ``min_effect``: per method name, overrides the method's ``min_effect``.
    """

    method: str | None = None
    per_kind: Mapping[str, str] = field(default_factory=dict)
    per_feature: Mapping[str, str] = field(default_factory=dict)
    per_method_threshold: Mapping[str, float] = field(default_factory=dict)
    per_feature_threshold: Mapping[str, float] = field(default_factory=dict)
    noise_control: bool = True
    min_effect: Mapping[str, float] = field(default_factory=dict)
    drift_share_threshold: float = 0.5

    def __post_init__(self) -> None:
        named = [self.method] if self.method is not None else []
        named += [*self.per_kind.values(), *self.per_feature.values()]
        named += [*self.per_method_threshold, *self.min_effect]
        for name in named:
            get_method(name)
        for kind in self.per_kind:
            check_kind(kind)
        if not 0.0 < self.drift_share_threshold <= 1.0:
            raise ValueError(f"drift_share_threshold must be in (0, 1], got {self.drift_share_threshold!r}")

    def configured_method(self, feature: str, kind: FeatureKind) -> str | None:
        """The method these options name for ``feature``, or ``None`` to let the chooser pick."""
        if feature in self.per_feature:
            return self.per_feature[feature]
        if kind in self.per_kind:
            return self.per_kind[kind]
        return self.method

    def method_for(self, feature: str, kind: FeatureKind, reference: DriftInput, current: DriftInput) -> str:
        """The method that judges ``feature``: the one these options name, else the chooser's.

        The one place the method precedence is resolved (:func:`detect_many`, and stage 2 for the
        methods of a model spec). The chooser goes by kind, reference size and whether a side is a
        sample; ``NoDataError`` when the reference has no values.
        """
        configured = self.configured_method(feature, kind)
        if configured is not None:
            return configured
        sampled = is_sampled(reference) or is_sampled(current)
        return choose_method(kind, *reference_size(reference, kind), sampled=sampled)

    def threshold_for(self, feature: str, method: str) -> float | None:
        """The threshold for ``feature`` judged by ``method``; ``None`` for the method's default."""
        if feature in self.per_feature_threshold:
            return self.per_feature_threshold[feature]
        return self.per_method_threshold.get(method)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift: the method's own ``result`` and the noise-controlled verdict ``drifted``.

    ``to_dict`` flattens ``result``; there ``test_drifted`` is the method's own verdict.
    """

    feature: str
    kind: FeatureKind
    result: DriftResult
    adjusted_p_value: float | None
    effect_size: float | None
    min_effect: float | None
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            **self.result.to_dict(),
            "adjusted_p_value": self.adjusted_p_value,
            "effect_size": self.effect_size,
            "min_effect": self.min_effect,
            "test_drifted": self.result.drifted,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftReport:
    """The drift of every compared feature; ``skipped`` says why a feature was not compared.

    ``share_drifted`` is the measured share of drifted features; the data set drifts when it reaches
    ``drift_share_threshold``.
    """

    features: dict[str, FeatureDrift]
    skipped: dict[str, str]
    drift_share_threshold: float
    noise_control: bool

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, feature in self.features.items() if feature.drifted]

    @property
    def share_drifted(self) -> float:
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    @property
    def dataset_drifted(self) -> bool:
        return bool(self.features) and self.share_drifted >= self.drift_share_threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": {name: feature.to_dict() for name, feature in self.features.items()},
            "skipped": dict(self.skipped),
            "share_drifted": self.share_drifted,
            "dataset_drifted": self.dataset_drifted,
        }


def detect_many(
    reference: Mapping[str, DriftInput],
    current: Mapping[str, DriftInput],
    *,
    kinds: Mapping[str, str] | None = None,
    options: DriftOptions | None = None,
) -> DriftReport:
    """Compare every reference feature that ``current`` has, with noise control on by default.

    ``reference`` is a :class:`~detectors.profiles.ReferenceProfile` or a mapping feature → values
    (or summaries); ``current`` maps feature → values or window aggregate. ``kinds`` gives the kind
    of raw-valued features (default ``"numerical"``); summaries know theirs.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> reference = {f"x{i}": rng.normal(0, 1, 800) for i in range(4)}
    >>> current = {f"x{i}": rng.normal(1.0 if i == 0 else 0.0, 1, 800) for i in range(4)}
    >>> report = detect_many(reference, current)
    >>> report.drifted_features, report.features["x0"].result.method
    (['x0'], 'ks')
    """
    options = options or DriftOptions()
    kinds = kinds or {}
    results: dict[str, tuple[FeatureKind, DriftResult, float | None, float | None]] = {}
    skipped: dict[str, str] = {}
    for name, ref_data in reference.items():
        if name not in current:
            skipped[name] = "no current data"
            continue
        cur_data = current[name]
        kind = resolve_kind(kinds.get(name), ref_data, cur_data)
        try:
            method = options.method_for(name, kind, ref_data, cur_data)
            record = get_method(method)
            result = compute(
                method, ref_data, cur_data, kind=kind, threshold=options.threshold_for(name, method)
            )
            effect, min_effect = None, None
            if record.is_p_value and options.noise_control:
                assert record.effect_method is not None
                effect = compute(record.effect_method, ref_data, cur_data, kind=kind).score
                min_effect = options.min_effect.get(method, record.min_effect)
        except NoDataError as error:
            skipped[name] = str(error)
            continue
        results[name] = (kind, result, effect, min_effect)
    return DriftReport(
        features=_verdicts(results, options.noise_control),
        skipped=skipped,
        drift_share_threshold=options.drift_share_threshold,
        noise_control=options.noise_control,
    )


def _verdicts(
    results: dict[str, tuple[FeatureKind, DriftResult, float | None, float | None]], noise_control: bool
) -> dict[str, FeatureDrift]:
    tested = [name for name, (_, result, _, _) in results.items() if result.p_value is not None]
    adjusted: dict[str, float] = {}
    if noise_control and tested:
        p_values = np.array([results[name][1].p_value for name in tested], dtype=np.float64)
        adjusted = dict(
            zip(tested, stats.false_discovery_control(p_values, method="bh").tolist(), strict=True)
        )
    verdicts: dict[str, FeatureDrift] = {}
    for name, (kind, result, effect, min_effect) in results.items():
        drifted = result.drifted
        if name in adjusted:
            big_enough = effect is not None and min_effect is not None and effect >= min_effect
            drifted = adjusted[name] < result.threshold and big_enough
        verdicts[name] = FeatureDrift(name, kind, result, adjusted.get(name), effect, min_effect, drifted)
    return verdicts
