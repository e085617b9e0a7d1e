"""Webhook notifications of alerts and retrain requests: payload formats, HMAC signing, retried delivery.

Formats (``format`` of a target): ``json`` (modelmon's envelope holding the ``Alert`` /
``RetrainRequested`` events verbatim), ``slack`` (a Slack incoming-webhook message) and
``alertmanager`` (the Prometheus Alertmanager webhook body, version 4).

Signing: with a ``secret``, every request carries ``X-Modelmon-Timestamp`` (Unix seconds) and
``X-Modelmon-Signature: sha256=<hex>``, the HMAC-SHA256 with the secret of
``<timestamp> + "." + <body bytes>``; :func:`verify_signature` is the receiver's check.

Delivery guarantee: at least once, then dead-letter. :class:`WebhookNotifier` keeps a bounded queue
and one sending task per target, so a slow or dead endpoint only delays its own queue. A request is
retried with exponential backoff and jitter on 5xx, timeouts and connection errors; a 4xx is final.
After the last attempt, a 4xx, or a full queue, a ``DeadLetter`` with the reason is handed to the
``dead_letter`` callback; the ``on_done`` callback of a submission runs in every case. URLs and secrets
never reach logs or dead letters: targets are shown as ``scheme://host/…``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from modelmon.events import DeadLetter
from modelmon.settings import WebhookTarget
from sinks.webhook_formats import RENDERERS, Notification, encode_body, render_json

__all__ = [
    "RENDERERS",
    "DeliveryResult",
    "Notification",
    "WebhookNotifier",
    "backoff_delay",
    "deliver",
    "encode_body",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)
# httpx logs every request with its full URL at INFO; a webhook URL can be a credential (Slack).
logging.getLogger("httpx").setLevel(logging.WARNING)

SIGNATURE_HEADER = "X-Modelmon-Signature"
TIMESTAMP_HEADER = "X-Modelmon-Timestamp"
DELIVERY_HEADER = "X-Modelmon-Delivery"


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``timestamp + "." + body`` with ``secret``.

    >>> sign("s3cret", "1700000000", b'{}') == sign(b"s3cret", "1700000000", b'{}')
    True
    """
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str | bytes,
    body: bytes,
    signature: str,
    timestamp: str,
    *,
    tolerance_seconds: float = 300.0,
    now: float | None = None,
) -> bool:
    """A receiver's check: the signature matches, and the timestamp is recent (replay protection).

    >>> body, ts = b'{"kind":"alerts"}', "1700000000"
    >>> verify_signature("k", body, sign("k", ts, body), ts, now=1700000010)
    True
    >>> verify_signature("k", body + b" ", sign("k", ts, body), ts, now=1700000010)
    False
    >>> verify_signature("k", body, sign("k", ts, body), ts, now=1700009999)
    False
    """
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_seconds and hmac.compare_digest(sign(secret, timestamp, body), signature)


def signed_headers(target: WebhookTarget, body: bytes, delivery_id: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "modelmon-webhook/1",
        DELIVERY_HEADER: delivery_id,
    }
    if target.secret is not None:
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(target.secret.get_secret_value(), timestamp, body)
    return headers


@dataclass
class DeliveryResult:
    delivered: bool
    attempts: int
    status: int | None = None
    error: str = ""
    retryable: bool = True


def backoff_delay(target: WebhookTarget, attempt: int, rng: random.Random) -> float:
    """Delay before retry ``attempt`` (1-based): doubling from ``backoff_seconds``, capped, jittered.

    The jitter draws from [½·d, d] ("equal jitter"): retries of many workers spread out, yet never
    come back sooner than half the nominal delay.

    >>> t = WebhookTarget(url="http://h", backoff_seconds=1, max_backoff_seconds=5)
    >>> [round(backoff_delay(t, n, random.Random(0)), 3) for n in (1, 2, 3, 4)]
    [0.922, 1.844, 3.689, 4.611]
    """
    nominal = min(target.max_backoff_seconds, target.backoff_seconds * 2 ** (attempt - 1))
    return nominal * (0.5 + 0.5 * rng.random())


