"""Peer: NannyML CBPE on the estimation bench's chunks; run inside bench/.venv-nannyml.

Reads the data set written by ``bench/bench_estimation.py`` (reference scores and labels, and per
scenario the analysis scores, whose labels it never reads), fits ``CBPE`` on the reference and
estimates accuracy and ROC AUC per chunk. Prints one JSON record on stdout; everything else goes to
stderr. Timed: ``fit(reference)``; ``estimate(analysis)`` of all of a scenario's chunks in one call
(NannyML's favourable batch mode), and ``estimate`` of each chunk on its own (as a stream would call
it, one window at a time). Not timed: imports, loading the .npy files, building the DataFrames.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no telemetry during the timed runs
METRICS = ("accuracy", "roc_auc")


def frame(pd, scores: np.ndarray, labels: np.ndarray | None):
    columns = {"score": scores, "pred": (scores >= 0.5).astype(int)}
    if labels is not None:
        columns["y"] = labels.astype(int)
    return pd.DataFrame(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="directory written by bench_estimation.py")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the fastest is reported")
    args = parser.parse_args()
    meta = json.loads((args.data / "meta.json").read_text())
    chunk = int(meta["chunk_rows"])

    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        started = time.perf_counter()
        import nannyml as nml
        import pandas as pd

        import_seconds = time.perf_counter() - started
        reference = frame(
            pd, np.load(args.data / "reference_scores.npy"), np.load(args.data / "reference_labels.npy")
        )

        def fitted():
            cbpe = nml.CBPE(
                problem_type="classification_binary",
                y_pred_proba="score",
                y_pred="pred",
                y_true="y",
                metrics=list(METRICS),
                chunk_size=chunk,
            )
            started = time.perf_counter()
            cbpe.fit(reference)
            return cbpe, time.perf_counter() - started

        fits = [fitted() for _ in range(args.repeat)]
        cbpe, fit_seconds = fits[0][0], min(seconds for _, seconds in fits)
        scenarios = {}
        for name in meta["scenarios"]:
            analysis = frame(pd, np.load(args.data / f"{name}_scores.npy"), None)
            batch = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                result = cbpe.estimate(analysis)
                batch.append(time.perf_counter() - started)
            df = result.to_df()
            df = df[df[("chunk", "period")] == "analysis"]  # it also reports the reference's chunks
            windows = len(analysis) // chunk
            if len(df) != windows:
                raise SystemExit(f"NannyML returned {len(df)} chunks, expected {windows}")
            single = []
            for i in range(windows):
                best = float("inf")
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    cbpe.estimate(analysis.iloc[i * chunk : (i + 1) * chunk])
                    best = min(best, time.perf_counter() - started)
                single.append(best)
            scenarios[name] = {
                metric: {
                    "value": df[(metric, "value")].astype(float).tolist(),
                    "lower": df[(metric, "lower_confidence_boundary")].astype(float).tolist(),
                    "upper": df[(metric, "upper_confidence_boundary")].astype(float).tolist(),
                    "sampling_error": df[(metric, "sampling_error")].astype(float).tolist(),
                }
                for metric in METRICS
            }
            scenarios[name]["batch_seconds"] = min(batch)
            scenarios[name]["single_chunk_seconds"] = single
    record = {
        "tool": "nannyml",
        "version": version("nannyml"),
        "import_seconds": import_seconds,
        "fit_seconds": fit_seconds,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "scenarios": scenarios,
    }
    print(json.dumps(record), file=real_stdout)


if __name__ == "__main__":
    main()
