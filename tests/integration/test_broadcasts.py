"""The broadcast composer and two-person approval over HTTP (warnd/api_broadcasts.py, warnd/broadcasts.py):
preview, submit, self-approval refused, approval by a second account, reject / withdraw, the audit trail, a
crash between approval and the alert, concurrent approvals, approvers told by SMS, operator Update / 解除."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import cap_cn, edit_yaml
from sqlalchemy import update

from tests.conftest import APPROVER_AUTH
from tests.support.api import api_client, call
from tests.support.gateway import FakeSmsGateway
from warnd.api_broadcasts import area_tree
from warnd.api_common import APP_KEY
from warnd.app import App
from warnd.broadcasts import broadcast_request
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.schema import broadcasts
from warnd.sms import segments
from warnd.store.broadcasts import SENDING

PINGJIN = "500228101000"  # 屏锦镇
DISTRICT = "500228000000"
OPERATOR_TOKEN = "wd_tests-operator-token-0123456789abcdef"
OPERATOR_AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
RED = {"areas": [PINGJIN], "channels": ["sms", "loudspeaker"], "hazard": "暴雨", "colour": "red"}
YELLOW = {"areas": [PINGJIN], "channels": ["sms"], "hazard": "暴雨", "colour": "yellow", "text": "注意防范。"}


@pytest.fixture
def config_dir(config_dir: Path) -> Path:
    """The tests' config with a second operator (to try withdrawing someone else's draft)."""

    def tokens(data: dict[str, Any]) -> None:
        data["api"]["tokens"].append({"name": "ops2", "token": OPERATOR_TOKEN, "role": "operator"})

    edit_yaml(config_dir / "warnd.yaml", tokens)
    return config_dir


@pytest.fixture
async def client(app: App) -> AsyncIterator[TestClient]:
    async with api_client(app) as c:
        yield c


def sms_people(app: App, prefix: str) -> set[str]:
    """Who a broadcast to a township reaches by SMS: everyone with a phone there, and the district's offices."""
    return {
        p.name
        for p in app.config.subscribers
        if p.phone and (p.area_code.startswith(prefix[:9]) or p.area_code == DISTRICT)
    }


async def audit_actions(app: App, target: str) -> list[tuple[str, str]]:
    return [
        (e["action"], e["actor"])
        for e in reversed(await app.store.audit_entries(500))
        if e["target"] == target
    ]


# --- composer and preview ------------------------------------------------------------------------------------------


async def test_composer_lists_the_area_tree_groups_channels_and_hazards(client: TestClient, app: App) -> None:
    status, data = await call(client, "GET", "/api/v1/composer")
    assert status == 200
    (county,) = data["areas"]
    assert (county["code"], county["name"], county["kind"]) == (DISTRICT, "梁平区", "county")
    pingjin = next(t for t in county["children"] if t["code"] == PINGJIN)
    assert pingjin["kind"] == "township"
    assert [v["name"] for v in pingjin["children"]] == ["万年村", "红光村"]
    assert all(v["kind"] == "village" and v["children"] == [] for v in pingjin["children"])
    assert {g["name"] for g in data["groups"]} == set(app.config.groups)
    assert {"name": "grid_worker", "label": app.config.roles["grid_worker"]} in data["roles"]
    assert {c["name"]: c["style"] for c in data["channels"]}["loudspeaker"] == "spoken"
    assert {"code": "11B03", "name": "暴雨"} in data["hazards"]
    assert [c["code"] for c in data["colours"]] == ["blue", "yellow", "orange", "red"] or {
        c["code"] for c in data["colours"]
    } == {"blue", "yellow", "orange", "red"}


def test_area_tree_keeps_orphans_at_the_top() -> None:
    tree = area_tree({"500228101201": "万年村", "500228101000": "屏锦镇", "500229101201": "别处村"})
    assert [n["code"] for n in tree] == ["500228101000", "500229101201"]
    assert tree[0]["children"][0]["name"] == "万年村"


