"""The stream's per-window computation on a DataFrame: rows folded into window bundles, then finalised.

The rows of the current frame become the columns stage 1 folds (:class:`PredictionColumns`) and
the joined pairs it hands over (:class:`JoinedPair`); they are folded into the same
:class:`WindowBundle` (keyed by model, version, segment and window like the stream's) and turned
into metric points by the same :func:`streams.finalize.window_metrics`. A bundle depends only on
the events it holds, never on how they were batched, so each number equals the stream's for the
same events and reference.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detectors.labels import canonical_label
from detectors.profiles import ReferenceProfile
from modelmon import metrics as m
from modelmon.events import MetricPoint
from modelmon.offline.frames import (
    Columns,
    OfflineError,
    check_frame,
    feature_values,
    plain_values,
    reference_profile,
    resolve_spec,
)
from modelmon.offline.result import OfflineResult
from modelmon.spec import ModelSpec, Task, parse_duration
from streams.bundle import JoinedPair, WindowBundle
from streams.columns import PredictionColumns
from streams.finalize import window_metrics
from streams.window_key import BundleKey

SOURCE = "stage2"
"""The points are window totals, as stage 2 publishes them (the report reads those)."""


@dataclass
class Rows:
    """The usable rows of a current frame as the stream's events carry them."""

    ids: list[str]
    ts_ms: np.ndarray
    ingest_ms: np.ndarray
    features: list[dict[str, Any]]
    predictions: list[Any]
    scores: np.ndarray
    class_scores: list[dict[str, float] | None]
    labels: list[Any]
    label_ms: np.ndarray
    tags: dict[str, list[str | None]]
    keep: np.ndarray
    """Rows the stream would fold (the others it would dead-letter)."""
    notes: list[str]

    def columns(self, rows: np.ndarray) -> PredictionColumns:
        return PredictionColumns(
            ids=[self.ids[r] for r in rows], ts_ms=self.ts_ms[rows],
            features=[self.features[r] for r in rows], predictions=[self.predictions[r] for r in rows],
            scores=self.scores[rows], ingest_ms=self.ingest_ms[rows],
            class_scores=[self.class_scores[r] for r in rows],
        )  # fmt: skip

    def pairs(self, rows: np.ndarray) -> list[JoinedPair]:
        out = []
        for r in rows:
            if self.labels[r] is not None:
                score = None if np.isnan(self.scores[r]) else float(self.scores[r])
                prediction = self.predictions[r]
                ts, label_ts = int(self.ts_ms[r]), int(self.label_ms[r])
                out.append(JoinedPair(prediction, score, self.class_scores[r], self.labels[r], ts, label_ts))
        return out


def times_ms(column: pd.Series, name: str) -> np.ndarray:
    """Epoch milliseconds (floored) of a column of datetimes; naive datetimes are UTC."""
    if pd.api.types.is_numeric_dtype(column):
        raise OfflineError(
            f"column {name!r} holds numbers, not times: convert it, "
            f"e.g. pd.to_datetime(df[{name!r}], unit='ms')"
        )
    try:
        stamps = pd.to_datetime(column, utc=True)
    except (ValueError, TypeError) as error:
        raise OfflineError(f"column {name!r} does not hold times: {error}") from None
    if stamps.isna().any():
        raise OfflineError(f"column {name!r} has {int(stamps.isna().sum())} missing time(s)")
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ms")).to_numpy(np.int64)


