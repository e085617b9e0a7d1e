"""Webhooks against a real HTTP server on 127.0.0.1: formats, signatures, retries, dead letters, queues."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelmon.events import Alert, AlertState, DeadLetter, RetrainRequested, Severity
from modelmon.settings import WebhookTarget
from sinks.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryResult,
    Notification,
    WebhookNotifier,
    backoff_delay,
    encode_body,
    verify_signature,
)
from tests.http_receiver import WebhookReceiver, closed_port

DOC = Path(__file__).resolve().parents[1] / "docs" / "alerts.md"
BASE = datetime(2026, 4, 1, tzinfo=UTC)
SECRET = "s3cret-value"


def documented_verify() -> Any:
    """The verification function exactly as docs/alerts.md shows it."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    code = next(block for block in blocks if "def verify(" in block)
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["verify"]


def alert(feature: str, state: AlertState = AlertState.FIRING) -> Alert:
    return Alert(
        alert_id=f"id-{feature}",
        dedup_key=f"m|psi-high|{feature}|",
        model_id="m",
        rule="psi-high",
        state=state,
        severity=Severity.CRITICAL,
        metric="psi",
        feature=feature,
        value=0.4,
        threshold=0.2,
        window_start=BASE,
        window_end=BASE + timedelta(minutes=1),
        message=f"psi[{feature}] = 0.4 >= 0.2 for 2 windows",
        ts=BASE + timedelta(minutes=1),
        details={"notify": True, "group_key": f"m|psi-high|{state.value}|0"},
    )


def group(state: AlertState = AlertState.FIRING) -> Notification:
    return Notification("alerts", alerts=[alert("a", state), alert("b", state)], topic="alerts", offset=3)


def retrain() -> Notification:
    request = RetrainRequested(idempotency_key="retrain-m-1-abc", model_id="m", reason="psi-high firing")
    return Notification("retrain", request=request, topic="retrain-requests")


async def no_sleep(_: float) -> None:
    return None


async def send_all(
    targets: list[WebhookTarget], notes: list[Notification]
) -> tuple[list[Any], list[DeadLetter]]:
    letters: list[DeadLetter] = []
    results: list[DeliveryResult | None] = []

    async def dead(letter: DeadLetter) -> None:
        letters.append(letter)

    async def done(result: DeliveryResult | None) -> None:
        results.append(result)

    notifier = WebhookNotifier(dead, sleep=no_sleep)
    try:
        for note in notes:
            for target in targets:
                await notifier.submit(target, note, done)
        await notifier.join()
    finally:
        await notifier.aclose()
    return results, letters


@pytest.mark.parametrize("fmt", ["json", "slack", "alertmanager"])
def test_signed_notification_in_every_format_verifies_with_the_documented_snippet(fmt: str) -> None:
    verify = documented_verify()
    with WebhookReceiver() as receiver:
        target = WebhookTarget(url=receiver.url(f"/{fmt}"), format=fmt, secret=SECRET)
        results, letters = asyncio.run(send_all([target], [group()]))
        (request,) = receiver.at(f"/{fmt}")
    assert letters == [] and results[0].delivered and results[0].attempts == 1
    signature, timestamp = request.headers[SIGNATURE_HEADER], request.headers[TIMESTAMP_HEADER]
    assert verify(SECRET.encode(), request.body, signature, timestamp)
    assert verify_signature(SECRET, request.body, signature, timestamp)
    assert not verify(b"other-secret", request.body, signature, timestamp)
    assert not verify(SECRET.encode(), request.body.replace(b"0.4", b"0.5"), signature, timestamp)
    assert not verify(SECRET.encode(), request.body, signature, str(int(timestamp) - 3600))
    body = json.loads(request.body)
    if fmt == "json":
        assert [Alert.model_validate(a) for a in body["alerts"]] == group().alerts
        assert (body["kind"], body["state"], body["rule"]) == ("alerts", "firing", "psi-high")
    elif fmt == "slack":
        assert "psi-high" in body["text"] and "`a`" in body["text"] and "`b`" in body["text"]
        assert body["blocks"][0]["text"]["type"] == "mrkdwn"
    else:
        assert (body["version"], body["status"], body["groupLabels"]) == (
            "4",
            "firing",
            {"alertname": "psi-high", "model_id": "m"},
        )
        assert [a["labels"]["feature"] for a in body["alerts"]] == ["a", "b"]
        assert body["commonLabels"]["severity"] == "critical"
        assert all(a["endsAt"].startswith("0001-01-01") for a in body["alerts"])


def test_alertmanager_resolved_and_retrain_shapes() -> None:
    resolved = json.loads(encode_body(group(AlertState.RESOLVED), "alertmanager"))
    assert resolved["status"] == "resolved"
    assert all(a["endsAt"] == (BASE + timedelta(minutes=1)).isoformat() for a in resolved["alerts"])
    request = json.loads(encode_body(retrain(), "alertmanager"))
    assert request["alerts"][0]["labels"]["alertname"] == "RetrainRequested"
    note = retrain()
    as_json = json.loads(encode_body(note, "json"))
    assert RetrainRequested.model_validate(as_json["retrain_request"]) == note.request
    with pytest.raises(ValueError, match="unknown webhook format 'xml'; valid: json, slack, alertmanager"):
        encode_body(retrain(), "xml")


def test_500_three_times_then_200_is_delivered_once() -> None:
    with WebhookReceiver() as receiver:
        receiver.script["/flaky"] = [500, 502, 503, 200]
        target = WebhookTarget(url=receiver.url("/flaky"), secret=SECRET, max_attempts=5)
        results, letters = asyncio.run(send_all([target], [retrain()]))
        requests = receiver.at("/flaky")
    assert [r.status for r in requests] == [500, 502, 503, 200]
    assert len({r.headers["X-Modelmon-Delivery"] for r in requests}) == 1
    assert letters == [] and results[0].delivered and results[0].attempts == 4


def test_a_4xx_is_not_retried_and_is_dead_lettered() -> None:
    with WebhookReceiver() as receiver:
        receiver.script["/gone?token=hidden"] = [410]
        target = WebhookTarget(url=receiver.url("/gone?token=hidden"), max_attempts=5)
        results, letters = asyncio.run(send_all([target], [group()]))
        assert len(receiver.at("/gone?token=hidden")) == 1
    assert not results[0].delivered and results[0].attempts == 1
    (letter,) = letters
    assert letter.error_type == "webhook_rejected" and "HTTP 410" in letter.reason
    assert (letter.topic, letter.offset) == ("alerts", 3)
    assert "hidden" not in letter.model_dump_json()


def test_dead_endpoint_dead_letters_after_the_last_attempt_without_leaking_url_or_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{closed_port()}/T000/B000/very-secret-path"
    target = WebhookTarget(url=url, format="slack", secret=SECRET, max_attempts=3)
    results, letters = asyncio.run(send_all([target], [group(), retrain()]))
    assert [r.attempts for r in results] == [3, 3]
    assert [letter.error_type for letter in letters] == ["webhook_failed", "webhook_failed"]
    assert "connection error" in letters[0].reason and "after 3 attempts" in letters[0].reason
    assert json.loads(letters[0].payload)["notification"]["alerts"][0]["alert_id"] == "id-a"
    for text in [caplog.text, *(letter.model_dump_json() for letter in letters)]:
        assert "very-secret-path" not in text and SECRET not in text


def test_timeouts_are_retried() -> None:
    with WebhookReceiver() as receiver:
        receiver.hang["/slow"] = 0.5
        target = WebhookTarget(url=receiver.url("/slow"), timeout_seconds=0.1, max_attempts=2)
        results, letters = asyncio.run(send_all([target], [retrain()]))
    assert results[0].attempts == 2 and "timeout" in letters[0].reason


def test_a_full_queue_dead_letters_at_once_and_never_blocks() -> None:
    async def scenario() -> tuple[list[DeadLetter], int]:
        letters: list[DeadLetter] = []
        gate = asyncio.Event()

        async def dead(letter: DeadLetter) -> None:
            letters.append(letter)

        async def held(_: float) -> None:
            await gate.wait()

        async def done(_: DeliveryResult | None) -> None:
            return None

        # Every attempt fails (closed port) and the retry sleep waits for the gate: the sender is stuck.
        target = WebhookTarget(url=f"http://127.0.0.1:{closed_port()}/x", max_attempts=2)
        notifier = WebhookNotifier(dead, queue_size=2, sleep=held)
        for _ in range(6):
            await asyncio.wait_for(notifier.submit(target, retrain(), done), timeout=5)
        full = len(letters)
        gate.set()
        await notifier.join()
        await notifier.aclose()
        return letters, full

    letters, full_at_once = asyncio.run(scenario())
    # One in the sender, two queued: three refused at once; then the three others fail for good.
    assert full_at_once == 3
    assert [letter.error_type for letter in letters] == ["webhook_queue_full"] * 3 + ["webhook_failed"] * 3


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    target = WebhookTarget(url="http://h", backoff_seconds=0.5, max_backoff_seconds=3)
    rng = random.Random(1)
    for attempt, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        delays = [backoff_delay(target, attempt, rng) for _ in range(200)]
        assert nominal / 2 <= min(delays) and max(delays) <= nominal
        assert max(delays) - min(delays) > nominal / 4  # jittered, not constant


def test_secrets_and_urls_stay_out_of_repr_but_survive_the_environment_round_trip() -> None:
    target = WebhookTarget(url="https://hooks.example.com/T0/B0/xyz", secret=SECRET)
    assert SECRET not in repr(target) and "xyz" not in repr(target) and SECRET not in str(target)
    assert WebhookTarget.model_validate_json(target.model_dump_json()) == target
    with pytest.raises(ValueError, match="http:// or https://"):
        WebhookTarget(url="ftp://example.com/x")


def test_httpx_client_is_not_needed_for_a_refused_submission() -> None:
    # A notifier that never sent anything closes cleanly (no client was made).
    async def scenario() -> None:
        async def dead(_: DeadLetter) -> None:
            return None

        notifier = WebhookNotifier(dead)
        await notifier.aclose()
        assert notifier._client is None

    asyncio.run(scenario())
    assert httpx.AsyncClient  # the delivery client type


def test_chat_formats_show_the_top_three_lines_and_json_the_whole_attribution() -> None:
    from tests.test_attribution import ATTRIBUTION

    firing = alert("a")
    firing = firing.model_copy(update={"details": {**firing.details, "attribution": ATTRIBUTION}})
    note = Notification("alerts", alerts=[firing])
    slack = json.loads(encode_body(note, "slack"))["text"]
    assert [f"f{i}:" in slack for i in range(5)] == [True, True, True, False, False]
    assert "segment region=eu: accuracy 0.5 vs 0.8" in slack and "segment region=us" in slack
    annotation = json.loads(encode_body(note, "alertmanager"))["alerts"][0]["annotations"]["attribution"]
    assert annotation.splitlines()[0].startswith("feature f0: psi 3x its line")
    assert len(annotation.splitlines()) == 5  # three features and the two segments
    carried = json.loads(encode_body(note, "json"))["alerts"][0]["details"]["attribution"]
    assert carried == ATTRIBUTION
    evidence = [{"kind": "alert", "reason": "acc firing", "attribution": ATTRIBUTION}]
    request = RetrainRequested(idempotency_key="k", model_id="m", reason="acc firing", evidence=evidence)
    retrain_note = Notification("retrain", request=request)
    assert "↳ feature f2:" in json.loads(encode_body(retrain_note, "slack"))["text"]
    annotations = json.loads(encode_body(retrain_note, "alertmanager"))["alerts"][0]["annotations"]
    assert "segment region=eu" in annotations["attribution"]
    assert json.loads(encode_body(retrain_note, "json"))["retrain_request"]["evidence"] == evidence
