"""Reference profiles from CSV and Parquet files (``modelmon reference load``, the demo)."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.estimation import Calibration, binary_scores
from detectors.profiles import (
    CategoricalFeatureProfile,
    FeatureProfile,
    NumericalFeatureProfile,
    ReferenceProfile,
)
from detectors.profiles.importance import reference_importances
from detectors.scored import estimation_classes, fit_calibration
from modelmon.kinds import FeatureKind, check_kind
from modelmon.references import PREDICTION_FEATURE
from modelmon.spec import ModelSpec, Task

CSV_SUFFIXES = (".csv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
MISSING_TEXTS = frozenset({"", "na", "n/a", "nan", "null", "none"})
"""CSV cells read as missing (compared after stripping spaces and lower-casing)."""
LABEL_COLUMN = "label"
"""The true class of a reference row: with the scores, it calibrates performance estimation."""
CLASS_SCORE_PREFIX = "score_"
"""A multiclass reference's per-class score columns: ``score_<class>``."""


class ReferenceFileError(ValueError):
    """A reference file that cannot be used; the message names the file and what to fix."""


def reference_kinds(spec: ModelSpec, available: Iterable[str] = ()) -> dict[str, tuple[str, FeatureKind]]:
    """Profile name → (source column, kind): every spec feature, plus the model output if a column has it.

    The output column: ``score`` (numerical) for a binary model, else ``prediction``; ``prediction``
    is numerical for a regression model and categorical (the class) otherwise.

    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary", "features": {"age": {"type": "numerical"}}})
    >>> reference_kinds(spec, ["age", "prediction", "score"])
    {'age': ('age', 'numerical'), '__prediction__': ('score', 'numerical')}
    """
    kinds: dict[str, tuple[str, FeatureKind]] = {
        name: (name, check_kind(feature.type.value)) for name, feature in spec.features.items()
    }
    columns = set(available)
    if spec.task is Task.BINARY and "score" in columns:
        kinds[PREDICTION_FEATURE] = ("score", FeatureKind.NUMERICAL)
    elif "prediction" in columns:
        kind = FeatureKind.NUMERICAL if spec.task is Task.REGRESSION else FeatureKind.CATEGORICAL
        kinds[PREDICTION_FEATURE] = ("prediction", kind)
    return kinds


@dataclass(frozen=True)
class FileReference:
    """A reference profile built from a file, with what was read."""

    profile: ReferenceProfile
    rows: int
    source: str
    columns: dict[str, str]
    """Profile name → the file column it came from."""
    ignored: list[str]
    """File columns that are not part of the profile."""
    calibration_rows: int = 0
    """Labelled, scored rows the calibration was fitted on (0: no calibration)."""


def calibration_columns(
    spec: ModelSpec, available: Iterable[str]
) -> tuple[tuple[str, ...], list[str]] | None:
    """The classes and score columns a calibration is fitted on, or None when the file cannot give one.

    A classifier's file needs a ``label`` column and its scores: ``score`` (P(positive)) for a
    binary model, ``score_<class>`` per class for a multiclass one (the spec's ``classes``, or every
    ``score_`` column when the spec lists none).

    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary", "features": {"age": {"type": "numerical"}}})
    >>> calibration_columns(spec, ["age", "score", "label"]), calibration_columns(spec, ["age", "score"])
    ((('0', '1'), ['score']), None)
    """
    classes = estimation_classes(spec)
    columns = list(available)
    if classes is None or LABEL_COLUMN not in columns:
        return None
    if spec.task is Task.BINARY:
        return (classes, ["score"]) if "score" in columns else None
    found = sorted(c[len(CLASS_SCORE_PREFIX) :] for c in columns if c.startswith(CLASS_SCORE_PREFIX))
    classes = classes or tuple(found)
    wanted = [f"{CLASS_SCORE_PREFIX}{label}" for label in classes]
    return (classes, wanted) if len(classes) >= 2 and set(wanted) <= set(columns) else None


def _calibration(
    spec: ModelSpec, classes: tuple[str, ...], columns: Mapping[str, np.ndarray], score_columns: list[str]
) -> tuple[Calibration | None, int]:
    if spec.task is Task.BINARY:
        scores = binary_scores(columns[score_columns[0]])
    else:
        scores = np.column_stack([columns[name] for name in score_columns])
    return fit_calibration(classes, columns[LABEL_COLUMN], scores, binary=spec.task is Task.BINARY)