async def test_preview_renders_each_channel_and_counts_recipients_without_storing(
    client: TestClient, app: App
) -> None:
    status, data = await call(
        client, "POST", "/api/v1/broadcasts/preview", {**RED, "channels": ["sms", "loudspeaker", "push"]}
    )
    assert status == 200, data
    by_channel = {c["channel"]: c for c in data["channels"]}
    sms = by_channel["sms"]
    assert sms["style"] == "sms" and sms["body"].startswith("【梁平区应急管理局】")
    assert "暴雨红色预警" in sms["body"]
    assert "token:" not in sms["body"]  # the issuing body speaks, not the operator's login (kept in <source>)
    assert sms["chars"] == len(sms["body"]) and sms["segments"] == segments(sms["body"]) >= 1
    assert sms["recipients"] == len(sms_people(app, PINGJIN))
    speaker = by_channel["loudspeaker"]
    assert speaker["style"] == "spoken" and "【" not in speaker["body"]  # a script to be read aloud
    assert speaker["recipients"] == sum(
        1 for t in app.config.terminals if t.area_code.startswith(PINGJIN[:9])
    )
    assert by_channel["push"]["title"]
    assert data["recipients"] == sum(c["recipients"] for c in data["channels"])
    assert data["needs_approval"] is True and data["approval_reasons"] == ["发布红色预警需第二人审批"]
    # nothing was stored: no alert, no broadcast, no message
    assert (await call(client, "GET", "/api/v1/alerts"))[1]["alerts"] == []
    assert (await call(client, "GET", "/api/v1/broadcasts"))[1]["broadcasts"] == []


async def test_preview_of_a_bad_draft_names_the_problem(client: TestClient) -> None:
    status, data = await call(client, "POST", "/api/v1/broadcasts/preview", {**RED, "channels": ["fax"]})
    assert status == 400 and "fax" in data["error"]
    status, data = await call(client, "POST", "/api/v1/broadcasts/preview", {**RED, "expires_in": 5})
    assert status == 400 and "expires_in" in data["error"]


# --- which drafts need a second person -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("draft", "reasons"),
    [
        (RED, ["发布红色预警需第二人审批"]),
        ({**RED, "colour": "orange"}, ["发布橙色预警需第二人审批"]),
        ({**RED, "status": "Exercise"}, ["发布红色预警需第二人审批"]),
        (YELLOW, []),
        ({**YELLOW, "areas": [], "groups": ["public"]}, ["面向全区社会公众发布需第二人审批"]),
        ({**YELLOW, "areas": [DISTRICT]}, ["面向全区社会公众发布需第二人审批"]),
        ({**YELLOW, "areas": [DISTRICT], "groups": ["county_leaders"]}, []),
        ({"areas": [DISTRICT], "channels": ["sms"], "text": "演练", "status": "Exercise"}, []),
    ],
)
async def test_approval_rules(client: TestClient, draft: dict[str, Any], reasons: list[str]) -> None:
    status, data = await call(client, "POST", "/api/v1/broadcasts/preview", draft)
    assert status == 200, data
    assert data["approval_reasons"] == reasons and data["needs_approval"] is bool(reasons)


async def test_a_draft_without_approval_is_sent_at_once(client: TestClient, app: App) -> None:
    status, data = await call(client, "POST", "/api/v1/broadcasts", YELLOW)
    assert status == 201, data
    assert data["colour"] == "yellow" and data["identifier"] == "warnd-bc-1"
    assert data["broadcast"]["status"] == "sent" and data["broadcast"]["alert_id"] == data["id"]
    assert sum(data["deliveries"].values()) == len(sms_people(app, PINGJIN))
    assert await audit_actions(app, "broadcast:1") == [
        ("broadcast.submit", "token:tests"),
        ("broadcast.sent", "token:tests"),
    ]


# --- two people ----------------------------------------------------------------------------------------------------


