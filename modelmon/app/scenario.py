"""The demo's script: which traffic is sent when, in compressed event time, with drift injected on cue.

A :class:`Scenario` spreads ``events`` predictions per model evenly over ``windows`` event-time
windows, so a run of any size covers the same timeline (30 one-minute windows by default, half an
hour of event time sent in well under a minute of wall time). :meth:`Scenario.steps` yields what
to send, in order: predictions, their labels when they fall due in event time (late by a random
delay; some very late, after their window has closed; some never), and one burst of malformed
messages. Everything is decided by the seed, so two runs with the same seed send the same bytes
(apart from the event-time origin, which defaults to half an hour before now).

Default timeline (window numbers for 30 windows; the phases are shares of the run, so they scale
with ``windows``; see docs/demo.md):

====================  =========  ===========================================================
what                  windows    expected effect
====================  =========  ===========================================================
normal traffic        0-8        compared with the reference (loaded from training rows)
covariate drift       9-14       two features per model move 2 sd: drift alerts fire, resolve after
malformed burst       12         ``malformed`` bad messages: dead letters with reasons
concept drift         19-29      a new population: the covariate-drift features move again and the
                                 labels turn 45° away from the model, 180° in one segment (the first
                                 value of the first segment tag: ``hit_segment``): accuracy / MAE
                                 alerts naming the moved features and that segment, retrain

Labels: 90 % of the predictions get one, after an exponential delay (mean 15 s of event time); 3 %
of those come 3-6 minutes late, after their window has closed, and re-publish it.
====================  =========  ===========================================================
"""

from __future__ import annotations

import csv
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from modelmon.app.synthetic import SyntheticModel, SyntheticPrediction, malformed_messages
from modelmon.kinds import FeatureKind
from modelmon.spec import ModelSpec

MIN_WINDOWS = 12
"""Fewer windows leave no room for 'for: 3' rules between the phases."""
InjectionKind = Literal["covariate_drift", "malformed_burst", "concept_drift"]


@dataclass(frozen=True)
class Injection:
    """One thing the scenario does to the traffic, over windows ``[start, end)``."""

    kind: InjectionKind
    start: int
    end: int
    what: str


@dataclass(frozen=True)
class Step:
    """One message to send: a prediction, a label, or raw malformed bytes."""

    kind: Literal["prediction", "label", "malformed"]
    model_id: str
    ts: datetime
    prediction_id: str = ""
    item: SyntheticPrediction | None = None
    label: float | int | str | None = None
    raw: bytes = b""


def drift_features(spec: ModelSpec, count: int = 2) -> tuple[str, ...]:
    """The features the covariate drift moves: the first ``count`` important numerical ones, topped up
    with other numerical features in spec order.

    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary", "features": {
    ...     "a": {"type": "numerical"}, "c": {"type": "categorical"},
    ...     "b": {"type": "numerical", "important": True}}})
    >>> drift_features(spec)
    ('b', 'a')
    """
    numerical = [n for n, f in spec.features.items() if f.type is FeatureKind.NUMERICAL]
    important = [n for n in numerical if spec.features[n].important]
    chosen = important + [n for n in numerical if n not in important]
    return tuple(chosen[:count])


def hit_segment(spec: ModelSpec) -> tuple[str, str] | None:
    """The segment the concept drift hits hardest: the first segment tag and its first value (the
    first allowed category when the tag is also a feature); None for a model without segments.

    >>> from modelmon.spec import parse_spec
    >>> hit_segment(parse_spec({"model_id": "m", "task": "binary", "segments": ["country"],
    ...     "features": {"country": {"type": "categorical", "allowed": ["DE", "FR"]}}}))
    ('country', 'DE')
    """
    if not spec.segments:
        return None
    tag = spec.segments[0]
    feature = spec.features.get(tag)
    allowed = feature.allowed if feature is not None and feature.allowed else None
    return tag, str(allowed[0]) if allowed else f"{tag}-0"


def write_training_file(spec: ModelSpec, path: Path, rows: int = 1000, seed: int = 0) -> Path:
    """A CSV of ``rows`` undrifted events (features, ``prediction``, ``score`` for binary models): the
    model's "training data", for ``modelmon reference load``.

    The seed is kept apart from the traffic's, so the reference is another sample of the same world.
    """
    model = SyntheticModel(spec, seed=10_000 + seed)
    columns = [*spec.features, "prediction", *(["score"] if spec.task.value == "binary" else [])]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for item in model.predictions(rows):
            values = [*(item.features[name] for name in spec.features), item.prediction]
            if len(columns) > len(values):
                values.append(item.score)
            writer.writerow(values)
    return path


def _default_start(window_seconds: int, windows: int) -> datetime:
    now = datetime.now(UTC).replace(microsecond=0)
    aligned = now - timedelta(seconds=now.timestamp() % window_seconds)
    return aligned - timedelta(seconds=window_seconds * (windows + 1))


