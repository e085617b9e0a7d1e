"""The mergeable partial of one model window: feature, output, fidelity and performance aggregates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from fractions import Fraction
from itertools import compress, repeat
from operator import attrgetter, is_not, methodcaller
from typing import Any, Self, TypeVar, cast

import numpy as np

from detectors import value_types as vt
from detectors.base import Aggregate
from detectors.durations import LABEL_DELAY_EDGES, LATENESS_EDGES
from detectors.estimation import ScoreBins
from detectors.exact import exact_square_total, exact_total
from detectors.fidelity import FidelityAggregate
from detectors.hashing import row_keys_from_ids
from detectors.labels import canonical_labels
from detectors.performance import ConfusionMatrixAggregate, RegressionAggregate, ScoreHistogramAggregate
from detectors.profiles import (
    CategoricalAggregate,
    CategoricalFeatureProfile,
    NumericAggregate,
    NumericalFeatureProfile,
    ReferenceProfile,
    WindowAggregate,
)
from detectors.scored import estimation_classes, fold_scores
from modelmon.events import PredictionEvent
from modelmon.references import PREDICTION_FEATURE
from modelmon.spec import ModelSpec, Task
from streams.columns import (
    JoinedPair,
    PredictionColumns,
    category_values,
    feature_columns,
    feature_schemas,
    label_array,
    numbers_or_nan,
)
from streams.exact_sums import binary_log_loss_sum, class_log_loss_sum, with_exact_moments
from streams.fairness import FairnessAggregate, fairness_aggregate, fold_pairs, fold_predictions
from streams.shadow import ShadowSample, fold_shadow, shadow_sample
from streams.window_key import BundleKey

FORMAT_VERSION = 1
SCORE_EDGES = np.concatenate([[-np.inf], np.arange(1, 10) / 10, [np.inf]])
"""Bins of a binary model's score when the reference has no ``__prediction__`` profile: tenths of [0, 1]."""
UNBINNED = np.array([-np.inf, np.inf])
"""Edges of a numerical aggregate without a reference: one bin; the sample and moments still count."""
LATENESS_EDGES_MS = tuple(1000.0 * edge for edge in LATENESS_EDGES)
LABEL_DELAY_EDGES_MS = tuple(1000.0 * edge for edge in LABEL_DELAY_EDGES)
_NO_SUMS = (Fraction(0), Fraction(0))
AggregateT = TypeVar("AggregateT", bound=Aggregate)


def _feature_aggregate(
    kind: str, profile: Any, allowed: list[str] | None, sample_size: int
) -> WindowAggregate:
    if kind == "numerical":
        edges = profile.edges if isinstance(profile, NumericalFeatureProfile) else UNBINNED
        return NumericAggregate(edges, sample_size=sample_size)
    if isinstance(profile, CategoricalFeatureProfile) and profile.kind == kind:
        return CategoricalAggregate(profile.categories.tolist(), feature_kind=profile.kind)
    return CategoricalAggregate(allowed or (), feature_kind="boolean" if kind == "boolean" else "categorical")