async def test_red_broadcast_waits_is_refused_to_its_submitter_and_sent_by_a_second_person(
    client: TestClient, app: App
) -> None:
    status, data = await call(client, "POST", "/api/v1/broadcasts", RED)
    assert status == 202, data
    draft = data["broadcast"]
    assert draft["status"] == "pending" and draft["needs_approval"] and draft["alert_id"] is None
    assert draft["submitted_by"] == "token:tests" and draft["colour"] == "red"
    assert draft["recipients"] == sum(c["recipients"] for c in draft["channels"]) > 0
    assert (await call(client, "GET", "/api/v1/alerts"))[1]["alerts"] == []  # nothing sent yet
    pending = (await call(client, "GET", "/api/v1/broadcasts", None))[1]["broadcasts"]
    assert [b["id"] for b in pending] == [draft["id"]]

    # the submitter (an admin, so the role would allow it) may not approve their own draft
    status, refused = await call(client, "POST", f"/api/v1/broadcasts/{draft['id']}/approve", {})
    assert status == 403 and "不能审批自己提交的广播" in refused["error"]
    assert (await call(client, "GET", f"/api/v1/broadcasts/{draft['id']}"))[1]["status"] == "pending"
    # an operator may not approve at all
    status, _ = await call(client, "POST", f"/api/v1/broadcasts/{draft['id']}/approve", {}, OPERATOR_AUTH)
    assert status == 403

    status, sent = await call(
        client, "POST", f"/api/v1/broadcasts/{draft['id']}/approve", {"note": "同意发布"}, APPROVER_AUTH
    )
    assert status == 201, sent
    assert sent["colour"] == "red" and sent["identifier"] == f"warnd-bc-{draft['id']}"
    assert sent["source"] == "broadcast:token:tests"  # in the submitter's name
    assert sent["broadcast"]["status"] == "sent" and sent["broadcast"]["alert_id"] == sent["id"]
    assert (
        sent["broadcast"]["decided_by"] == "token:tests-approver" and sent["broadcast"]["note"] == "同意发布"
    )
    assert sent["deliveries"]["queued"] == draft["recipients"]
    assert await audit_actions(app, f"broadcast:{draft['id']}") == [
        ("broadcast.submit", "token:tests"),
        ("broadcast.approve_refused", "token:tests"),
        ("broadcast.approve", "token:tests-approver"),
        ("broadcast.sent", "token:tests-approver"),
    ]
    # decided once only
    status, again = await call(client, "POST", f"/api/v1/broadcasts/{draft['id']}/approve", {}, APPROVER_AUTH)
    assert status == 409 and "sent" in again["error"]


async def test_reject_needs_a_reason_and_ends_the_draft(client: TestClient, app: App) -> None:
    draft = (await call(client, "POST", "/api/v1/broadcasts", RED))[1]["broadcast"]
    path = f"/api/v1/broadcasts/{draft['id']}"
    status, data = await call(client, "POST", f"{path}/reject", {"reason": "  "}, APPROVER_AUTH)
    assert status == 400 and "reason" in data["error"]
    status, data = await call(
        client, "POST", f"{path}/reject", {"reason": "范围有误，请改为万年村"}, APPROVER_AUTH
    )
    assert status == 200 and data["status"] == "rejected" and data["note"] == "范围有误，请改为万年村"
    assert (await call(client, "POST", f"{path}/approve", {}, APPROVER_AUTH))[0] == 409
    assert (await call(client, "GET", "/api/v1/alerts"))[1]["alerts"] == []
    assert ("broadcast.reject", "token:tests-approver") in await audit_actions(
        app, f"broadcast:{draft['id']}"
    )


async def test_only_the_submitter_or_an_admin_withdraws(client: TestClient) -> None:
    draft = (await call(client, "POST", "/api/v1/broadcasts", RED, OPERATOR_AUTH))[1]["broadcast"]
    path = f"/api/v1/broadcasts/{draft['id']}/withdraw"
    other = (await call(client, "POST", "/api/v1/broadcasts", RED))[1]["broadcast"]
    status, data = await call(client, "POST", f"/api/v1/broadcasts/{other['id']}/withdraw", {}, OPERATOR_AUTH)
    assert status == 403 and "提交人" in data["error"]
    status, data = await call(client, "POST", path, {}, OPERATOR_AUTH)
    assert status == 200 and data["status"] == "withdrawn"
    status, data = await call(
        client, "POST", f"/api/v1/broadcasts/{other['id']}/withdraw", {}
    )  # an admin's own
    assert status == 200 and data["status"] == "withdrawn"
    assert (await call(client, "GET", "/api/v1/broadcasts", None))[1]["broadcasts"][0][
        "status"
    ] == "withdrawn"
    status, data = await call(client, "GET", "/api/v1/broadcasts?status=pending")
    assert status == 200 and data["broadcasts"] == []
    assert (await call(client, "GET", "/api/v1/broadcasts?status=nonsense"))[0] == 400
    assert (await call(client, "GET", "/api/v1/broadcasts/999"))[0] == 404


