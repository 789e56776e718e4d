"""The smpp channel against a fake SMSC on a real TCP socket: bind, UCS-2 concatenation, statuses, receipts,
keep-alive and reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from smpplib import consts

from channels.base import Outcome, OutgoingMessage, Recipient
from channels.smpp import SmppChannel, SmppSettings
from tests.support.smsc import FakeSmsc

LONG = (
    "【梁平区应急管理局】梁平区气象台发布暴雨红色预警信号：预计未来3小时我区大部将出现100毫米以上降雨，"
    * 3  # 153 characters
)


class Sink:
    def __init__(self) -> None:
        self.reports: list[tuple[str, str, str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def record(self, channel: str, msg_id: str, state: str, detail: Mapping[str, Any]) -> None:
        self.reports.append((channel, msg_id, state, dict(detail)))
        self.arrived.set()


def message(i: int, body: str = LONG, phone: str | None = None) -> OutgoingMessage:
    phone = phone or f"138{i:08d}"
    return OutgoingMessage(
        delivery_id=i,
        idempotency_key=f"7:{i}:sms",
        recipient=Recipient(
            key=phone, name=f"r{i}", kind="person", role="public", area_code="500228101201", language="zh-CN"
        ),
        address=phone,
        body=body,
        content_key="c",
    )


@pytest.fixture
async def smsc() -> AsyncIterator[FakeSmsc]:
    async with FakeSmsc() as server:
        yield server


def channel_for(smsc: FakeSmsc, tmp_path: Any, **extra: Any) -> SmppChannel:
    settings = SmppSettings(
        adapter="smpp",
        host=smsc.host,
        port=smsc.port,
        system_id="warnd",
        password="secret",
        source_addr="10690228",
        response_timeout=1.0,
        **extra,
    )
    return SmppChannel("sms2", settings, data_dir=str(tmp_path))


async def test_long_chinese_sms_goes_as_concatenated_ucs2_parts(smsc: FakeSmsc, tmp_path: Any) -> None:
    channel = channel_for(smsc, tmp_path)
    try:
        [result] = await channel.send([message(1)])
    finally:
        await channel.close()
    assert result.outcome == Outcome.ACCEPTED, result.error
    [sent] = smsc.messages
    assert (sent.phone, sent.text) == ("13800000001", LONG)  # reassembled exactly
    assert len(smsc.submits) == 3 == len(sent.message_ids)  # 67 + 67 + 19 UCS-2 characters
    assert all(int(p.data_coding) == consts.SMPP_ENCODING_ISO10646 for p in smsc.submits)
    assert all(int(p.esm_class) & consts.SMPP_GSMFEAT_UDHI for p in smsc.submits)
    assert all(int(p.registered_delivery) == 1 for p in smsc.submits)
    assert result.provider_message_id == ",".join(sent.message_ids)
    assert smsc.binds == 1


async def test_a_short_message_is_one_submit(smsc: FakeSmsc, tmp_path: Any) -> None:
    channel = channel_for(smsc, tmp_path)
    try:
        results = await channel.send([message(i, body="【梁平】请注意防范。") for i in range(1, 6)])
    finally:
        await channel.close()
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 5
    assert len(smsc.submits) == 5 and not any(
        int(p.esm_class) & consts.SMPP_GSMFEAT_UDHI for p in smsc.submits
    )
    assert smsc.binds == 1  # one session for the whole batch


async def test_statuses_map_to_retry_and_failed(smsc: FakeSmsc, tmp_path: Any) -> None:
    channel = channel_for(smsc, tmp_path)
    smsc.refuse_next = [consts.SMPP_ESME_RTHROTTLED, consts.SMPP_ESME_RINVDSTADR]
    try:
        throttled = (await channel.send([message(1, body="短信一")]))[0]
        invalid = (await channel.send([message(2, body="短信二")]))[0]
    finally:
        await channel.close()
    assert throttled.outcome == Outcome.RETRY and "RTHROTTLED" in (throttled.error or "")
    assert invalid.outcome == Outcome.FAILED and "RINVDSTADR" in (invalid.error or "")


async def test_wrong_password_and_unreachable_smsc_retry(smsc: FakeSmsc, tmp_path: Any) -> None:
    wrong = SmppChannel(
        "sms2",
        SmppSettings(
            adapter="smpp",
            host=smsc.host,
            port=smsc.port,
            system_id="warnd",
            password="nope",
            source_addr="1069",
            response_timeout=1.0,
        ),
        data_dir=str(tmp_path),
    )
    [refused] = await wrong.send([message(1, body="短信")])
    await wrong.close()
    assert refused.outcome == Outcome.RETRY and "RINVPASWD" in (refused.error or "")
    nowhere = SmppChannel(
        "sms2",
        SmppSettings(
            adapter="smpp",
            host="127.0.0.1",
            port=1,
            system_id="warnd",
            password="x",
            source_addr="1069",
            response_timeout=1.0,
        ),
        data_dir=str(tmp_path),
    )
    [down] = await nowhere.send([message(1, body="短信")])
    assert down.outcome == Outcome.RETRY and "cannot bind" in (down.error or "")


async def test_no_answer_is_retry_and_a_dropped_session_reconnects(smsc: FakeSmsc, tmp_path: Any) -> None:
    channel = channel_for(smsc, tmp_path)
    try:
        smsc.silent = True
        [timed_out] = await channel.send([message(1, body="短信")])
        assert timed_out.outcome == Outcome.RETRY and "no answer" in (timed_out.error or "")
        smsc.silent = False
        await smsc.drop_connections()
        await asyncio.sleep(0.05)
        [again] = await channel.send([message(1, body="短信")])
        assert again.outcome == Outcome.ACCEPTED and smsc.binds == 2
    finally:
        await channel.close()


async def test_delivery_receipts_and_enquire_link(smsc: FakeSmsc, tmp_path: Any) -> None:
    channel = channel_for(smsc, tmp_path, enquire_link_interval=0.05)
    sink = Sink()
    channel.feedback = sink
    try:
        [result] = await channel.send([message(3, body="短信")])
        await smsc.receipt(result.provider_message_id or "", "DELIVRD", phone="13800000003")
        await asyncio.wait_for(sink.arrived.wait(), 2)
        await smsc.receipt("unknown-99", "UNDELIV")
        await asyncio.sleep(0.2)
    finally:
        await channel.close()
    (name, msg_id, state, detail), (_, unknown_id, unknown_state, _) = sink.reports
    assert (name, msg_id, state) == ("sms2", "7:3:sms", "DELIVRD")
    assert detail["phone"] == "138****0003" and detail["message_id"] == result.provider_message_id
    assert (unknown_id, unknown_state) == ("smpp:unknown-99", "UNDELIV")  # recorded, not dropped
    assert smsc.enquire_links >= 2