class WindowBundle:
    """Everything stage 2 needs of one (model, version, segment, window), from one or more partitions.

    Built empty with :meth:`empty`, fed batches with :meth:`add_predictions` and :meth:`add_labels`,
    combined with :meth:`merge` (exactly associative and commutative) and shipped with
    :meth:`to_dict`. ``to_dict`` depends only on the multiset of events and pairs, never on how
    they were batched, partitioned or merged: a replay rebuilds the identical dict. (The regression
    sums of ``detectors`` are batch-independent; for moments and log loss, whose ``detectors`` sums
    depend on batching in the last bits, the bundle keeps exact sums beside the aggregates and
    publishes those: :mod:`streams.exact_sums`.)

    Read access for stage 2: ``events``, ``labels``, ``features`` (name → aggregate),
    ``prediction_values``, ``prediction_classes``, ``fidelity`` (durations in milliseconds),
    ``confusion``, ``scores``, ``regression``, ``estimation`` (score bins of every prediction), ``shadow``.
    """

    def __init__(self, key: BundleKey, task: Task, positive_class: str) -> None:
        self.key, self.task, self.positive_class = key, task, positive_class
        self.events = self.labels = self.late_events = self.label_missing = 0
        """late_events: folded after the watermark passed end + lateness; label_missing: evicted unlabelled"""
        self._features: dict[str, WindowAggregate] = {}
        self._moments: dict[str, tuple[Fraction, Fraction]] = {}
        self._values: NumericAggregate | None = None
        self.prediction_classes: CategoricalAggregate | None = None
        """Counts of predicted classes (canonical text); None for regression models."""
        self.fidelity = FidelityAggregate(LATENESS_EDGES_MS, LABEL_DELAY_EDGES_MS)
        self.confusion: ConfusionMatrixAggregate | None = None
        """(true, predicted) label counts of joined pairs; None for regression models."""
        self._scores: ScoreHistogramAggregate | None = None
        self._log_loss = Fraction(0)
        self._regression: RegressionAggregate | None = None
        """Error sums of joined pairs; None for classifiers."""
        self.estimation: ScoreBins | None = None
        """Score bins of all predictions, labelled or not (classifiers; ``detectors.scored``)."""
        self.fairness: FairnessAggregate | None = None  # group counts (spec.fairness; streams.fairness)
        self.shadow: ShadowSample | None = None  # predictions by request id (streams.shadow)

    @classmethod
    def empty(
        cls, key: BundleKey, spec: ModelSpec, reference: ReferenceProfile | None, *, sample_size: int = 256
    ) -> Self:
        """A bundle with no events, binned on ``reference`` (or sample-only without one)."""
        bundle = cls(key, spec.task, spec.positive_class)
        profiles = reference if reference is not None else {}
        for name in sorted(spec.features):
            feature = spec.features[name]
            bundle._features[name] = _feature_aggregate(
                feature.type.value, profiles.get(name), feature.allowed, sample_size
            )
        output = profiles.get(PREDICTION_FEATURE)
        pinned = output.categories.tolist() if isinstance(output, CategoricalFeatureProfile) else None
        if spec.task is not Task.MULTICLASS:
            default = SCORE_EDGES if spec.task is Task.BINARY else UNBINNED
            edges = output.edges if isinstance(output, NumericalFeatureProfile) else default
            bundle._values = NumericAggregate(edges, sample_size=sample_size)
        if spec.task is Task.REGRESSION:
            bundle._regression = RegressionAggregate()
        else:
            bundle.prediction_classes = CategoricalAggregate(pinned or spec.classes or ())
            bundle.confusion = ConfusionMatrixAggregate()
            positive = spec.positive_class if spec.task is Task.BINARY else None
            bundle._scores = ScoreHistogramAggregate(pos_label=positive)
            bundle.estimation = ScoreBins.empty(estimation_classes(spec) or ())
        bundle.fairness, bundle.shadow = fairness_aggregate(spec), shadow_sample(spec)
        return bundle

    # -- read access ---------------------------------------------------------------------------
    @property
    def features(self) -> dict[str, WindowAggregate]:
        """Per spec feature: a NumericAggregate (numerical) or CategoricalAggregate (categorical, boolean)."""
        return {name: self._read(name, agg) for name, agg in self._features.items()}

    @property
    def prediction_values(self) -> NumericAggregate | None:
        """The binary model's score or the regressor's prediction; None for multiclass models."""
        return None if self._values is None else self._read(PREDICTION_FEATURE, self._values)

    @property
    def scores(self) -> ScoreHistogramAggregate | None:
        """Score histograms of labelled predictions (classification); log loss from exact sums."""
        if self._scores is None:
            return None
        return ScoreHistogramAggregate.from_dict(self._scores_dict(self._scores))

    @property
    def regression(self) -> RegressionAggregate | None:
        """Error sums of joined pairs (regression models; a copy)."""
        return _from_dict(RegressionAggregate, _to_dict(self._regression))

    def _sums(self, slot: str) -> tuple[Fraction, Fraction]:
        return self._moments.get(slot, _NO_SUMS)

    def _read(self, slot: str, agg: WindowAggregate) -> Any:
        if isinstance(agg, NumericAggregate):
            return NumericAggregate.from_dict(with_exact_moments(agg.to_dict(), *self._sums(slot)))
        return agg

    def _scores_dict(self, scores: ScoreHistogramAggregate) -> dict[str, Any]:
        return scores.to_dict() | {"log_loss_sum": str(self._log_loss)}

    # -- folding batches in --------------------------------------------------------------------
    def _add_numeric(self, slot: str, agg: NumericAggregate, values: np.ndarray, keys: np.ndarray) -> None:
        agg.update_batch(values, row_keys=keys)
        present = values[np.isfinite(values)]
        total, squares = self._sums(slot)
        self._moments[slot] = (total + exact_total(present), squares + exact_square_total(present))

    def add_predictions(
        self, events: Sequence[PredictionEvent], ingest_ts_ms: Sequence[int] | np.ndarray, spec: ModelSpec
    ) -> None:
        """Fold a batch of validated predictions of this bundle's key; ``ingest_ts_ms`` per event."""
        self.add_columns(PredictionColumns.from_events(events, ingest_ts_ms), spec)

    def add_columns(self, batch: PredictionColumns, spec: ModelSpec) -> None:
        """Fold a batch of validated predictions of this bundle's key, given column by column."""
        n = len(batch)
        if n == 0:
            return
        ingest = batch.ingest_ms
        columns = feature_columns(batch.features, self._features)
        codes = {name: vt.type_codes(column) for name, column in columns.items()}  # once per column
        ids = np.array(batch.ids, dtype=str)
        event_ms = batch.ts_ms
        # Sample keys from the prediction id: the same event is sampled (or not) on every worker and
        # replay, and the same rows are kept for every feature.
        keys = row_keys_from_ids(ids)
        for name, agg in self._features.items():
            if isinstance(agg, NumericAggregate):
                self._add_numeric(name, agg, numbers_or_nan(columns[name], codes[name]), keys)
            else:
                agg.update_batch(category_values(columns[name], agg.feature_kind, codes[name]))
        self.fidelity.update_batch(
            columns, feature_schemas(spec), event_ts=event_ms.astype(float), ingest_ts=ingest.astype(float),
            prediction_ids=ids, codes=codes,
        )  # fmt: skip
        predictions = list(batch.predictions)
        if self._values is not None:
            if self.task is Task.BINARY:
                values = batch.scores
            else:
                values = numbers_or_nan(np.array(predictions, dtype=object))
            self._add_numeric(PREDICTION_FEATURE, self._values, values, keys)
        if self.prediction_classes is not None:
            text, valid = canonical_labels(label_array(predictions))
            self.prediction_classes.update_batch(text[valid])
            if self.estimation is not None:  # one vectorised add per batch (detectors.scored)
                self.estimation = fold_scores(
                    self.estimation, (text, valid), binary=self.task is Task.BINARY, score=batch.scores,
                    class_scores=batch.class_scores,
                )  # fmt: skip
        fold_predictions(self.fairness, batch, spec)
        fold_shadow(self.shadow, batch)
        self.events += n

    def add_labels(self, pairs: Sequence[JoinedPair], spec: ModelSpec) -> None:
        """Fold joined (prediction, label) pairs whose prediction is in this window."""
        n = len(pairs)
        if n == 0:
            return
        predicted_ms = np.fromiter(map(attrgetter("prediction_ts_ms"), pairs), np.float64, n)
        label_ms = np.fromiter(map(attrgetter("label_ts_ms"), pairs), np.float64, n)
        self.fidelity.update_labels(predicted_ms, label_ms)
        truth = list(map(attrgetter("label"), pairs))
        predicted = list(map(attrgetter("prediction"), pairs))
        if self._regression is not None:
            self._regression.update_batch(
                numbers_or_nan(np.array(truth, dtype=object)),
                numbers_or_nan(np.array(predicted, dtype=object)),
            )
        if self.confusion is not None:
            self.confusion.update_batch(label_array(truth), label_array(predicted))
        if self._scores is not None and self._scores.binary:
            self._add_binary_scores(
                label_array(truth), np.array(list(map(attrgetter("score"), pairs)), dtype=float)
            )
        elif self._scores is not None:
            self._add_class_scores(label_array(truth), list(map(attrgetter("scores"), pairs)))
        fold_pairs(self.fairness, pairs, spec)
        self.labels += n

    def _add_binary_scores(self, truth: np.ndarray, score: np.ndarray) -> None:
        assert self._scores is not None and self._scores.pos_label is not None
        scored = ~np.isnan(score)
        if scored.any():
            self._scores.update_batch(truth[scored], score[scored])
            self._log_loss += binary_log_loss_sum(truth[scored], score[scored], self._scores.pos_label)

    def _add_class_scores(self, truth: np.ndarray, score_dicts: list[dict[str, float] | None]) -> None:
        assert self._scores is not None
        scored = np.fromiter(map(is_not, score_dicts, repeat(None)), bool, len(score_dicts))
        rows = cast(list[dict[str, float]], list(compress(score_dicts, scored)))
        classes = sorted(set[str]().union(*rows))
        if classes:
            columns = [
                np.fromiter(map(methodcaller("get", c, 0.0), rows), np.float64, len(rows)) for c in classes
            ]
            matrix = np.column_stack(columns)
            self._scores.update_batch(truth[scored], matrix, classes)
            self._log_loss += class_log_loss_sum(truth[scored], matrix, classes)

    # -- merging and serialising ---------------------------------------------------------------
    def merge(self, other: WindowBundle) -> WindowBundle:
        """A new bundle holding both; they must have the same key, task and reference binning."""
        self._check_same_window(other, "merge")
        out = type(self)(self.key, self.task, self.positive_class)
        try:
            for name in sorted(set(self._features) | set(other._features)):
                out._features[name] = _merged(self._features.get(name), other._features.get(name))
            out._values = _merged(self._values, other._values)
            out.prediction_classes = _merged(self.prediction_classes, other.prediction_classes)
        except ValueError as error:
            raise ValueError(f"{self.key}: bundles on different references cannot merge: {error}") from None
        for name in set(self._moments) | set(other._moments):
            (t1, s1), (t2, s2) = (b._sums(name) for b in (self, other))
            out._moments[name] = (t1 + t2, s1 + s2)
        self._merge_reference_free_into(out, other)
        return out

    def with_counts_of(self, other: WindowBundle) -> WindowBundle:
        """This bundle plus ``other``'s reference-independent parts, for one window folded on two references.

        Counts, late events, fidelity, confusion matrix, scores, log loss and regression sums are
        merged; feature aggregates, prediction values and classes (binned on a reference) stay this
        bundle's: drift of such a window covers the part folded on this bundle's reference.
        """
        self._check_same_window(other, "combine")
        out = type(self).from_dict(self.to_dict())  # a copy: this bundle's binned parts, unshared
        self._merge_reference_free_into(out, other)
        return out

    def _check_same_window(self, other: WindowBundle, verb: str) -> None:
        if (self.key, self.task, self.positive_class) != (other.key, other.task, other.positive_class):
            raise ValueError(f"cannot {verb} bundles of {self.key}/{self.task} and {other.key}/{other.task}")

    def _merge_reference_free_into(self, out: WindowBundle, other: WindowBundle) -> None:
        """Combine into ``out`` what no reference binning affects: counts, fidelity, performance."""
        out.events, out.labels = self.events + other.events, self.labels + other.labels
        out.late_events = self.late_events + other.late_events
        out.label_missing = self.label_missing + other.label_missing
        out.fidelity = self.fidelity.merge(other.fidelity)
        out.confusion = _merged(self.confusion, other.confusion)
        out._scores = _merged(self._scores, other._scores)
        out._log_loss = self._log_loss + other._log_loss
        out._regression = _merged(self._regression, other._regression)
        out.estimation = _merged(self.estimation, other.estimation)
        out.fairness = _merged(self.fairness, other.fairness)
        out.shadow = _merged(self.shadow, other.shadow)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (no NaN or infinity); equal for equal contents, however they were batched."""

        def numeric(slot: str, agg: NumericAggregate) -> dict[str, Any]:
            total, squares = self._sums(slot)
            exact = {"exact_sum": str(total), "exact_sum_sq": str(squares)}
            return with_exact_moments(agg.to_dict(), total, squares) | exact

        return {
            "version": FORMAT_VERSION,
            "key": asdict(self.key),
            "task": self.task.value,
            "positive_class": self.positive_class,
            "events": self.events,
            "labels": self.labels,
            "late_events": self.late_events,
            "label_missing": self.label_missing,
            "features": {
                name: numeric(name, agg) if isinstance(agg, NumericAggregate) else agg.to_dict()
                for name, agg in sorted(self._features.items())
            },
            "prediction_values": None if self._values is None else numeric(PREDICTION_FEATURE, self._values),
            "prediction_classes": _to_dict(self.prediction_classes),
            "fidelity": self.fidelity.to_dict(),
            "confusion": _to_dict(self.confusion),
            "scores": None if self._scores is None else self._scores_dict(self._scores),
            "regression": _to_dict(self._regression),
            "estimation": None if self.estimation is None else self.estimation.to_dict(),
            "fairness": _to_dict(self.fairness),
            "shadow": _to_dict(self.shadow),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported bundle format {data.get('version')!r}; expected {FORMAT_VERSION}")
        bundle = cls(BundleKey(**data["key"]), Task(data["task"]), str(data["positive_class"]))
        bundle.events, bundle.labels = int(data["events"]), int(data["labels"])
        for count in ("late_events", "label_missing"):  # absent in older partials
            setattr(bundle, count, int(data.get(count, 0)))

        def numeric(slot: str, item: dict[str, Any]) -> NumericAggregate:
            bundle._moments[slot] = (Fraction(item["exact_sum"]), Fraction(item["exact_sum_sq"]))
            return NumericAggregate.from_dict(item)

        for name, item in data["features"].items():
            numerical = item["kind"] == NumericAggregate.kind
            bundle._features[name] = (
                numeric(name, item) if numerical else CategoricalAggregate.from_dict(item)
            )
        if data["prediction_values"] is not None:
            bundle._values = numeric(PREDICTION_FEATURE, data["prediction_values"])
        bundle.prediction_classes = _from_dict(CategoricalAggregate, data["prediction_classes"])
        bundle.fidelity = FidelityAggregate.from_dict(data["fidelity"])
        bundle.confusion = _from_dict(ConfusionMatrixAggregate, data["confusion"])
        bundle._scores = _from_dict(ScoreHistogramAggregate, data["scores"])
        bundle._regression = _from_dict(RegressionAggregate, data["regression"])
        if data.get("estimation") is not None:  # partials written before estimation have none
            bundle.estimation = ScoreBins.from_dict(data["estimation"])
        bundle.fairness = _from_dict(FairnessAggregate, data.get("fairness"))  # None in older partials
        bundle.shadow = _from_dict(ShadowSample, data.get("shadow"))
        # The dict holds the exact, batch-independent log-loss sum (see to_dict): it is the state.
        if bundle._scores is not None:
            bundle._log_loss = Fraction(data["scores"]["log_loss_sum"])
        return bundle

    def __repr__(self) -> str:
        return f"WindowBundle({self.key}, events={self.events}, labels={self.labels})"


def _merged(left: Any, right: Any) -> Any:
    if left is None or right is None:
        return left if right is None else right
    return left.merge(right)


def _to_dict(agg: Aggregate | None) -> dict[str, Any] | None:
    return None if agg is None else agg.to_dict()


def _from_dict(cls: type[AggregateT], data: dict[str, Any] | None) -> AggregateT | None:
    return None if data is None else cls.from_dict(data)