async def test_two_approvers_at_once_send_it_once(app: App, client: TestClient) -> None:
    draft = (await call(client, "POST", "/api/v1/broadcasts", RED))[1]["broadcast"]
    results = await asyncio.gather(
        app.broadcasts.approve(draft["id"], actor="user:甲"),
        app.broadcasts.approve(draft["id"], actor="user:乙"),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "Submitted"]
    assert len((await call(client, "GET", "/api/v1/alerts"))[1]["alerts"]) == 1


async def test_a_send_interrupted_after_approval_is_finished_at_start_as_the_same_alert(
    app: App, client: TestClient, clock: FakeClock
) -> None:
    draft = (await call(client, "POST", "/api/v1/broadcasts", RED))[1]["broadcast"]
    # the approval was recorded, then the process died before the alert was written
    assert await app.broadcasts.db.decide(
        draft["id"],
        to=SENDING,
        actor="user:乙",
        now=clock.now(),
        note=None,
        action="broadcast.approve",
        remote=None,
    )
    assert await app.broadcasts.resume() == [draft["id"]]
    alerts = (await call(client, "GET", "/api/v1/alerts"))[1]["alerts"]
    assert [a["identifier"] for a in alerts] == [f"warnd-bc-{draft['id']}"]
    row = await app.broadcasts.get(draft["id"])
    assert row["status"] == "sent" and row["alert_id"] == alerts[0]["id"]
    # died again after the alert but before the row said so: the resend is the same alert, not a second one
    async with app.store.write() as conn:
        await conn.execute(update(broadcasts).values(status=SENDING, alert_id=None))
    assert await app.broadcasts.resume() == [draft["id"]]
    assert len((await call(client, "GET", "/api/v1/alerts"))[1]["alerts"]) == 1
    assert (await app.broadcasts.get(draft["id"]))["alert_id"] == alerts[0]["id"]


# --- approvers are told --------------------------------------------------------------------------------------------


@pytest.fixture
async def notifying_app(config_dir: Path, clock: FakeClock, gateway: FakeSmsGateway) -> AsyncIterator[App]:
    def settings(data: dict[str, Any]) -> None:
        data["api"]["approval_notify_channel"] = "sms_backup"

    def channels(data: dict[str, Any]) -> None:
        data["channels"]["sms_backup"] = {
            "adapter": "sms_http",
            "url": gateway.url,
            "signature": "梁平区应急管理局",
            "max_attempts": 1,
        }

    edit_yaml(config_dir / "warnd.yaml", settings)
    edit_yaml(config_dir / "channels.yaml", channels)
    app = App(load_config(config_dir), clock=clock)
    await app.start()
    for name, role, phone in (
        ("leader", "approver", "13800000001"),
        ("chief", "admin", "13800000002"),
        ("viewer1", "viewer", "13800000003"),
        ("duty", "operator", "13800000004"),
    ):
        await app.accounts.add_user(name, "correct-horse-battery", role, actor="test", phone=phone)
    yield app
    await app.close()


async def test_approvers_with_a_phone_are_told_by_sms(notifying_app: App, gateway: FakeSmsGateway) -> None:
    app = notifying_app
    draft = (await app.broadcasts.submit(broadcast_request(RED, "user:chief"))).broadcast
    assert draft["status"] == "pending"
    phones = [m["phone"] for r in gateway.requests for m in r.json["messages"]]
    assert phones == ["13800000001"]  # the approver; not the admin who submitted, not the viewer or operator
    (request,) = gateway.requests
    assert "待审批" in request.json["content"] and "chief" in request.json["content"]
    assert f"编号{draft['id']}" in request.json["content"]
    notices = [e for e in await app.store.audit_entries() if e["action"] == "broadcast.notify"]
    assert [(n["detail"]["user"], n["detail"]["phone"], n["detail"]["outcome"]) for n in notices] == [
        ("leader", "138****0001", "accepted")
    ]


async def test_a_provider_down_never_loses_the_draft(notifying_app: App, gateway: FakeSmsGateway) -> None:
    gateway.fail_next(5, status=500)
    draft = (await notifying_app.broadcasts.submit(broadcast_request(RED, "user:duty"))).broadcast
    assert draft["status"] == "pending"
    outcomes = {
        e["detail"]["user"]: e["detail"]["outcome"]
        for e in await notifying_app.store.audit_entries()
        if e["action"] == "broadcast.notify"
    }
    assert set(outcomes) == {"leader", "chief"} and "accepted" not in outcomes.values()


