"""The benchmark data set shared by modelmon and the peer scripts: generation, on-disk layout, loading.

This module must import in every venv that runs a bench script (the project's and each peer's), so
it uses only the standard library and numpy (works with numpy 1.x and 2.x). Columns are stored
column-major, one ``.npy`` per split and type, so each column is a contiguous vector and no pickle
is needed to read the strings back:

* ``reference_num.npy`` / ``current_num.npy``: float64, shape ``(n_numerical, rows)``
* ``reference_cat.npy`` / ``current_cat.npy``: unicode, shape ``(n_categorical, rows)``
* ``meta.json``: column names, seed, row counts and which columns were made to drift
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_ROOT = BENCH_DIR / "data"
FORMAT_VERSION = 1
# Cardinalities cycle over the categorical columns: a flag, a small enum, a country-like code,
# a long-tail id. Categories follow a Zipf-like law, as real categorical features do.
_CARDINALITIES = (3, 12, 60, 400)


@dataclass(frozen=True)
class DataSpec:
    """What to generate; two equal specs produce byte-identical files."""

    reference_rows: int = 50_000
    current_rows: int = 100_000
    numerical: int = 16
    categorical: int = 4
    seed: int = 42

    def dirname(self) -> str:
        return (
            f"detectors-v{FORMAT_VERSION}-s{self.seed}-ref{self.reference_rows}-cur{self.current_rows}"
            f"-n{self.numerical}-c{self.categorical}"
        )


@dataclass
class BenchData:
    """The loaded data set, column-major."""

    numerical_columns: list[str]
    categorical_columns: list[str]
    reference_num: np.ndarray
    reference_cat: np.ndarray
    current_num: np.ndarray
    current_cat: np.ndarray
    meta: dict

    @property
    def columns(self) -> list[str]:
        return self.numerical_columns + self.categorical_columns

    def frame_dict(self, split: str) -> dict[str, np.ndarray]:
        """``{column: vector}`` of one split, ready for ``pandas.DataFrame(...)``."""
        num, cat = (
            (self.reference_num, self.reference_cat)
            if split == "reference"
            else (self.current_num, self.current_cat)
        )
        out: dict[str, np.ndarray] = {}
        for name, vec in zip(self.numerical_columns, num, strict=True):
            out[name] = vec
        for name, vec in zip(self.categorical_columns, cat, strict=True):
            # object dtype so pandas (and so whylogs/Evidently) sees plain Python strings
            out[name] = vec.astype(object)
        return out


def _numerical(rng: np.random.Generator, j: int, rows: int, drift: bool) -> np.ndarray:
    """Column ``j``: one of four shapes seen in model inputs; ``drift`` moves or stretches it."""
    shape = j % 4
    if shape == 0:  # a standardised score
        loc = 0.5 if drift else 0.0
        return rng.normal(loc, 1.0, rows)
    if shape == 1:  # an amount: heavy right tail
        sigma = 1.3 if drift else 1.0
        return rng.lognormal(3.0, sigma, rows)
    if shape == 2:  # a ratio in [0, 1]
        return rng.beta(2.0, 3.0 if drift else 5.0, rows)
    # a count, stored as float like any numeric feature
    return rng.poisson(7.0 if drift else 5.0, rows).astype(np.float64)


def _categorical(rng: np.random.Generator, j: int, rows: int, drift: bool) -> np.ndarray:
    k = _CARDINALITIES[j % len(_CARDINALITIES)]
    weights = 1.0 / np.arange(1, k + 1) ** 1.1
    if drift:
        weights = weights[::-1].copy()  # the rare categories become the common ones
    weights /= weights.sum()
    labels = np.array([f"c{j}_{i}" for i in range(k)])
    return labels[rng.choice(k, size=rows, p=weights)]


def _drifted(count: int) -> list[int]:
    """Every fourth column drifts in the current split, so some tests fire and most do not."""
    return [j for j in range(count) if j % 4 == 1]


def generate(spec: DataSpec, out_dir: Path) -> None:
    """Write the data set for ``spec`` into ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    num_names = [f"num_{j:02d}" for j in range(spec.numerical)]
    cat_names = [f"cat_{j:02d}" for j in range(spec.categorical)]
    drift_num, drift_cat = _drifted(spec.numerical), _drifted(spec.categorical)
    # One child generator per (split, column): changing one column's recipe leaves the others.
    seeds = np.random.SeedSequence(spec.seed).spawn(2 * (spec.numerical + spec.categorical))
    rngs = iter(np.random.default_rng(s) for s in seeds)
    for split, rows in (("reference", spec.reference_rows), ("current", spec.current_rows)):
        is_current = split == "current"
        num = np.empty((spec.numerical, rows), dtype=np.float64)
        for j in range(spec.numerical):
            num[j] = _numerical(next(rngs), j, rows, is_current and j in drift_num)
        cats = [
            _categorical(next(rngs), j, rows, is_current and j in drift_cat) for j in range(spec.categorical)
        ]
        width = max((c.dtype.itemsize // 4 for c in cats), default=1)
        cat = np.empty((spec.categorical, rows), dtype=f"<U{width}")
        for j, c in enumerate(cats):
            cat[j] = c
        np.save(out_dir / f"{split}_num.npy", num, allow_pickle=False)
        np.save(out_dir / f"{split}_cat.npy", cat, allow_pickle=False)
    meta = {
        "format_version": FORMAT_VERSION,
        "spec": asdict(spec),
        "numerical_columns": num_names,
        "categorical_columns": cat_names,
        "drifted_columns": [num_names[j] for j in drift_num] + [cat_names[j] for j in drift_cat],
    }
    # meta.json last: its presence marks a complete data set
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def ensure_data(spec: DataSpec, root: Path = DEFAULT_DATA_ROOT) -> Path:
    """The directory holding ``spec``'s data set, generating it on first use."""
    out_dir = root / spec.dirname()
    if not (out_dir / "meta.json").exists():
        generate(spec, out_dir)
    return out_dir


def load(data_dir: Path | str) -> BenchData:
    data_dir = Path(data_dir)
    meta = json.loads((data_dir / "meta.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{data_dir}: format {meta.get('format_version')}, expected {FORMAT_VERSION}")
    return BenchData(
        numerical_columns=meta["numerical_columns"],
        categorical_columns=meta["categorical_columns"],
        reference_num=np.load(data_dir / "reference_num.npy", allow_pickle=False),
        reference_cat=np.load(data_dir / "reference_cat.npy", allow_pickle=False),
        current_num=np.load(data_dir / "current_num.npy", allow_pickle=False),
        current_cat=np.load(data_dir / "current_cat.npy", allow_pickle=False),
        meta=meta,
    )


def best_of(seconds: list[float]) -> float:
    """The figure reported for repeated runs: the fastest, as ``timeit`` does (noise only adds time)."""
    return min(seconds)


def result(
    tool: str,
    version: str,
    work: str,
    rows: int,
    seconds: list[float],
    cpu_seconds: list[float],
    **extra: object,
) -> dict:
    """The JSON record every bench part (modelmon and each peer script) reports.

    ``seconds`` and ``cpu_seconds`` hold one entry per run; the record's figures are the
    fastest run's wall time and that same run's CPU time.
    """
    best = best_of(seconds)
    return {
        "tool": tool,
        "version": version,
        "work": work,
        "rows": rows,
        "seconds": best,
        "rows_per_s": rows / best if best > 0 else float("inf"),
        "cpu_seconds": cpu_seconds[seconds.index(best)],
        "runs_seconds": seconds,
        "runs_cpu_seconds": cpu_seconds,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pid": os.getpid(),
        **extra,
    }


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (wall) and ``sw.cpu_seconds``.

    ``cpu_seconds`` is this process's CPU time, all threads: less disturbed than wall time when
    other work shares the machine, but blind to time spent waiting.
    """

    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = time.process_time() - self._cpu_start
