"""叫应 end to end on the example config: the request in duty persons' SMS, the one-tap page (GET never
acknowledges, POST does once), tampered and ended links, Updates, the signed reply webhook, an operator's call
through the API and the CLI, and the board (docs/acknowledgement.md). Real SQLite, real aiohttp test server."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from channels.webhook import sign
from tests.conftest import AUTH, cap_cn, edit_yaml
from tests.support.reports import postgres_refusals
from warnd.api import make_web_app
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.links import ACK, DOORKNOCK

pytestmark = pytest.mark.file_loudspeaker  # nothing here is about the MQTT loudspeakers

SECRET = "reply-webhook-secret-0123456789"
FIRST = "50022841600000_20240712053000"
LINK = re.compile(r"http://127\.0\.0\.1:8470/a/([A-Za-z0-9_-]+)")
ASK = re.compile(r"收到请回复1或点击 http://127\.0\.0\.1:8470/a/[A-Za-z0-9_-]+ 确认。")
WANG = "13800230021"  # 王大山, duty person of 龙溪村 (500228001201)
LI = "13800230022"  # 李秀英, duty person
PUBLIC = "13800230041"  # 何桂兰, the public: no 叫应 asked
STRANGER = "13900009999"
DUTY_AND_LEADERS = 9  # county leader, 3 township leaders, 4 duty persons, 1 village cadre


@pytest.fixture
async def ack_app(config_dir: Path, clock: FakeClock) -> AsyncIterator[App]:
    edit_yaml(
        config_dir / "warnd.yaml",
        lambda d: d.setdefault("api", {}).update(feedback_secrets={"reply": SECRET}),
    )
    app = App(load_config(config_dir), clock=clock)
    await app.start()
    yield app
    await app.close()


@pytest.fixture
async def client(ack_app: App) -> AsyncIterator[TestClient]:
    async with TestClient(
        TestServer(make_web_app(ack_app), host="127.0.0.1", port=0), headers=AUTH
    ) as test_client:
        yield test_client


async def _ingest(app: App, xml: bytes | None = None) -> int:
    [result] = await app.pipeline.ingest(xml or cap_cn(), source="t")
    assert result.alert_id is not None, result
    await app.dispatcher.drain()
    return result.alert_id


async def _sms(app: App, alert_id: int, phone: str) -> dict[str, Any]:
    [row] = [
        r
        for r in await app.store.deliveries_page({"alert_id": alert_id, "channel": "sms"}, limit=1000)
        if r["phone"] == phone
    ]
    return row


async def _link(app: App, alert_id: int, phone: str) -> str:
    """The path of the person's one-tap link, as their SMS carries it."""
    found = LINK.search((await _sms(app, alert_id, phone))["body"])
    assert found, "the SMS carries no 叫应 link"
    return f"/a/{found.group(1)}"


async def _ack_rows(app: App) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from warnd.schema import acknowledgements

    async with app.store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(acknowledgements))]


async def _audit(app: App, action: str) -> list[dict[str, Any]]:
    return [e for e in await app.store.audit_entries(500) if e["action"] == action]


def _signed(body: bytes, clock: FakeClock, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(clock.now().timestamp()))
    return {
        "X-Warnd-Timestamp": stamp,
        "X-Warnd-Signature": sign(secret, stamp, body),
        "Content-Type": "application/json",
    }


async def _replies(client: TestClient, clock: FakeClock, items: Any) -> tuple[int, Any]:
    body = json.dumps(items, ensure_ascii=False).encode()
    response = await client.post("/api/v1/feedback/reply", data=body, headers=_signed(body, clock))
    return response.status, await response.json()


# --- the request in the message --------------------------------------------------------------------------------


async def test_duty_persons_sms_asks_for_reply_and_link(ack_app: App) -> None:
    alert_id = await _ingest(ack_app)
    sms = await ack_app.store.deliveries_page({"alert_id": alert_id, "channel": "sms"}, limit=1000)
    asked = [r for r in sms if r["ack_required"]]
    assert len(asked) == DUTY_AND_LEADERS
    assert {r["status"] for r in asked} == {"sent"}
    for row in asked:
        assert ASK.search(row["body"]), row["body"]
        token = LINK.search(row["body"]).group(1)  # type: ignore[union-attr]
        [person] = [p for p in await _people(ack_app) if p["phone"] == row["phone"]]
        assert ack_app.links.verify(ACK, token, 2) == (alert_id, person["id"])
    others = [r for r in sms if not r["ack_required"]]
    assert others and not any("/a/" in r["body"] or "收到请回复" in r["body"] for r in others)


