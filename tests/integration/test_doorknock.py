"""The door-knock list (敲门行动): JSON, CSV and the printable page for operators, an operator's check-off, the
door-knocker's phone page behind a signed link (check-off, tampered link, ended alert) and ``warnd doorknock``.
Real SQLite, a real fake SMS gateway, real aiohttp test servers, a fake clock (docs/escalation.md)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import FIXTURE_TIME, cap_cn
from tests.support.api import api_client
from tests.support.escalation import (
    CHEN,
    LI_XIUYING_PHONE,
    LIU,
    PUBLIC_URL,
    WANG,
    WANNIAN,
    WU_QIANG_PHONE,
    ack_all_except,
    acknowledge,
    deliver_all_except,
    edit_subscriber,
    ladder_config,
    receipt,
    resync,
    sms_of,
)
from tests.support.gateway import FakeSmsGateway
from warnd.app import App
from warnd.cli import main
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.store.escalation import RESULTS

CANCEL = cap_cn(
    identifier="50022841600000_20240712060000",
    msg_type="Cancel",
    sent="2024-07-12 06:00:00+08:00",
    references="梁平区气象台,50022841600000_20240712053000,2024-07-12T05:30:00+08:00",
)


async def climb_to_doorknock(app: App, clock: FakeClock) -> int:
    """The red rainstorm; 陈玉兰 and the 刘 household (刘大伟, 王春燕) never get the SMS: after 20 minutes both
    households are on 万年村's door-knock list."""
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    assert result.alert_id is not None
    await app.dispatcher.drain()
    await deliver_all_except(app, result.alert_id, CHEN, LIU, WANG)
    for minutes in (10, 5, 5):
        clock.advance(minutes * 60)
        await app.escalator.sweep()
        await app.dispatcher.drain()
    return result.alert_id


@pytest.fixture
async def app(config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock) -> AsyncIterator[App]:
    ladder_config(config_dir, gateway.url, grace="12h")
    application = App(load_config(config_dir), clock=clock)
    await application.start(channels=True)
    yield application
    await application.close()


@pytest.fixture
async def client(app: App) -> AsyncIterator[TestClient]:
    async with api_client(app) as test_client:
        yield test_client


def tasks_to(gateway: FakeSmsGateway, phone: str) -> list[Any]:
    return [s for s in gateway.sent if s.phone == phone and ":doorknock:" in s.key]


def knock_path(gateway: FakeSmsGateway) -> str:
    """The /k/ link in 吴强's latest door-knock task."""
    [*_, task] = tasks_to(gateway, WU_QIANG_PHONE)
    match = re.search(re.escape(PUBLIC_URL) + r"(/k/[A-Za-z0-9_-]+)", task.content or "")
    assert match, task.content
    return match.group(1)


