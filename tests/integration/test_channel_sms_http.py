"""sms_http adapter against real HTTP servers (tests.support.gateway.FakeSmsGateway)."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from channels.base import Address, Outcome, OutgoingMessage, Recipient
from channels.http import parse_retry_after
from channels.sms_http import (
    SmsHttpChannel,
    SmsHttpSettings,
    lookup_path,
    normalize_phone,
)
from tests.support.gateway import FakeSmsGateway
from warnd.clock import FakeClock
from warnd.logs import mask_phone
from warnd.logs import mask_text as mask_phones_in

SIGNATURE = "梁平区应急管理局"
CONTENT = (
    "梁平区气象台2026年7月1日9时发布暴雨橙色预警信号：预计未来3小时我区大部将出现50毫米以上降雨，"
    "请注意防范山洪、地质灾害。"
)


def phone(i: int) -> str:
    return f"138{i:08d}"


def sms(i: int, *, content: str = CONTENT, content_key: str = "c1", rev: int = 7) -> OutgoingMessage:
    number = phone(i)
    return OutgoingMessage(
        delivery_id=1000 + i,
        idempotency_key=f"{rev}:{i}:sms",
        recipient=Recipient(
            key=number,
            name=f"村民{i}",
            kind="person",
            role="resident",
            area_code="500155",
            language="zh",
            phone=number,
        ),
        address=number,
        body=f"【{SIGNATURE}】{content}",
        content_key=content_key,
        data={"signature": SIGNATURE, "content": content},
        segments=2,
        priority=2,
        alert={"id": 1, "identifier": "500155-2026-0001", "colour": "orange"},
    )


def make_channel(url: str, **overrides: Any) -> SmsHttpChannel:
    settings = SmsHttpSettings(adapter="sms_http", url=url, **overrides)
    return SmsHttpChannel("sms", settings, data_dir="/nonexistent")


@pytest.fixture
async def channel(gateway: FakeSmsGateway) -> AsyncIterator[SmsHttpChannel]:
    ch = make_channel(gateway.url, timeout=2.0)
    await ch.start()
    yield ch
    await ch.close()


def by_id(results: list[Any]) -> dict[int, Any]:
    return {r.delivery_id: r for r in results}


# ----------------------------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    s = SmsHttpSettings(adapter="sms_http", url="https://sms.example.cn/send")
    assert s.method == "POST" and s.body_format == "json" and s.headers == {}
    assert s.max_recipients_per_request == 100
    assert s.message_id_path == "id" and s.results_path == "results"
    assert s.result_ok_values == ["ok", "accepted", "0", "OK"]
    ch = SmsHttpChannel("sms", s, data_dir="/tmp")
    assert ch.address is Address.PHONE and ch.max_batch == 100


def test_settings_reject_bad_template_and_method() -> None:
    with pytest.raises(ValidationError, match="body template"):
        SmsHttpSettings(adapter="sms_http", url="https://x.cn/", body="{{ content|tojson ")
    with pytest.raises(ValidationError, match="form"):
        SmsHttpSettings(adapter="sms_http", url="https://x.cn/", method="GET")
    with pytest.raises(ValidationError):
        SmsHttpSettings(adapter="sms_http", url="https://x.cn/", unknown_field=1)  # type: ignore[call-arg]


async def test_batch_of_100_in_one_request(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    batch = [sms(i) for i in range(100)]
    results = await channel.send(batch)

    assert gateway.request_count == 1
    assert len(results) == 100
    assert {r.delivery_id for r in results} == {m.delivery_id for m in batch}
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    ids = by_id(results)
    # the per-number message id wins over the request-level id
    assert {ids[m.delivery_id].provider_message_id for m in batch} == {f"msg-{i}" for i in range(1, 101)}
    assert all(r.response is not None and r.response["status"] == 200 for r in results)
    assert all(len(r.response["body"]) <= 500 for r in results if r.response)

    req = gateway.requests[0]
    assert req.json["signature"] == SIGNATURE
    assert req.json["content"] == CONTENT
    assert [m["phone"] for m in req.json["messages"]] == [phone(i) for i in range(100)]
    assert req.json["messages"][0] == {"phone": phone(0), "key": "7:0:sms", "delivery_id": 1000}
    assert gateway.accepted_keys == {f"7:{i}:sms": 1 for i in range(100)}


async def test_idempotency_header_single_and_batch(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    await channel.send([sms(1)])
    assert gateway.requests[0].header("Idempotency-Key") == "7:1:sms"

    batch = [sms(3), sms(2)]
    await channel.send(batch)
    expected = hashlib.sha256(b"7:2:sms\n7:3:sms").hexdigest()
    assert gateway.requests[1].header("Idempotency-Key") == expected


async def test_retry_is_deduplicated_by_the_gateway(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    first = await channel.send([sms(1), sms(2)])
    again = await channel.send([sms(1), sms(2)])
    assert [r.outcome for r in first + again] == [Outcome.ACCEPTED] * 4
    assert by_id(first)[1001].provider_message_id == by_id(again)[1001].provider_message_id
    assert gateway.request_count == 2
    assert gateway.accepted_keys == {"7:1:sms": 1, "7:2:sms": 1}
    assert len(gateway.sent) == 2


async def test_per_number_failures(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    gateway.fail_phones(phone(3), phone(5))
    results = by_id(await channel.send([sms(i) for i in range(8)]))
    assert results[1003].outcome is Outcome.FAILED
    assert results[1003].error == "failed: invalid number"
    assert results[1005].outcome is Outcome.FAILED
    ok = [results[1000 + i] for i in (0, 1, 2, 4, 6, 7)]
    assert all(r.outcome is Outcome.ACCEPTED and r.provider_message_id for r in ok)
    assert set(gateway.accepted_keys) == {f"7:{i}:sms" for i in (0, 1, 2, 4, 6, 7)}


async def test_numbers_left_out_of_the_results_are_retried(
    gateway: FakeSmsGateway, channel: SmsHttpChannel
) -> None:
    gateway.max_numbers_per_request = 3
    batch = [sms(i) for i in range(5)]
    results = by_id(await channel.send(batch))
    assert [results[1000 + i].outcome for i in range(5)] == [Outcome.ACCEPTED] * 3 + [Outcome.RETRY] * 2
    assert "no result" in (results[1004].error or "")

    gateway.max_numbers_per_request = None
    again = await channel.send(batch)  # the dispatcher resends; accepted ones are deduplicated
    assert all(r.outcome is Outcome.ACCEPTED for r in again)
    assert gateway.accepted_keys == {f"7:{i}:sms": 1 for i in range(5)}


async def test_503_is_retry(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    gateway.fail_next(1, status=503)
    results = await channel.send([sms(1), sms(2)])
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
    assert results[0].retry_after is None
    assert results[0].error is not None and results[0].error.startswith("HTTP 503")
    assert results[0].response == {"status": 503, "body": '{"error": "busy"}'}
    assert gateway.accepted_keys == {}
    # next time it works
    assert all(r.outcome is Outcome.ACCEPTED for r in await channel.send([sms(1), sms(2)]))


async def test_429_with_retry_after_seconds(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    gateway.throttle_next(1, retry_after=7)
    [result] = await channel.send([sms(1)])
    assert result.outcome is Outcome.RETRY
    assert result.retry_after == 7.0
    assert result.response is not None and result.response["status"] == 429


async def test_503_with_retry_after_http_date(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    clock = FakeClock(datetime(2026, 7, 1, 1, 0, tzinfo=UTC))
    channel.clock = clock
    gateway.fail_next(
        1, status=503, retry_after=format_datetime(clock.now() + timedelta(seconds=120), usegmt=True)
    )
    [result] = await channel.send([sms(1)])
    assert result.outcome is Outcome.RETRY
    assert result.retry_after == 120.0


async def test_timeout_is_retry_and_the_resend_is_not_a_duplicate(gateway: FakeSmsGateway) -> None:
    ch = make_channel(gateway.url, timeout=0.2)
    await ch.start()
    try:
        gateway.delay = 1.0
        [result] = await ch.send([sms(1)])
        assert result.outcome is Outcome.RETRY
        assert result.error is not None and "timeout" in result.error
        assert result.response == {"status": None, "body": ""}
        gateway.delay = 0
        [again] = await ch.send([sms(1)])
        assert again.outcome is Outcome.ACCEPTED
        assert gateway.accepted_keys == {"7:1:sms": 1}  # the gateway had taken it the first time
    finally:
        await ch.close()


async def test_connection_refused_is_retry() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ch = make_channel(f"http://127.0.0.1:{port}/sms", timeout=2.0)
    await ch.start()
    try:
        results = await ch.send([sms(1), sms(2)])
    finally:
        await ch.close()
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
    assert results[0].error is not None and "connect" in results[0].error


async def test_400_is_failed_with_reason(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    gateway.respond_next(400, {"error": "签名未报备 signature not registered"})
    results = await channel.send([sms(1), sms(2)])
    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED]
    assert results[0].error == 'HTTP 400: {"error": "签名未报备 signature not registered"}'
    assert results[0].response is not None and results[0].response["status"] == 400


async def test_unknown_4xx_body_is_excerpted(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    gateway.respond_next(403, text="x" * 5000)
    [result] = await channel.send([sms(1)])
    assert result.outcome is Outcome.FAILED
    assert result.error is not None and result.error.startswith("HTTP 403: xxx") and len(result.error) < 260
    assert result.response is not None and len(result.response["body"]) == 500


ALIYUN = {
    "ok_path": "Code",
    "ok_values": ["OK"],
    "message_id_path": "BizId",
    "results_path": None,
    "error_message_path": "Message",
    "max_recipients_per_request": 1000,
    "body_format": "form",
    "body": (
        '{"PhoneNumbers": {{ phones|join(",")|tojson }}, "SignName": {{ signature|tojson }},'
        ' "TemplateCode": "SMS_123", "TemplateParam": {{ {"content": content}|tojson|tojson }},'
        ' "OutId": {{ key|tojson }}}'
    ),
}


async def test_aliyun_style_ok_path(gateway: FakeSmsGateway) -> None:
    ch = make_channel(gateway.url, **ALIYUN)
    await ch.start()
    try:
        gateway.respond_next(
            200, {"Code": "OK", "Message": "OK", "BizId": "9006197469364984^0", "RequestId": "r"}
        )
        results = await ch.send([sms(1), sms(2)])
        assert all(r.outcome is Outcome.ACCEPTED for r in results)
        assert {r.provider_message_id for r in results} == {"9006197469364984^0"}

        form = gateway.requests[0].form
        assert form is not None
        assert form["PhoneNumbers"] == f"{phone(1)},{phone(2)}"
        assert form["SignName"] == SIGNATURE
        assert json.loads(form["TemplateParam"]) == {"content": CONTENT}
        assert (
            gateway.requests[0].header("Content-Type") == "application/x-www-form-urlencoded; charset=utf-8"
        )

        gateway.respond_next(
            200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1"}
        )
        [limited] = await ch.send([sms(3)])
        assert limited.outcome is Outcome.FAILED
        assert limited.error == "isv.BUSINESS_LIMIT_CONTROL: 触发分钟级流控Permits:1"
    finally:
        await ch.close()


async def test_aliyun_style_retryable_code(gateway: FakeSmsGateway) -> None:
    ch = make_channel(gateway.url, **ALIYUN, retryable_codes=["isv.BUSINESS_LIMIT_CONTROL"])
    await ch.start()
    try:
        gateway.respond_next(
            200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1"}
        )
        results = await ch.send([sms(1), sms(2)])
        assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
        assert results[0].error == "isv.BUSINESS_LIMIT_CONTROL: 触发分钟级流控Permits:1"
        gateway.respond_next(200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"})
        [bad] = await ch.send([sms(3)])
        assert bad.outcome is Outcome.FAILED
    finally:
        await ch.close()


async def test_ok_path_without_json_is_retry(gateway: FakeSmsGateway) -> None:
    ch = make_channel(gateway.url, **ALIYUN)
    await ch.start()
    try:
        gateway.respond_next(200, text="<html>proxy login</html>")
        [result] = await ch.send([sms(1)])
        assert result.outcome is Outcome.RETRY
    finally:
        await ch.close()


async def test_plain_text_ok_without_checks_is_accepted(
    gateway: FakeSmsGateway, channel: SmsHttpChannel
) -> None:
    gateway.respond_next(200, text="OK")
    [result] = await channel.send([sms(1)])
    assert result.outcome is Outcome.ACCEPTED and result.provider_message_id is None


async def test_tencent_style_results_path(gateway: FakeSmsGateway) -> None:
    ch = make_channel(
        gateway.url,
        ok_path=None,
        message_id_path="Response.RequestId",
        results_path="Response.SendStatusSet",
        result_phone_field="PhoneNumber",
        result_key_field=None,
        result_ok_field="Code",
        result_ok_values=["Ok"],
        result_id_field="SerialNo",
        result_error_field="Message",
        retryable_codes=["LimitExceeded.AppDailyLimit"],
        body=(
            '{"PhoneNumberSet": {{ phones|map("string")|list|tojson }}, "SmsSdkAppId": "1400000000",'
            ' "SignName": {{ signature|tojson }}, "TemplateId": "1234",'
            ' "TemplateParamSet": [{{ content|tojson }}],'
            ' "SessionContext": {{ key|tojson }}}'
        ),
    )
    await ch.start()
    try:

        def status(serial: str, number: str, code: str, text: str) -> dict[str, Any]:
            return {
                "SerialNo": serial,
                "PhoneNumber": f"+86{number}",
                "Fee": 2 if code == "Ok" else 0,
                "SessionContext": "",
                "Code": code,
                "Message": text,
                "IsoCode": "CN",
            }

        status_set = [
            status("5000:1045710669157053657849499619", phone(2), "Ok", "send success"),
            status("", phone(1), "InvalidParameterValue.IncorrectPhoneNumber", "手机号格式错误"),
            status("", phone(3), "LimitExceeded.AppDailyLimit", "日下发条数超过设定的上限"),
        ]
        gateway.respond_next(
            200,
            {"Response": {"SendStatusSet": status_set, "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"}},
        )
        results = by_id(await ch.send([sms(1), sms(2), sms(3)]))
        assert results[1002].outcome is Outcome.ACCEPTED
        assert results[1002].provider_message_id == "5000:1045710669157053657849499619"
        assert results[1001].outcome is Outcome.FAILED
        assert results[1001].error == "InvalidParameterValue.IncorrectPhoneNumber: 手机号格式错误"
        assert results[1003].outcome is Outcome.RETRY
        sent = gateway.requests[0].json
        assert sent["PhoneNumberSet"] == [phone(1), phone(2), phone(3)]
        assert sent["TemplateParamSet"] == [CONTENT]
    finally:
        await ch.close()


async def test_form_body_one_number_per_request(gateway: FakeSmsGateway) -> None:
    ch = make_channel(
        gateway.url,
        body_format="form",
        max_recipients_per_request=1,
        headers={"Authorization": "Bearer t0ken"},
        body='{"phone": {{ phone|tojson }}, "content": {{ text|tojson }}, "key": {{ key|tojson }}, "n": 1}',
    )
    assert ch.max_batch == 1
    await ch.start()
    try:
        [result] = await ch.send([sms(1)])
        assert result.outcome is Outcome.ACCEPTED
        req = gateway.requests[0]
        assert req.form == {
            "phone": phone(1),
            "content": f"【{SIGNATURE}】{CONTENT}",
            "key": "7:1:sms",
            "n": "1",
        }
        assert req.header("Authorization") == "Bearer t0ken"
        assert req.header("Idempotency-Key") == "7:1:sms"
        assert gateway.sent[0].content == f"【{SIGNATURE}】{CONTENT}"
    finally:
        await ch.close()


async def test_get_with_query_string(gateway: FakeSmsGateway) -> None:
    ch = make_channel(
        gateway.url + "?account=bureau",
        method="get",
        body_format="form",
        max_recipients_per_request=1,
        body='{"phone": {{ phone|tojson }}, "content": {{ text|tojson }}}',
    )
    await ch.start()
    try:
        [result] = await ch.send([sms(1)])
        assert result.outcome is Outcome.ACCEPTED
        req = gateway.requests[0]
        assert req.method == "GET"
        assert req.query == {"account": "bureau", "phone": phone(1), "content": f"【{SIGNATURE}】{CONTENT}"}
    finally:
        await ch.close()


async def test_chinese_survives_utf8_end_to_end(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    tricky = "暴雨红色预警：“撤离”至<安全区>&避险点'A'，勿涉水！😀"
    await channel.send([sms(1, content=tricky)])
    req = gateway.requests[0]
    assert tricky.encode("utf-8") in req.raw  # sent as UTF-8, not \\u escapes
    assert req.header("Content-Type") == "application/json; charset=utf-8"
    assert req.json["content"] == tricky
    assert gateway.sent[0].content == tricky


async def test_invalid_json_template_fails_all(gateway: FakeSmsGateway) -> None:
    ch = make_channel(gateway.url, body='{"content": {{ content }}}')  # forgot |tojson
    await ch.start()
    try:
        results = await ch.send([sms(1), sms(2)])
    finally:
        await ch.close()
    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED]
    assert results[0].error is not None and "did not render valid JSON" in results[0].error
    assert gateway.request_count == 0


async def test_form_template_must_render_flat_object(gateway: FakeSmsGateway) -> None:
    ch = make_channel(gateway.url, body_format="form", body='{"m": {{ messages|tojson }}}')
    await ch.start()
    try:
        [result] = await ch.send([sms(1)])
    finally:
        await ch.close()
    assert result.outcome is Outcome.FAILED and "form field 'm'" in (result.error or "")


async def test_sandbox_blocks_attribute_tricks(gateway: FakeSmsGateway) -> None:
    ch = make_channel(gateway.url, body='{"x": {{ content.__class__.__mro__|tojson }}}')
    await ch.start()
    try:
        [result] = await ch.send([sms(1)])
    finally:
        await ch.close()
    assert result.outcome is Outcome.FAILED
    assert gateway.request_count == 0


async def test_mixed_content_keys_are_split(gateway: FakeSmsGateway, channel: SmsHttpChannel) -> None:
    results = await channel.send([sms(1), sms(2, content="解除", content_key="c2"), sms(3)])
    assert len(results) == 3 and all(r.outcome is Outcome.ACCEPTED for r in results)
    assert gateway.request_count == 2
    assert sorted(len(r.json["messages"]) for r in gateway.requests) == [1, 2]


async def test_logs_mask_phone_numbers(
    gateway: FakeSmsGateway, channel: SmsHttpChannel, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.fail_phones(phone(1))
    gateway.respond_next(400, {"error": f"号码{phone(2)}无效"})
    with caplog.at_level(logging.DEBUG, logger="channels"):
        await channel.send([sms(2)])
        await channel.send([sms(1)])
        gateway.throttle_next(1)
        await channel.send([sms(3)])
    text = caplog.text
    assert text  # something was logged
    for i in (1, 2, 3):
        assert phone(i) not in text
    assert "138****0001" in text


def test_mask_helpers() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+8613812345678") == "+86138****5678"
    assert mask_phone("110") == "****"
    assert mask_phones_in("bad 13812345678, +8613912345678") == "bad 138****5678, +86139****5678"
    assert normalize_phone("+86 138-1234-5678") == "13812345678"
    assert lookup_path({"a": {"b": [{"c": 1}]}}, "a.b.0.c") == 1
    assert lookup_path({"a": 1}, "a.b") is None


def test_parse_retry_after() -> None:
    now = datetime(2026, 7, 1, tzinfo=UTC)
    assert parse_retry_after("7", now=now.timestamp()) == 7.0
    assert parse_retry_after(" 1.5 ", now=now.timestamp()) == 1.5
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(date, now=now.timestamp()) == 30.0
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 0
    )
    assert parse_retry_after("soon", now=now.timestamp()) is None
    assert parse_retry_after(None, now=now.timestamp()) is None
    assert parse_retry_after("-3", now=now.timestamp()) == 0.0


async def test_send_without_start_opens_a_session(gateway: FakeSmsGateway) -> None:
    ch = make_channel(gateway.url)
    try:
        [result] = await ch.send([sms(1)])
        assert result.outcome is Outcome.ACCEPTED
    finally:
        await ch.close()
    await ch.close()  # idempotent
