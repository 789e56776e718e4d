"""The door-knock list (敲门行动): JSON, CSV and the printable page for operators, an operator's check-off, the
door-knocker's phone page behind a signed link (check-off, tampered link, ended alert) and ``warnd doorknock``.
Real SQLite, a real fake SMS gateway, real aiohttp test servers, a fake clock (docs/escalation.md)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import FIXTURE_TIME, cap_cn
from tests.support.escalation import (
    CHEN,
    LIU,
    PUBLIC_URL,
    WANG,
    WANNIAN,
    WU_QIANG_PHONE,
    deliver_all_except,
    ladder_config,
    receipt,
    sms_of,
)
from tests.support.gateway import FakeSmsGateway
from warnd.api import make_web_app
from warnd.app import App
from warnd.cli import main
from warnd.clock import FakeClock
from warnd.config import load_config

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
async def gateway() -> AsyncIterator[FakeSmsGateway]:
    async with FakeSmsGateway() as gw:
        yield gw


@pytest.fixture
async def app(config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock) -> AsyncIterator[App]:
    ladder_config(config_dir, gateway.url, grace="12h")
    application = App(load_config(config_dir), clock=clock)
    await application.start(channels=True)
    yield application
    await application.close()


@pytest.fixture
async def client(app: App) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0)) as test_client:
        yield test_client


def knock_path(gateway: FakeSmsGateway) -> str:
    """The /k/ link in 吴强's latest door-knock task."""
    [*_, task] = [s for s in gateway.sent if s.phone == WU_QIANG_PHONE and ":doorknock:" in s.key]
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
    assert household["result_by"].startswith("anonymous@")
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
