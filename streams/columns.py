"""Columns of an event batch for the window aggregates: feature values cleaned per kind, times, labels."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors import value_types as vt
from detectors.fidelity import FeatureSchema
from modelmon.events import PredictionEvent
from modelmon.spec import ModelSpec


@dataclass(frozen=True)
class PredictionColumns:
    """A batch of predictions of one window key, column by column: what a bundle folds in.

    Built from contract events (:meth:`from_events`) or, on the data plane, straight from the
    decoded messages; ``scores`` is NaN where an event has no score.
    """

    ids: Sequence[str]
    ts_ms: npt.NDArray[np.int64]
    features: Sequence[Mapping[str, Any]]
    predictions: Sequence[Any]
    scores: npt.NDArray[np.float64]
    ingest_ms: npt.NDArray[np.int64]
    class_scores: Sequence[dict[str, float] | None] | None = None
    """Per-class scores of a multiclass model, a dict or None per event (None: not carried)."""
    tags: Sequence[Mapping[str, str]] | None = None
    """Tags per event (fairness attributes ``tag:<name>``); None: not carried."""

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_events(
        cls, events: Sequence[PredictionEvent], ingest_ms: Sequence[int] | np.ndarray
    ) -> PredictionColumns:
        ingest = np.asarray(ingest_ms, dtype=np.int64).reshape(-1)
        if ingest.size != len(events):
            raise ValueError(f"ingest_ts_ms has {ingest.size} entries for {len(events)} events")
        return cls(
            ids=[event.prediction_id for event in events],
            ts_ms=event_times_ms(events),
            features=[event.features for event in events],
            predictions=[event.prediction for event in events],
            scores=np.array([event.score for event in events], dtype=np.float64),
            ingest_ms=ingest,
            class_scores=[event.scores for event in events],
            tags=[event.tags for event in events],
        )


@dataclass(frozen=True)
class JoinedPair:
    """A prediction joined with its label (what stage 1's join table hands over)."""

    prediction: float | int | str
    score: float | None
    scores: dict[str, float] | None
    label: float | int | str
    prediction_ts_ms: int
    label_ts_ms: int
    groups: Mapping[str, str | None] | None = None
    """The prediction's fairness group per attribute (``streams.fairness.record_groups``)."""


def feature_columns(dicts: Sequence[Mapping[str, Any]], names: Collection[str]) -> dict[str, np.ndarray]:
    """One object column per feature carried by any event or named in ``names`` (None where absent).

    Each column is gathered with ``map(dict.get, ...)``, which runs in C: no Python loop per value.
    """
    every = sorted(set().union(*dicts, names))
    return {
        name: np.fromiter(map(dict.get, dicts, repeat(name)), dtype=object, count=len(dicts))  # type: ignore[arg-type]
        for name in every
    }


def event_times_ms(events: Sequence[PredictionEvent]) -> npt.NDArray[np.int64]:
    """Event times in epoch milliseconds, floored.

    Rounded to whole microseconds first (exact for dates of this era): ``int(ts.timestamp() * 1000)``
    is one millisecond short for e.g. 1.001 s.
    """
    seconds = np.fromiter(map(datetime.timestamp, map(attrgetter("ts"), events)), np.float64, len(events))
    return np.rint(seconds * 1e6).astype(np.int64) // 1000


def numbers_or_nan(column: np.ndarray, codes: np.ndarray | None = None) -> npt.NDArray[np.float64]:
    """Ints and finite floats as float64; missing, ±inf and wrongly typed values (text, bools) as NaN."""
    codes = vt.type_codes(column) if codes is None else codes
    valid = (codes == vt.INT) | (codes == vt.FLOAT)
    out = np.full(column.size, np.nan)
    out[valid] = vt.numbers(column, valid)
    return out


def category_values(column: np.ndarray, kind: str, codes: np.ndarray | None = None) -> np.ndarray:
    """Values of the right type for ``kind`` (text; a bool or 0/1), everything else as missing.

    The same notion of type as the fidelity checks: a wrongly typed value is counted there as a type
    violation and left out of drift, like a missing one.
    """
    codes = vt.type_codes(column) if codes is None else codes
    if kind == "categorical":
        texts = np.full(column.size, None, dtype=object)
        texts[codes == vt.TEXT] = column[codes == vt.TEXT]
        return texts
    numeric = (codes == vt.BOOL) | (codes == vt.INT) | (codes == vt.FLOAT)
    out = np.full(column.size, np.nan)
    out[numeric] = vt.numbers(column, numeric)
    return np.where((out == 0) | (out == 1), out, np.nan)


def label_array(values: list[Any]) -> np.ndarray:
    """Class labels as a typed array when they share one type (canonical text is then vectorised)."""
    types = set(map(type, values))
    if types <= {int} or types <= {float} or types <= {str}:
        try:
            return np.asarray(values)
        except OverflowError:  # an int beyond int64
            pass
    return np.array(values, dtype=object)


def feature_schemas(spec: ModelSpec) -> list[FeatureSchema]:
    """The fidelity schema of a model spec's features."""
    return [
        FeatureSchema(name, f.type, required=f.required, min=f.min, max=f.max, allowed=f.allowed)
        for name, f in spec.features.items()
    ]
