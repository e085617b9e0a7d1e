"""Peer: profile the bench's current rows with whylogs; run inside bench/.venv-whylogs.

Prints one JSON record (see ``bench/common.py:result``) on stdout; everything else goes to stderr.
Timed: ``why.log(pandas=df)`` on all current rows in one call, the most favourable way to call it
(one DataFrame, no per-batch overhead, no merge). Not timed: imports, loading the .npy files,
building the DataFrame, and one warm-up call on the first 1,000 rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")  # no telemetry thread during the timed runs

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
            import whylogs as why
        data = common.load(args.data)
        df = pd.DataFrame(data.frame_dict("current"))
        why.log(pandas=df.iloc[:1000])  # warm-up: lazy imports and caches inside whylogs
        runs, cpu_runs = [], []
        for _ in range(args.repeat):
            with common.Stopwatch() as sw:
                results = why.log(pandas=df)
            runs.append(sw.seconds)
            cpu_runs.append(sw.cpu_seconds)
        profiled = sorted(results.view().get_columns())
        if profiled != sorted(data.columns):
            raise SystemExit(f"whylogs profiled {profiled}, expected {sorted(data.columns)}")
    record = common.result(
        "whylogs",
        version("whylogs"),
        "why.log(pandas=current)",
        len(df),
        runs,
        cpu_runs,
        columns=len(df.columns),
        import_seconds=import_sw.seconds,
        pandas=pd.__version__,
    )
    print(json.dumps(record), file=real_stdout)


if __name__ == "__main__":
    main()
