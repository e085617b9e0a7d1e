"""Alerting agents of a worker: rules and retrain policy on ``monitor-metrics``, webhooks for their output.

- ``alert-rules`` reads ``monitor-metrics`` (keyed by model id, so one worker sees all of a model's
  points), folds each batch into the model's :class:`~retrain_trigger.rules.RuleEngine` and
  :class:`~retrain_trigger.policy.RetrainPolicy`, publishes the ``Alert`` transitions on ``alerts``
  and any ``RetrainRequested`` on ``retrain-requests``, then saves both states in faust tables
  (``alert-rules``, ``retrain-policy``), and only then acknowledges the points. A restart restores
  the states from the tables' changelogs: points already folded are recognised by their window and
  revision and change nothing, so nothing fires twice and no resolve is lost. Points replayed
  before their state was saved produce the same events again (deterministic ids and timestamps),
  which ClickHouse deduplicates. A metric point that is not valid JSON goes to ``dead-letter``.
- ``alert-notifier`` reads ``alerts`` and ``retrain-requests`` and hands notifications (firing and
  resolved alerts of one rule and window grouped into one, retrain requests one by one) to the
  :class:`~sinks.webhooks.WebhookNotifier`, which sends them in background tasks with bounded
  queues. Messages are acknowledged once every target delivered or dead-lettered them: at least once.
  A slow or dead endpoint holds back only this agent's acknowledgements, never metric processing.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from confluent_kafka import Producer
from faust.types import EventT, StreamT
from pydantic import SecretStr, ValidationError

from modelmon.events import Alert, DeadLetter, MetricPoint, RetrainRequested, model_to_json
from modelmon.settings import Settings, WebhookTarget
from modelmon.spec import ModelSpec, SpecError
from retrain_trigger.policy import RetrainPolicy
from retrain_trigger.rules import RuleEngine
from sinks.webhooks import DeliveryResult, Notification, WebhookNotifier
from streams.app import changelog_partition_of, publish_all, seeker
from streams.batching import Acknowledger, EventBatcher, StartOf
from streams.state import StateStores
from streams.validation import InvalidEvent, processing_error
from streams.validation import dead_letter as dead_letter_of

log = logging.getLogger(__name__)


def _dead_letter(event: EventT, reason: str, error_type: str) -> DeadLetter:
    return dead_letter_of(event.message, InvalidEvent(error_type, reason.splitlines()[0][:500]))


@dataclass
class AlertingStats:
    points: int = 0
    invalid_points: int = 0
    transitions: int = 0
    retrain_requests: int = 0
    notifications: int = 0


class AlertEvaluator:
    """The ``alert-rules`` agent's logic: one batch of metric points in, alerts and requests out."""

    def __init__(
        self,
        specs: dict[str, ModelSpec],
        rule_store: Any,
        policy_store: Any,
        alerts_topic: faust.TopicT,
        retrain_topic: faust.TopicT,
        dead_topic: faust.TopicT,
        *,
        flush_state: Callable[[], Awaitable[None]] | None = None,
        state_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.specs = {m: s for m, s in specs.items() if s.alerts or s.retrain.enabled}
        self.rule_store = rule_store
        self.policy_store = policy_store
        self.alerts_topic = alerts_topic
        self.retrain_topic = retrain_topic
        self.dead_topic = dead_topic
        self.flush_state = flush_state
        self.state_ready = state_ready
        self.stats = AlertingStats()

    async def process(self, acks: Acknowledger, events: Sequence[EventT]) -> None:
        if self.state_ready is not None:
            await self.state_ready()  # the rule and policy state of this assignment is restored
        by_model: dict[str, list[tuple[EventT, MetricPoint]]] = defaultdict(list)
        letters: list[DeadLetter] = []
        for event in events:
            try:
                point = MetricPoint.model_validate(orjson.loads(event.message.value or b"null"))
            except (orjson.JSONDecodeError, ValidationError) as error:
                self.stats.invalid_points += 1
                letters.append(_dead_letter(event, f"not a MetricPoint: {error}", "invalid_metric_point"))
                continue
            self.stats.points += 1
            if point.model_id in self.specs:
                by_model[point.model_id].append((event, point))
        alerts: list[Alert] = []
        requests: list[RetrainRequested] = []
        saves: list[tuple[EventT, str, dict[str, Any], dict[str, Any]]] = []
        for model_id, items in by_model.items():
            spec = self.specs[model_id]
            saved_rules, saved_policy = self.rule_store.get(model_id), self.policy_store.get(model_id)
            engine = RuleEngine(spec, saved_rules)
            policy = RetrainPolicy(spec, saved_policy)
            points = [point for _, point in items]
            transitions = engine.observe_all(points)
            request = policy.observe(transitions, points)
            alerts.extend(transitions)
            if request is not None:
                requests.append(request)
                log.info("retrain requested for %s: %s", model_id, request.reason)
            rules_state, policy_state = engine.snapshot(), policy.snapshot()
            if rules_state != saved_rules or policy_state != saved_policy:  # unchanged: no changelog write
                saves.append((items[0][0], model_id, rules_state, policy_state))
        for alert in alerts:
            log.info("alert %s %s: %s", alert.state.value, alert.dedup_key, alert.message)
        await publish_all(
            self.dead_topic, [(letter.dedup_key().encode(), model_to_json(letter)) for letter in letters]
        )
        await publish_all(self.alerts_topic, [(a.model_id.encode(), model_to_json(a)) for a in alerts])
        await publish_all(self.retrain_topic, [(r.model_id.encode(), model_to_json(r)) for r in requests])
        for anchor, model_id, rules_state, policy_state in saves:
            with changelog_partition_of(anchor):
                self.rule_store[model_id] = rules_state
                self.policy_store[model_id] = policy_state
        if saves and self.flush_state is not None:
            await self.flush_state()  # the state is logged before its points are released
        self.stats.transitions += len(alerts)
        self.stats.retrain_requests += len(requests)
        for event in events:
            await acks.ack(event)


def pipeline_targets(specs: dict[str, ModelSpec]) -> dict[str, WebhookTarget]:
    """model id → its retrain pipeline webhook (``retrain.webhook``), signed with ``webhook_secret_env``."""
    targets: dict[str, WebhookTarget] = {}
    for model_id, spec in specs.items():
        retrain = spec.retrain
        if not retrain.enabled or not retrain.webhook:
            continue
        secret = None
        if retrain.webhook_secret_env:
            value = os.environ.get(retrain.webhook_secret_env)
            secret = SecretStr(value) if value else None
            if secret is None:
                raise SpecError(
                    f"model {model_id}: retrain.webhook_secret_env names {retrain.webhook_secret_env}, "
                    "which is not set in the worker's environment"
                )
        targets[model_id] = WebhookTarget(
            url=retrain.webhook, format=retrain.webhook_format, secret=secret, kinds=["retrain"]
        )
    return targets


class AlertDispatcher:
    """The ``alert-notifier`` agent's logic: group alerts, queue them per target, ack when handled."""

    def __init__(
        self, targets: list[WebhookTarget], pipelines: dict[str, WebhookTarget], notifier: WebhookNotifier
    ) -> None:
        self.targets = targets
        self.pipelines = pipelines
        self.notifier = notifier
        self.stats = AlertingStats()

    def _parse(self, event: EventT) -> Alert | RetrainRequested | None:
        data = orjson.loads(event.message.value or b"null")
        model = RetrainRequested if isinstance(data, dict) and "idempotency_key" in data else Alert
        return model.model_validate(data)

    async def process(self, acks: Acknowledger, events: Sequence[EventT]) -> None:
        groups: dict[str, tuple[Notification, list[EventT]]] = {}
        for event in events:
            try:
                item = self._parse(event)
            except (orjson.JSONDecodeError, ValidationError) as error:
                # The sink dead-letters unparseable alerts and requests already: no second letter.
                log.warning("skipping an invalid message at %s: %s", event.message.tp, error)
                await acks.ack(event)
                continue
            if isinstance(item, RetrainRequested):
                note = Notification("retrain", request=item)
                groups[f"retrain|{item.request_id}|{event.message.offset}"] = (note, [event])
                self._origin(note, event)
            elif item is not None and item.details.get("notify"):
                key = f"alerts|{item.details.get('group_key') or item.dedup_key}"
                if key not in groups:
                    groups[key] = (self._origin(Notification("alerts"), event), [])
                groups[key][0].alerts.append(item)
                groups[key][1].append(event)
            else:
                await acks.ack(event)  # pending, or cleared before firing: not notified
        for note, held in groups.values():
            await self._dispatch(acks, note, held)

    @staticmethod
    def _origin(note: Notification, event: EventT) -> Notification:
        note.topic, note.partition, note.offset = (
            event.message.topic,
            event.message.partition,
            event.message.offset,
        )
        return note

    async def _dispatch(self, acks: Acknowledger, note: Notification, held: list[EventT]) -> None:
        targets = [t for t in self.targets if note.kind in t.kinds]
        if note.request is not None and note.request.model_id in self.pipelines:
            targets.append(self.pipelines[note.request.model_id])
        self.stats.notifications += 1
        if not targets:
            for event in held:
                await acks.ack(event)
            return
        remaining = {"targets": len(targets)}

        async def done(_: DeliveryResult | None) -> None:
            remaining["targets"] -= 1
            if remaining["targets"] == 0:
                for event in held:
                    await acks.ack(event)

        for target in targets:
            await self.notifier.submit(target, note, done)


@dataclass
class Alerting:
    evaluator: AlertEvaluator
    dispatcher: AlertDispatcher
    notifier: WebhookNotifier


def register_alerting(
    app: faust.App,
    settings: Settings,
    specs: dict[str, ModelSpec],
    start_offsets: StartOf | None = None,
    *,
    producer: Producer,
) -> Alerting:
    """Declare the alert-rules and alert-notifier agents and their tables on ``app``."""
    topics = settings.topics
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    metrics = app.topic(topics.monitor_metrics, **raw)
    outputs = app.topic(topics.alerts, topics.retrain_requests, **raw)
    alerts_topic = app.topic(topics.alerts, **raw)
    retrain_topic = app.topic(topics.retrain_requests, **raw)
    dead = app.topic(topics.dead_letter, **raw)
    state = StateStores(app, settings, topics.monitor_metrics, ["alert-rules", "retrain-policy"], producer)
    evaluator = AlertEvaluator(
        specs,
        state["alert-rules"],
        state["retrain-policy"],
        alerts_topic,
        retrain_topic,
        dead,
        flush_state=state.flush,
        state_ready=state.ready,
    )

    async def dead_letter(letter: DeadLetter) -> None:
        await publish_all(dead, [(letter.dedup_key().encode(), model_to_json(letter))])

    notifier = WebhookNotifier(dead_letter, queue_size=settings.webhook_queue_size)
    dispatcher = AlertDispatcher(list(settings.webhooks), pipeline_targets(specs), notifier)

    def is_current(event: Any) -> bool:
        return bool(event.message.generation_id == app.consumer_generation_id)

    async def poisoned(event: EventT, error: BaseException) -> None:
        await dead_letter(dead_letter_of(event.message, processing_error(error)))

    options: dict[str, Any] = {
        "size": settings.batch_size,
        "within": settings.batch_within,
        "is_current": is_current,
        "on_poison": poisoned,
        "start_of": start_offsets,
        "seek": seeker(app),
    }
    rules_batcher = EventBatcher(evaluator.process, **options)
    notify_batcher = EventBatcher(dispatcher.process, **options)

    @app.agent(metrics, name="alert-rules")
    async def alert_rules(stream: StreamT) -> None:
        await rules_batcher.consume(stream)

    @app.agent(outputs, name="alert-notifier")
    async def alert_notifier(stream: StreamT) -> None:
        await notify_batcher.consume(stream)

    @app.timer(interval=min(settings.batch_within, 0.5))
    async def flush_alerting_batches() -> None:
        await rules_batcher.flush_if_due()
        await notify_batcher.flush_if_due()

    @app.timer(interval=10.0)
    async def report_alerting() -> None:
        log.info("alerting %s, notifier %s %s", evaluator.stats, dispatcher.stats, notifier.stats)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_notifier(app: faust.App, **kwargs: Any) -> None:
        await notifier.aclose()

    return Alerting(evaluator, dispatcher, notifier)