async def deliver(
    client: httpx.AsyncClient,
    target: WebhookTarget,
    body: bytes,
    delivery_id: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> DeliveryResult:
    """POST ``body`` to ``target`` with retries; never raises for HTTP or network failures."""
    rng = rng or random.Random()
    result = DeliveryResult(delivered=False, attempts=0)
    for attempt in range(1, target.max_attempts + 1):
        result.attempts = attempt
        try:
            response = await client.post(
                target.url,
                content=body,
                headers=signed_headers(target, body, delivery_id),
                timeout=target.timeout_seconds,
            )
        except httpx.TimeoutException as error:
            result.status, result.error = (
                None,
                f"timeout after {target.timeout_seconds}s ({type(error).__name__})",
            )
        except httpx.TransportError as error:
            result.status, result.error = None, f"connection error ({type(error).__name__}: {error})"
        else:
            result.status = response.status_code
            if response.is_success:
                result.delivered, result.error = True, ""
                return result
            result.error = f"HTTP {response.status_code}"
            if response.status_code < 500:
                result.retryable = False
                break
        result.error = result.error.replace(target.url, target.display_url)
        if attempt < target.max_attempts:
            delay = backoff_delay(target, attempt, rng)
            log.info("webhook %s: %s; retry %d in %.2fs", target.display_url, result.error, attempt, delay)
            await sleep(delay)
    return result


DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]
DoneCallback = Callable[[DeliveryResult | None], Awaitable[None]]


@dataclass
class NotifierStats:
    submitted: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    queue_full: int = 0


class WebhookNotifier:
    """Bounded queues and one background sender per target; :meth:`submit` never waits."""

    def __init__(
        self,
        dead_letter: DeadLetterSink,
        *,
        queue_size: int = 1000,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.dead_letter = dead_letter
        self.queue_size = queue_size
        self._client = client
        self._sleep = sleep
        self._queues: dict[int, asyncio.Queue[tuple[WebhookTarget, Notification, DoneCallback]]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.stats = NotifierStats()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def submit(self, target: WebhookTarget, note: Notification, on_done: DoneCallback) -> None:
        """Queue ``note`` for ``target``; a full queue dead-letters it at once."""
        self.stats.submitted += 1
        slot = id(target)
        queue = self._queues.get(slot)
        if queue is None:
            queue = self._queues[slot] = asyncio.Queue(maxsize=self.queue_size)
            self._tasks[slot] = asyncio.create_task(self._send_forever(queue), name="webhook-sender")
        try:
            queue.put_nowait((target, note, on_done))
        except asyncio.QueueFull:
            self.stats.queue_full += 1
            reason = f"webhook {target.display_url}: {self.queue_size} notifications already waiting"
            await self._dead_letter(target, note, reason, "webhook_queue_full")
            await on_done(None)

    async def _send_forever(
        self, queue: asyncio.Queue[tuple[WebhookTarget, Notification, DoneCallback]]
    ) -> None:
        while True:
            target, note, on_done = await queue.get()
            result: DeliveryResult | None = None
            try:
                body = encode_body(note, target.format)
                result = await deliver(self.client, target, body, note.delivery_id, sleep=self._sleep)
                if result.delivered:
                    self.stats.delivered += 1
                else:
                    kind = "webhook_failed" if result.retryable else "webhook_rejected"
                    reason = f"webhook {target.display_url} ({target.format}): {result.error} after "
                    reason += f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}"
                    log.warning("%s; dead-lettered", reason)
                    await self._dead_letter(target, note, reason, kind)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a bug must not kill the sender: report it and go on
                log.exception("webhook %s: notification failed", target.display_url)
                await self._dead_letter(
                    target, note, f"webhook {target.display_url}: {error!r}", "webhook_error"
                )
            finally:
                queue.task_done()
            await on_done(result)

    async def _dead_letter(self, target: WebhookTarget, note: Notification, reason: str, kind: str) -> None:
        self.stats.dead_lettered += 1
        # The target (shown without its path) is part of the payload: one letter per failed target.
        wrapped = {"target": target.display_url, "format": target.format, "notification": render_json(note)}
        payload = json.dumps(wrapped, separators=(",", ":"), ensure_ascii=False)
        letter = DeadLetter(
            topic=note.topic,
            partition=note.partition,
            offset=note.offset,
            key=note.delivery_id,
            payload=payload[:64_000],
            reason=reason[:1000],
            error_type=kind,
        )
        await self.dead_letter(letter)

    async def join(self) -> None:
        """Wait until every queued notification was handled (tests, shutdown)."""
        for queue in list(self._queues.values()):
            await queue.join()

    async def aclose(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        self._queues.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
