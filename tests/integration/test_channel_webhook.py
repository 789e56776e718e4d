"""webhook adapter against a real HTTP receiver (tests.support.webhook.WebhookReceiver)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from channels.base import Address, Outcome, OutgoingMessage, Recipient
from channels.webhook import WebhookChannel, WebhookSettings, sign, verify_signature
from tests.support.webhook import WebhookReceiver
from warnd.clock import FakeClock

SECRET = "s3cret-s3cret-s3cret"
BODY = "【梁平区应急管理局】梁平区气象台发布暴雨橙色预警信号，请注意防范山洪、地质灾害。"


def message(i: int = 1, *, body: str = BODY) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=500 + i,
        idempotency_key=f"7:{i}:hook",
        recipient=Recipient(
            key=f"duty-{i}",
            name="值班室",
            kind="person",
            role="duty_officer",
            area_code="500155",
            language="zh",
            phone="13800000001",
        ),
        address=f"duty-{i}",
        body=body,
        content_key="c1",
        title="暴雨橙色预警",
        data={"signature": "梁平区应急管理局", "content": body[10:]},
        segments=2,
        repeat=1,
        priority=2,
        alert={
            "id": 1,
            "identifier": "500155-2026-0001",
            "colour": "orange",
            "expires": datetime(2026, 7, 1, 12),
        },
    )


def make_channel(url: str, **overrides: object) -> WebhookChannel:
    settings = WebhookSettings(adapter="webhook", url=url, secret=SECRET, **overrides)  # type: ignore[arg-type]
    return WebhookChannel("hook", settings, data_dir="/nonexistent")


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as rx:
        yield rx


@pytest.fixture
async def channel(receiver: WebhookReceiver) -> AsyncIterator[WebhookChannel]:
    ch = make_channel(
        receiver.url, timeout=2.0, headers={"X-Bureau": "500155", "X-Warnd-Signature": "forged"}
    )
    await ch.start()
    yield ch
    await ch.close()


def test_settings() -> None:
    with pytest.raises(ValidationError):
        WebhookSettings(adapter="webhook", url="https://x.cn/hook", secret="short")
    with pytest.raises(ValidationError):
        WebhookSettings(adapter="webhook", url="https://x.cn/hook")  # type: ignore[call-arg]
    s = WebhookSettings(adapter="webhook", url="https://x.cn/hook", secret=SECRET)
    assert s.headers == {}
    ch = WebhookChannel("hook", s, data_dir="/tmp")
    assert ch.address is Address.ANY and ch.max_batch == 1


async def test_signed_post_accepted(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.ACCEPTED
    assert result.provider_message_id == "wh-1"
    assert result.response == {"status": 200, "body": '{"id": "wh-1"}'}

    [req] = receiver.requests
    assert req.method == "POST"
    assert req.header("Content-Type") == "application/json; charset=utf-8"
    assert req.header("Idempotency-Key") == "7:1:hook"
    assert req.header("X-Bureau") == "500155"
    ts = req.header("X-Warnd-Timestamp")
    sig = req.header("X-Warnd-Signature")
    assert ts is not None and sig is not None and sig.startswith("sha256=")
    assert abs(int(ts) - time.time()) < 60
    expected = hmac.new(SECRET.encode(), f"{ts}.".encode() + req.raw, hashlib.sha256).hexdigest()
    assert sig == f"sha256={expected}"
    assert verify_signature(SECRET, ts, req.raw, sig, now=time.time())

    body = req.json
    assert body["delivery_id"] == 501 and body["idempotency_key"] == "7:1:hook" and body["channel"] == "hook"
    assert body["recipient"] == {
        "key": "duty-1",
        "name": "值班室",
        "role": "duty_officer",
        "area_code": "500155",
        "kind": "person",
    }
    assert body["title"] == "暴雨橙色预警" and body["body"] == BODY
    assert body["data"]["signature"] == "梁平区应急管理局"
    assert (body["segments"], body["repeat"], body["priority"]) == (2, 1, 2)
    assert body["alert"]["identifier"] == "500155-2026-0001"
    assert body["alert"]["expires"] == "2026-07-01 12:00:00"
    assert BODY.encode("utf-8") in req.raw  # UTF-8, not \\u escapes
    assert "13800000001" not in req.raw.decode()  # the phone is not part of the webhook body


async def test_tampered_body_or_old_timestamp_fail_verification(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    await channel.send([message()])
    [req] = receiver.requests
    ts = req.header("X-Warnd-Timestamp") or ""
    sig = req.header("X-Warnd-Signature") or ""
    now = float(ts)
    assert verify_signature(SECRET, ts, req.raw, sig, now=now + 299)
    assert not verify_signature(SECRET, ts, req.raw.replace("橙色".encode(), "蓝色".encode()), sig, now=now)
    assert not verify_signature(SECRET, ts, req.raw, sig, now=now + 301)  # replayed later
    assert not verify_signature(SECRET, ts, req.raw, sig, now=now - 301)  # stamped in the future
    assert not verify_signature(SECRET, str(int(ts) + 1), req.raw, sig, now=now)  # timestamp is signed
    assert not verify_signature("another-secret-value", ts, req.raw, sig, now=now)
    assert not verify_signature(SECRET, ts, req.raw, sig.removeprefix("sha256="), now=now)
    assert not verify_signature(SECRET, ts, req.raw, "sha256=zz", now=now)
    assert not verify_signature(SECRET, "12ab", req.raw, sig, now=now)
    assert not verify_signature(SECRET, ts, req.raw, "", now=now)
    assert verify_signature(SECRET, ts, req.raw, sig, now=now + 1000, tolerance=1000)


def test_sign_matches_documented_formula() -> None:
    body = '{"a":"预警"}'.encode()
    expected = hmac.new(SECRET.encode(), b"1782867600." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1782867600", body) == "sha256=" + expected


async def test_timestamp_comes_from_the_clock(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    channel.clock = FakeClock(datetime(2026, 7, 1, 1, 0, tzinfo=UTC))
    await channel.send([message()])
    assert receiver.requests[0].header("X-Warnd-Timestamp") == str(
        int(datetime(2026, 7, 1, 1, 0, tzinfo=UTC).timestamp())
    )


async def test_batch_sends_one_request_per_message(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    results = await channel.send([message(1), message(2), message(3)])
    assert sorted(r.delivery_id for r in results) == [501, 502, 503]
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert sorted(r.header("Idempotency-Key") or "" for r in receiver.requests) == [
        "7:1:hook",
        "7:2:hook",
        "7:3:hook",
    ]


async def test_2xx_without_json_is_accepted(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    receiver.respond_with(202, "queued")
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.ACCEPTED and result.provider_message_id is None


async def test_503_and_429_retry(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    receiver.respond_with(503)
    receiver.respond_with(429, retry_after=7)
    [first] = await channel.send([message()])
    [second] = await channel.send([message()])
    assert first.outcome is Outcome.RETRY and first.retry_after is None
    assert second.outcome is Outcome.RETRY and second.retry_after == 7.0
    assert second.response is not None and second.response["status"] == 429


async def test_4xx_failed_with_reason(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    receiver.respond_with(401, {"error": "bad signature"})
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.FAILED
    assert result.error == 'HTTP 401: {"error": "bad signature"}'


async def test_timeout_retry(receiver: WebhookReceiver) -> None:
    ch = make_channel(receiver.url, timeout=0.2)
    receiver.delay = 1.0
    try:
        [result] = await ch.send([message()])
    finally:
        await ch.close()
    assert result.outcome is Outcome.RETRY and "timeout" in (result.error or "")


async def test_connection_refused_retry() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ch = make_channel(f"http://127.0.0.1:{port}/hook", timeout=2.0)
    await ch.start()
    try:
        [result] = await ch.send([message()])
    finally:
        await ch.close()
    assert result.outcome is Outcome.RETRY


def test_payload_is_compact_utf8_json() -> None:
    ch = make_channel("http://127.0.0.1:9/hook")
    raw = ch.payload(message())
    assert json.loads(raw.decode("utf-8"))["body"] == BODY
    assert b"\\u" not in raw