def load_reference_file(
    path: Path | str, spec: ModelSpec, *, sample_size: int = 4096, max_categories: int = 200, seed: int = 0
) -> FileReference:
    """Read a CSV or Parquet file and profile the features of ``spec`` (and the model output, if present).

    With a ``label`` column and the model's scores (:func:`calibration_columns`), the profile also
    carries a score calibration fitted on the labelled rows (performance estimation). With a
    ``label`` column it carries each feature's importance: its mutual information with the label
    (:mod:`detectors.profiles.importance`).
    Raises :class:`ReferenceFileError` naming the file and the missing or unusable columns.
    """
    file = Path(path)
    header = _read_header(file)
    kinds = reference_kinds(spec, header)
    missing = [name for name in spec.features if name not in header]
    if missing:
        raise ReferenceFileError(
            f"{file}: missing column(s) for the features of model {spec.model_id!r}: {', '.join(missing)} "
            f"(columns in the file: {', '.join(header) or 'none'})"
        )
    wanted = {column: kind for column, kind in kinds.values()}
    calibrated = calibration_columns(spec, header)
    if calibrated is not None:
        wanted |= {LABEL_COLUMN: FeatureKind.CATEGORICAL} | dict.fromkeys(
            calibrated[1], FeatureKind.NUMERICAL
        )
    if LABEL_COLUMN in header and LABEL_COLUMN not in wanted:
        regression = spec.task is Task.REGRESSION
        wanted[LABEL_COLUMN] = FeatureKind.NUMERICAL if regression else FeatureKind.CATEGORICAL
    columns, rows = _read_columns(file, wanted)
    if rows == 0:
        raise ReferenceFileError(f"{file}: no data rows")
    features: dict[str, FeatureProfile] = {}
    for name, (column, kind) in kinds.items():
        try:
            features[name] = _profile_column(columns[column], kind, sample_size, max_categories, seed)
        except ValueError as error:
            raise ReferenceFileError(f"{file}: column {column!r} ({kind}): {error}") from None
    calibration, calibration_rows = None, 0
    if calibrated is not None:
        try:
            calibration, calibration_rows = _calibration(spec, calibrated[0], columns, calibrated[1])
        except ValueError as error:
            raise ReferenceFileError(f"{file}: calibration from column {LABEL_COLUMN!r}: {error}") from None
    importances: dict[str, float] = {}
    if LABEL_COLUMN in columns:
        by_name = {name: columns[column] for name, (column, _) in kinds.items()}
        importances = reference_importances(features, by_name, columns[LABEL_COLUMN])
        importances.pop(PREDICTION_FEATURE, None)
    return FileReference(
        profile=ReferenceProfile(features, calibration=calibration, importances=importances),
        rows=rows,
        source=f"file:{file.name}",
        columns={name: column for name, (column, _) in kinds.items()},
        ignored=[column for column in header if column not in wanted],
        calibration_rows=calibration_rows,
    )


def _profile_column(
    values: np.ndarray, kind: FeatureKind, sample_size: int, max_categories: int, seed: int
) -> FeatureProfile:
    # The same per-feature calls as ReferenceProfile.from_data, so a file gives the identical profile.
    if kind == "numerical":
        return NumericalFeatureProfile.from_values(values, sample_size=sample_size, seed=seed)
    return CategoricalFeatureProfile.from_values(values, kind=kind, max_categories=max_categories)


def _read_header(file: Path) -> list[str]:
    if not file.is_file():
        raise ReferenceFileError(f"{file}: no such file")
    if _suffix(file) in PARQUET_SUFFIXES:
        parquet = _parquet()
        try:
            return list(parquet.read_schema(file).names)
        except Exception as error:  # pyarrow's own ArrowInvalid, for a file that is not Parquet
            raise ReferenceFileError(f"{file}: not a readable Parquet file: {error}") from None
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ReferenceFileError(f"{file}: cannot read as CSV: {error}") from None
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ReferenceFileError(f"{file}: repeated column name(s): {', '.join(duplicates)}")
    return header


def _suffix(file: Path) -> str:
    suffix = file.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise ReferenceFileError(
            f"{file}: unknown file type {suffix or '(no suffix)'!r}; use one of "
            f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
        )
    return suffix


def _parquet() -> Any:
    try:
        import pyarrow.parquet
    except ImportError:
        raise ReferenceFileError(
            "reading Parquet needs pyarrow: pip install 'modelmon[parquet]' (or use a CSV file)"
        ) from None
    return pyarrow.parquet


def _read_columns(file: Path, wanted: Mapping[str, FeatureKind]) -> tuple[dict[str, np.ndarray], int]:
    """The ``wanted`` columns: numerical as float64 (missing = NaN), others as objects (missing = None)."""
    if _suffix(file) in PARQUET_SUFFIXES:
        return _read_parquet(file, wanted)
    try:
        return _read_csv(file, wanted)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ReferenceFileError(f"{file}: cannot read as CSV: {error}") from None


def _read_csv(file: Path, wanted: Mapping[str, FeatureKind]) -> tuple[dict[str, np.ndarray], int]:
    cells: dict[str, list[Any]] = {column: [] for column in wanted}
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for line, row in enumerate(reader, start=2):
            for column, kind in wanted.items():
                text = row.get(column)
                if text is None or text.strip().lower() in MISSING_TEXTS:
                    cells[column].append(math.nan if kind == "numerical" else None)
                elif kind == "numerical":
                    try:
                        cells[column].append(float(text))
                    except ValueError:
                        raise ReferenceFileError(
                            f"{file}: line {line}, column {column!r}: {text!r} is not a number "
                            "(the feature is numerical; leave the cell empty for a missing value)"
                        ) from None
                else:
                    # Text as written: a category "1" stays "1", as an event's 1 is labelled.
                    cells[column].append(text)
    rows = len(next(iter(cells.values()), []))
    return {column: _array(values, wanted[column]) for column, values in cells.items()}, rows


def _read_parquet(file: Path, wanted: Mapping[str, FeatureKind]) -> tuple[dict[str, np.ndarray], int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _parquet().read_table(file, columns=list(wanted))
    columns: dict[str, np.ndarray] = {}
    for column, kind in wanted.items():
        data = table.column(column)
        if kind == "numerical":
            try:
                numbers = pc.cast(data, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise ReferenceFileError(
                    f"{file}: column {column!r} has type {data.type}, not numbers (the feature is numerical)"
                ) from None
            columns[column] = numbers.to_numpy(zero_copy_only=False)
        else:
            columns[column] = _array(data.to_pylist(), kind)
    return columns, table.num_rows


def _array(values: Sequence[Any], kind: FeatureKind) -> np.ndarray:
    if kind == "numerical":
        return np.asarray(values, dtype=np.float64)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