async def _people(app: App) -> list[dict[str, Any]]:
    return [p async for p in app.store.export_recipients()]


# --- the one-tap page -------------------------------------------------------------------------------------------


async def test_get_shows_the_page_and_never_acknowledges(ack_app: App, client: TestClient) -> None:
    alert_id = await _ingest(ack_app)
    link = await _link(ack_app, alert_id, WANG)
    for _ in range(3):  # a carrier's URL scanner, a link preview, the person
        response = await client.get(link)
        assert response.status == 200
        page = await response.text()
        assert response.content_type == "text/html"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert '<meta name=viewport content="width=device-width,initial-scale=1">' in page
    assert "<link" not in page and "<script" not in page and "http" not in page.split("</style>")[1]
    for text in (
        "王大山",
        "暴雨红色预警",
        "梁平区气象台发布暴雨红色预警",
        "梁平区气象台",
        "7月12日 05:30",
        "确认收到",
    ):
        assert text in page, text
    assert "<form method=post>" in page
    assert await _ack_rows(ack_app) == []
    head = await client.head(link)
    assert head.status == 200 and await _ack_rows(ack_app) == []


async def test_post_acknowledges_once(ack_app: App, client: TestClient, clock: FakeClock) -> None:
    alert_id = await _ingest(ack_app)
    link = await _link(ack_app, alert_id, WANG)
    clock.advance(120)
    response = await client.post(link, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == link
    page = await (await client.get(link)).text()
    assert "已确认，谢谢" in page and "7月12日 05:33" in page and "<form" not in page
    [row] = await _ack_rows(ack_app)
    assert (row["alert_id"], row["channel"], row["at"]) == (alert_id, "link", clock.now())
    assert row["recorded_by"] == f"recipient:{row['recipient_id']}"
    assert row["delivery_id"] == (await _sms(ack_app, alert_id, WANG))["id"]

    clock.advance(60)
    again = await client.post(link)  # followed to the page
    assert again.status == 200 and "已确认，谢谢" in await again.text()
    assert len(await _ack_rows(ack_app)) == 1  # the first one counts
    [repeat] = await _audit(ack_app, "ack.repeat")
    assert repeat["detail"]["channel"] == "link" and repeat["detail"]["first"]["channel"] == "link"


async def test_tampered_and_foreign_tokens_are_404(ack_app: App, client: TestClient) -> None:
    alert_id = await _ingest(ack_app)
    link = await _link(ack_app, alert_id, WANG)
    token = link[3:]
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    [wang] = [p for p in await _people(ack_app) if p["phone"] == WANG]
    foreign = [
        f"/a/{tampered}",
        f"/a/{ack_app.links.sign(DOORKNOCK, alert_id, wang['id'])}",  # a token of the other kind
        f"/a/{ack_app.links.sign(ACK, alert_id + 50, wang['id'])}",  # signed, but no such alert
        "/a/not-a-token!",
    ]
    for path in foreign:
        for method in ("GET", "POST"):
            response = await client.request(method, path, allow_redirects=False)
            assert response.status == 404, (method, path)
            assert "链接无效" in await response.text()
    assert await _ack_rows(ack_app) == []


async def test_link_after_expiry_is_410(ack_app: App, client: TestClient, clock: FakeClock) -> None:
    alert_id = await _ingest(ack_app)
    link = await _link(ack_app, alert_id, WANG)
    clock.advance(12 * 3600)  # expires 17:30 +08:00; the expiry sweep has not run yet
    for method in ("GET", "POST"):
        response = await client.request(method, link, allow_redirects=False)
        assert response.status == 410
        assert "预警已结束，无需确认" in await response.text()
    await ack_app.store.expire_alerts(clock.now())
    assert (await client.get(link)).status == 410
    assert await _ack_rows(ack_app) == []


async def test_link_after_cancel_is_410(ack_app: App, client: TestClient, clock: FakeClock) -> None:
    alert_id = await _ingest(ack_app)
    link = await _link(ack_app, alert_id, LI)
    assert (await client.post(link, allow_redirects=False)).status == 303  # acknowledged while active
    clock.advance(1800)
    cancel = cap_cn(
        identifier="50022841600000_20240712060000",
        msg_type="Cancel",
        references=FIRST,
        sent="2024-07-12 06:00:00+08:00",
        note="降雨明显减弱",
    )
    await _ingest(ack_app, cancel)
    response = await client.get(link)
    assert response.status == 410
    page = await response.text()
    assert "预警已结束，无需确认" in page and "您已于 7月12日 05:31 确认收到" in page
    wang = await _link(ack_app, alert_id, WANG)
    assert (await client.post(wang, allow_redirects=False)).status == 410
    assert len(await _ack_rows(ack_app)) == 1


async def test_updated_revision_link_records_history_and_update_extends_it(
    ack_app: App, client: TestClient, clock: FakeClock
) -> None:
    first = await _ingest(ack_app)
    old_link = await _link(ack_app, first, WANG)
    clock.advance(1800)
    update = cap_cn(
        identifier="50022841600000_20240712060000",
        msg_type="Update",
        references=FIRST,
        sent="2024-07-12 06:00:00+08:00",
        expires="2024-07-12 23:30:00+08:00",  # six hours longer
        description="梁平区气象台更新暴雨红色预警信号：强降雨仍将持续，预警延长至23时30分。",
    )
    second = await _ingest(ack_app, update)
    new_link = await _link(ack_app, second, WANG)
    assert new_link != old_link

    clock.advance(12 * 3600)  # past the first revision's expires, before the Update's
    page = await (await client.get(old_link)).text()
    assert "此预警已更新" in page and "确认收到" in page
    assert (await client.post(old_link, allow_redirects=False)).status == 303
    [row] = await _ack_rows(ack_app)
    assert row["alert_id"] == first and row["root_id"] == first and row["detail"] == {"updated": True}

    board = await ack_app.acks.board(second)
    assert board["required"] == DUTY_AND_LEADERS and board["acknowledged"] == 0  # the Update asks again
    assert [a["alert_id"] for a in board["acks"]] == [first]
    assert "王大山" in {p["name"] for p in board["pending"]}

    assert (await client.post(new_link, allow_redirects=False)).status == 303
    board = await ack_app.acks.board(first)  # any revision id shows the chain's board
    assert board["acknowledged"] == 1 and "王大山" not in {p["name"] for p in board["pending"]}


# --- replies ----------------------------------------------------------------------------------------------------


async def test_reply_webhook_acknowledges_keywords_only(
    ack_app: App, client: TestClient, clock: FakeClock
) -> None:
    alert_id = await _ingest(ack_app)
    clock.advance(90)
    status, counts = await _replies(
        client,
        clock,
        {
            "replies": [
                {
                    "phone": WANG,
                    "text": "收到，马上组织转移",
                    "time": "2024-07-12T05:32:00+08:00",
                    "id": "mo-1",
                },
                {"phone": LI, "text": "12"},
                {"phone": STRANGER, "text": "1"},
                {"phone": PUBLIC, "text": "收到"},  # the public were not asked
                {"text": "收到"},
            ]
        },
    )
    assert status == 200
    assert counts == {
        "received": 5,
        "acknowledged": 1,
        "no_obligation": 1,
        "not_a_keyword": 1,
        "unknown_phone": 1,
        "invalid": 1,
    }
    [row] = await _ack_rows(ack_app)
    assert row["alert_id"] == alert_id and row["channel"] == "reply"
    assert row["at"] == datetime(2024, 7, 11, 21, 32, tzinfo=UTC)  # the reply's own time
    assert row["recorded_by"] == f"recipient:{row['recipient_id']}"
    assert row["detail"]["text"] == "收到，马上组织转移" and row["detail"]["provider_id"] == "mo-1"
    assert row["detail"]["phone"] == "138****0021"

    unmatched = await _audit(ack_app, "reply.unmatched")
    why = {e["detail"]["why"]: e["detail"] for e in unmatched}
    assert set(why) == {"not_a_keyword", "unknown_phone", "no_obligation", "invalid: phone is required"}
    assert why["unknown_phone"]["text"] == "1" and why["unknown_phone"]["phone"] == "139****9999"
    assert why["not_a_keyword"]["text"] == "12"
    assert all(STRANGER not in json.dumps(e["detail"]) for e in unmatched)  # masked

    # the same reply again (a provider's retry): nothing left open, kept in the audit log
    status, counts = await _replies(client, clock, [{"phone": f"+86 {WANG}", "text": "1"}])
    assert counts["no_obligation"] == 1 and counts["acknowledged"] == 0
    assert len(await _ack_rows(ack_app)) == 1


async def test_one_reply_answers_every_open_warning(
    ack_app: App, client: TestClient, clock: FakeClock
) -> None:
    rain = await _ingest(ack_app)
    gale = await _ingest(
        ack_app,
        cap_cn(identifier="gale-0531", event_code="11B06", event="大风", sent="2024-07-12 05:31:00+08:00"),
    )
    status, counts = await _replies(client, clock, [{"phone": WANG, "text": "1"}])
    assert status == 200 and counts["acknowledged"] == 2
    rows = await _ack_rows(ack_app)
    assert sorted(r["alert_id"] for r in rows) == [rain, gale]
    assert {r["channel"] for r in rows} == {"reply"}


@pytest.mark.parametrize("drill_last", [True, False])
async def test_a_reply_answers_drills_or_real_warnings_never_both(
    ack_app: App, client: TestClient, clock: FakeClock, drill_last: bool
) -> None:
    """王大山 is asked by a real red rainstorm and by a gale drill; his "1" answers the kind of the newest
    message that asked him, and only that kind (docs/acknowledgement.md)."""
    drill_xml = cap_cn(
        identifier="gale-drill-0531",
        status="Exercise",
        event_code="11B06",
        event="大风",
        sent="2024-07-12 05:31:00+08:00",
    )
    first_xml, last_xml = (cap_cn(), drill_xml) if drill_last else (drill_xml, cap_cn())
    older = await _ingest(ack_app, first_xml)
    clock.advance(60)
    newest = await _ingest(ack_app, last_xml)
    assert (await _sms(ack_app, older, WANG))["ack_required"] and (await _sms(ack_app, newest, WANG))[
        "ack_required"
    ]

    async with postgres_refusals(ack_app.store) as refused:
        status, counts = await _replies(client, clock, [{"phone": WANG, "text": "1"}])
        assert status == 200 and counts["acknowledged"] == 1
        [row] = await _ack_rows(ack_app)
        assert row["alert_id"] == newest and row["detail"]["drill"] is drill_last
        board = await ack_app.acks.board(older)  # the other kind stays open
        assert "王大山" in {p["name"] for p in board["pending"]} and board["acknowledged"] == 0

        # "1" again: the newest ask is answered, nothing of its kind is open; kept in the audit log
        status, counts = await _replies(client, clock, [{"phone": WANG, "text": "1"}])
        assert counts == {**counts, "acknowledged": 0, "no_obligation": 1}
    assert refused == []
    [unmatched] = await _audit(ack_app, "reply.unmatched")
    assert unmatched["detail"]["why"] == "no_obligation" and unmatched["detail"]["drill"] is drill_last
    assert len(await _ack_rows(ack_app)) == 1
    # the other one is acknowledged by its own link (or a call)
    assert (await client.post(await _link(ack_app, older, WANG), allow_redirects=False)).status == 303
    assert sorted(r["alert_id"] for r in await _ack_rows(ack_app)) == sorted([older, newest])


async def test_reply_webhook_refuses_a_bad_signature(
    ack_app: App, client: TestClient, clock: FakeClock
) -> None:
    await _ingest(ack_app)
    body = json.dumps([{"phone": WANG, "text": "1"}]).encode()
    headers = _signed(body, clock, secret="not-the-secret-0123456789")
    response = await client.post("/api/v1/feedback/reply", data=body, headers=headers)
    assert response.status == 401
    assert await _ack_rows(ack_app) == []
    [rejected] = await _audit(ack_app, "feedback.rejected")
    assert rejected["target"] == "reply"
    status, data = await _replies(client, clock, {"replies": "nope"})
    assert status == 400 and "list of replies" in data["error"]
    status, data = await _replies(client, clock, [{"phone": WANG, "text": "1"}] * 1001)
    assert status == 400 and await _ack_rows(ack_app) == []


# --- operators ---------------------------------------------------------------------------------------------------


async def test_operator_records_a_call(ack_app: App, client: TestClient, clock: FakeClock) -> None:
    alert_id = await _ingest(ack_app)
    clock.advance(600)
    response = await client.post(
        f"/api/v1/alerts/{alert_id}/acks",
        json={
            "recipient": WANG,
            "channel": "call",
            "note": "电话已确认，正在组织转移",
            "at": "2024-07-12T05:38:00+08:00",
        },
    )
    assert response.status == 201, await response.text()
    ack = await response.json()
    assert ack["channel"] == "call" and ack["already"] is False
    assert ack["recorded_by"] == "token:tests"  # the principal of the API call
    assert ack["name"] == "王大山" and ack["phone"] == "138****0021"
    assert ack["note"] == "电话已确认，正在组织转移" and ack["at"] == "2024-07-12T05:38:00+08:00"
    [record] = await _audit(ack_app, "ack.record")
    assert record["actor"] == ack["recorded_by"] and record["detail"]["note"] == "电话已确认，正在组织转移"

    again = await client.post(f"/api/v1/alerts/{alert_id}/acks", json={"recipient": WANG})
    assert again.status == 200 and (await again.json())["already"] is True
    assert len(await _ack_rows(ack_app)) == 1 and len(await _audit(ack_app, "ack.repeat")) == 1

    [li] = [p for p in await _people(ack_app) if p["phone"] == LI]
    by_id = await client.post(f"/api/v1/alerts/{alert_id}/acks", json={"recipient": li["id"]})
    assert by_id.status == 201 and (await by_id.json())["name"] == "李秀英"

    for body, status in (
        ({"recipient": STRANGER}, 404),
        ({"recipient": "1399"}, 404),
        ({}, 400),
        ({"recipient": WANG, "channel": "sms"}, 400),
        ({"recipient": WANG, "at": "yesterday"}, 400),
        ({"recipient": WANG, "at": "2024-07-13T05:38:00+08:00"}, 400),  # in the future
        ({"recipient": WANG, "by": "someone"}, 400),
    ):
        response = await client.post(f"/api/v1/alerts/{alert_id}/acks", json=body)
        assert response.status == status, (body, await response.text())
    missing = await client.post("/api/v1/alerts/999/acks", json={"recipient": WANG})
    assert missing.status == 404 and "no alert 999" in (await missing.json())["error"]
    assert len(await _ack_rows(ack_app)) == 2


async def test_a_call_is_of_the_revision_sent_by_then_and_not_before_it(
    ack_app: App, client: TestClient, clock: FakeClock
) -> None:
    first = await _ingest(ack_app)  # sent 05:31
    clock.advance(1800)
    update = cap_cn(
        identifier="50022841600000_20240712060000",
        msg_type="Update",
        references=FIRST,
        sent="2024-07-12 06:00:00+08:00",
        description="梁平区气象台更新暴雨红色预警信号：强降雨仍将持续。",
    )
    second = await _ingest(ack_app, update)  # sent 06:01
    url = f"/api/v1/alerts/{second}/acks"
    for at in ("2024-07-12T05:20:00+08:00", "2024-07-12T05:20:00", "2024-07-11T21:30:59+00:00"):
        response = await client.post(url, json={"recipient": WANG, "at": at})
        assert response.status == 400, at
        error = (await response.json())["error"]
        assert "before the warning of alert" in error and "王大山" in error
        assert "first at 2024-07-12T05:31:00+08:00" in error
    assert await _ack_rows(ack_app) == []
    # 05:45: he had only the first revision then; 06:05: the Update
    response = await client.post(url, json={"recipient": WANG, "at": "2024-07-12T05:45:00+08:00"})
    assert response.status == 201 and (await response.json())["alert_id"] == first
    clock.advance(300)
    response = await client.post(url, json={"recipient": LI, "at": "2024-07-12T06:05:00+08:00"})
    assert response.status == 201 and (await response.json())["alert_id"] == second


async def test_board_lists_pending_then_acknowledged(
    ack_app: App, client: TestClient, clock: FakeClock
) -> None:
    alert_id = await _ingest(ack_app)
    await client.post(await _link(ack_app, alert_id, WANG), allow_redirects=False)
    await _replies(client, clock, [{"phone": LI, "text": "好的"}])
    await client.post(f"/api/v1/alerts/{alert_id}/acks", json={"recipient": "13800230023", "note": "电话"})

    response = await client.get(f"/api/v1/alerts/{alert_id}/acks")
    assert response.status == 200
    board = await response.json()
    assert (board["alert_id"], board["required"], board["acknowledged"]) == (alert_id, DUTY_AND_LEADERS, 3)
    assert len(board["pending"]) == DUTY_AND_LEADERS - 3
    assert not any(p["overdue"] for p in board["pending"])
    for p in board["pending"]:
        assert set(p) >= {"recipient_id", "name", "role", "phone", "area_code", "deadline", "overdue"}
        assert re.fullmatch(r"1\d\d\*{4}\d{4}", p["phone"])
    assert [(a["name"], a["channel"]) for a in board["acks"]] == [
        ("王大山", "link"),
        ("李秀英", "reply"),
        ("张永福", "call"),
    ]
    by = {a["name"]: a for a in board["acks"]}
    assert by["王大山"]["recorded_by"] == f"recipient:{by['王大山']['recipient_id']}"
    assert by["张永福"]["recorded_by"] == "token:tests" and by["张永福"]["note"] == "电话"
    assert all(a["phone"].count("*") == 4 for a in board["acks"])

    clock.advance(6 * 60)  # red: acknowledge within 5 minutes
    board = await (await client.get(f"/api/v1/alerts/{alert_id}/acks")).json()
    assert all(p["overdue"] for p in board["pending"])
    assert (await client.get("/api/v1/alerts/999/acks")).status == 404


# --- the command line -------------------------------------------------------------------------------------------


def test_cli_records_a_call_and_lists_the_board(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI runs on the real clock: an alert sent a minute ago that expires in six hours."""
    from warnd.cli import main

    cst = ZoneInfo("Asia/Shanghai")
    now = datetime.now(cst).replace(microsecond=0)
    cap = config_dir.parent / "rain.xml"
    cap.write_bytes(
        cap_cn(
            identifier="cli-ack",
            sent=f"{now - timedelta(minutes=1):%Y-%m-%d %H:%M:%S}+08:00",
            expires=f"{now + timedelta(hours=6):%Y-%m-%d %H:%M:%S}+08:00",
        )
    )
    common = ["-c", str(config_dir)]
    assert main(["ingest", str(cap), *common]) == 0
    capsys.readouterr()

    assert main(["ack", "1", WANG, "--note", "电话已确认", "--by", "alice", *common]) == 0
    out = capsys.readouterr().out
    assert "recorded" in out and "王大山 (138****0021)" in out and "cli:alice" in out and "电话已确认" in out

    assert main(["ack", "1", WANG, "--by", "bob", *common]) == 0  # the first one counts
    assert "already acknowledged" in capsys.readouterr().out

    assert main(["ack", "1", STRANGER, *common]) == 1
    assert "not a recipient of alert 1" in capsys.readouterr().err

    assert main(["ack", "1", LI, "--at", "1h", *common]) == 1  # an hour ago: before the warning went out
    assert "before the warning of alert 1 was sent to 李秀英" in capsys.readouterr().err

    assert main(["ack", "1", "--list", *common]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["state", "recipient_id", "name"]
    states = [line.split()[0] for line in lines[1:-1]]
    assert states == ["pending"] * (DUTY_AND_LEADERS - 1) + ["acknowledged"]
    assert "call" in lines[-2] and "cli:alice" in lines[-2] and "138****0021" in lines[-2]
    assert WANG not in out and "13800230022" not in out  # masked
    assert lines[-1].startswith(f"alert 1 (active): 1 of {DUTY_AND_LEADERS} acknowledged")
