"""Automatic reference profiles: the first N events or the first period of a model version, built in stage 2.

For a model whose spec says ``reference.source: first_n`` or ``first_period``, stage 2 hands every
closed whole-model window of a version that has no reference yet to :class:`AutoReferenceBuilder`.
It keeps the window's feature and output aggregates (moments, bounded sample, category counts),
and once the windows cover the first ``n`` events (``first_n``) or the first ``period`` of event
time (``first_period``) it builds a :class:`ReferenceProfile` with
:meth:`ReferenceProfile.from_aggregates` and publishes it on the compacted reference topic
(source ``first_n`` / ``first_period``). The catalog then serves it: stage 1 bins later windows
on it and stage 2 computes their drift. Windows closed before the reference exists get no drift.

Guarantees:

- **Whole windows, in event-time order.** ``first_n``: the windows from the earliest one, in
  window-start order, up to the one that brings the event count to at least ``n`` (so the
  reference holds at least ``n`` events). ``first_period``: the windows starting within
  ``period`` of the earliest window, built once a window reaching the period's end has closed.
  "Earliest" is among the windows closed by then; a window of earlier event time that closes
  later is not part of it.
- **Built once per (model, version).** Never when the catalog has a reference for the version
  (also one loaded from a file, and after a restart, since the worker reads the whole topic at
  start; building waits until the catalog has caught up), nor again after a publication in this
  process. The accumulation state is **rebuilt deterministically** rather than stored: on the
  first window of a version after a start or a rebalance, it is seeded from stage 2's
  ``closed-windows`` table (a faust table with a changelog, which holds every closed window's
  final parts), and replayed partials re-close their windows. The same windows therefore give
  the same profile (and the same ``reference_id`` in stage 1) on whichever worker builds it.
- **Publishing off the event loop** (``publish_reference`` blocks on a confluent producer); a
  failure is logged and retried with backoff (1 s doubling to 60 s) at later window closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from detectors.profiles import (
    CategoricalAggregate,
    NumericAggregate,
    ReferenceProfile,
    WindowAggregate,
)
from detectors.score_histogram import ScoreHistogramAggregate
from detectors.scored import calibration_from_histograms
from modelmon.references import PREDICTION_FEATURE
from modelmon.settings import Settings
from modelmon.spec import ModelSpec, Task, parse_duration
from streams.bundle import BundleKey, WindowBundle
from streams.references import PRODUCER_CONFIG, publish_reference
from streams.window_key import window_id

log = logging.getLogger(__name__)

AUTOMATIC_SOURCES = ("first_n", "first_period")
MAX_RETRY_SECONDS = 60.0

ReferenceLookup = Callable[[str, str], ReferenceProfile | None]
Publish = Callable[[str, str, ReferenceProfile, str], Any]
"""``publish(model_id, version, profile, source)``, blocking; raises when not delivered."""


def waiting_for_reference(spec: ModelSpec, events: int, covered_ms: int = 0) -> str:
    """What a model version without a reference waits for (the worker logs it, `modelmon status` shows it).

    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary", "features": {"x": {"type": "numerical"}}})
    >>> waiting_for_reference(spec, 1234)
    'no reference yet: 1,234 of 5,000 events (first_n)'
    >>> spec.reference.source, spec.reference.period = "first_period", "2h"
    >>> waiting_for_reference(spec, 10, covered_ms=25 * 60_000)
    'no reference yet: 25m of 2h of events (first_period)'
    """
    reference = spec.reference
    if reference.source == "first_n":
        return f"no reference yet: {events:,} of {reference.n:,} events (first_n)"
    if reference.source == "first_period":
        minutes = covered_ms // 60_000
        covered = f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
        return f"no reference yet: {covered} of {reference.period} of events (first_period)"
    return f"no reference yet: file {reference.path or '(no path)'} not loaded"


@dataclass(frozen=True)
class WindowPart:
    """What a reference needs of one closed window: its event count and feature/output aggregates."""

    start_ms: int
    window_ms: int
    events: int
    features: dict[str, WindowAggregate]
    scores: NumericAggregate | None
    classes: CategoricalAggregate | None
    labelled: ScoreHistogramAggregate | None = None
    """Score histograms of the window's labelled predictions: the reference's calibration."""

    @classmethod
    def of(cls, bundle: WindowBundle) -> WindowPart:
        return cls(
            start_ms=bundle.key.window_start_ms,
            window_ms=bundle.key.window_ms,
            events=bundle.events,
            features=bundle.features,
            scores=bundle.prediction_values,
            classes=bundle.prediction_classes,
            labelled=bundle.scores,
        )


def reference_windows(spec: ModelSpec, parts: Iterable[WindowPart]) -> list[WindowPart] | None:
    """The windows the reference of ``spec`` is built from, in start order; ``None`` while incomplete.

    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary", "features": {"x": {"type": "numerical"}},
    ...                    "reference": {"source": "first_n", "n": 250}})
    >>> parts = [WindowPart(s * 60_000, 60_000, 100, {}, None, None) for s in (2, 0, 1, 3)]
    >>> [p.start_ms // 60_000 for p in reference_windows(spec, parts)]
    [0, 1, 2]
    >>> reference_windows(spec, parts[:2]) is None
    True
    """
    ordered = sorted(parts, key=lambda part: part.start_ms)
    if not ordered:
        return None
    if spec.reference.source == "first_n":
        covered = 0
        for index, part in enumerate(ordered):
            covered += part.events
            if covered >= spec.reference.n:
                return ordered[: index + 1]
        return None
    if spec.reference.source == "first_period":
        end = ordered[0].start_ms + int(parse_duration(spec.reference.period).total_seconds() * 1000)
        if any(part.start_ms + part.window_ms >= end for part in ordered):
            return [part for part in ordered if part.start_ms < end]
        return None
    raise ValueError(f"reference source {spec.reference.source!r} is not built from events")


def build_reference(
    spec: ModelSpec, parts: Iterable[WindowPart], *, sample_size: int = 4096, max_categories: int = 200
) -> ReferenceProfile:
    """The profile of ``spec``'s features and model output over ``parts`` (see the module docstring).

    The output is ``__prediction__`` as for a file (``modelmon.references.reference_kinds``): the
    score of a binary model (its predicted class when no event had a score), the prediction of a
    regression model, the predicted class of a multiclass model. A feature (or output) with no
    present value in these windows is left out, with a warning: it gets no drift. A classifier
    whose windows hold labelled scores also gets a score calibration from their histograms
    (performance estimation; ``detectors.scored.calibration_from_histograms``).
    """
    windows = list(parts)
    columns: dict[str, list[WindowAggregate]] = {
        name: [part.features[name] for part in windows if name in part.features]
        for name in sorted(spec.features)
    }
    scores = [part.scores for part in windows if part.scores is not None]
    classes = [part.classes for part in windows if part.classes is not None]
    scored = sum(score.count for score in scores) > 0
    if spec.task is Task.REGRESSION or (spec.task is Task.BINARY and scored):
        columns[PREDICTION_FEATURE] = list(scores)
    elif classes:
        columns[PREDICTION_FEATURE] = list(classes)
    present = {name: aggs for name, aggs in columns.items() if sum(agg.count for agg in aggs) > 0}
    empty = sorted(set(columns) - set(present))
    if empty:
        log.warning(
            "automatic reference of %s: no present value of %s in its windows; no drift for them",
            spec.model_id, ", ".join(empty),
        )  # fmt: skip
    if not present:
        raise ValueError(f"automatic reference of {spec.model_id}: no feature has a present value")
    profile = ReferenceProfile.from_aggregates(
        present, sample_size=sample_size, max_categories=max_categories
    )
    labelled = [part.labelled for part in windows if part.labelled is not None]
    calibration, rows = calibration_from_histograms(spec, labelled)
    if calibration is not None:
        log.info("automatic reference of %s: calibration from %d labelled scores", spec.model_id, rows)
    return profile.with_calibration(calibration)


@dataclass
class VersionProgress:
    """The closed windows of one model version that has no reference yet."""

    partition: int
    parts: dict[int, WindowPart] = field(default_factory=dict)
    retry_at: float = 0.0
    retry_delay: float = 1.0


@dataclass
class AutoReferenceStats:
    windows_seen: int = 0
    built: int = 0
    publish_failures: int = 0
    build_failures: int = 0


class AutoReferenceBuilder:
    """Accumulates the first windows of model versions without a reference and publishes their reference.

    Parameters
    ----------
    specs
        The model specs; only models with ``reference.source`` first_n / first_period are built.
    references
        The catalog lookup ``(model_id, version) -> profile | None``.
    publish
        Blocking ``publish(model_id, version, profile, source)``; run in a thread.
    saved_windows
        Stage 2's closed-window store (``window_id`` → ``{"base": bundle dict, ...}``), read to
        seed a version's windows after a start or a rebalance.
    ready
        Whether the catalog has read the reference topic to its end; building waits for it.
    """

    def __init__(
        self,
        specs: Mapping[str, ModelSpec],
        references: ReferenceLookup,
        publish: Publish,
        saved_windows: Mapping[str, Any] | None = None,
        *,
        ready: Callable[[], bool] = lambda: True,
        sample_size: int = 4096,
        max_categories: int = 200,
    ) -> None:
        self.specs = specs
        self.references = references
        self.publish = publish
        self.saved_windows = saved_windows if saved_windows is not None else {}
        self.ready = ready
        self.sample_size = sample_size
        self.max_categories = max_categories
        self.progress: dict[tuple[str, str], VersionProgress] = {}
        self.done: set[tuple[str, str]] = set()
        self.announced: set[tuple[str, str]] = set()
        """Versions whose missing reference was logged (once per version and process)."""
        self.stats = AutoReferenceStats()

    def wants(self, key: BundleKey, reference_id: str) -> bool:
        """Whether a closed window of ``key`` (binned on ``reference_id``) counts towards a reference."""
        spec = self.specs.get(key.model_id)
        if spec is None or key.segment or reference_id:
            return False  # segments repeat the whole-model window; a reference exists
        version = (key.model_id, key.model_version)
        if spec.reference.source not in AUTOMATIC_SOURCES:
            if version not in self.announced and self.ready() and self.references(*version) is None:
                self.announced.add(version)
                log.info(
                    "model %s version %s: %s; drift starts after `modelmon reference load %s`",
                    *version, waiting_for_reference(spec, 0), key.model_id,
                )  # fmt: skip
            return False
        if version in self.done:
            return False
        if self.references(*version) is not None:
            self.done.add(version)
            self.progress.pop(version, None)
            return False
        return True

    def observe(self, key: BundleKey, reference_id: str, bundle: WindowBundle, partition: int) -> None:
        """Take a closed (or re-emitted) window; the newest emission of a window replaces the older one."""
        if not self.wants(key, reference_id):
            return
        version = (key.model_id, key.model_version)
        progress = self.progress.get(version)
        if progress is None:
            progress = self.progress[version] = VersionProgress(partition)
            self._seed(version, progress)
        progress.parts[key.window_start_ms] = WindowPart.of(bundle)
        self.stats.windows_seen += 1
        if version not in self.announced and self.ready():
            self.announced.add(version)
            parts = progress.parts.values()
            covered = max(p.start_ms + p.window_ms for p in parts) - min(p.start_ms for p in parts)
            waiting = waiting_for_reference(self.specs[key.model_id], sum(p.events for p in parts), covered)
            log.info(
                "model %s version %s: %s; drift starts when it is complete, or run "
                "`modelmon reference load %s`",
                *version, waiting, key.model_id,
            )  # fmt: skip

    def _seed(self, version: tuple[str, str], progress: VersionProgress) -> None:
        """Add the version's whole-model windows saved (closed) before, unbinned ones only."""
        model_id, model_version = version
        prefix = f"{model_id}|{model_version}||"
        for name, saved in list(self.saved_windows.items()):
            if not (isinstance(name, str) and name.startswith(prefix) and name.endswith("|")):
                continue
            try:
                start, window_ms = (int(part) for part in name[len(prefix) : -1].split("|"))
                key = BundleKey(model_id, model_version, "", start, window_ms)
                if window_id(key, "") != name or not saved or not saved.get("base"):
                    continue
                progress.parts.setdefault(start, WindowPart.of(WindowBundle.from_dict(saved["base"])))
            except (KeyError, TypeError, ValueError) as error:
                log.warning("closed window %s not usable for the automatic reference: %s", name, error)
        if progress.parts:
            log.info("automatic reference of %s version %s: %d saved windows", *version, len(progress.parts))

    async def build_ready(self) -> list[tuple[str, str]]:
        """Build and publish every reference whose windows are complete; returns the versions published."""
        published: list[tuple[str, str]] = []
        now = time.monotonic()
        if not self.progress or not self.ready():
            return published
        for version, progress in list(self.progress.items()):
            spec = self.specs[version[0]]
            windows = reference_windows(spec, progress.parts.values())
            if windows is None or now < progress.retry_at:
                continue
            if self.references(*version) is not None:  # e.g. loaded from a file meanwhile
                self.done.add(version)
                del self.progress[version]
                continue
            try:
                profile = build_reference(
                    spec, windows, sample_size=self.sample_size, max_categories=self.max_categories
                )
            except ValueError as error:
                # Deterministic: the same windows fail again, so stop for this process and say so.
                self.stats.build_failures += 1
                log.error("%s; model %s version %s gets no automatic reference", error, *version)
                self.done.add(version)
                del self.progress[version]
                continue
            source = spec.reference.source
            try:
                await asyncio.to_thread(self.publish, version[0], version[1], profile, source)
            except Exception as error:  # a broker problem must not stop stage 2; retried later
                self.stats.publish_failures += 1
                progress.retry_at = now + progress.retry_delay
                log.error(
                    "publishing the automatic reference of %s version %s failed (retry in %.0f s): %s",
                    *version, progress.retry_delay, error,
                )  # fmt: skip
                progress.retry_delay = min(progress.retry_delay * 2, MAX_RETRY_SECONDS)
                continue
            self.done.add(version)
            del self.progress[version]
            self.stats.built += 1
            published.append(version)
            events = sum(part.events for part in windows)
            log.info(
                "built the %s reference of %s version %s from %d windows (%d events, %s to %s)",
                source, *version, len(windows), events, windows[0].start_ms, windows[-1].start_ms,
            )  # fmt: skip
        return published

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget versions fed by revoked partials partitions; their new owner seeds them again."""
        for version in [v for v, p in self.progress.items() if p.partition in partitions]:
            del self.progress[version]


class ReferenceTopicPublisher:
    """The worker's :data:`Publish`: ``publish_reference`` with one producer, made on first use."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        self.settings = settings
        self.topic = settings.topics.reference_profiles
        self.timeout = timeout
        self._producer: Producer | None = None

    def __call__(self, model_id: str, version: str, profile: ReferenceProfile, source: str) -> int:
        if self._producer is None:
            self._producer = Producer({**self.settings.kafka_common(), **PRODUCER_CONFIG})
        return publish_reference(
            self._producer, model_id, version, profile, source, topic=self.topic, timeout=self.timeout
        )
