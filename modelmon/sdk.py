"""The producer SDK: what a model server calls to log predictions and ground truth to Kafka.

Example (needs a running broker)::

    from modelmon.sdk import MonitorClient

    with MonitorClient("localhost:9092") as monitor:
        pid = monitor.log_prediction("fraud-detector", {"amount": 12.5, "country": "DE"}, 0, score=0.12)
        ...
        monitor.log_ground_truth("fraud-detector", pid, 1)

Delivery: the producer is idempotent (no duplicates from its own retries) and batches messages in
the background; ``log_*`` only enqueue. When the local queue is full they wait at most
``max_block`` seconds and then raise :class:`BufferFullError`, so a slow broker never stalls the
caller's request path for longer than that. Delivery failures are reported to ``on_error`` (default:
logged and counted in :attr:`MonitorClient.failed`); :meth:`flush` returns how many are still
undelivered; :meth:`close` (and leaving the ``with`` block) counts those left after its flush as failed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from modelmon.events import FeatureValue, GroundTruthEvent, PredictionEvent, epoch_ms
from modelmon.topics import Topics

log = logging.getLogger(__name__)

DeliveryErrorHandler = Callable[[KafkaError, Message], None]
# Delivery reports of a producer that failed for good (its idempotence broke) or was purged to be
# replaced: these messages are sent again on a new producer.
_PURGED = frozenset({
    KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._FATAL, KafkaError.UNKNOWN_PRODUCER_ID,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, KafkaError.INVALID_PRODUCER_EPOCH,
})  # fmt: skip

DEFAULT_PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    # The Java client's partitioner (and aiokafka's, inside faust): a key lands on the same
    # partition whichever of them produced it, so predictions and labels stay co-partitioned.
    "partitioner": "murmur2_random",
    "acks": "all",
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 200_000,
    "message.timeout.ms": 120_000,
}


class BufferFullError(RuntimeError):
    """The local send queue stayed full for ``max_block`` seconds (broker slow or down)."""


class _Ids:
    """Prediction ids in UUID4 form: 74 random bits per client process, then a 48-bit counter.

    Unique across processes (the random part is drawn anew in each process, forked children too)
    and within one (the counter), at a fraction of ``uuid.uuid4()``'s cost per id; thread-safe
    (``next`` on ``itertools.count`` is atomic).
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        h = os.urandom(16).hex()
        self._prefix = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-"
        self._count = itertools.count(int(h[20:28], 16))

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"


# The variant bits of RFC 4122: the first hex digit of the fourth group is 8, 9, a or b.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_new_id = _Ids()
_FEATURE_TYPES = frozenset({float, int, str, bool, type(None)})
_TEXT = frozenset({str})