async def test_list_json_csv_and_print(app: App, client: TestClient, clock: FakeClock) -> None:
    alert_id = await climb_to_doorknock(app, clock)
    response = await client.get(f"/api/v1/alerts/{alert_id}/doorknock")
    assert response.status == 200
    data = await response.json()
    assert data["alert_id"] == alert_id and data["root_id"] == alert_id
    [village] = data["villages"]
    assert village["area_code"] == WANNIAN and village["name"] == "万年村"
    assert village["door_knockers"] == [
        {
            "id": village["door_knockers"][0]["id"],
            "name": "吴强",
            "phone": "138****0032",
            "role": "grid_worker",
        }
    ]
    assert (village["open"], village["done"]) == (2, 0)
    chen, liu = village["households"]  # the elderly woman living alone first
    assert chen["household"] == "wn-3-12" and chen["address"] == "万年村三组12号"
    assert chen["vulnerable"] == ["elderly_alone"] and chen["result"] is None
    assert [m["name"] for m in liu["members"]] == [LIU, WANG] and liu["vulnerable"] == ["pregnant"]
    assert {m["phone"] for m in liu["members"]} == {"138****0050", "138****0051"}
    assert liu["members"][0]["reason"] == "未收到预警（送达期限已过）"
    assert data["total"] == {
        "villages": 1, "households": 2, "people": 3, "open": 2, "done": 0,
        "reached": 0, "moved": 0, "not_home": 0, "reached_by_message": 0,
    }  # fmt: skip

    full = await (await client.get(f"/api/v1/alerts/{alert_id}/doorknock?phones=full")).json()
    assert full["villages"][0]["households"][0]["members"][0]["phone"] == "13800230049"

    # a person reached by message after being listed stays on the list, shown as reached
    await receipt(app, await sms_of(app, alert_id, WANG))
    data = await (await client.get(f"/api/v1/alerts/{alert_id}/doorknock")).json()
    liu = data["villages"][0]["households"][1]
    assert liu["result"] == "reached_by_message" and [m["reached_by_message"] for m in liu["members"]] == [
        False,
        True,
    ]
    assert data["villages"][0]["open"] == 1 and data["total"]["reached_by_message"] == 1

    response = await client.get(f"/api/v1/alerts/{alert_id}/doorknock?format=csv")
    assert response.status == 200 and response.content_type == "text/csv"
    raw = await response.read()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:6] == ["村代码", "村名", "户", "地址", "姓名", "电话"]
    assert [r[4] for r in rows[1:]] == [CHEN, LIU, WANG]
    assert rows[1][5] == "138****0049" and rows[1][7] == "独居老人" and rows[3][9] == "是"

    page = await client.get(f"/api/v1/alerts/{alert_id}/doorknock/print")
    assert page.status == 200 and page.content_type == "text/html"
    text = await page.text()
    assert "@media print" in text and "万年村三组12号" in text and "13800230049" in text  # full phones
    assert "<table>" in text and "独居老人" in text

    ladders = await (await client.get(f"/api/v1/alerts/{alert_id}/escalations")).json()
    by_name = {row["recipient"]["name"]: row for row in ladders["escalations"]}
    assert set(by_name) == {CHEN, LIU, WANG}
    assert by_name[CHEN]["recipient"]["phone"] == "138****0049"
    assert [e["step"] for e in by_name[CHEN]["events"]] == ["opened", "resend", "superior", "doorknock"]

    audit = [e["action"] for e in await app.store.audit_entries(20)]
    assert audit.count("doorknock.export") == 2 and "doorknock.print" in audit


async def test_operator_records_a_result(app: App, client: TestClient, clock: FakeClock) -> None:
    alert_id = await climb_to_doorknock(app, clock)
    response = await client.post(
        f"/api/v1/alerts/{alert_id}/doorknock/wn-3-15", json={"result": "moved", "note": "已转移到村委会"}
    )
    assert response.status == 200, await response.text()
    household = await response.json()
    assert (
        household["result"] == "moved" and household["note"] == "已转移到村委会" and household["people"] == 2
    )
    assert household["result_by"] == "token:tests"
    bad = await client.post(f"/api/v1/alerts/{alert_id}/doorknock/wn-3-15", json={"result": "gone"})
    assert bad.status == 400
    missing = await client.post(f"/api/v1/alerts/{alert_id}/doorknock/nobody", json={"result": "reached"})
    assert missing.status == 404
    [entry] = [e for e in await app.store.audit_entries(20) if e["action"] == "doorknock.result"]
    assert entry["detail"]["result"] == "moved" and entry["target"].endswith("household:wn-3-15")


