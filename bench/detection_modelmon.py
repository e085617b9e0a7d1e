"""modelmon's side of the detection bench: a stream replayed through the worker's per-window code path.

No Kafka and no faust here, but the same functions the worker calls, in the same order: stage 1
folds each window's events into a ``WindowBundle`` (binned on the reference once there is one);
until then stage 2 hands closed windows to the automatic reference (``first_n``:
``reference_windows`` + ``build_reference``); every later window goes through
``streams.finalize.window_metrics`` (drift per feature with the default chooser and noise control,
``drift_share``, ``dataset_drifted``, accuracy) and ``streams.change.ChangeTracker`` (the default
change detectors on the ``error``, ``drift_share`` and ``feature_drift`` series). One partition,
so no partial merges (merging is exact: it cannot change a verdict).

The one difference from a running worker is the best case for the reference: here the window
right after the reference windows is already binned on it; in a worker the reference reaches
stage 1 through Kafka, so usually the next window or part of it has no drift (docs/references.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from detection_streams import Case, Stream

from detectors.profiles import ReferenceProfile
from modelmon.events import PredictionEvent
from modelmon.spec import ModelSpec, parse_spec
from streams.auto_reference import WindowPart, build_reference, reference_windows
from streams.bundle import BundleKey, JoinedPair, WindowBundle
from streams.change import CHANGE_METRIC, ChangeTracker
from streams.finalize import window_metrics

MODEL_ID = "bench-detection"
WINDOW_MS = 60_000
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class ModelmonRun:
    """Alarms of one replay: for each signal, the event counts at which it alarmed (a window's last event)."""

    alarms: dict[str, list[int]] = field(default_factory=dict)
    first_drift_window_start: int | None = None  # event count where windows with drift begin
    reference_events: int = 0
    drifted_features: dict[int, list[str]] = field(default_factory=dict)  # window end -> drifted names

    def alarm(self, signal: str, at: int) -> None:
        times = self.alarms.setdefault(signal, [])
        if not times or times[-1] != at:
            times.append(at)


def model_spec(case: Case, reference_n: int) -> ModelSpec:
    return parse_spec(
        {
            "model_id": MODEL_ID,
            "task": "binary",
            "features": {name: {"type": kind} for name, kind in case.features.items()},
            "reference": {"source": "first_n", "n": reference_n},
        }
    )


def _events(
    case: Case, stream: Stream, start: int, stop: int, window_start: datetime, window: int
) -> list[PredictionEvent]:
    step = timedelta(milliseconds=WINDOW_MS / window)
    # A producer logs a category as its label: Agrawal's integer codes are sent as text.
    categorical = [name for name, kind in case.features.items() if kind == "categorical"]
    return [
        PredictionEvent(
            prediction_id=f"p{i}",
            model_id=MODEL_ID,
            ts=window_start + (i - start) * step,
            features=stream.features[i] | {name: str(stream.features[i][name]) for name in categorical},
            prediction=int(stream.predictions[i]),
        )
        for i in range(start, stop)
    ]


def replay(case: Case, stream: Stream, *, window: int, reference_n: int) -> ModelmonRun:
    """Feed ``stream`` in tumbling windows of ``window`` events through the worker's per-window path."""
    spec = model_spec(case, reference_n)
    tracker = ChangeTracker({MODEL_ID: spec}, {})
    reference: ReferenceProfile | None = None
    parts: list[WindowPart] = []
    run = ModelmonRun()
    for k in range(len(stream.features) // window):
        start, stop = k * window, (k + 1) * window
        window_start = _EPOCH + timedelta(milliseconds=k * WINDOW_MS)
        key = BundleKey(MODEL_ID, "1", "", k * WINDOW_MS, WINDOW_MS)
        bundle = WindowBundle.empty(key, spec, reference)
        events = _events(case, stream, start, stop, window_start, window)
        ingest_ms = [int((event.ts - _EPOCH).total_seconds() * 1000) for event in events]
        bundle.add_predictions(events, ingest_ms, spec)
        bundle.add_labels(
            [
                JoinedPair(int(stream.predictions[i]), None, None, int(stream.labels[i]), ms, ms)
                for i, ms in zip(range(start, stop), ingest_ms, strict=True)
            ],
            spec,
        )
        binned_on = reference
        if reference is None:
            parts.append(WindowPart.of(bundle))
            chosen = reference_windows(spec, parts)
            if chosen is not None:
                reference = build_reference(spec, chosen)
                run.reference_events = sum(part.events for part in chosen)
        elif run.first_drift_window_start is None:
            run.first_drift_window_start = start
        points = window_metrics(bundle, spec, binned_on)
        update = tracker.feed(key, points)
        tracker.save(update, None)
        drifted = [p.feature for p in points if p.metric == "drifted" and p.value == 1.0]
        if drifted:
            run.drifted_features[stop] = drifted
            run.alarm("feature_drifted", stop)
        if any(p.metric == "dataset_drifted" and p.value == 1.0 for p in points):
            run.alarm("dataset_drifted", stop)
        for point in update.points:
            assert point.metric == CHANGE_METRIC
            _, series, detector = point.source.split("/")
            run.alarm(f"change_{series}", stop)
            run.alarm(f"change_{series}/{detector}", stop)
    return run
