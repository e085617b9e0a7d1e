"""Peer: Evidently's data drift of the bench's current rows against its reference; run in .venv-evidently.

Prints one JSON record (see ``bench/common.py:result``) on stdout; everything else goes to stderr.
Timed: ``Dataset.from_pandas`` of both splits with an explicit ``DataDefinition`` (so no type
inference is timed) plus ``Report([DataDriftPreset()]).run(current, reference)`` with Evidently's
default per-column tests. Not timed: imports, loading the .npy files, building the DataFrames,
reading the results back, and one warm-up run on the first 1,000 rows of each split.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# No telemetry thread or network call during the timed runs.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ITERATIVE_DO_NOT_TRACK", "1")

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="data set directory (bench/common.py)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the fastest is reported")
    args = parser.parse_args()

    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        with common.Stopwatch() as import_sw:
            import pandas as pd
            from evidently import DataDefinition, Dataset, Report
            from evidently.presets import DataDriftPreset
        data = common.load(args.data)
        reference = pd.DataFrame(data.frame_dict("reference"))
        current = pd.DataFrame(data.frame_dict("current"))
        definition = DataDefinition(
            numerical_columns=data.numerical_columns, categorical_columns=data.categorical_columns
        )

        def drift(cur: pd.DataFrame, ref: pd.DataFrame) -> Any:
            return Report([DataDriftPreset()]).run(
                Dataset.from_pandas(cur, data_definition=definition),
                Dataset.from_pandas(ref, data_definition=definition),
            )

        drift(current.iloc[:1000], reference.iloc[:1000])  # warm-up: lazy imports inside Evidently
        runs, cpu_runs = [], []
        for _ in range(args.repeat):
            with common.Stopwatch() as sw:
                snapshot = drift(current, reference)
            runs.append(sw.seconds)
            cpu_runs.append(sw.cpu_seconds)
        tested, drifted = _drift_results(snapshot.dict())
        if sorted(tested) != sorted(data.columns):
            raise SystemExit(f"Evidently tested {sorted(tested)}, expected {sorted(data.columns)}")
    record = common.result(
        "evidently",
        version("evidently"),
        "Report([DataDriftPreset()]).run(current, reference)",
        len(current),
        runs,
        cpu_runs,
        reference_rows=len(reference),
        columns=len(current.columns),
        drifted_columns=sorted(drifted),
        import_seconds=import_sw.seconds,
        pandas=pd.__version__,
    )
    print(json.dumps(record), file=real_stdout)


def _drift_results(snapshot: dict) -> tuple[list[str], list[str]]:
    """(columns tested, columns found drifting) from a snapshot's per-column ``ValueDrift`` metrics."""
    tested, drifted = [], []
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            column = config["column"]
            tested.append(column)
            threshold = config.get("threshold")
            value = metric.get("value")
            if threshold is not None and isinstance(value, int | float):
                # Evidently's rule: p-value tests drift below the threshold, distances above it
                is_pvalue = config.get("method", "").lower().find("p_value") >= 0
                if (value < threshold) if is_pvalue else (value >= threshold):
                    drifted.append(column)
    return tested, drifted


if __name__ == "__main__":
    main()