async def test_knock_page_check_off(
    app: App, client: TestClient, clock: FakeClock, gateway: FakeSmsGateway
) -> None:
    alert_id = await climb_to_doorknock(app, clock)
    path = knock_path(gateway)
    page = await client.get(path)
    assert page.status == 200 and page.content_type == "text/html"
    text = await page.text()
    assert "敲门登记 · 万年村" in text and "待敲门 <b>2</b> 户" in text
    assert text.index("万年村三组12号") < text.index("万年村三组15号")  # vulnerable first
    assert "已通知到" in text and "已转移" in text and "不在家" in text and "name='note'" in text
    assert "tel:13800230049" in text and "<link" not in text and "<script" not in text  # no external assets

    response = await client.post(
        path,
        data={"household": "wn-3-12", "result": "reached", "note": "老人已到邻居家"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == f"{path}?ok=1"
    after = await (await client.get(f"{path}?ok=1")).text()
    assert "已登记，谢谢！" in after and "待敲门 <b>1</b> 户" in after and "已通知到（吴强" in after
    data = await app.escalator.doorknock_list(alert_id)
    assert data is not None
    chen = data["villages"][0]["households"][0]
    assert chen["result"] == "reached" and chen["result_by"] == "吴强" and chen["note"] == "老人已到邻居家"
    assert chen["result_at"] == clock.now()
    [entry] = [e for e in await app.store.audit_entries(30) if e["action"] == "doorknock.result"]
    assert entry["actor"].startswith("link:doorknock:") and entry["detail"]["by"] == "吴强"

    bad = await client.post(path, data={"household": "wn-3-12", "result": "maybe"}, allow_redirects=False)
    assert bad.status == 400


async def test_tampered_and_expired_links(
    app: App, client: TestClient, clock: FakeClock, gateway: FakeSmsGateway
) -> None:
    await climb_to_doorknock(app, clock)
    path = knock_path(gateway)
    token = path.rsplit("/", 1)[1]
    tampered = path[:-1] + ("A" if token[-1] != "A" else "B")
    for wrong in (tampered, "/k/not-a-token", "/k/" + token[:-3]):
        response = await client.get(wrong)
        assert response.status == 404, wrong
        assert "链接无效" in await response.text()
    assert (await client.post(tampered, data={"household": "wn-3-12", "result": "reached"})).status == 404

    # the alert is lifted: the link keeps working for the grace period, then answers 410
    [cancelled] = await app.pipeline.ingest(CANCEL, source="t")
    assert cancelled.outcome == "created"
    clock.advance(11 * 3600)
    assert (await client.get(path)).status == 200
    clock.advance(2 * 3600)
    gone = await client.get(path)
    assert gone.status == 410 and "已结束" in await gone.text()
    post = await client.post(path, data={"household": "wn-3-12", "result": "reached"}, allow_redirects=False)
    assert post.status == 410


def test_cli_prints_the_list(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup() -> int:
        async with FakeSmsGateway() as gw:
            ladder_config(config_dir, gw.url)
            clock = FakeClock(FIXTURE_TIME)
            app = App(load_config(config_dir), clock=clock)
            await app.start(channels=True)
            try:
                return await climb_to_doorknock(app, clock)
            finally:
                await app.close()

    alert_id = asyncio.run(setup())
    assert main(["doorknock", str(alert_id), "-c", str(config_dir)]) == 0
    out = capsys.readouterr().out
    assert "万年村 500228101201：待敲门 2 户" in out and "吴强 138****0032" in out
    assert "138****0049" in out and "13800230049" not in out and "独居老人" in out
    assert main(["doorknock", str(alert_id), "-c", str(config_dir), "--csv", "--village", WANNIAN]) == 0
    rows: list[Any] = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][4] == "姓名" and [r[5] for r in rows[1:]] == ["13800230049", "13800230050", "13800230051"]
    assert main(["doorknock", "999", "-c", str(config_dir)]) == 1


# --- 叫应: a person listed because they did not acknowledge ---------------------------------------------------------


async def climb_unacknowledged(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock
) -> tuple[App, int]:
    """Leaders and duty persons must acknowledge within 5 minutes; every SMS arrives; everyone acknowledges but
    李秀英. Her ladder opens at 5 minutes and puts her on 万年村's list at 15."""
    ladder_config(config_dir, gateway.url, ack=True)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    assert result.alert_id is not None
    await app.dispatcher.drain()
    await deliver_all_except(app, result.alert_id)
    await ack_all_except(app, result.alert_id, "李秀英")
    for minutes in (5, 5, 5):
        clock.advance(minutes * 60)
        await app.escalator.sweep()
        await app.dispatcher.drain()
    return app, result.alert_id


async def test_unacknowledged_person_is_informed_only_by_acknowledging(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    """李秀英 had the SMS — that is why her not answering matters: on the list her household stays open until
    she acknowledges; a delivered message does not check her off."""
    app, alert_id = await climb_unacknowledged(config_dir, gateway, clock)
    try:
        listing = await app.escalator.doorknock_list(alert_id)
        assert listing is not None
        [village] = listing["villages"]
        [household] = village["households"]
        [member] = household["members"]
        assert member["name"] == "李秀英" and member["reason"] == "未确认收到预警（叫应期限已过）"
        assert member["reached_by_message"] is False and household["result"] is None
        assert member["listed_for"] == "unacknowledged"
        assert village["open"] == 1 and listing["total"]["reached_by_message"] == 0
        await acknowledge(app, alert_id, LI_XIUYING_PHONE)
        listing = await app.escalator.doorknock_list(alert_id)
        assert listing is not None
        [household] = listing["villages"][0]["households"]
        assert household["result"] == "reached_by_message" and household["members"][0]["acknowledged"] is True
        assert listing["total"]["open"] == 0
    finally:
        await app.close()


async def test_unacknowledged_household_member_reached_is_not_enough(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    """李秀英 lives with the 刘 household, whose SMS arrived: that does not stand for her acknowledgement — she
    goes on the list, her household open until she acknowledges."""
    edit_subscriber(config_dir, "李秀英", household="wn-3-15", address="万年村三组15号")
    app, alert_id = await climb_unacknowledged(config_dir, gateway, clock)
    try:
        [ladder] = await app.escalator.ladders(alert_id)
        assert ladder["name"] == "李秀英" and ladder["state"] == "open"
        assert [e["step"] for e in ladder["events"]] == ["opened", "resend", "superior", "doorknock"]
        listing = await app.escalator.doorknock_list(alert_id)
        assert listing is not None
        [household] = listing["villages"][0]["households"]
        assert household["household"] == "wn-3-15" and household["result"] is None
        [task] = tasks_to(gateway, WU_QIANG_PHONE)
        assert (task.content or "").startswith("敲门任务：暴雨红色预警，万年村有1户未收到或未确认")
        await acknowledge(app, alert_id, LI_XIUYING_PHONE)
        listing = await app.escalator.doorknock_list(alert_id)
        assert listing is not None
        assert listing["villages"][0]["households"][0]["result"] == "reached_by_message"
    finally:
        await app.close()


# --- the task counts open households ----------------------------------------------------------------------------


async def test_task_counts_only_open_households(
    app: App, client: TestClient, clock: FakeClock, gateway: FakeSmsGateway
) -> None:
    """The 刘 household is listed at 15 minutes and checked off; 陈玉兰 joins the list at 20: the new task says
    one household is waiting (hers), not two — and is a new task (keyed on the two ever listed)."""
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    alert_id = result.alert_id
    assert alert_id is not None
    await app.dispatcher.drain()
    await deliver_all_except(app, alert_id, CHEN, LIU, WANG)
    for minutes in (10, 5):
        clock.advance(minutes * 60)
        await app.escalator.sweep()
        await app.dispatcher.drain()
    [first] = tasks_to(gateway, WU_QIANG_PHONE)
    assert first.key.endswith(f":doorknock:{WANNIAN}:1")
    assert (first.content or "").startswith("敲门任务：暴雨红色预警，万年村有1户未收到或未确认，请立即入户")
    changed = await app.escalator.record_result(
        alert_id, "wn-3-15", result="moved", note=None, by="吴强", actor="t", village=WANNIAN
    )
    assert changed == 2
    clock.advance(5 * 60)
    assert (await app.escalator.sweep())["doorknock"] == 1
    await app.dispatcher.drain()
    [_, second] = tasks_to(gateway, WU_QIANG_PHONE)
    assert second.key.endswith(f":doorknock:{WANNIAN}:2")
    assert (second.content or "").startswith(
        "敲门任务：暴雨红色预警，万年村有1户未收到或未确认（含独居老人1户），请立即入户通知并登记"
    )
    [chen] = [row for row in await app.escalator.ladders(alert_id) if row["name"] == CHEN]
    knock = chen["events"][-1]
    assert (
        knock["step"] == "doorknock" and knock["detail"]["households"] == 1 and knock["detail"]["listed"] == 2
    )


# --- the API: public Escalator methods, validation, escaping, headers ------------------------------------------------


def test_routes_go_through_the_escalator() -> None:
    """The HTTP routes use the Escalator's public methods, never its store."""
    import warnd.api_escalation

    source = Path(warnd.api_escalation.__file__).read_text(encoding="utf-8")
    assert "escalator.db" not in source and ".db." not in source


async def test_village_is_validated_and_escaped(app: App, client: TestClient, clock: FakeClock) -> None:
    alert_id = await climb_to_doorknock(app, clock)
    probe = "<script>alert(1)</script>"
    page = await client.get(f"/api/v1/alerts/{alert_id}/doorknock/print", params={"village": probe})
    assert page.status == 400 and probe not in await page.text()
    for bad in (probe, "5002281012", "50022810120a", "５００２２８１０１２０１"):
        response = await client.get(f"/api/v1/alerts/{alert_id}/doorknock", params={"village": bad})
        assert response.status == 400, bad
        assert (await response.json())["error"] == "village must be a 12-digit admin code"
    posted = await client.post(
        f"/api/v1/alerts/{alert_id}/doorknock/wn-3-15", json={"result": "moved", "village": probe}
    )
    assert posted.status == 400
    ok = await client.get(f"/api/v1/alerts/{alert_id}/doorknock/print", params={"village": WANNIAN})
    assert ok.status == 200 and "<small>500228101201</small>" in await ok.text()

    # a household key from a CSV import is data too: escaped wherever it is shown
    changed = await app.escalator.record_result(
        alert_id, "wn-3-15", result="not_home", note="<b>门锁</b>", by="<i>op</i>", actor="t"
    )
    assert changed == 2
    text = await (await client.get(f"/api/v1/alerts/{alert_id}/doorknock/print")).text()
    assert "<b>门锁</b>" not in text and "&lt;b&gt;门锁&lt;/b&gt;" in text and "<i>op" not in text
    assert_well_formed(text)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def assert_well_formed(text: str) -> None:
    parser = _Tags()
    parser.feed(text)
    assert "script" not in parser.tags and "b" not in parser.tags and "i" not in parser.tags


async def test_knock_pages_send_the_page_headers(
    app: App, client: TestClient, clock: FakeClock, gateway: FakeSmsGateway
) -> None:
    """The /k/ pages, like the /a/ pages: never cached, never indexed, no sniffing, no referrer; and a CSP
    that allows nothing but the inline CSS and posting back."""
    await climb_to_doorknock(app, clock)
    path = knock_path(gateway)
    answers = [
        await client.get(path),
        await client.get("/k/not-a-token"),
        await client.post(path, data={"household": "wn-3-12", "result": "reached"}, allow_redirects=False),
        await client.post(path, data={"household": "wn-3-12", "result": "maybe"}, allow_redirects=False),
    ]
    assert [a.status for a in answers] == [200, 404, 303, 400]
    for answer in answers:
        headers = answer.headers
        assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
        assert "noindex" in headers["X-Robots-Tag"] and headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "form-action 'self'" in headers["Content-Security-Policy"]


async def test_link_stops_working_when_the_knocker_may_no_longer_knock(
    app: App, client: TestClient, clock: FakeClock, gateway: FakeSmsGateway, config_dir: Path
) -> None:
    """吴强 is moved to another village, then taken out: his old /k/ link answers 「链接已失效」 (GET and
    POST), and nothing is recorded through it."""
    await climb_to_doorknock(app, clock)
    path = knock_path(gateway)
    assert (await client.get(path)).status == 200
    edit_subscriber(config_dir, "吴强", area_code="500228101202")  # now 红光村's grid worker
    await resync(config_dir, clock)
    for answer in (
        await client.get(path),
        await client.post(path, data={"household": "wn-3-12", "result": "reached"}, allow_redirects=False),
    ):
        assert answer.status == 404 and "链接已失效" in await answer.text()
    edit_subscriber(config_dir, "吴强", area_code=WANNIAN)
    await resync(config_dir, clock)
    assert (await client.get(path)).status == 200  # back in 万年村: the link works again
    edit_subscriber(config_dir, "吴强", remove=True)
    await resync(config_dir, clock)
    answer = await client.get(path)
    assert answer.status == 404 and "链接已失效" in await answer.text()
    assert not [e for e in await app.store.audit_entries(50) if e["action"] == "doorknock.result"]
    assert set(RESULTS) == {"reached", "moved", "not_home"}
