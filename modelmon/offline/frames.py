"""From pandas DataFrames to what the stream folds: the spec, the reference profile, the event columns.

A current frame holds one row per prediction: one column per spec feature, plus (each optional)
the model output, its score, the label, the event time and the prediction id; :class:`Columns`
names them. Values go into the window aggregates as the stream's events carry them: missing
values (``None``, NaN, ``pd.NA``, ``NaT``) as ``None``, and a categorical feature held in a
column of numbers as its canonical text (``7`` and ``7.0`` are ``"7"``), as a CSV reference reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detectors.estimation import Calibration, binary_scores
from detectors.labels import canonical_label
from detectors.profiles import ReferenceProfile
from detectors.profiles.files import load_reference_file, reference_kinds
from detectors.scored import class_score_matrix, estimation_classes, fit_calibration, score_classes
from modelmon.kinds import FeatureKind
from modelmon.spec import ModelSpec, SpecError, Task, load_spec_file, parse_spec

DEFAULT_MODEL_ID = "offline"
REFERENCE_SAMPLE_SIZE = 4096
"""The reference's sample, as ``modelmon reference load`` keeps it."""
MAX_CATEGORIES = 200


class OfflineError(ValueError):
    """Input that :func:`modelmon.offline.compare` cannot use; the message says what to change."""


@dataclass(frozen=True)
class Columns:
    """Names of the frame columns that are not features (each optional in the frame)."""

    prediction: str = "prediction"
    score: str = "score"
    """Probability of the positive class (binary models), in [0, 1]."""
    scores: str = "scores"
    """Probability per class (multiclass models): a dict per row."""
    label: str = "label"
    """The ground truth; rows without one count as unlabelled."""
    timestamp: str = "ts"
    """Event time (datetimes; naive ones are UTC). Needed to split the frame into windows."""
    ingest_timestamp: str = "ingest_ts"
    """When the event reached the monitor: without it, no lateness metrics."""
    label_timestamp: str = "label_ts"
    """When the label came: without it, no label-delay metrics."""
    prediction_id: str = "prediction_id"
    """Unique id per prediction (duplicates are counted); default: the row number."""

    @classmethod
    def of(cls, value: Columns | Mapping[str, str] | None) -> Columns:
        if value is None or isinstance(value, Columns):
            return value or cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise OfflineError(f"unknown column role(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**value)

    def special(self) -> set[str]:
        return {getattr(self, f.name) for f in fields(self)}


# -- the spec ----------------------------------------------------------------------------------


def resolve_spec(
    spec: ModelSpec | Mapping[str, Any] | str | Path | None,
    frame: pd.DataFrame,
    columns: Columns,
    *,
    model_id: str | None = None,
    task: str | None = None,
    positive_class: str | None = None,
) -> ModelSpec:
    """The model spec: given, read from a dict or a YAML file, or inferred from ``frame``'s columns.

    A dict may leave out ``model_id`` (default ``offline``), ``task`` (inferred from the prediction
    or label column) and ``features`` (inferred from ``frame``'s dtypes).
    """
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, str | Path):
        specs = load_spec_file(Path(spec))
        chosen = [s for s in specs if model_id is None or s.model_id == model_id]
        if len(chosen) != 1:
            ids = ", ".join(s.model_id for s in specs)
            raise OfflineError(f"{spec}: holds the specs of {ids}; choose one with model_id=")
        return chosen[0]
    data: dict[str, Any] = dict(spec or {})
    data.setdefault("model_id", model_id or DEFAULT_MODEL_ID)
    if "features" not in data:
        data["features"] = {name: {"type": kind} for name, kind in infer_kinds(frame, columns).items()}
        if not data["features"]:
            raise OfflineError(
                f"no feature columns to compare (columns: {', '.join(map(str, frame.columns)) or 'none'}); "
                "pass a spec naming the features"
            )
    if "task" not in data:
        data["task"] = task or infer_task(frame, columns)
    if positive_class is not None:
        data.setdefault("positive_class", positive_class)
    elif data["task"] == Task.BINARY and "positive_class" not in data:
        data["positive_class"] = infer_positive_class(frame, columns)
    try:
        return parse_spec(data, "the spec")
    except SpecError as error:
        raise OfflineError(str(error)) from None


def infer_kinds(frame: pd.DataFrame, columns: Columns) -> dict[str, FeatureKind]:
    """A kind per column that is not a special column: bool → boolean, numbers → numerical, else categorical.

    Datetime columns are not features and are left out.
    """
    kinds: dict[str, FeatureKind] = {}
    special = columns.special()
    for name in frame.columns:
        column = frame[name]
        if name in special or pd.api.types.is_datetime64_any_dtype(column):
            continue
        if pd.api.types.is_bool_dtype(column):
            kinds[str(name)] = FeatureKind.BOOLEAN
        elif pd.api.types.is_numeric_dtype(column):
            kinds[str(name)] = FeatureKind.NUMERICAL
        else:
            kinds[str(name)] = FeatureKind.CATEGORICAL
    return kinds


def _outputs(frame: pd.DataFrame, columns: Columns) -> pd.Series | None:
    for name in (columns.prediction, columns.label):
        if name in frame.columns and frame[name].notna().any():
            return frame[name].dropna()
    return None


