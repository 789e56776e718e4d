"""Delivery receipts on a real SQLite store: segment receipts, duplicates, late and unknown receipts, the
signed receipt webhook (real aiohttp test client) and SMPP receipts from the fake SMSC (docs/feedback.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from channels.webhook import sign
from tests.conftest import AUTH, cap_cn, edit_yaml
from tests.support.smsc import FakeSmsc
from warnd.api import make_web_app
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config

SECRET = "sms-receipt-secret-0123456789"
LONG = (
    "梁平区气象台发布暴雨红色预警信号：预计未来3小时梁平区大部将出现100毫米以上降雨，请注意防范山洪、滑坡。"
    * 2
)


@pytest.fixture
async def fb_app(config_dir: Path, clock: FakeClock) -> AsyncIterator[App]:
    edit_yaml(
        config_dir / "warnd.yaml", lambda d: d.setdefault("api", {}).update(feedback_secrets={"sms": SECRET})
    )
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    yield app
    await app.close()


@pytest.fixture
async def client(fb_app: App) -> AsyncIterator[TestClient]:
    async with TestClient(
        TestServer(make_web_app(fb_app), host="127.0.0.1", port=0), headers=AUTH
    ) as test_client:
        yield test_client


async def _sms_rows(app: App) -> list[dict[str, Any]]:
    [alert] = await app.pipeline.ingest(cap_cn(description=LONG), source="t")
    await app.dispatcher.drain()
    rows = await app.store.deliveries_page({"alert_id": alert.alert_id, "channel": "sms"}, limit=100)
    assert rows and {r["status"] for r in rows} == {"sent"}
    # the people asked for 叫应 get a longer text (the reply keyword and their link): the three-part ones are
    # everyone else's
    return [r for r in rows if not r["ack_required"]]


async def _row(app: App, delivery_id: int) -> dict[str, Any]:
    [row] = [r for r in await app.store.deliveries_page({}, limit=10_000) if r["id"] == delivery_id]
    return row


async def _receipt(app: App, row: dict[str, Any], state: str, segment: int | None = None) -> str:
    result = await app.store.record_feedback(
        "sms",
        None,
        state,
        {},
        app.clock.now(),
        kind="sms",
        provider_id=row["provider_message_id"],
        segment=segment,
    )
    return result.outcome


async def test_segment_receipts_success_fail_success_is_failed(fb_app: App) -> None:
    rows = await _sms_rows(fb_app)
    row = rows[0]
    assert row["segments"] == 3
    assert [
        await _receipt(fb_app, row, s, i) for i, s in ((1, "DELIVRD"), (2, "UNDELIV"), (3, "DELIVRD"))
    ] == ["matched"] * 3
    after = await _row(fb_app, row["id"])
    assert after["status"] == "failed" and after["delivered_at"] is None
    assert after["error"] == "receipt: UNDELIV (part 2/3)"
    # a later success for the failed segment itself hides nothing either
    await _receipt(fb_app, row, "DELIVRD", 2)
    assert (await _row(fb_app, row["id"]))["status"] == "failed"


async def test_all_segments_delivered_duplicate_counted_once(fb_app: App) -> None:
    row = (await _sms_rows(fb_app))[0]
    assert await _receipt(fb_app, row, "DELIVRD", 1) == "matched"
    assert await _receipt(fb_app, row, "DELIVRD", 1) == "duplicate"
    assert await _receipt(fb_app, row, "DELIVRD", 2) == "matched"
    assert (await _row(fb_app, row["id"]))["status"] == "sent"  # the duplicate did not count for segment 3
    assert await _receipt(fb_app, row, "DELIVRD", 3) == "matched"
    after = await _row(fb_app, row["id"])
    assert after["status"] == "delivered" and after["delivered_at"] == fb_app.clock.now()
    events = [
        e for e in (await fb_app.store.delivery_events([row["id"]]))[row["id"]] if e["kind"] == "feedback"
    ]
    assert [bool(e["detail"].get("duplicate")) for e in events] == [False, True, False, False]
    # a receipt without a segment number covers every segment
    other = (await fb_app.store.deliveries_page({"channel": "sms"}, limit=100))[1]
    assert await _receipt(fb_app, other, "DELIVRD") == "matched"
    assert (await _row(fb_app, other["id"]))["status"] == "delivered"
    logs = await fb_app.store.deliveries_page({"status": "delivered"}, limit=100)
    assert {r["id"] for r in logs} == {row["id"], other["id"]}


async def test_late_receipt_after_expiry_still_counts(fb_app: App, clock: FakeClock) -> None:
    row = (await _sms_rows(fb_app))[0]
    clock.advance(24 * 3600)
    assert await fb_app.store.expire_alerts(clock.now())
    result = await fb_app.store.record_feedback(
        "sms",
        row["idempotency_key"] if "idempotency_key" in row else None,
        "DELIVRD",
        {},
        clock.now(),
        kind="sms",
        provider_id=row["provider_message_id"],
    )
    assert result.outcome == "matched" and result.late and result.status == "delivered"
    events = (await fb_app.store.delivery_events([row["id"]]))[row["id"]]
    assert events[-1]["detail"]["late"] is True


async def test_receipt_before_the_send_result_is_held_then_applied(fb_app: App, clock: FakeClock) -> None:
    """SMPP receipts can beat the send's own answer: a report for a delivery still in flight is kept as pending
    and applied in the transaction that marks it sent."""
    [alert] = await fb_app.pipeline.ingest(cap_cn(), source="t")
    token, claimed = await fb_app.store.claim("sms", 1, clock.now(), 60)
    [item] = claimed
    key = item.delivery["idempotency_key"]
    early = await fb_app.store.record_feedback("sms", key, "DELIVRD", {}, clock.now(), kind="sms")
    assert early.outcome == "recorded" and early.status == "queued"
    events = (await fb_app.store.delivery_events([item.delivery["id"]]))[item.delivery["id"]]
    assert events[-1]["detail"]["pending"] is True and events[-1]["detail"]["applied"] is False
    clock.advance(2)
    landed = await fb_app.store.record_results(
        token,
        [
            {
                "delivery_id": item.delivery["id"],
                "status": "sent",
                "provider_message_id": "gw-early-1",
                "event": "accepted",
                "attempts": 1,
            }
        ],
        clock.now(),
    )
    assert landed == 1
    row = await _row(fb_app, item.delivery["id"])
    assert row["status"] == "delivered" and row["delivered_at"] == clock.now()
    events = (await fb_app.store.delivery_events([item.delivery["id"]]))[item.delivery["id"]]
    feedback = [e for e in events if e["kind"] == "feedback"]
    assert len(feedback) == 1 and feedback[0]["detail"]["pending"] is False
    assert feedback[0]["detail"]["applied"] is True
    assert alert.alert_id == row["alert_id"]


async def test_batch_id_shared_by_two_deliveries_needs_the_phone(fb_app: App, clock: FakeClock) -> None:
    """A gateway that answers a whole request with one id gives several deliveries the same provider id: a
    receipt without the phone cannot say whose it is (kept as ambiguous in the audit log, nothing changes); with
    the phone it lands on the right one."""
    [alert] = await fb_app.pipeline.ingest(cap_cn(), source="t")
    token, claimed = await fb_app.store.claim("sms", 2, clock.now(), 60)
    assert len(claimed) == 2
    await fb_app.store.record_results(
        token,
        [
            {
                "delivery_id": c.delivery["id"],
                "status": "sent",
                "provider_message_id": "batch-77",
                "event": "accepted",
                "attempts": 1,
            }
            for c in claimed
        ],
        clock.now(),
    )
    vague = await fb_app.store.record_feedback(
        "sms", None, "DELIVRD", {}, clock.now(), kind="sms", provider_id="batch-77"
    )
    assert vague.outcome == "ambiguous"
    assert {(await _row(fb_app, c.delivery["id"]))["status"] for c in claimed} == {"sent"}
    [entry] = [e for e in await fb_app.store.audit_entries() if e["action"] == "feedback_unknown"]
    assert entry["detail"]["outcome"] == "ambiguous" and entry["target"] == "batch-77"
    first, second = claimed
    exact = await fb_app.store.record_feedback(
        "sms",
        None,
        "DELIVRD",
        {},
        clock.now(),
        kind="sms",
        provider_id="batch-77",
        phone=first.recipient["phone"],
    )
    assert exact.outcome == "matched" and exact.delivery_id == first.delivery["id"]
    assert (await _row(fb_app, first.delivery["id"]))["status"] == "delivered"
    assert (await _row(fb_app, second.delivery["id"]))["status"] == "sent"
    assert alert.alert_id == first.delivery["alert_id"]


def _signed(body: bytes, clock: FakeClock, secret: str = SECRET, skew: float = 0) -> dict[str, str]:
    stamp = str(int(clock.now().timestamp() + skew))
    return {
        "X-Warnd-Timestamp": stamp,
        "X-Warnd-Signature": sign(secret, stamp, body),
        "Content-Type": "application/json",
    }


async def test_signed_webhook_happy_path_and_counts(
    fb_app: App, client: TestClient, clock: FakeClock
) -> None:
    row = (await _sms_rows(fb_app))[0]
    pid = row["provider_message_id"]
    receipts = [
        {"message_id": pid, "state": "DELIVRD", "segment": 1, "segments": 3, "phone": "13800000001"},
        {"message_id": pid, "state": "DELIVRD", "segment": 2},
        {"message_id": pid, "state": "DELIVRD", "segment": 2},
        {"message_id": pid, "state": "DELIVRD", "segment": 3, "time": "2024-07-12T05:40:00+08:00"},
        {"message_id": "nobody-knows", "state": "DELIVRD"},
        {"state": "DELIVRD"},
    ]
    body = json.dumps(receipts).encode()
    resp = await client.post("/api/v1/feedback/sms", data=body, headers=_signed(body, clock))
    assert resp.status == 200, await resp.text()
    counts = await resp.json()
    assert counts == {
        "received": 6,
        "matched": 3,
        "duplicate": 1,
        "recorded": 0,
        "unknown": 1,
        "ambiguous": 0,
        "invalid": 1,
    }
    assert (await _row(fb_app, row["id"]))["status"] == "delivered"
    unknown = [a for a in await fb_app.store.audit_entries() if a["action"] == "feedback_unknown"]
    assert unknown[0]["target"] == "nobody-knows" and unknown[0]["actor"] == "feedback:sms"
    # delivered_at in the API's delivery JSON
    resp = await client.get(f"/api/v1/alerts/{row['alert_id']}/deliveries", params={"channel": "sms"})
    [item] = [d for d in (await resp.json())["deliveries"] if d["id"] == row["id"]]
    assert item["status"] == "delivered" and item["delivered_at"]


async def test_webhook_refuses_bad_signatures(fb_app: App, client: TestClient, clock: FakeClock) -> None:
    row = (await _sms_rows(fb_app))[0]
    body = json.dumps([{"message_id": row["provider_message_id"], "state": "UNDELIV"}]).encode()
    tampered = body.replace(b"UNDELIV", b"DELIVRD")
    cases = [
        (tampered, _signed(body, clock)),  # body changed after signing
        (body, _signed(body, clock, skew=-301)),  # outside the replay window
        (body, _signed(body, clock, skew=+400)),  # forged future stamp
        (body, _signed(body, clock, secret="wrong-secret-0123456789")),
        (body, {"Content-Type": "application/json"}),  # no signature
    ]
    for data, headers in cases:
        resp = await client.post("/api/v1/feedback/sms", data=data, headers=headers)
        assert resp.status == 401
    resp = await client.post("/api/v1/feedback/push", data=body, headers=_signed(body, clock))
    assert resp.status == 401  # no secret configured for push
    after = await _row(fb_app, row["id"])
    assert after["status"] == "sent"
    assert not [
        e for e in (await fb_app.store.delivery_events([row["id"]]))[row["id"]] if e["kind"] == "feedback"
    ]
    rejected = [a for a in await fb_app.store.audit_entries() if a["action"] == "feedback.rejected"]
    assert len(rejected) == 6
    # a bearer token does not replace the signature
    resp = await client.post("/api/v1/feedback/sms", data=body, headers={"Authorization": "Bearer x"})
    assert resp.status == 401


# --- SMPP receipts through the app ----------------------------------------------------------------------------


@pytest.fixture
async def smpp_app(config_dir: Path, clock: FakeClock) -> AsyncIterator[tuple[App, FakeSmsc]]:
    async with FakeSmsc() as smsc:

        def change(data: dict[str, Any]) -> None:
            data["channels"]["sms"] = {
                "adapter": "smpp",
                "host": smsc.host,
                "port": smsc.port,
                "system_id": "warnd",
                "password": "secret",
                "source_addr": "10690228",
                "response_timeout": 2.0,
                "signature": "梁平区应急管理局",
                "max_chars": 500,
            }

        edit_yaml(config_dir / "channels.yaml", change)
        app = App(load_config(config_dir), clock=clock)
        await app.start(channels=False)
        try:
            yield app, smsc
        finally:
            await app.close()


async def _wait_status(app: App, delivery_id: int, status: str) -> dict[str, Any]:
    for _ in range(100):
        row = await _row(app, delivery_id)
        if row["status"] == status:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"delivery {delivery_id} stayed {row['status']}, not {status}")


async def test_smpp_receipts_per_part(smpp_app: tuple[App, FakeSmsc]) -> None:
    app, smsc = smpp_app
    [alert] = await app.pipeline.ingest(cap_cn(description=LONG), source="t")
    await app.dispatcher.drain()
    rows = await app.store.deliveries_page({"alert_id": alert.alert_id, "channel": "sms"}, limit=100)
    assert len(rows) >= 2 and {r["status"] for r in rows} == {"sent"}
    good, bad = [r for r in rows if not r["ack_required"]][:2]  # three parts (叫应 texts are longer)
    good_ids, bad_ids = good["provider_message_id"].split(","), bad["provider_message_id"].split(",")
    assert len(good_ids) == 3
    for part in good_ids:
        await smsc.receipt(part, "DELIVRD")
    await smsc.receipt(good_ids[0], "DELIVRD")  # duplicate
    await smsc.receipt(bad_ids[0], "DELIVRD")
    await smsc.receipt(bad_ids[1], "UNDELIV")
    await smsc.receipt(bad_ids[2], "DELIVRD")
    await smsc.receipt("unknown-99", "DELIVRD")
    assert (await _wait_status(app, good["id"], "delivered"))["delivered_at"] is not None
    failed = await _wait_status(app, bad["id"], "failed")
    assert failed["error"].startswith("receipt: UNDELIV (part 2/3)")

    async def all_in() -> bool:
        events = await app.store.delivery_events([good["id"], bad["id"]])
        return sum(1 for e in [*events[good["id"]], *events[bad["id"]]] if e["kind"] == "feedback") == 7

    for _ in range(100):
        if await all_in():
            break
        await asyncio.sleep(0.02)
    events = [
        e for e in (await app.store.delivery_events([good["id"]]))[good["id"]] if e["kind"] == "feedback"
    ]
    assert sum(1 for e in events if e["detail"].get("duplicate")) == 1
    assert (await _row(app, bad["id"]))["status"] == "failed"  # the last part's success hid nothing
    for _ in range(100):
        if any(a["action"] == "feedback_unknown" for a in await app.store.audit_entries()):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("unknown receipt not audited")


async def test_smpp_receipt_after_a_restart_matches_by_part_id(smpp_app: tuple[App, FakeSmsc]) -> None:
    app, smsc = smpp_app
    [alert] = await app.pipeline.ingest(cap_cn(description=LONG), source="t")
    await app.dispatcher.drain()
    row = (await app.store.deliveries_page({"alert_id": alert.alert_id, "channel": "sms"}, limit=1))[0]
    channel = app.channels["sms"]
    channel._sent_ids.clear()  # type: ignore[attr-defined]  # what a restart loses
    for part in row["provider_message_id"].split(","):
        await smsc.receipt(part, "DELIVRD")
    await _wait_status(app, row["id"], "delivered")


async def test_smpp_reply_acknowledges(smpp_app: tuple[App, FakeSmsc]) -> None:
    """A duty person answers the warning SMS with 收到: the SMSC delivers it as a mobile-originated deliver_sm
    and it becomes their 叫应; a reply that is not a keyword acknowledges nothing and is kept."""
    app, smsc = smpp_app
    [alert] = await app.pipeline.ingest(cap_cn(), source="t")
    await app.dispatcher.drain()
    await smsc.mobile_originated("13800230022", "收到，正在组织转移")
    await smsc.mobile_originated("13800230023", "雨很大")
    for _ in range(100):
        board = await app.acks.board(alert.alert_id)
        if board["acknowledged"]:
            break
        await asyncio.sleep(0.02)
    assert [(a["name"], a["channel"]) for a in board["acks"]] == [("李秀英", "reply")]
    for _ in range(100):
        unmatched = [e for e in await app.store.audit_entries() if e["action"] == "reply.unmatched"]
        if unmatched:
            break
        await asyncio.sleep(0.02)
    assert unmatched[0]["detail"]["text"] == "雨很大" and unmatched[0]["detail"]["phone"] == "138****0023"