def _finite_number(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


def _probability(value: Any) -> bool:
    kind = type(value)
    return (kind is float or kind is int) and 0.0 <= value <= 1.0


def _simple_prediction(
    model_id: Any, model_version: Any, prediction_id: Any, features: Any, prediction: Any, score: Any,
    scores: Any, tags: Any,
) -> bool:  # fmt: skip
    """Whether the contract surely accepts these values as they are (the common case, checked in C)."""
    return (
        type(model_id) is str and model_id != "" and type(model_version) is str and model_version != ""
        and (prediction_id is None or (type(prediction_id) is str and prediction_id != ""))
        and type(features) is dict and _FEATURE_TYPES.issuperset(map(type, features.values()))
        and _TEXT.issuperset(map(type, features))
        and (type(prediction) is str or _finite_number(prediction))
        and (score is None or _probability(score))
        and (scores is None or (type(scores) is dict and all(map(_probability, scores.values()))
                                and _TEXT.issuperset(map(type, scores))))
        and (tags is None or (type(tags) is dict and _TEXT.issuperset(map(type, tags.values()))
                              and _TEXT.issuperset(map(type, tags))))
    )  # fmt: skip


def _epoch_ms(ts: Any) -> int | None:
    """Epoch ms of now, an int (already ms) or an aware datetime; None: left for the contract to parse."""
    if ts is None:
        return int(time.time() * 1000)
    if type(ts) is int:
        return ts if -62_000_000_000_000 <= ts <= 250_000_000_000_000 else None
    if type(ts) is datetime and ts.tzinfo is not None:
        return epoch_ms(ts)
    return None


def _failed_for_good(error: KafkaException) -> bool:
    """Whether ``produce`` refused because the producer is in librdkafka's fatal state.

    librdkafka reports it as ``_FATAL`` ("Unable to produce message: Local: Fatal error") without
    the error's fatal flag; the flag is set on the error that caused it.
    """
    cause = error.args[0] if error.args else None
    return isinstance(cause, KafkaError) and (cause.fatal() or cause.code() == KafkaError._FATAL)


class MonitorClient:
    """Logs predictions and ground truth to modelmon's Kafka topics.

    ``producer_config`` is passed to confluent-kafka (librdkafka names, e.g.
    ``security.protocol="SASL_SSL"``) and overrides :data:`DEFAULT_PRODUCER_CONFIG`.

    Events are checked at the call with the contract's rules (``modelmon.events``): the usual
    values (str, int, float, bool, None) by a check that runs mostly in C, anything else by the
    contract's pydantic models, whose ``ValidationError`` says what is wrong. The event time is sent
    as epoch milliseconds.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic_prefix: str = "",
        *,
        on_error: DeliveryErrorHandler | None = None,
        max_block: float = 0.5,
        **producer_config: Any,
    ) -> None:
        if max_block < 0:
            raise ValueError("max_block must be >= 0 seconds")
        self.topics = Topics(topic_prefix)
        self._predictions, self._ground_truth = self.topics.predictions, self.topics.ground_truth
        self.max_block = max_block
        self.on_error = on_error
        self.failed = 0
        self._produced = 0
        config = {**DEFAULT_PRODUCER_CONFIG, **producer_config, "bootstrap.servers": bootstrap_servers}
        # Delivery reports for failures only: a successful message costs no Python callback.
        config["delivery.report.only.error"] = True
        self._config = {**config, "on_delivery": self._on_delivery}
        self._producer = Producer(self._config)
        self.renewals = 0
        self._resend: list[tuple[str, bytes, bytes]] = []  # (topic, key, value) of a failed producer

    @property
    def delivered(self) -> int:
        """Messages the broker acknowledged (as of the last ``poll``/``flush``)."""
        return self._produced - self.failed - len(self._producer)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        if error.fatal() or error.code() in _PURGED:
            # The producer failed for good (or was purged to be replaced): the message is sent again
            # on a new producer. If the broker had stored it, the copy is a duplicate that the worker
            # recognises by prediction id and does not count twice.
            self._resend.append((message.topic() or "", message.key() or b"", message.value() or b""))
            return
        self.failed += 1
        if self.on_error is not None:
            self.on_error(error, message)
        else:
            log.error("modelmon: delivery to %s failed: %s", message.topic(), error)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        try:
            self._producer.produce(topic, value, key.encode())
        except (BufferError, KafkaException):
            self._produce_blocking(topic, key, value)
        self._produced += 1
        if self._produced & 1023 == 0:
            self._producer.poll(0)  # serves failure reports now and then

    def _renew(self, error: KafkaException) -> None:
        """Replace a producer that failed for good (e.g. the idempotent producer saw the broker lose
        messages it had acknowledged): what it still held is sent again on the new one."""
        old = self._producer
        log.error(
            "modelmon: the producer failed for good (%s); sending its %d queued messages on a new one",
            error, len(old),
        )  # fmt: skip
        with contextlib.suppress(KafkaException):
            old.purge()  # each purged message comes back through on_delivery, to self._resend
        # poll(), not flush(): flush raises on a failed producer before it serves the reports.
        deadline = time.monotonic() + 2.0
        while len(old) and time.monotonic() < deadline:
            with contextlib.suppress(KafkaException):
                old.poll(0.05)
        if len(old):
            self.failed += len(old)
            log.error("modelmon: %d messages of the failed producer could not be recovered", len(old))
        self._producer = Producer(self._config)
        self.renewals += 1
        resend, self._resend = self._resend, []
        for topic, key, value in resend:
            while True:
                try:
                    self._producer.produce(topic, value, key)
                    break
                except BufferError:
                    self._producer.poll(0.05)
                except KafkaException as again:  # the new producer failed too: report, do not raise
                    self.failed += 1
                    log.error("modelmon: sending again to %s failed: %s", topic, again)
                    break
        if resend:
            log.warning("modelmon: %d messages sent again on the new producer", len(resend))

    def _produce_blocking(self, topic: str, key: str, value: bytes) -> None:
        """Retry while the local queue is full (up to ``max_block``), or on a new producer after the
        old one failed for good."""
        deadline = time.monotonic() + self.max_block
        renewed = False
        while True:
            try:
                self._producer.produce(topic, value, key.encode())
                return
            except BufferError:
                pass
            except KafkaException as error:
                if renewed or not _failed_for_good(error):
                    raise  # not a failed producer, or a new one fails at once: nothing to retry
                self._renew(error)
                renewed = True
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BufferFullError(
                    f"send queue full for {self.max_block}s; the broker is slow or unreachable"
                )
            self._producer.poll(min(remaining, 0.05))

    def log_prediction(
        self,
        model_id: str,
        features: Mapping[str, FeatureValue],
        prediction: float | int | str,
        *,
        model_version: str = "1",
        prediction_id: str | None = None,
        score: float | None = None,
        scores: Mapping[str, float] | None = None,
        ts: datetime | int | str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Enqueue one prediction; returns its prediction id (a new UUID4 when not given).

        Raises ``pydantic.ValidationError`` for an event that breaks the contract, so mistakes
        show up in the caller's tests rather than in the dead-letter topic.
        """
        ts_ms = _epoch_ms(ts)
        if ts_ms is None or not _simple_prediction(
            model_id, model_version, prediction_id, features, prediction, score, scores, tags
        ):
            return self._log_prediction_checked(
                model_id, features, prediction, model_version, prediction_id, score, scores, ts, tags
            )
        pid = prediction_id or _new_id()
        value = orjson.dumps(
            {
                "prediction_id": pid,
                "model_id": model_id,
                "model_version": model_version,
                "ts": ts_ms,
                "features": features,
                "prediction": prediction,
                "score": score,
                "scores": scores,
                "tags": tags or {},
            }
        )
        self._produce(self._predictions, pid, value)
        return pid

    def _log_prediction_checked(
        self, model_id: Any, features: Any, prediction: Any, model_version: Any, prediction_id: Any,
        score: Any, scores: Any, ts: Any, tags: Any,
    ) -> str:  # fmt: skip
        """The contract's own validation (raises ``ValidationError``), then the same message."""
        fields: dict[str, Any] = {
            "model_id": model_id,
            "model_version": model_version,
            "features": dict(features),
            "prediction": prediction,
            "score": score,
            "scores": dict(scores) if scores is not None else None,
            "tags": dict(tags or {}),
            "prediction_id": prediction_id if prediction_id is not None else _new_id(),
        }
        if ts is not None:
            fields["ts"] = ts
        event = PredictionEvent.model_validate(fields)
        value = orjson.dumps(event.model_dump(mode="json") | {"ts": epoch_ms(event.ts)})
        self._produce(self._predictions, event.prediction_id, value)
        return event.prediction_id

    def log_ground_truth(
        self,
        model_id: str,
        prediction_id: str,
        label: float | int | str,
        ts: datetime | int | str | None = None,
    ) -> None:
        """Enqueue the true label of an earlier (or later) prediction."""
        ts_ms = _epoch_ms(ts)
        if (
            ts_ms is not None and type(model_id) is str and model_id != "" and type(prediction_id) is str
            and prediction_id != "" and (type(label) is str or _finite_number(label))
        ):  # fmt: skip
            value = orjson.dumps(
                {"prediction_id": prediction_id, "model_id": model_id, "label": label, "ts": ts_ms}
            )
            self._produce(self._ground_truth, prediction_id, value)
            return
        fields: dict[str, Any] = {"model_id": model_id, "prediction_id": prediction_id, "label": label}
        if ts is not None:
            fields["ts"] = ts
        event = GroundTruthEvent.model_validate(fields)
        value = orjson.dumps(event.model_dump(mode="json") | {"ts": epoch_ms(event.ts)})
        self._produce(self._ground_truth, event.prediction_id, value)

    def produce_raw(self, topic: str, value: bytes, key: str | None = None) -> None:
        """Send bytes as they are (for tools and tests that need malformed messages)."""
        self._producer.produce(topic, key=key.encode() if key else None, value=value)
        self._produced += 1
        self._producer.poll(0)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for delivery; returns the number still undelivered.

        Messages of a producer that failed for good meanwhile are sent again on a new one (once).
        """
        deadline = time.monotonic() + timeout
        remaining = int(self._producer.flush(timeout))
        if self._resend:
            self._renew(KafkaException("deliveries failed for good"))
            remaining = int(self._producer.flush(max(0.0, deadline - time.monotonic())))
        return remaining + len(self._resend)

    def close(self, timeout: float = 10.0) -> int:
        """Flush up to ``timeout`` s, then drop what is left (counted in :attr:`failed`); returns how many."""
        if not self.flush(timeout):
            return 0
        self._resend.clear()
        with contextlib.suppress(KafkaException):
            self._producer.purge()  # purged messages come back through on_delivery, to self._resend
            self._producer.flush(1.0)
        dropped = len(self._resend) + len(self._producer)
        self._resend.clear()
        self.failed += dropped
        log.error("modelmon: %d messages not delivered before close, counted as failed", dropped)
        return dropped

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["BufferFullError", "KafkaException", "MonitorClient"]