def infer_task(frame: pd.DataFrame, columns: Columns) -> str:
    """``regression`` for non-integral numbers, ``binary`` for at most two classes, else ``multiclass``.

    Without a prediction or label column there is no performance to compute: ``regression`` then.
    """
    values = _outputs(frame, columns)
    if values is None:
        return Task.REGRESSION.value
    if pd.api.types.is_float_dtype(values) and not np.all(np.mod(values.to_numpy(float), 1) == 0):
        return Task.REGRESSION.value
    classes = {canonical_label(v) for v in values.tolist()}
    return Task.BINARY.value if len(classes) <= 2 else Task.MULTICLASS.value


def infer_positive_class(frame: pd.DataFrame, columns: Columns) -> str:
    values = _outputs(frame, columns)
    texts = {canonical_label(v) for v in values.tolist()} if values is not None else set()
    classes = sorted(text for text in texts if text is not None)
    if set(classes) <= {"0", "1"}:
        return "1"
    raise OfflineError(
        f"binary classes {classes}: say which one is positive with positive_class= (e.g. {classes[-1]!r})"
    )


# -- checks and values -------------------------------------------------------------------------


def check_frame(frame: Any, what: str, spec: ModelSpec) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise OfflineError(f"the {what} data must be a pandas DataFrame, got {type(frame).__name__}")
    if frame.empty:
        raise OfflineError(f"the {what} DataFrame has no rows")
    if not frame.columns.is_unique:
        repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise OfflineError(f"the {what} DataFrame repeats column(s): {', '.join(repeated)}")
    missing = [name for name in spec.features if name not in frame.columns]
    if missing:
        raise OfflineError(
            f"the {what} DataFrame lacks the column(s) of feature(s) {', '.join(missing)} of model "
            f"{spec.model_id!r} (its columns: {', '.join(map(str, frame.columns))})"
        )
    return frame


def plain_values(column: pd.Series) -> list[Any]:
    """The column as Python values, every kind of missing value as ``None``."""
    values = column.astype(object)
    return values.where(column.notna(), None).tolist()


def feature_values(column: pd.Series, kind: str) -> list[Any]:
    """One feature's values as an event carries them; a categorical column of numbers as text."""
    values = plain_values(column)
    numbers = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
    if kind == FeatureKind.CATEGORICAL and numbers:
        return [None if v is None else canonical_label(v) for v in values]
    return values


# -- the reference -----------------------------------------------------------------------------


def reference_profile(
    reference: pd.DataFrame | ReferenceProfile | str | Path, spec: ModelSpec, columns: Columns
) -> ReferenceProfile:
    """The reference profile: given, read from a CSV/Parquet file, or built from a DataFrame.

    A DataFrame is profiled like a reference file (``modelmon reference load``): every spec
    feature, plus the model output (``score`` of a binary model, else ``prediction``) if present,
    and, with a label column and the scores (``score``, or the ``scores`` dicts of a multiclass
    model), the score calibration that estimates performance.
    """
    if isinstance(reference, ReferenceProfile):
        return reference
    if isinstance(reference, str | Path):
        return load_reference_file(reference, spec).profile
    frame = check_frame(reference, "reference", spec)
    renamed = {columns.prediction: "prediction", columns.score: "score"}
    frame = frame.rename(columns={k: v for k, v in renamed.items() if k in frame.columns and k != v})
    kinds = reference_kinds(spec, [str(c) for c in frame.columns])
    data: dict[str, np.ndarray] = {}
    for name, (column, kind) in kinds.items():
        data[name] = _reference_column(frame[column], str(column), kind)
    try:
        profile = ReferenceProfile.from_data(
            data, {name: kind for name, (_, kind) in kinds.items()},
            sample_size=REFERENCE_SAMPLE_SIZE, max_categories=MAX_CATEGORIES, seed=0,
        )  # fmt: skip
        return profile.with_calibration(frame_calibration(frame, spec, columns))
    except ValueError as error:
        raise OfflineError(f"the reference DataFrame: {error}") from None


def frame_calibration(frame: pd.DataFrame, spec: ModelSpec, columns: Columns) -> Calibration | None:
    """The calibration of a reference frame's labelled scores, or None without labels or scores."""
    classes = estimation_classes(spec)
    if classes is None or columns.label not in frame.columns:
        return None
    labels = plain_values(frame[columns.label])
    if spec.task is Task.BINARY:
        if "score" not in frame.columns:
            return None
        score = pd.to_numeric(frame["score"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        scores = binary_scores(score)
    else:
        if columns.scores not in frame.columns:
            return None
        rows = [row if isinstance(row, dict) else None for row in plain_values(frame[columns.scores])]
        classes = classes or score_classes(rows)
        scores = class_score_matrix(rows, classes)
    return fit_calibration(classes, labels, scores, binary=spec.task is Task.BINARY)[0]


def _reference_column(column: pd.Series, name: str, kind: FeatureKind) -> np.ndarray:
    if kind == FeatureKind.NUMERICAL:
        numbers = pd.to_numeric(column.where(column.notna(), None), errors="coerce")
        bad = numbers.isna() & column.notna()
        if bad.any():
            where = bad.to_numpy().nonzero()[0][0]
            raise OfflineError(
                f"the reference column {name!r} is numerical but holds {column.iloc[where]!r} (row {where})"
            )
        if numbers.dropna().empty:
            raise OfflineError(f"the reference column {name!r} has no values")
        return numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    values = feature_values(column, kind)
    if all(v is None for v in values):
        raise OfflineError(f"the reference column {name!r} has no values")
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
