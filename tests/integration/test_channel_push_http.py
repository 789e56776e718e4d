"""push_http adapter against a real FCM-/JPush-style provider double (tests.support.push.JsonPushProvider)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import cap_cn, edit_yaml
from pydantic import ValidationError

from channels.base import Outcome, OutgoingMessage, Recipient
from channels.push_http import PushHttpChannel, PushHttpSettings
from tests.support.push import Device, JsonPushProvider
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config

BODY = "梁平区气象台发布暴雨红色预警信号，请注意防范山洪、地质灾害。"
JPUSH_BODY = """{
  "platform": "all",
  "audience": {"registration_id": {{ tokens|tojson }}},
  "notification": {"android": {"alert": {{ body|tojson }}, "title": {{ title|tojson }},
                               "priority": {{ 2 if high_priority else 0 }}, "extras": {{ data|tojson }}},
                   "ios": {"alert": {"title": {{ title|tojson }}, "body": {{ body|tojson }}}}},
  "options": {"time_to_live": {{ ttl }}, "apns_collapse_id": {{ collapse_key[:64]|tojson }}}
}"""


def message(
    i: int, tokens: tuple[str, ...], *, priority: int = 1, content_key: str = "c1"
) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=800 + i,
        idempotency_key=f"9:{i}:push",
        recipient=Recipient(
            key=f"1380023004{i}",
            name=f"p{i}",
            kind="person",
            role="public",
            area_code="500228001001",
            language="zh-CN",
            push_tokens=tokens,
        ),
        address=tokens[0] if tokens else "",
        body=BODY,
        content_key=content_key,
        title="暴雨红色预警",
        data={"alert_id": 9, "colour": "red", "level": 1},
        priority=priority,
        alert={"id": 9, "identifier": "A-2", "root_identifier": "A-1", "colour": "red", "level": 1},
    )


def make_channel(url: str, **overrides: object) -> PushHttpChannel:
    settings = PushHttpSettings(adapter="push_http", url=url, timeout=2.0, **overrides)  # type: ignore[arg-type]
    return PushHttpChannel("push", settings, data_dir="/nonexistent")


@pytest.fixture
async def provider() -> AsyncIterator[JsonPushProvider]:
    async with JsonPushProvider() as p:
        yield p


@pytest.fixture
async def channel(provider: JsonPushProvider) -> AsyncIterator[PushHttpChannel]:
    ch = make_channel(provider.url, headers={"Authorization": "key=secret"})
    await ch.start()
    yield ch
    await ch.close()


def test_settings() -> None:
    with pytest.raises(ValidationError, match="body template"):
        PushHttpSettings(adapter="push_http", url="https://p.cn/push", body="{{ tokens|tojson ")
    with pytest.raises(ValidationError, match="url"):
        PushHttpSettings(adapter="push_http", url="p.cn/push")


async def test_batch_in_one_request_with_one_token_unregistered(
    provider: JsonPushProvider, channel: PushHttpChannel
) -> None:
    webpush = Device("w", "https://push.example.com/p/w").token  # the webpush adapter's, skipped here
    provider.unregistered = {"tok-b2"}
    batch = [message(1, ("tok-a",)), message(2, ("tok-b1", webpush, "tok-b2")), message(3, ("tok-c",))]
    results = {r.delivery_id: r for r in await channel.send(batch)}
    [request] = provider.requests
    assert request.json["tokens"] == ["tok-a", "tok-b1", "tok-b2", "tok-c"]
    assert request.json["collapse_key"] == "A-1" and request.json["priority"] == "high"
    assert request.json["notification"] == {"title": "暴雨红色预警", "body": BODY}
    assert request.json["data"]["alert_id"] == 9 and request.json["ttl"] == 3600
    assert request.header("Authorization") == "key=secret" and request.header("Idempotency-Key")
    assert {r.outcome for r in results.values()} == {Outcome.ACCEPTED}
    assert results[802].disable_tokens == ("tok-b2",)  # recipient 2 still has tok-b1
    assert results[801].disable_tokens == () and results[801].provider_message_id == "m-1"
    # a recipient whose only token is unregistered: failed, token disabled
    [result] = await channel.send([message(4, ("tok-b2",))])
    assert result.outcome is Outcome.FAILED and result.disable_tokens == ("tok-b2",)
    assert result.error == "token expired: UNREGISTERED: token not registered"


async def test_yellow_is_normal_priority_and_requests_are_split(provider: JsonPushProvider) -> None:
    ch = make_channel(provider.url, max_tokens_per_request=2)
    try:
        results = await ch.send([message(i, (f"t{i}",), priority=3) for i in range(5)])
    finally:
        await ch.close()
    assert [len(r.json["tokens"]) for r in provider.requests] == [2, 2, 1]
    assert {r.json["priority"] for r in provider.requests} == {"normal"}
    assert len(results) == 5 and {r.outcome for r in results} == {Outcome.ACCEPTED}


async def test_429_is_retried_with_retry_after(provider: JsonPushProvider, channel: PushHttpChannel) -> None:
    provider.respond_with(429, retry_after="17")
    results = await channel.send([message(1, ("tok-a",)), message(2, ("tok-b",))])
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
    assert {r.retry_after for r in results} == {17} and all(r.disable_tokens == () for r in results)


async def test_no_device_token(channel: PushHttpChannel) -> None:
    [result] = await channel.send([message(1, (Device("w", "https://p.cn/w").token,))])
    assert result.outcome is Outcome.FAILED and "webpush" in (result.error or "")


async def test_legacy_fcm_positional_results(provider: JsonPushProvider) -> None:
    provider.respond_with(
        200,
        {
            "multicast_id": 1,
            "results": [{"message_id": "0:1"}, {"error": "NotRegistered"}, {"error": "Unavailable"}],
        },
    )
    ch = make_channel(
        provider.url,
        result_token_field=None,
        result_status_field="error",
        result_ok_values=[""],
        message_id_path="multicast_id",
    )
    try:
        results = await ch.send([message(1, ("a",)), message(2, ("b",)), message(3, ("c",))])
    finally:
        await ch.close()
    by_id = {r.delivery_id: r for r in results}
    assert by_id[801].outcome is Outcome.ACCEPTED and by_id[801].provider_message_id == "0:1"
    assert by_id[802].outcome is Outcome.FAILED and by_id[802].disable_tokens == ("b",)
    assert by_id[803].outcome is Outcome.RETRY


async def test_jpush_shape_and_request_level_unregistered(provider: JsonPushProvider) -> None:
    ch = make_channel(
        provider.url,
        body=JPUSH_BODY,
        results_path=None,
        message_id_path="msg_id",
        error_code_path="error.code",
        expired_codes=["1011"],
        max_tokens_per_request=1000,
    )
    try:
        provider.respond_with(200, {"sendno": "0", "msg_id": "54043195528398"})
        [ok] = await ch.send([message(1, ("regid-1",))])
        provider.respond_with(400, {"error": {"code": 1011, "message": "cannot find user by this audience"}})
        [gone] = await ch.send([message(2, ("regid-2",))])
    finally:
        await ch.close()
    sent = provider.requests[0].json
    assert sent["audience"] == {"registration_id": ["regid-1"]}
    assert sent["notification"]["android"]["priority"] == 2 and sent["options"]["apns_collapse_id"] == "A-1"
    assert ok.outcome is Outcome.ACCEPTED and ok.provider_message_id == "54043195528398"
    assert gone.outcome is Outcome.FAILED and gone.disable_tokens == ("regid-2",)


async def test_template_errors_fail_the_request(provider: JsonPushProvider) -> None:
    ch = make_channel(provider.url, body='{"to": {{ nope }}}')
    [result] = await ch.send([message(1, ("a",))])
    assert result.outcome is Outcome.FAILED and "template" in (result.error or "") and not provider.requests


# --- through the dispatcher, on a real SQLite file -------------------------------------------------------


@pytest.fixture
async def push_app(config_dir: Path, provider: JsonPushProvider, clock: FakeClock) -> AsyncIterator[App]:
    tokens = {
        "王大山": ["wang-phone"],
        "黄丽": ["huang-phone"],
        "罗文军": ["luo-phone", "luo-tablet"],
        "唐建华": ["tang-phone"],
    }

    def subscribers(data: dict) -> None:
        for person in data["subscribers"]:
            if person["name"] in tokens:
                person["push_tokens"] = tokens[person["name"]]

    def channels(data: dict) -> None:
        data["channels"]["push"] = {"adapter": "push_http", "template": "push", "url": provider.url}

    edit_yaml(config_dir / "subscribers.yaml", subscribers)
    edit_yaml(config_dir / "channels.yaml", channels)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    yield app
    await app.close()


async def test_dispatch_removes_an_unregistered_token(push_app: App, provider: JsonPushProvider) -> None:
    provider.unregistered = {"luo-tablet"}
    [result] = await push_app.pipeline.ingest(cap_cn(), source="t")
    await push_app.dispatcher.drain()
    rows = await push_app.store.deliveries_page({"alert_id": result.alert_id, "channel": "push"}, limit=100)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"sent"}
    # one request per distinct text: the duty person's asks for 叫应 (red rule), the public's does not
    assert sorted(len(r.json["tokens"]) for r in provider.requests) == [1, 4]
    tokens = {r["name"]: r["push_tokens"] async for r in push_app.store.export_recipients("person")}
    assert tokens["罗文军"] == ["luo-phone"] and tokens["王大山"] == ["wang-phone"]