# --- operator Update and 解除 of an alert --------------------------------------------------------------------------


async def test_cancel_of_a_red_warning_needs_approval_then_tells_everyone_who_had_it(
    client: TestClient, app: App
) -> None:
    resp = await client.post("/api/v1/alerts", data=cap_cn(), headers={"Content-Type": "application/cap+xml"})
    red = await resp.json()
    assert resp.status in (201, 202) and red["colour"] == "red"
    await app.dispatcher.drain()  # sent: a 解除 goes to those who had the warning (queued ones are withdrawn)
    had = sum(red["deliveries"].values())
    status, data = await call(
        client, "POST", f"/api/v1/alerts/{red['id']}/cancel", {"reason": "降雨减弱，解除预警"}
    )
    assert status == 202 and data["broadcast"]["approval_reasons"] == ["解除红色预警需第二人审批"]
    assert data["broadcast"]["kind"] == "cancel" and data["broadcast"]["update_of"] == red["id"]
    assert data["broadcast"]["recipients"] == had
    status, cancel = await call(
        client, "POST", f"/api/v1/broadcasts/{data['broadcast']['id']}/approve", {}, APPROVER_AUTH
    )
    assert status in (201, 202), cancel
    assert (
        cancel["msg_type"] == "Cancel"
        and cancel["root_id"] == red["id"]
        and cancel["previous_id"] == red["id"]
    )
    assert sum(cancel["deliveries"].values()) == had  # the 解除 goes to everyone who had the warning
    status, first = await call(client, "GET", f"/api/v1/alerts/{red['id']}")
    assert first["state"] != "active"
    # nothing left to change
    status, data = await call(client, "POST", f"/api/v1/alerts/{red['id']}/cancel", {})
    assert status == 400 and "only an active warning" in data["error"]
    assert (await call(client, "POST", "/api/v1/alerts/999/cancel", {}))[0] == 404


async def test_update_of_a_manual_broadcast_keeps_its_audience(client: TestClient, app: App) -> None:
    first = (await call(client, "POST", "/api/v1/broadcasts", YELLOW))[1]
    status, data = await call(
        client,
        "POST",
        f"/api/v1/alerts/{first['id']}/update",
        {"text": "雨势加大，请低洼地带群众做好转移准备。"},
    )
    assert status in (201, 202), data
    assert data["msg_type"] == "Update" and data["root_id"] == first["id"]
    assert data["broadcast"]["kind"] == "update" and data["broadcast"]["status"] == "sent"
    rows = (await call(client, "GET", f"/api/v1/alerts/{data['id']}/deliveries"))[1]["deliveries"]
    assert {r["recipient"] for r in rows} == sms_people(app, PINGJIN)
    assert all("雨势加大" in r["body"] for r in rows)
    # raising it to orange needs a second person
    status, data = await call(client, "POST", f"/api/v1/alerts/{first['id']}/update", {"colour": "orange"})
    assert status == 202 and data["broadcast"]["approval_reasons"] == ["更新橙色预警需第二人审批"]
    assert (await call(client, "POST", f"/api/v1/alerts/{first['id']}/update", {"priority": 1}))[0] == 400


@pytest.mark.parametrize("text", ["a\u0013b", "a\ud800b"])
async def test_control_characters_are_refused_not_a_crash(client: TestClient, text: str) -> None:
    for path in ("/api/v1/broadcasts/preview", "/api/v1/broadcasts"):
        status, data = await call(client, "POST", path, {**YELLOW, "text": text})
        assert status == 400 and "control characters" in data["error"]


async def test_the_board_counts_drafts_waiting_for_approval(client: TestClient) -> None:
    assert (await call(client, "GET", "/api/v1/board"))[1]["pending_broadcasts"] == 0
    draft = (await call(client, "POST", "/api/v1/broadcasts", RED))[1]["broadcast"]
    await call(client, "POST", "/api/v1/broadcasts", RED)
    await call(client, "POST", f"/api/v1/broadcasts/{draft['id']}/reject", {"reason": "重复"}, APPROVER_AUTH)
    board = await client.app[APP_KEY].board.build()
    assert board["pending_broadcasts"] == 1
