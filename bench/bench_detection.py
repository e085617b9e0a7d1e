"""Detection delay and false alarms of modelmon's default drift setup vs river's ADWIN per event (issue #7).

Usage (from the repository root)::

    .venv/bin/python bench/bench_detection.py            # full run: 7 streams x 10 seeds, a few minutes
    .venv/bin/python bench/bench_detection.py --quick    # smoke run: 3 streams, 1 seed, a few seconds

Streams with one known change point come from river's generators (``bench/detection_streams.py``).
modelmon replays each stream through the worker's per-window code path (``bench/detection_modelmon.py``):
tumbling windows of ``--window`` events, the automatic ``first_n`` reference, ``detect_many`` with the
default chooser and noise control, and the default change detectors on the per-window series.
river's ADWIN (its defaults) runs per event on each feature's values and on the model's error
indicator. An alarm at event t (a window's verdict counts at its last event) is a false alarm when
t <= the change point or when the signal's target does not change on that stream; otherwise the
first one is the detection, with delay t - change point. See bench/README.md, section "Detection".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import detection_streams as streams
import numpy as np
from bench_detectors import load_average, machine
from detection_modelmon import replay
from river import drift

REPO_DIR = Path(__file__).resolve().parent.parent
QUICK_CASES = ("rbf-switch", "sea-concept", "sea-none")


@dataclass(frozen=True)
class Signal:
    key: str
    tool: str
    label: str
    target: str  # "inputs" or "error": what must change for an alarm to be a detection


SIGNALS = (
    Signal("dataset_drifted", "modelmon", "window: dataset_drifted (drift_share >= 0.5)", "inputs"),
    Signal("feature_drifted", "modelmon", "window: any feature drifted", "inputs"),
    Signal("change_drift_share", "modelmon", "change detectors on drift_share per window", "inputs"),
    Signal("change_feature_drift", "modelmon", "change detectors on each feature's drift score", "inputs"),
    Signal("adwin_features", "river", "ADWIN per event on each feature's values", "inputs"),
    Signal("change_error", "modelmon", "change detectors on 1 - accuracy per window", "error"),
    Signal("adwin_error", "river", "ADWIN per event on the error indicator", "error"),
)
DETECTOR_SIGNALS = tuple(
    f"change_{series}/{detector}"
    for series in ("drift_share", "feature_drift", "error")
    for detector in ("adwin", "page_hinkley")
)


@dataclass
class Outcome:
    """One signal on one seeded stream."""

    case: str
    seed: int
    signal: str
    changes: bool
    monitored_from: int
    monitored_to: int
    alarms: list[int]
    false_alarms: int = 0
    delay: int | None = None

    def __post_init__(self) -> None:
        # monitored_to is the change point when the target changes, else the stream's end.
        self.false_alarms = sum(1 for t in self.alarms if t <= self.monitored_to)
        later = [t for t in self.alarms if t > self.monitored_to]
        self.delay = later[0] - self.monitored_to if self.changes and later else None


@dataclass
class Summary:
    case: str
    signal: str
    tool: str
    label: str
    changes: bool
    runs: int
    detected: int
    delays: list[int] = field(default_factory=list)
    false_alarms: int = 0
    runs_with_false_alarm: int = 0
    monitored_events: int = 0

    @property
    def false_alarms_per_100k(self) -> float:
        return 1e5 * self.false_alarms / self.monitored_events if self.monitored_events else float("nan")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--window", type=int, default=1000, help="events per tumbling window")
    p.add_argument("--reference-n", type=int, default=5000, help="first_n: events in the reference")
    p.add_argument("--position", type=int, default=25_000, help="the change point (event count)")
    p.add_argument("--length", type=int, default=45_000, help="events per stream")
    p.add_argument("--width", type=int, help="ConceptDriftStream width (default: the sharpest it computes)")
    p.add_argument("--seeds", type=int, default=10, help="seeds 1..N per stream")
    p.add_argument("--cases", default=",".join(streams.CASE_NAMES), help="comma-separated stream names")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {', '.join(QUICK_CASES)}; 1 seed")
    p.add_argument("--json", type=Path, help="also write every outcome and the summary to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.length, args.position = 1, 34_000, 20_000
        args.cases = ",".join(QUICK_CASES)
    args.case_names = [name for name in args.cases.split(",") if name]
    if unknown := sorted(set(args.case_names) - set(streams.CASE_NAMES)):
        p.error(f"unknown stream(s) {unknown}; valid: {', '.join(streams.CASE_NAMES)}")
    for name in ("window", "seeds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.reference_n < 10:
        p.error("--reference-n must be at least 10 (the model spec's minimum)")
    reference_end = -(-args.reference_n // args.window) * args.window
    if not reference_end + args.window <= args.position < args.length - args.window:
        p.error(
            f"--position must leave a window with drift before it (>= {reference_end + args.window}) and "
            f"one after it (< {args.length - args.window})"
        )
    args.width = args.width or streams.default_width(args.position)
    try:
        streams.check_width(args.position, args.width)
    except ValueError as error:
        p.error(str(error))
    return args


def adwin_alarms(values: np.ndarray, start: int) -> list[int]:
    """Event counts at which a fresh river ADWIN (defaults) fed ``values[start:]`` one by one detects."""
    detector = drift.ADWIN()
    alarms = []
    for i in range(start, values.size):
        detector.update(float(values[i]))
        if detector.drift_detected:
            alarms.append(i + 1)
    return alarms


def adwin_on_features(case: streams.Case, stream: streams.Stream, start: int, stop: int) -> list[int]:
    """ADWIN per feature on values min-max scaled by the reference events; alarm when any feature's fires.

    ADWIN's cut bound assumes values in [0, 1] (its ``2/(3m) ln(2/delta)`` term is not scaled), so each
    feature is scaled by the reference's range; values outside it are kept, not clipped.
    """
    alarms: set[int] = set()
    for name in case.features:
        column = stream.column(name)[:stop]
        low, high = float(column[:start].min()), float(column[:start].max())
        scaled = (column - low) / (high - low) if high > low else column - low
        alarms.update(adwin_alarms(scaled, start))
    return sorted(alarms)


def run_case(case: streams.Case, seed: int, args: argparse.Namespace) -> list[Outcome]:
    stop = args.length // args.window * args.window
    stream = streams.generate(
        case, seed, length=stop, position=args.position, width=args.width, reference_n=args.reference_n
    )
    modelmon = replay(case, stream, window=args.window, reference_n=args.reference_n)
    start = modelmon.first_drift_window_start
    assert start is not None, "the parser keeps a window with drift before the change point"
    alarms = dict(modelmon.alarms)
    alarms["adwin_features"] = adwin_on_features(case, stream, start, stop)
    alarms["adwin_error"] = adwin_alarms(stream.errors[:stop], 0)
    outcomes = []
    for key in [s.key for s in SIGNALS] + list(DETECTOR_SIGNALS):
        target = "error" if key.endswith("error") or "_error/" in key else "inputs"
        changes = case.error_change if target == "error" else case.inputs_change
        outcomes.append(
            Outcome(
                case=case.name,
                seed=seed,
                signal=key,
                changes=changes,
                monitored_from=0 if target == "error" else start,
                monitored_to=args.position if changes else stop,
                alarms=alarms.get(key, []),
            )
        )
    return outcomes


def summarise(outcomes: list[Outcome], cases: list[streams.Case]) -> list[Summary]:
    rows = []
    for case in cases:
        for signal in SIGNALS:
            mine = [o for o in outcomes if o.case == case.name and o.signal == signal.key]
            changes = mine[0].changes
            delays = [o.delay for o in mine if o.delay is not None]
            rows.append(
                Summary(
                    case=case.name,
                    signal=signal.key,
                    tool=signal.tool,
                    label=signal.label,
                    changes=changes,
                    runs=len(mine),
                    detected=len(delays),
                    delays=delays,
                    false_alarms=sum(o.false_alarms for o in mine),
                    runs_with_false_alarm=sum(1 for o in mine if o.false_alarms),
                    monitored_events=sum(o.monitored_to - o.monitored_from for o in mine),
                )
            )
    return rows


def fmt_delay(row: Summary) -> str:
    if not row.changes:
        return "(no change)"
    if not row.delays:
        return "none detected"
    median = statistics.median(row.delays)
    return f"{median:,.0f} ({min(row.delays):,} to {max(row.delays):,})"


def markdown_table(rows: list[Summary]) -> list[str]:
    header = (
        "stream",
        "tool",
        "signal",
        "detected",
        "delay (events): median, min to max",
        "false alarms",
        "false alarms per 100k events",
    )
    cells = [
        (
            row.case,
            row.tool,
            row.label,
            f"{row.detected}/{row.runs}" if row.changes else "-",
            fmt_delay(row),
            f"{row.false_alarms} in {row.runs_with_false_alarm}/{row.runs} runs",
            f"{row.false_alarms_per_100k:.1f}",
        )
        for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    numeric = {3, 4, 5, 6}

    def line(values: tuple[str, ...]) -> str:
        padded = [
            v.rjust(w) if i in numeric else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i in numeric else "-") for i, w in enumerate(widths)) + "|"
    return [line(header), rule, *(line(c) for c in cells)]


def versions() -> dict[str, str]:
    return {name: version(name) for name in ("modelmon", "river", "numpy", "scipy")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    cases = [case for case in streams.CASES if case.name in args.case_names]
    host, libs = machine(), versions()
    command = f"cd {shlex.quote(str(REPO_DIR))} && " + shlex.join(
        [".venv/bin/python", "bench/bench_detection.py", *argv]
    )
    started = dt.datetime.now().astimezone()
    print(f"# modelmon detection bench, {started.isoformat(timespec='seconds')}")
    print(f"machine: {host['cores']} cores, {host['cpu']}, {host['os']}, Python {host['python']}")
    print("versions: " + ", ".join(f"{name} {v}" for name, v in libs.items()))
    print(f"reproduce: {command}")
    print(
        f"streams: {len(cases)} x seeds 1..{args.seeds}, {args.length:,} events each, change centred on "
        f"event {args.position:,} (ConceptDriftStream width {args.width}); modelmon: windows of "
        f"{args.window:,} events, reference = first_n {args.reference_n:,}"
    )
    for case in cases:
        print(f"  {case.name}: {case.description}")
    print(flush=True)
    outcomes: list[Outcome] = []
    begun = time.perf_counter()
    for case in cases:
        for seed in range(1, args.seeds + 1):
            outcomes.extend(run_case(case, seed, args))
        print(f"{case.name}: {args.seeds} run(s) done ({time.perf_counter() - begun:.0f} s)", flush=True)
    rows = summarise(outcomes, cases)
    print()
    print("\n".join(markdown_table(rows)))
    print()
    print(
        "detected: runs whose first alarm after the change point came before the stream's end; delay: that "
        "alarm's event count minus the change point (a window alarms at its last event).\nfalse alarms: "
        "alarms at or before the change point, or anywhere on a stream where the signal's target "
        "(inputs or error) does not change; per 100k monitored events (inputs: from the first window with "
        "drift, error: from the first event)."
    )
    print(f"load average at the end: {load_average():.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "started": started.isoformat(timespec="seconds"),
            "machine": host,
            "versions": libs,
            "command": command,
            "settings": {k: v for k, v in vars(args).items() if k not in ("json", "quick", "cases")},
            "summary": [asdict(row) | {"false_alarms_per_100k": row.false_alarms_per_100k} for row in rows],
            "outcomes": [asdict(o) for o in outcomes],
        }
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"records written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
