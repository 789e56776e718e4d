"""Review of issue 6's broadcasts: the approval rules cannot be sidestepped, an interrupted send is finished as
what it was, and the preview's recipient count is what fan-out sends."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import cap_cn
from sqlalchemy import update

from tests.conftest import APPROVER_AUTH
from tests.support.api import api_client, call
from warnd.app import App
from warnd.schema import broadcasts
from warnd.store.broadcasts import SENDING

PINGJIN = "500228101000"  # 屏锦镇
DISTRICT = "500228000000"
YELLOW = {"areas": [PINGJIN], "channels": ["sms"], "hazard": "暴雨", "colour": "yellow", "text": "注意防范。"}


@pytest.fixture
async def client(app: App) -> AsyncIterator[TestClient]:
    async with api_client(app) as c:
        yield c


@pytest.mark.parametrize("code", [f" {DISTRICT}", f"{DISTRICT} ", f"{DISTRICT}\n"])
async def test_whitespace_around_the_county_code_still_needs_approval(client: TestClient, code: str) -> None:
    status, data = await call(client, "POST", "/api/v1/broadcasts/preview", {**YELLOW, "areas": [code]})
    if status == 400:  # refusing the padded code is as good as asking for approval
        return
    assert data["approval_reasons"] == ["面向全区社会公众发布需第二人审批"], data


@pytest.mark.parametrize(
    "draft",
    [
        YELLOW,
        {**YELLOW, "channels": ["sms", "sms"]},
        {**YELLOW, "areas": [], "groups": ["grid_workers", "duty_persons"]},
        {**YELLOW, "groups": ["grid_workers", "public"]},
        {**YELLOW, "areas": [DISTRICT], "groups": ["grid_workers"], "status": "Exercise"},
        {"areas": [PINGJIN], "channels": ["sms"], "text": "演练", "status": "Exercise"},
        {"areas": [PINGJIN, "500228101201"], "channels": ["sms"], "text": "通知"},
    ],
)
async def test_preview_counts_what_fanout_sends(client: TestClient, draft: dict[str, Any]) -> None:
    status, preview = await call(client, "POST", "/api/v1/broadcasts/preview", draft)
    assert status == 200, preview
    status, data = await call(client, "POST", "/api/v1/broadcasts", draft)
    if status == 202:
        status, data = await call(
            client, "POST", f"/api/v1/broadcasts/{data['broadcast']['id']}/approve", {}, APPROVER_AUTH
        )
    assert status in (201, 202), data
    rows = (await call(client, "GET", f"/api/v1/alerts/{data['id']}/deliveries?limit=1000"))[1]["deliveries"]
    sent = Counter(r["channel"] for r in rows)
    assert {c["channel"]: c["recipients"] for c in preview["channels"]} == dict(sent)


async def test_a_cancel_interrupted_after_its_alert_is_recorded_as_sent(client: TestClient, app: App) -> None:
    resp = await client.post("/api/v1/alerts", data=cap_cn(), headers={"Content-Type": "application/cap+xml"})
    red = await resp.json()
    status, data = await call(client, "POST", f"/api/v1/alerts/{red['id']}/cancel", {"reason": "解除"})
    assert status == 202, data
    broadcast_id = data["broadcast"]["id"]
    status, cancel = await call(
        client, "POST", f"/api/v1/broadcasts/{broadcast_id}/approve", {}, APPROVER_AUTH
    )
    assert status in (201, 202), cancel
    # the 解除 went out, then the process died before the row said so
    async with app.store.write() as conn:
        await conn.execute(update(broadcasts).values(status=SENDING, alert_id=None))
    assert await app.broadcasts.resume() == [broadcast_id]
    row = await app.broadcasts.get(broadcast_id)
    assert (row["status"], row["alert_id"], row["error"]) == ("sent", cancel["id"], None)


RED = {"areas": [PINGJIN], "channels": ["sms"], "hazard": "暴雨", "colour": "red"}


@pytest.mark.parametrize("approver", ["token:leader", "user:Leader", "token:LEADER"])
async def test_the_submitter_cannot_approve_under_another_kind_or_case_of_their_name(
    app: App, approver: str
) -> None:
    from warnd.broadcasts import NotAllowed, broadcast_request

    draft = (await app.broadcasts.submit(broadcast_request(RED, "user:leader"))).broadcast
    assert draft["status"] == "pending"
    with pytest.raises(NotAllowed):
        await app.broadcasts.approve(draft["id"], actor=approver)
    assert (await app.broadcasts.get(draft["id"]))["status"] == "pending"


@pytest.mark.parametrize("body", [{"text": "雨势加大，请做好转移准备。"}, {"colour": "blue"}])
async def test_preview_of_an_update_counts_what_fanout_sends(
    client: TestClient, app: App, body: dict[str, Any]
) -> None:
    first = (await call(client, "POST", "/api/v1/broadcasts", YELLOW))[1]
    await app.dispatcher.drain()
    status, data = await call(client, "POST", f"/api/v1/alerts/{first['id']}/update", body)
    assert status in (201, 202), data
    rows = (await call(client, "GET", f"/api/v1/alerts/{data['id']}/deliveries?limit=1000"))[1]["deliveries"]
    assert data["broadcast"]["recipients"] == len(rows) > 0


async def test_every_state_changing_route_refuses_a_session_without_csrf(app: App) -> None:
    from warnd.auth import LINK, PERMISSIONS, PUBLIC, SIGNED

    examples = {
        "{id}": "1",
        "{language}": "zh-CN",
        "{name}": "sms",
        "{section}": "groups",
        "{household}": "1",
    }
    await app.accounts.add_user("管理员甲", "correct-horse-battery", "admin", actor="tests:setup")
    async with api_client(app, headers={}) as anon:  # no token: a session cookie only
        resp = await anon.post(
            "/api/v1/session", json={"name": "管理员甲", "password": "correct-horse-battery"}
        )
        assert resp.status == 200, await resp.text()
        checked = []
        for (method, path), access in PERMISSIONS.items():
            if method == "GET" or access.role in (PUBLIC, LINK, SIGNED):
                continue
            for placeholder, value in examples.items():
                path = path.replace(placeholder, value)
            resp = await anon.request(method, path, json={})
            assert resp.status == 403 and "CSRF" in (await resp.json())["error"], (method, path)
            checked.append(path)
        assert "/api/v1/broadcasts/1/approve" in checked and "/api/v1/config/groups" in checked
