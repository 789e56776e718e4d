"""webpush adapter against a real Web Push service double (tests.support.push.WebPushService): real VAPID key,
real subscription keys, the RFC 8291 payload decrypted and read back."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from conftest import cap_cn, edit_yaml
from py_vapid import Vapid02
from pydantic import ValidationError

from channels.base import Outcome, OutgoingMessage, Recipient
from channels.webpush import (
    WebPushChannel,
    WebPushSettings,
    collapse_key,
    parse_subscription,
    topic_for,
)
from tests.conftest import AUTH
from tests.support.push import Device, WebPushService, new_vapid_key
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config

VAPID_PRIVATE, VAPID_PUBLIC = new_vapid_key()
BODY = "梁平区气象台发布暴雨红色预警信号：过去3小时梁平区已出现100毫米以上降雨，请注意防范山洪、地质灾害。"


def message(
    tokens: tuple[str, ...], *, i: int = 1, colour: str = "red", priority: int = 1
) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=700 + i,
        idempotency_key=f"9:{i}:push",
        recipient=Recipient(
            key=f"1380023004{i}",
            name="罗文军",
            kind="person",
            role="public",
            area_code="500228001001",
            language="zh-CN",
            push_tokens=tokens,
        ),
        address=tokens[0] if tokens else "",
        body=BODY,
        content_key="c1",
        title="暴雨红色预警",
        data={"alert_id": 9, "colour": colour, "level": 1, "msg_type": "Update", "url": "https://x.cn/a/9"},
        priority=priority,
        alert={
            "id": 9,
            "identifier": "50022841600000_20240712083000",
            "root_identifier": "50022841600000_20240712053000",
            "colour": colour,
            "level": 1,
            "msg_type": "Update",
            "expires": datetime(2026, 7, 1, 12),
        },
    )


def make_channel(**overrides: object) -> WebPushChannel:
    settings = WebPushSettings(
        adapter="webpush",
        vapid_private_key=VAPID_PRIVATE,
        vapid_subject="mailto:duty@liangping.gov.cn",
        timeout=2.0,
        **overrides,  # type: ignore[arg-type]
    )
    return WebPushChannel("push", settings, data_dir="/nonexistent")


@pytest.fixture
async def service() -> AsyncIterator[WebPushService]:
    async with WebPushService() as ps:
        yield ps


@pytest.fixture
async def channel() -> AsyncIterator[WebPushChannel]:
    ch = make_channel(ttl=900)
    await ch.start()
    yield ch
    await ch.close()


def test_settings_check_the_key_and_subject() -> None:
    with pytest.raises(ValidationError, match="vapid_private_key"):
        WebPushSettings(adapter="webpush", vapid_private_key="not-a-key", vapid_subject="mailto:a@b.cn")
    with pytest.raises(ValidationError, match="vapid_subject"):
        WebPushSettings(adapter="webpush", vapid_private_key=VAPID_PRIVATE, vapid_subject="duty@b.cn")
    pem = Vapid02.from_string(VAPID_PRIVATE).private_pem().decode()
    assert WebPushSettings(adapter="webpush", vapid_private_key=pem, vapid_subject="https://x.cn")
    # empty (``${WARND_VAPID_PRIVATE_KEY:-}`` unset) or absent: not set, the key file is used instead
    for empty in ("", "  ", None):
        settings = WebPushSettings(adapter="webpush", vapid_private_key=empty, vapid_subject="mailto:a@b.cn")
        assert settings.vapid_private_key is None and settings.vapid_private_key_file == "vapid_private.pem"
    assert WebPushSettings(adapter="webpush", vapid_subject="mailto:a@b.cn").vapid_private_key is None


def keyless_channel(data_dir: Path, **overrides: object) -> WebPushChannel:
    settings = WebPushSettings(
        adapter="webpush",
        vapid_subject="mailto:duty@liangping.gov.cn",
        timeout=2.0,
        **overrides,  # type: ignore[arg-type]
    )
    return WebPushChannel("push", settings, data_dir=str(data_dir))


async def test_without_a_key_one_is_generated_once_into_the_data_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"  # not there yet
    first = keyless_channel(data)
    await first.start()
    await first.close()
    key_file = data / "vapid_private.pem"
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert key_file.stat().st_mode & 0o777 == 0o600
    public = first.application_server_key
    assert len(public) == 87 and base64.urlsafe_b64decode(public + "=")[0] == 4  # uncompressed P-256 point
    generated = [r.getMessage() for r in caplog.records if "generated a new VAPID key" in r.getMessage()]
    assert len(generated) == 1 and public in generated[0] and str(key_file) in generated[0]
    # the next start (a restart) reads the same key: subscriptions made with it stay valid
    caplog.clear()
    again = keyless_channel(data)
    await again.start()
    await again.close()
    assert again.application_server_key == public
    assert not any("generated" in r.getMessage() for r in caplog.records)
    # an absolute vapid_private_key_file is used as it is
    elsewhere = keyless_channel(data, vapid_private_key_file=str(tmp_path / "keys" / "push.pem"))
    await elsewhere.start()
    await elsewhere.close()
    assert (tmp_path / "keys" / "push.pem").exists() and elsewhere.application_server_key != public


async def test_a_broken_key_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "vapid_private.pem").write_text("not a key")
    channel = keyless_channel(tmp_path)
    with pytest.raises(ValueError, match=r"vapid_private.pem is not a VAPID \(P-256\) private key"):
        await channel.start()
    await channel.close()


async def test_a_configured_key_is_used_and_no_file_written(tmp_path: Path) -> None:
    channel = keyless_channel(tmp_path, vapid_private_key=VAPID_PRIVATE)
    await channel.start()
    await channel.close()
    assert channel.application_server_key == VAPID_PUBLIC and not (tmp_path / "vapid_private.pem").exists()


def test_subscription_tokens() -> None:
    device = Device("a", "https://push.example.com/p/a")
    parsed = parse_subscription(device.token)
    assert not isinstance(parsed, str) and parsed.endpoint == "https://push.example.com/p/a"
    assert parse_subscription("fcm-registration-token") == "not a Web Push subscription"
    assert "JSON" in str(parse_subscription("{nope"))
    assert "keys" in str(parse_subscription('{"endpoint": "https://p.cn/x"}'))
    assert "p256dh" in str(
        parse_subscription(
            '{"endpoint": "https://p.cn/x", "keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}'
        )
    )


async def test_payload_is_encrypted_signed_and_collapses(
    service: WebPushService, channel: WebPushChannel
) -> None:
    phone, laptop = service.subscriber("phone"), service.subscriber("laptop")
    [result] = await channel.send([message((phone.token, "fcm-token-for-push_http", laptop.token))])
    assert result.outcome is Outcome.ACCEPTED and result.disable_tokens == ()
    assert len(service.requests) == 2
    for device in (phone, laptop):
        [request] = service.requests_for(device.name)
        document = device.decrypt(request.raw)
        assert document["title"] == "暴雨红色预警" and document["body"] == BODY
        # the chain's first identifier: the Update replaces the original's notification
        assert document["tag"] == "50022841600000_20240712053000"
        assert document["data"]["alert_id"] == 9 and document["data"]["colour"] == "red"
        assert document["data"]["url"] == "https://x.cn/a/9" and document["requireInteraction"] is True
        assert request.header("Content-Encoding") == "aes128gcm"
        assert request.header("Urgency") == "high" and request.header("TTL") == "900"
        assert request.header("Topic") == topic_for("50022841600000_20240712053000")
        auth = request.header("Authorization") or ""
        assert auth.startswith("vapid t=") and f"k={VAPID_PUBLIC}" in auth
        assert Vapid02.verify(auth)  # the JWT is signed by the key the web app subscribed with
        jwt_claims = auth.split("t=")[1].split(",")[0].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(jwt_claims + "=" * (-len(jwt_claims) % 4)))
        assert claims["aud"] == service.base_url and claims["sub"] == "mailto:duty@liangping.gov.cn"


async def test_yellow_goes_at_normal_urgency(service: WebPushService, channel: WebPushChannel) -> None:
    device = service.subscriber("d")
    msg = message((device.token,), colour="yellow", priority=3)
    [result] = await channel.send([msg])
    assert result.outcome is Outcome.ACCEPTED
    [request] = service.requests
    assert (
        request.header("Urgency") == "normal" and device.decrypt(request.raw)["requireInteraction"] is False
    )
    assert collapse_key(msg) == "50022841600000_20240712053000"


async def test_expired_subscription_is_failed_and_reported(
    service: WebPushService, channel: WebPushChannel
) -> None:
    gone = service.subscriber("gone")
    service.answer("gone", 410)
    [result] = await channel.send([message((gone.token,))])
    assert result.outcome is Outcome.FAILED and result.error == "subscription expired"
    assert result.disable_tokens == (gone.token,)
    # with a live one beside it, the delivery is accepted and only the dead one is reported
    live, gone2 = service.subscriber("live"), service.subscriber("gone2")
    service.answer("gone2", 404)
    [result] = await channel.send([message((gone2.token, live.token), i=2)])
    assert result.outcome is Outcome.ACCEPTED and result.disable_tokens == (gone2.token,)


async def test_unavailable_service_is_retried(service: WebPushService, channel: WebPushChannel) -> None:
    device = service.subscriber("busy")
    service.answer("busy", 503, retry_after="42")
    [result] = await channel.send([message((device.token,))])
    assert result.outcome is Outcome.RETRY and result.retry_after == 42 and result.disable_tokens == ()
    service.answer("busy", 429)
    [result] = await channel.send([message((device.token,))])
    assert result.outcome is Outcome.RETRY


async def test_non_subscription_tokens_fail_clearly(channel: WebPushChannel) -> None:
    [result] = await channel.send([message(("fcm-registration-token",))])
    assert result.outcome is Outcome.FAILED
    assert (
        result.error
        == "no Web Push subscription among the recipient's push tokens (not a Web Push subscription)"
    )


async def test_unreachable_service_is_retried(channel: WebPushChannel) -> None:
    device = Device("x", "http://127.0.0.1:9/push/x")  # discard port: nothing listens
    [result] = await channel.send([message((device.token,))])
    assert result.outcome is Outcome.RETRY


def test_long_bodies_fit_one_record() -> None:
    ch = make_channel()
    device = Device("a", "https://push.example.com/p/a")
    long = OutgoingMessage(**{**message((device.token,)).__dict__, "body": "暴雨" * 2000})
    payload = ch.payload(long)
    assert len(payload) <= 3993 and json.loads(payload)["body"].endswith("…")


# --- through the dispatcher, on a real SQLite file -------------------------------------------------------

PUSH_PEOPLE = {"王大山": "wang", "黄丽": "huang", "罗文军": "luo", "唐建华": "tang"}


@pytest.fixture
async def push_app(config_dir: Path, service: WebPushService, clock: FakeClock) -> AsyncIterator[App]:
    devices = {name: service.subscriber(short) for name, short in PUSH_PEOPLE.items()}

    def subscribers(data: dict) -> None:
        for person in data["subscribers"]:
            if person["name"] in devices:
                person["push_tokens"] = [devices[person["name"]].token]

    def channels(data: dict) -> None:
        data["channels"]["push"] = {
            "adapter": "webpush",
            "template": "push",
            "vapid_private_key": VAPID_PRIVATE,
            "vapid_subject": "mailto:duty@liangping.gov.cn",
            "max_attempts": 3,
            "timeout": 5,
        }

    edit_yaml(config_dir / "subscribers.yaml", subscribers)
    edit_yaml(config_dir / "channels.yaml", channels)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    yield app
    await app.close()


async def push_tokens(app: App) -> dict[str, list[str] | None]:
    rows = [r async for r in app.store.export_recipients("person")]
    return {r["name"]: r["push_tokens"] for r in rows if r["name"] in PUSH_PEOPLE}


async def test_dispatch_disables_an_expired_subscription(
    push_app: App, service: WebPushService, clock: FakeClock
) -> None:
    service.answer("luo", 410)
    service.answer("tang", 503, retry_after="30")
    [result] = await push_app.pipeline.ingest(cap_cn(), source="t")
    await push_app.dispatcher.drain()
    rows = {
        r["recipient"]: r
        for r in await push_app.store.deliveries_page(
            {"alert_id": result.alert_id, "channel": "push"}, limit=100
        )
    }
    assert set(rows) == set(PUSH_PEOPLE)
    assert rows["王大山"]["status"] == "sent" and rows["黄丽"]["status"] == "sent"
    assert rows["罗文军"]["status"] == "failed" and rows["罗文军"]["error"] == "subscription expired"
    assert rows["唐建华"]["status"] == "queued" and "503" in rows["唐建华"]["error"]
    tokens = await push_tokens(push_app)
    assert tokens["罗文军"] is None  # no longer used: not in the next alert's push audience
    assert tokens["王大山"] == [service.devices["wang"].token]
    # the collapse key is the alert's identifier (it is its own chain's root)
    [request] = service.requests_for("wang")
    assert service.devices["wang"].decrypt(request.raw)["tag"] == "50022841600000_20240712053000"
    assert request.header("Urgency") == "high"

    clock.advance(31)
    await push_app.dispatcher.drain()
    assert len(service.requests_for("tang")) == 2 and len(service.requests_for("luo")) == 1
    rows = {
        r["recipient"]: r
        for r in await push_app.store.deliveries_page(
            {"alert_id": result.alert_id, "channel": "push"}, limit=100
        )
    }
    assert rows["唐建华"]["status"] == "sent"


async def test_example_push_subscribes_with_the_served_key_and_delivers(
    config_dir: Path, service: WebPushService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's `push` block as it is (no WARND_VAPID_PRIVATE_KEY): the key is generated at start, served
    at GET /api/v1/push/vapid-public-key, and a subscriber's PushSubscription JSON in push_tokens gets the
    warning signed with it."""
    from aiohttp.test_utils import TestClient, TestServer

    from warnd.api import make_web_app

    monkeypatch.delenv("WARND_VAPID_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("WARND_VAPID_SUBJECT", raising=False)
    device = service.subscriber("wang")

    def subscribers(data: dict) -> None:
        for person in data["subscribers"]:
            if person["name"] == "王大山":
                person["push_tokens"] = [device.token]

    edit_yaml(config_dir / "subscribers.yaml", subscribers)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    try:
        async with TestClient(
            TestServer(make_web_app(app), host="127.0.0.1", port=0), headers=AUTH
        ) as client:
            resp = await client.get("/api/v1/push/vapid-public-key")
            assert resp.status == 200
            key = (await resp.json())["channels"]["push"]
        assert (app.config.data_dir / "vapid_private.pem").exists()
        [result] = await app.pipeline.ingest(cap_cn(), source="t")
        await app.dispatcher.drain()
        [row] = await app.store.deliveries_page({"alert_id": result.alert_id, "channel": "push"}, limit=10)
        assert (row["recipient"], row["status"]) == ("王大山", "sent")
        [request] = service.requests_for("wang")
        auth = request.header("Authorization") or ""
        assert auth.startswith("vapid t=") and f"k={key}" in auth
        assert device.decrypt(request.raw)["title"]
    finally:
        await app.close()
