"""modelmon's side of the detectors bench: the two-stage streaming path, timed per phase."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import reduce
from importlib.metadata import version
from typing import cast

import common
import numpy as np

from detectors.base import Aggregate, aggregate_from_dict
from detectors.drift import compute, detect_many, ks
from detectors.profiles import ReferenceProfile, WindowAggregate, numeric

STREAM_WORK = "stream: update_batch → partials → to_dict/from_dict → merge → drift per window"
END_TO_END_WORK = "reference profile from raw rows + the stream"
EXTRA_WORK = "the same + PSI on all and exact KS on the 16 numerical features per window"


@dataclass
class StreamRun:
    """Seconds per phase of one streaming run (perf_counter around each phase), and its verdict."""

    update: float = 0.0
    merge: float = 0.0
    drift: float = 0.0
    windows: int = 0
    drifted: tuple[str, ...] = ()
    wall: float = 0.0  # the whole run, loop glue included
    cpu: float = 0.0

    @property
    def seconds(self) -> float:
        return self.wall or (self.update + self.merge + self.drift)


def stream_windows(
    profile: ReferenceProfile,
    current: Mapping[str, np.ndarray],
    *,
    batch_rows: int,
    partitions: int,
    window_rows: int,
    extra_tests: bool = False,
) -> StreamRun:
    """Run the current rows through modelmon's two-stage streaming path once.

    Stage 1: batches of ``batch_rows`` go round-robin to ``partitions`` partial aggregates per
    feature (``update_batch``, vectorised per column). On each window close (every ``window_rows``
    rows, and at the end) stage 2 rebuilds each partial from its ``to_dict`` (as it would from a
    Kafka record), merges them, and computes drift against the reference profile: the default
    method per feature with noise control (``detect_many``: Wasserstein on the reservoir samples
    for numerical features, Jensen-Shannon for categorical ones, like Evidently's defaults), plus
    PSI on every feature and KS on every numerical feature's samples.
    """
    numerical = [name for name, kind in profile.spec.items() if kind == "numerical"]
    run = StreamRun()
    rows = len(next(iter(current.values())))
    tick = time.perf_counter
    for window_start in range(0, rows, window_rows):
        window_end = min(window_start + window_rows, rows)
        t0 = tick()
        partials = [profile.window_aggregates() for _ in range(partitions)]
        for i, start in enumerate(range(window_start, window_end, batch_rows)):
            stop = min(start + batch_rows, window_end)
            for name, aggregate in partials[i % partitions].items():
                aggregate.update_batch(current[name][start:stop])
        t1 = tick()
        shipped = [{name: aggregate_from_dict(a.to_dict()) for name, a in p.items()} for p in partials]
        merged = {name: _merge_all([p[name] for p in shipped]) for name in profile}
        t2 = tick()
        report = detect_many(profile, merged)
        if extra_tests:
            for name in profile:
                compute("psi", profile[name], merged[name])
            for name in numerical:
                compute("ks", profile[name], merged[name])
        t3 = tick()
        run.update += t1 - t0
        run.merge += t2 - t1
        run.drift += t3 - t2
        run.windows += 1
        run.drifted = tuple(report.drifted_features)
    return run


def _merge_all(partials: list[Aggregate]) -> WindowAggregate:
    # Stage 2 only knows each partial as a registered Aggregate rebuilt from its dict.
    return cast(WindowAggregate, reduce(lambda left, right: left.merge(right), partials))


@dataclass
class ModelmonBench:
    """The modelmon part, prepared once (inputs converted, warmed up) and then run round by round."""

    data: common.BenchData
    batch_rows: int
    partitions: int
    window_rows: int
    profile_runs: list[float] = field(default_factory=list)
    profile_cpu_runs: list[float] = field(default_factory=list)
    stream_runs: list[StreamRun] = field(default_factory=list)
    extra_runs: list[StreamRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The dtypes the peers get from pandas: float64 numerical and object (Python str)
        # categorical columns. Converting them is not timed, as building the peers' DataFrames is not.
        self._reference = self.data.frame_dict("reference")
        self._current = self.data.frame_dict("current")
        self._spec = {name: "numerical" for name in self.data.numerical_columns}
        self._spec |= {name: "categorical" for name in self.data.categorical_columns}
        # Warm-up, untimed: first-call costs (scipy's lazy imports, numpy dispatch caches).
        first = min(self.batch_rows, self.window_rows)
        warm = {name: values[:first] for name, values in self._current.items()}
        self._stream(self._profile(), warm)

    def _profile(self) -> ReferenceProfile:
        return ReferenceProfile.from_data(self._reference, self._spec)

    def _stream(
        self, profile: ReferenceProfile, current: Mapping[str, np.ndarray], extra_tests: bool = False
    ) -> StreamRun:
        return stream_windows(
            profile,
            current,
            batch_rows=self.batch_rows,
            partitions=self.partitions,
            window_rows=self.window_rows,
            extra_tests=extra_tests,
        )

    def _cold(self) -> None:
        """Untimed: empty the in-process caches and make new string objects (see ``run_once``)."""
        ks.clear_cache()
        numeric.clear_cache()
        self._reference = self.data.frame_dict("reference")
        self._current = self.data.frame_dict("current")

    def run_once(self) -> None:
        """One timed round: build the reference profile, then stream every current row."""
        # Each round starts cold, as the peers' fresh process per round does: no exact KS p-value
        # (by sample sizes and statistic) or validated bin edges kept from the warm-up or an earlier
        # round, and new string objects (untimed), since CPython keeps a string's hash in the string
        # and counting categories by hashing would otherwise get cheaper from the second round on.
        # The variant with PSI and KS on top runs after it, from cold caches and new strings too.
        self._cold()
        with common.Stopwatch() as sw:
            profile = self._profile()
        self.profile_runs.append(sw.seconds)
        self.profile_cpu_runs.append(sw.cpu_seconds)
        for extra_tests, runs in ((False, self.stream_runs), (True, self.extra_runs)):
            if extra_tests:
                self._cold()
            with common.Stopwatch() as sw:
                run = self._stream(profile, self._current, extra_tests)
            run.wall, run.cpu = sw.seconds, sw.cpu_seconds
            runs.append(run)

    def records(self) -> tuple[dict, dict, dict, dict]:
        """(stream, end-to-end) records of the worker's drift on close, then the same with PSI and KS."""
        return (*self._records(self.stream_runs, STREAM_WORK), *self._records(self.extra_runs, EXTRA_WORK))

    def _records(self, runs: list[StreamRun], work: str) -> tuple[dict, dict]:
        rows = self.data.current_num.shape[1]
        version_ = version("modelmon")
        settings = {
            "batch_rows": self.batch_rows,
            "partitions": self.partitions,
            "window_rows": self.window_rows,
        }
        best = min(runs, key=lambda run: run.seconds)
        stream = common.result(
            "modelmon",
            version_,
            work,
            rows,
            [run.seconds for run in runs],
            [run.cpu for run in runs],
            columns=len(self._spec),
            windows=best.windows,
            phase_seconds={"update_batch": best.update, "merge": best.merge, "drift": best.drift},
            drifted_columns=sorted(best.drifted),
            **settings,
        )
        profile_best = common.best_of(self.profile_runs)
        profile_cpu = self.profile_cpu_runs[self.profile_runs.index(profile_best)]
        end_to_end = common.result(
            "modelmon",
            version_,
            END_TO_END_WORK if work == STREAM_WORK else f"reference profile + {work[0].lower()}{work[1:]}",
            rows,
            [profile_best + stream["seconds"]],
            [profile_cpu + stream["cpu_seconds"]],
            reference_rows=self.data.reference_num.shape[1],
            profile_seconds=profile_best,
            profile_runs_seconds=self.profile_runs,
        )
        return stream, end_to_end

    def details(self) -> str:
        """One line on where the streaming time went, and what drifted."""
        best = min(self.stream_runs, key=lambda run: run.seconds)
        return (
            f"{best.windows} windows of {self.window_rows:,} rows, batches of {self.batch_rows:,} over "
            f"{self.partitions} partials; update_batch {best.update:.3f} s, to_dict/from_dict+merge "
            f"{best.merge:.3f} s, drift {best.drift:.3f} s; reference profile of "
            f"{self.data.reference_num.shape[1]:,} rows {common.best_of(self.profile_runs):.3f} s "
            f"(end-to-end only); flagged: {', '.join(sorted(best.drifted)) or 'none'}; with PSI and KS "
            f"on top: drift {min(self.extra_runs, key=lambda run: run.seconds).drift:.3f} s"
        )