@dataclass(frozen=True)
class Scenario:
    """The timeline of one demo run (see the module docstring)."""

    events: int = 2000
    windows: int = 30
    window_seconds: int = 60
    seed: int = 0
    malformed: int = 50
    start: datetime | None = None
    covariate_share: tuple[float, float] = (0.3, 0.5)
    burst_share: float = 0.4
    concept_share: tuple[float, float] = (0.63, 1.0)
    drift_strength: float = 2.0
    concept_degrees: float = 45.0
    segment_degrees: float = 180.0
    """The concept drift's angle in the hit segment (``hit_segment``): the drop is concentrated there."""
    label_fraction: float = 0.9
    very_late_fraction: float = 0.03
    label_delay_seconds: float = 15.0
    very_late_seconds: tuple[float, float] = (180.0, 360.0)
    origin: datetime = field(init=False)
    covariate: tuple[int, int] = field(init=False)
    """Windows [start, end) of the covariate drift (from ``covariate_share`` of ``windows``)."""
    burst_window: int = field(init=False)
    concept: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.windows < MIN_WINDOWS:
            raise ValueError(f"windows ({self.windows}) must be at least {MIN_WINDOWS}: the story needs them")
        if self.events < self.windows:
            raise ValueError(f"events ({self.events}) must be at least windows ({self.windows}) per model")
        if not 0 <= self.label_fraction <= 1 or not 0 <= self.very_late_fraction <= 1:
            raise ValueError("label_fraction and very_late_fraction are fractions in [0, 1]")
        set_field = object.__setattr__
        set_field(self, "covariate", tuple(round(share * self.windows) for share in self.covariate_share))
        set_field(self, "burst_window", round(self.burst_share * self.windows))
        set_field(self, "concept", tuple(round(share * self.windows) for share in self.concept_share))
        for name, (start, end) in (("covariate", self.covariate), ("concept", self.concept)):
            if not 0 <= start < end <= self.windows:
                raise ValueError(f"{name} windows {start}-{end} must lie within 0-{self.windows}")
        set_field(self, "origin", self.start or _default_start(self.window_seconds, self.windows))

    @property
    def spacing_seconds(self) -> float:
        """Event time between two predictions of one model."""
        return self.windows * self.window_seconds / self.events

    @property
    def end(self) -> datetime:
        return self.window_start(self.windows)

    def window_start(self, window: int) -> datetime:
        return self.origin + timedelta(seconds=window * self.window_seconds)

    def event_time(self, index: int) -> datetime:
        return self.origin + timedelta(seconds=index * self.spacing_seconds)

    def window_of(self, index: int) -> int:
        return int(index * self.spacing_seconds // self.window_seconds)

    def injections(self, specs: dict[str, ModelSpec]) -> list[Injection]:
        moved = "; ".join(f"{m}: {', '.join(drift_features(s))}" for m, s in specs.items())
        out = [
            Injection(
                "covariate_drift",
                *self.covariate,
                f"{moved} move {self.drift_strength:g} sd (labels keep following the model)",
            )
        ]
        if self.malformed:
            out.append(
                Injection(
                    "malformed_burst",
                    self.burst_window,
                    self.burst_window + 1,
                    f"{self.malformed} malformed messages (bad JSON, no model_id, unknown model, ...)",
                )
            )
        out.append(
            Injection(
                "concept_drift",
                *self.concept,
                f"a new population: {moved} move {self.drift_strength:g} sd again and true labels turn "
                f"{self.concept_degrees:g}° away from the model's signal, {self.segment_degrees:g}° in "
                + ", ".join(f"{t}={v}" for t, v in filter(None, map(hit_segment, specs.values()))),
            )
        )
        return sorted(out, key=lambda i: i.start)

    def steps(self, specs: dict[str, ModelSpec]) -> Iterator[Step]:
        """Every message of the run, in sending order (one prediction per model per tick)."""
        models = [SyntheticModel(spec, seed=self.seed * 1000 + i) for i, spec in enumerate(specs.values())]
        moved = {spec.model_id: drift_features(spec) for spec in specs.values()}
        hits = {spec.model_id: hit_segment(spec) for spec in specs.values()}
        rng = np.random.default_rng(self.seed)
        pending: list[tuple[datetime, int, str, str, float | int | str]] = []
        sequence = 0
        burst_sent = not self.malformed
        for index in range(self.events):
            ts = self.event_time(index)
            window = self.window_of(index)
            if not burst_sent and window >= self.burst_window:
                burst_sent = True
                first = next(iter(specs))
                for _, body in malformed_messages(self.malformed, first, ts, seed=self.seed):
                    yield Step("malformed", first, ts, raw=body)
            drifting = self.covariate[0] <= window < self.covariate[1]
            concept = self.concept[0] <= window < self.concept[1]
            for model in models:
                model_id = model.spec.model_id
                moving = drifting or concept  # the concept drift comes with a new population
                model.drift = dict.fromkeys(moved[model_id], self.drift_strength) if moving else {}
                model.concept_degrees = self.concept_degrees if concept else 0.0
                hit = hits[model_id] if concept else None
                model.concept_segment = (*hit, self.segment_degrees) if hit is not None else None
                item = model.prediction()
                pid = f"demo-{self.seed}-{model_id}-{index}"
                yield Step("prediction", model_id, ts, pid, item=item)
                draw = rng.random(2)
                if draw[0] >= self.label_fraction:
                    continue  # this label never arrives
                if draw[1] < self.very_late_fraction:
                    delay = rng.uniform(*self.very_late_seconds)
                else:
                    delay = rng.exponential(self.label_delay_seconds)
                due = ts + timedelta(seconds=float(delay))
                heapq.heappush(pending, (due, sequence, model_id, pid, item.label))
                sequence += 1
            while pending and pending[0][0] <= ts:
                due, _, model_id, pid, label = heapq.heappop(pending)
                yield Step("label", model_id, due, pid, label=label)
        while pending:
            due, _, model_id, pid, label = heapq.heappop(pending)
            yield Step("label", model_id, due, pid, label=label)
