"""Stage 1's side of fairness: the group of each prediction and the fold into ``detectors.fairness``.

A model's ``fairness`` spec names attributes: a categorical or boolean feature, or ``tag:<name>``.
A prediction's group is the text of that value: a categorical feature's text, ``"true"``/``"false"``
for a boolean feature (a bool, or the number 0 or 1), a tag's text; anything else (missing, wrongly
typed) has no group and is left out. Predictions are folded per batch with :func:`fold_predictions`;
a joined pair carries the groups its prediction had (:func:`record_groups`, kept in the join store
beside the prediction, since labels carry no features) and is folded with :func:`fold_pairs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any

import numpy as np

from detectors.fairness import FairnessAggregate
from detectors.labels import canonical_labels
from modelmon.spec import ModelSpec, Task
from streams.columns import JoinedPair, PredictionColumns, category_values, label_array

__all__ = ["FairnessAggregate", "fairness_aggregate", "fold_pairs", "fold_predictions", "record_groups"]
_TRUE_FALSE = np.array(["false", "true"], dtype=object)


def fairness_aggregate(spec: ModelSpec) -> FairnessAggregate | None:
    """An empty aggregate over the spec's attributes; None without a fairness spec (or not binary)."""
    if spec.fairness is None or spec.task is not Task.BINARY:
        return None
    return FairnessAggregate(spec.fairness.attributes)


def _kind(spec: ModelSpec, attribute: str) -> str:
    assert spec.fairness is not None
    if spec.fairness.tag(attribute) is not None:
        return "tag"
    return spec.features[attribute].type.value


def group_text(value: Any, kind: str) -> str | None:
    """One value's group (``kind``: ``tag``, ``categorical`` or ``boolean``); None: no group.

    >>> [group_text(v, "boolean") for v in (True, 0, 1.0, 2, "yes", None)]
    ['true', 'false', 'true', None, None, None]
    >>> group_text("F", "categorical"), group_text(3, "categorical"), group_text("eu", "tag")
    ('F', None, 'eu')
    """
    if kind != "boolean":
        return value if isinstance(value, str) else None
    if isinstance(value, bool | int | float | np.number) and value in (0, 1):
        return "true" if value == 1 else "false"
    return None


def group_column(values: np.ndarray, kind: str) -> np.ndarray:
    """Groups of a column of values (object array, None: no group), vectorised as the drift fold."""
    if kind == "tag":
        texts = np.full(values.size, None, dtype=object)
        known = np.fromiter(map(isinstance, values, repeat(str)), bool, values.size)
        texts[known] = values[known]
        return texts
    typed = category_values(np.asarray(values, dtype=object), kind)
    if kind == "categorical":
        return typed
    known = ~np.isnan(typed)
    out = np.full(typed.size, None, dtype=object)
    out[known] = _TRUE_FALSE[typed[known].astype(int)]
    return out


def _values(spec: ModelSpec, attribute: str, features: Sequence[Mapping[str, Any]],
            tags: Sequence[Mapping[str, str]] | None) -> np.ndarray:  # fmt: skip
    assert spec.fairness is not None
    tag = spec.fairness.tag(attribute)
    rows: Sequence[Mapping[str, Any]] = features if tag is None else (tags or [{}] * len(features))
    return np.fromiter(map(Mapping.get, rows, repeat(tag or attribute)), object, len(features))


def record_groups(spec: ModelSpec, features: Mapping[str, Any], tags: Mapping[str, str]) -> dict[str, Any]:
    """A prediction's group per attribute, kept in the join store until its label comes."""
    assert spec.fairness is not None
    out = {}
    for attribute in spec.fairness.attributes:
        tag = spec.fairness.tag(attribute)
        out[attribute] = group_text(
            (features if tag is None else tags).get(tag or attribute), _kind(spec, attribute)
        )
    return out


def _favourable(spec: ModelSpec, values: Sequence[Any]) -> np.ndarray:
    assert spec.fairness is not None
    text, valid = canonical_labels(label_array(list(values)))
    return valid & (text == spec.fairness.favourable_class(spec.positive_class))


def fold_predictions(agg: FairnessAggregate | None, batch: PredictionColumns, spec: ModelSpec) -> None:
    """Fold a batch of predictions: per attribute, groups and whether each prediction is favourable."""
    if agg is None or spec.fairness is None or len(batch) == 0:
        return
    selected = _favourable(spec, batch.predictions)
    for attribute in spec.fairness.attributes:
        values = _values(spec, attribute, batch.features, batch.tags)
        agg.update_predictions(attribute, group_column(values, _kind(spec, attribute)), selected)


def fold_pairs(agg: FairnessAggregate | None, pairs: Sequence[JoinedPair], spec: ModelSpec) -> None:
    """Fold joined pairs: the groups their prediction had, favourable prediction, favourable label."""
    if agg is None or spec.fairness is None or not pairs:
        return
    selected = _favourable(spec, list(map(attrgetter("prediction"), pairs)))
    positive = _favourable(spec, list(map(attrgetter("label"), pairs)))
    groups = [pair.groups or {} for pair in pairs]
    for attribute in spec.fairness.attributes:
        column = np.array([group.get(attribute) for group in groups], dtype=object)
        agg.update_labels(attribute, column, selected, positive)