def _scores(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    scores = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = ~np.isnan(scores) & ((scores < 0) | (scores > 1))
    bad |= np.isnan(scores) & frame[name].notna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise OfflineError(
            f"column {name!r} must hold probabilities in [0, 1]; row {row}: {frame[name].iloc[row]!r}"
        )
    return scores


def event_rows(frame: pd.DataFrame, spec: ModelSpec, columns: Columns, now_ms: int) -> Rows:
    """The rows of ``frame`` the stream would fold; rows it would dead-letter are left out (notes say why)."""
    n, notes = len(frame), []
    present = set(frame.columns)
    ts = times_ms(frame[columns.timestamp], columns.timestamp) if columns.timestamp in present else None
    ts_ms = ts if ts is not None else np.full(n, now_ms, dtype=np.int64)
    ingest_ms = ts_ms
    if columns.ingest_timestamp in present:
        ingest_ms = times_ms(frame[columns.ingest_timestamp], columns.ingest_timestamp)
    values = {name: feature_values(frame[name], f.type) for name, f in spec.features.items()}
    names = list(values)
    features = [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]
    none: list[Any] = [None] * n
    predictions = plain_values(frame[columns.prediction]) if columns.prediction in present else none
    labels = plain_values(frame[columns.label]) if columns.label in present else none
    label_ms = ts_ms
    if columns.label_timestamp in present:
        label_ms = times_ms(frame[columns.label_timestamp], columns.label_timestamp)
    ids = [str(v) for v in frame[columns.prediction_id]] if columns.prediction_id in present else None
    class_scores = plain_values(frame[columns.scores]) if columns.scores in present else none
    keep = np.ones(n, dtype=bool)
    required = spec.required_features()
    if required:
        lacking = np.array([any(row[f] is None for f in required) for row in features], dtype=bool)
        if lacking.any():
            notes.append(f"{int(lacking.sum())} row(s) left out: a required feature is missing ({required})")
        keep &= ~lacking
    if spec.task is Task.REGRESSION:
        text = np.array([isinstance(p, str) for p in predictions], dtype=bool)
        if text.any():
            notes.append(
                f"{int(text.sum())} row(s) left out: a regression model's prediction must be a number"
            )
        keep &= ~text
    tags = {
        tag: [None if v is None else canonical_label(v) for v in plain_values(frame[tag])]
        for tag in spec.segments
        if tag in present
    }
    rows = Rows(
        ids=ids if ids is not None else [str(i) for i in range(n)], ts_ms=ts_ms, ingest_ms=ingest_ms,
        features=features, predictions=predictions, scores=_scores(frame, columns.score),
        class_scores=class_scores, labels=labels, label_ms=label_ms, tags=tags, keep=keep, notes=notes,
    )  # fmt: skip
    return rows


def window_starts(ts_ms: np.ndarray, window_ms: int | None) -> tuple[np.ndarray, int]:
    """Each row's window start and the window length: aligned like the stream's, or one window over all."""
    if window_ms is None:
        first, last = int(ts_ms.min()), int(ts_ms.max())
        return np.full(ts_ms.size, first, dtype=np.int64), max(last - first + 1, 1000)
    return ts_ms - ts_ms % window_ms, window_ms


def window_bundles(
    rows: Rows, spec: ModelSpec, reference: ReferenceProfile | None, window_ms: int | None, model_version: str
) -> list[WindowBundle]:
    """One bundle per (segment, window), the whole model's ('' segment) and each spec segment's."""
    kept = np.flatnonzero(rows.keep)
    starts, length = window_starts(rows.ts_ms, window_ms)
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in kept.tolist():
        start = int(starts[r])
        groups[("", start)].append(r)
        for tag, values in rows.tags.items():
            if values[r] is not None:
                groups[(f"{tag}={values[r]}", start)].append(r)
    bundles = []
    for (segment, start), members in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        key = BundleKey(spec.model_id, model_version, segment, start, length)
        bundle = WindowBundle.empty(key, spec, reference)
        index = np.asarray(members)
        bundle.add_columns(rows.columns(index), spec)
        bundle.add_labels(rows.pairs(index), spec)
        bundles.append(bundle)
    return bundles


def compare(
    reference: pd.DataFrame | ReferenceProfile | str | Path,
    current: pd.DataFrame,
    spec: ModelSpec | dict[str, Any] | str | Path | None = None,
    *,
    window: str | timedelta | None = None,
    columns: Columns | dict[str, str] | None = None,
    model_id: str | None = None,
    model_version: str = "1",
    task: str | None = None,
    positive_class: str | None = None,
) -> OfflineResult:
    """Drift, performance and fidelity of ``current`` against ``reference``, as the stream computes them.

    ``reference``: a DataFrame (profiled like ``modelmon reference load`` profiles a file), a CSV or
    Parquet path, or a :class:`ReferenceProfile`. ``spec``: a :class:`ModelSpec`, a dict, a YAML
    path, or ``None`` to infer the features' kinds from ``current``'s dtypes and the task from its
    prediction (or label) column. ``window`` (``"1h"``) splits ``current`` by its timestamp column
    into windows aligned like the stream's; without it the whole frame is one window.
    ``columns`` names the non-feature columns (see :class:`Columns`).
    """
    roles = Columns.of(columns)
    if not isinstance(current, pd.DataFrame):
        raise OfflineError(f"the current data must be a pandas DataFrame, got {type(current).__name__}")
    resolved = resolve_spec(spec, current, roles, model_id=model_id, task=task, positive_class=positive_class)
    check_frame(current, "current", resolved)
    if window is not None and roles.timestamp not in current.columns:
        raise OfflineError(
            f"window={window!r} needs event times: the current DataFrame has no {roles.timestamp!r} "
            "column (name another with columns={'timestamp': ...})"
        )
    window_ms = None
    if window is not None:
        try:
            window_ms = int(parse_duration(window).total_seconds() * 1000)
        except ValueError as error:
            raise OfflineError(str(error)) from None
        if window_ms <= 0:
            raise OfflineError(f"window must be positive, got {window!r}")
    profile = reference_profile(reference, resolved, roles)
    now_ms = int(datetime.now(UTC).timestamp()) * 1000
    rows = event_rows(current, resolved, roles, now_ms)
    if not rows.keep.any():
        raise OfflineError("no usable rows in the current DataFrame: " + "; ".join(rows.notes))
    bundles = window_bundles(rows, resolved, profile, window_ms, model_version)
    left_out = set()
    if roles.ingest_timestamp not in current.columns:
        left_out |= set(m.LATENESS_METRICS)
    if roles.label_timestamp not in current.columns:
        left_out |= set(m.LABEL_DELAY_METRICS)
    points: list[MetricPoint] = [
        point
        for bundle in bundles
        for point in window_metrics(bundle, resolved, profile, source=SOURCE)
        if point.metric not in left_out
    ]
    return OfflineResult(spec=resolved, reference=profile, points=points, notes=rows.notes)
