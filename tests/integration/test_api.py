"""The HTTP API (warnd.api) on a real aiohttp server on 127.0.0.1, around an App on a real SQLite file."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import cap_cn, edit_yaml

from channels.webpush import WebPushChannel
from tests.conftest import APPROVER_AUTH
from tests.support.api import api_client
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config

FIRST = "50022841600000_20240712053000"
TOKEN = "s3cret-token-123456"
PINGJIN = "500228101"  # 屏锦镇
DISTRICT = "500228000000"  # 梁平区


@pytest.fixture
async def client(app: App) -> AsyncIterator[TestClient]:
    async with api_client(app) as test_client:
        yield test_client


async def post_cap(client: TestClient, xml: bytes) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/api/v1/alerts", data=xml, headers={"Content-Type": "application/cap+xml"})
    return resp.status, await resp.json()


async def get_json(client: TestClient, path: str, **params: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get(path, params=params)
    return resp.status, await resp.json()


async def all_deliveries(client: TestClient, alert_id: int, **params: str) -> list[dict[str, Any]]:
    status, data = await get_json(client, f"/api/v1/alerts/{alert_id}/deliveries", **params)
    assert status == 200, data
    assert data["alert_id"] == alert_id
    return data["deliveries"]


def expected_red_counts(app: App) -> Counter[str]:
    people = app.config.subscribers
    return Counter(
        sms=sum(1 for p in people if p.phone),
        push=sum(1 for p in people if p.push_tokens),
        loudspeaker=len(app.config.terminals),
    )


# --- POST /api/v1/alerts ---


async def test_post_red_rainstorm_creates_alert_with_delivery_counts(client: TestClient, app: App) -> None:
    status, data = await post_cap(client, cap_cn())
    assert status == 201, data
    assert isinstance(data["id"], int)
    assert data["identifier"] == FIRST
    assert data["msg_type"] == "Alert"
    assert data["colour"] == "red" and data["colour_label"] == "红色"
    assert data["level"] == 1
    assert data["status"] == "Actual"
    assert data["state"] == "active" and data["fanout"] == "done"
    assert "duplicate" not in data
    expected = expected_red_counts(app)
    assert sum(data["deliveries"].values()) == sum(expected.values())
    assert data["deliveries"] == {"queued": sum(expected.values())}

    rows = await all_deliveries(client, data["id"])
    assert Counter(r["channel"] for r in rows) == expected


async def test_same_bytes_twice_is_a_duplicate_of_the_same_alert(client: TestClient) -> None:
    status, first = await post_cap(client, cap_cn())
    assert status == 201
    status, again = await post_cap(client, cap_cn())
    assert status == 200, again
    assert again["duplicate"] is True
    assert again["id"] == first["id"]
    assert again["deliveries"] == first["deliveries"]  # no second fan-out
    status, listing = await get_json(client, "/api/v1/alerts")
    assert status == 200
    assert [a["id"] for a in listing["alerts"]] == [first["id"]]
    assert listing["alerts"][0]["deliveries"] == first["deliveries"]


async def test_invalid_cap_is_rejected_and_quarantined(client: TestClient) -> None:
    bad = cap_cn().replace(b"<msgType>Alert</msgType>", b"")
    status, data = await post_cap(client, bad)
    assert status == 400, data
    assert "msgType" in data["error"]
    assert any("msgType" in e for e in data["errors"])
    quarantine_id = data["quarantine_id"]

    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]><alert>&x;</alert>'
    )
    status, doctype = await post_cap(client, hostile)
    assert status == 400, doctype
    assert "DOCTYPE" in doctype["error"]

    status, kept = await get_json(client, "/api/v1/quarantine")
    assert status == 200
    by_id = {q["id"]: q for q in kept["quarantine"]}
    assert set(by_id) == {quarantine_id, doctype["quarantine_id"]}
    assert any("msgType" in e for e in by_id[quarantine_id]["errors"])
    assert by_id[quarantine_id]["bytes"] == len(bad)
    assert by_id[quarantine_id]["source"].startswith("http:")
    assert any("DOCTYPE" in e for e in by_id[doctype["quarantine_id"]]["errors"])
    # nothing was accepted
    assert (await get_json(client, "/api/v1/alerts"))[1]["alerts"] == []


async def test_empty_body_is_rejected(client: TestClient) -> None:
    resp = await client.post("/api/v1/alerts", data=b"")
    assert resp.status == 400
    assert "empty" in (await resp.json())["error"]


# --- GET /api/v1/alerts/{id} and its deliveries ---


async def test_get_alert_with_revisions(client: TestClient) -> None:
    _, created = await post_cap(client, cap_cn())
    status, data = await get_json(client, f"/api/v1/alerts/{created['id']}")
    assert status == 200
    assert data["id"] == created["id"] and data["identifier"] == FIRST
    assert data["root_id"] == created["id"] and data["previous_id"] is None
    assert data["rules"] == ["rainstorm-red"]
    assert data["level_label"] == "Ⅰ级"
    assert [r["id"] for r in data["revisions"]] == [created["id"]]
    assert data["deliveries"] == created["deliveries"]


async def test_unknown_and_malformed_alert_ids(client: TestClient) -> None:
    for path in ("/api/v1/alerts/9999", "/api/v1/alerts/9999/deliveries"):
        status, data = await get_json(client, path)
        assert status == 404, path
        assert "9999" in data["error"]
    for path in ("/api/v1/alerts/abc", "/api/v1/alerts/abc/deliveries"):
        status, data = await get_json(client, path)
        assert status == 400, path
        assert "integer" in data["error"]


@pytest.mark.file_push  # push deliveries to filter on
async def test_deliveries_listing_masks_phones_and_filters(client: TestClient, app: App) -> None:
    _, created = await post_cap(client, cap_cn())
    rows = await all_deliveries(client, created["id"])
    assert len(rows) == sum(expected_red_counts(app).values())
    for row in rows:
        for key in ("channel", "recipient", "status", "body", "segments", "attempts", "created_at"):
            assert row[key] is not None, (key, row)
        assert row["status"] == "queued" and row["attempts"] == 0
        assert row["alert_id"] == created["id"]
    sms = [r for r in rows if r["channel"] == "sms"]
    assert sms and all(r["segments"] >= 1 for r in sms)
    assert all(r["body"].startswith("【梁平区应急管理局】") for r in sms)
    phones = {p.name: p.phone for p in app.config.subscribers}
    zhou = next(r for r in sms if r["recipient"] == "周建国")
    assert phones["周建国"] == "13800230001"
    assert zhou["phone"] == "138****0001"
    for row in sms:
        real = phones[row["recipient"]]
        assert row["phone"] == real[:3] + "****" + real[-4:]
        assert real not in str(row)
    assert all(r["phone"] is None for r in rows if r["channel"] == "loudspeaker")

    filtered = await all_deliveries(client, created["id"], channel="sms", status="queued")
    assert [r["id"] for r in filtered] == [r["id"] for r in sms]
    assert await all_deliveries(client, created["id"], channel="sms", status="sent") == []
    assert {r["channel"] for r in await all_deliveries(client, created["id"], channel="push")} == {"push"}


async def test_vapid_public_key_for_every_webpush_channel(client: TestClient, app: App) -> None:
    status, data = await get_json(client, "/api/v1/push/vapid-public-key")
    assert status == 200
    push = app.channels["push"]
    assert isinstance(push, WebPushChannel)
    # the example sets no key: the one generated into data_dir at start, as the browser's applicationServerKey
    assert data == {"channels": {"push": push.application_server_key}}
    assert push.key_file == app.config.data_dir / "vapid_private.pem" and push.key_file.exists()


async def test_deliveries_paging(client: TestClient, app: App) -> None:
    _, created = await post_cap(client, cap_cn())
    status, page = await get_json(client, f"/api/v1/alerts/{created['id']}/deliveries", limit="10")
    assert status == 200
    assert len(page["deliveries"]) == 10 and page["next_after"] == page["deliveries"][-1]["id"]
    seen = [d["id"] for d in page["deliveries"]]
    while page["next_after"] is not None:
        _, page = await get_json(
            client, f"/api/v1/alerts/{created['id']}/deliveries", limit="10", after=str(page["next_after"])
        )
        seen += [d["id"] for d in page["deliveries"]]
    assert len(seen) == len(set(seen)) == sum(expected_red_counts(app).values())
    status, bad = await get_json(client, f"/api/v1/alerts/{created['id']}/deliveries", limit="many")
    assert status == 400 and "limit" in bad["error"]


async def test_deliveries_with_events_after_drain(client: TestClient, app: App) -> None:
    _, created = await post_cap(client, cap_cn())
    sent = await app.dispatcher.drain()
    assert sent == sum(expected_red_counts(app).values())
    rows = await all_deliveries(client, created["id"], events="1")
    assert rows and all(r["status"] == "sent" for r in rows)
    for row in rows:
        kinds = [e["kind"] for e in row["events"]]
        assert kinds == ["accepted"], row
        assert row["events"][0]["delivery_id"] == row["id"]
        assert row["sent_at"] is not None and row["attempts"] == 1
    # without ?events the events are not included
    assert all("events" not in r for r in await all_deliveries(client, created["id"]))
    _, alert = await get_json(client, f"/api/v1/alerts/{created['id']}")
    assert alert["deliveries"] == {"sent": len(rows)}


# --- lifecycle through the API ---


def edxl(*alerts: bytes) -> bytes:
    """An EDXL-DE distribution carrying several CAP messages."""
    objects = "".join(
        "<de:contentObject><de:xmlContent><de:embeddedXMLContent>"
        + a.decode().split("?>", 1)[-1].strip()
        + "</de:embeddedXMLContent></de:xmlContent></de:contentObject>"
        for a in alerts
    )
    return f"""<de:EDXLDistribution xmlns:de="urn:oasis:names:tc:emergency:EDXL:DE:1.0">
<de:distributionID>D1</de:distributionID><de:senderID>relay@example.cn</de:senderID>
<de:dateTimeSent>2024-07-12T05:45:00+08:00</de:dateTimeSent><de:distributionStatus>Actual</de:distributionStatus>
<de:distributionType>Report</de:distributionType><de:combinedConfidentiality>UNCLASSIFIED</de:combinedConfidentiality>
{objects}</de:EDXLDistribution>""".encode()


def early_update(identifier: str = "50022841600000_20240712054000", sent: str = "05:40:00") -> bytes:
    """An Update of FIRST, posted before FIRST itself."""
    return cap_cn(identifier=identifier, msg_type="Update", references=FIRST, sent=f"2024-07-12 {sent}+08:00")


async def test_update_before_its_alert_is_accepted_as_held(client: TestClient, app: App) -> None:
    status, data = await post_cap(client, early_update())
    assert status == 202, data
    assert data["held"] is True and isinstance(data["payload_id"], int)
    assert any("held" in w for w in data["warnings"])
    assert (await app.store.payload(data["payload_id"]))["outcome"] == "held"
    status, first = await post_cap(client, cap_cn())
    assert status == 201, first
    assert (await app.store.payload(data["payload_id"]))["outcome"] == "applied"


async def test_several_alerts_in_one_post_with_held_ones(client: TestClient, app: App) -> None:
    """An EDXL-DE body: held items are listed (202), never answered as a bad request."""
    status, data = await post_cap(client, edxl(early_update(), early_update("u-0545", "05:45:00")))
    assert status == 202, data
    assert data["alerts"] == [] and data["rejected"] == []
    assert len({h["payload_id"] for h in data["held"]}) == 2
    other = cap_cn(identifier="gale-0531", event_code="11B06", event="大风", sent="2024-07-12 05:31:00+08:00")
    status, data = await post_cap(client, edxl(early_update("u-0550", "05:50:00"), other))
    assert status == 202, data
    assert [a["identifier"] for a in data["alerts"]] == ["gale-0531"]
    [held] = data["held"]
    assert (await app.store.payload(held["payload_id"]))["outcome"] == "held"


async def test_update_then_cancel_attach_to_the_first_alert(
    client: TestClient, app: App, clock: FakeClock
) -> None:
    status, first = await post_cap(client, cap_cn())
    assert status == 201
    await app.dispatcher.drain()
    reached = {
        (r["recipient"], r["channel"])
        for r in await all_deliveries(client, first["id"])
        if r["status"] == "sent"
    }
    assert len(reached) == sum(expected_red_counts(app).values())

    clock.advance(1800)
    update_xml = cap_cn(
        identifier="50022841600000_20240712060000",
        msg_type="Update",
        references=FIRST,
        sent="2024-07-12 06:00:00+08:00",
        description="梁平区气象台更新暴雨红色预警信号：强降雨仍将持续3小时。",
    )
    status, update = await post_cap(client, update_xml)
    assert status == 201, update
    assert update["msg_type"] == "Update"
    assert (update["root_id"], update["previous_id"]) == (first["id"], first["id"])
    await app.dispatcher.drain()

    clock.advance(3600)
    cancel_xml = cap_cn(
        identifier="50022841600000_20240712073000",
        msg_type="Cancel",
        references=FIRST,
        sent="2024-07-12 07:30:00+08:00",
        note="降雨明显减弱",
    )
    status, cancel = await post_cap(client, cancel_xml)
    assert status == 201, cancel
    assert cancel["msg_type"] == "Cancel"
    assert cancel["root_id"] == first["id"]
    assert cancel["previous_id"] == update["id"]  # the latest revision of the chain
    assert cancel["state"] == "cancelled"

    _, root = await get_json(client, f"/api/v1/alerts/{first['id']}")
    assert [r["id"] for r in root["revisions"]] == [first["id"], update["id"], cancel["id"]]
    states = {r["id"]: r["state"] for r in root["revisions"]}
    # a Cancel ends the whole chain: every revision reads cancelled
    assert states == {first["id"]: "cancelled", update["id"]: "cancelled", cancel["id"]: "cancelled"}

    rows = await all_deliveries(client, cancel["id"])
    assert {(r["recipient"], r["channel"]) for r in rows} == reached
    assert len(rows) == len(reached)
    sms = [r for r in rows if r["channel"] == "sms" and r["recipient"] != "彭海涛"]  # 彭海涛 reads English
    assert sms and all("解除" in r["body"] for r in sms)
    await app.dispatcher.drain()
    assert {r["status"] for r in await all_deliveries(client, cancel["id"])} == {"sent"}


# --- POST /api/v1/broadcasts ---


async def post_broadcast(client: TestClient, body: Any) -> tuple[int, dict[str, Any]]:
    """Submit; a draft that waits for a second person is approved by the approver token, as in the console."""
    resp = await client.post("/api/v1/broadcasts", json=body)
    data = await resp.json()
    if resp.status == 202 and data.get("broadcast", {}).get("status") == "pending":
        resp = await client.post(
            f"/api/v1/broadcasts/{data['broadcast']['id']}/approve", json={}, headers=APPROVER_AUTH
        )
        data = await resp.json()
    return resp.status, data


async def test_area_broadcast_reaches_the_township_and_offices_above_it(client: TestClient, app: App) -> None:
    status, data = await post_broadcast(
        client,
        {
            "areas": ["500228101000"],
            "channels": ["sms"],
            "hazard": "暴雨",
            "colour": "orange",
            "text": "屏锦镇请立即转移低洼地带群众。",
        },
    )
    assert status == 201, data
    assert data["colour"] == "orange" and data["level"] == 2
    assert data["source"].startswith("broadcast:")
    rows = await all_deliveries(client, data["id"])
    expected = {
        p.name
        for p in app.config.subscribers
        if p.phone and (p.area_code.startswith(PINGJIN) or p.area_code == DISTRICT)
    }
    assert {"陈晓红", "李秀英", "谢芳", "周建国"} <= expected
    assert {r["recipient"] for r in rows} == expected
    assert len(rows) == len(expected)
    assert {r["channel"] for r in rows} == {"sms"}
    assert all(r["area_code"].startswith(PINGJIN) or r["area_code"] == DISTRICT for r in rows)
    assert sum(data["deliveries"].values()) == len(rows)


async def test_groups_only_broadcast(client: TestClient, app: App) -> None:
    status, data = await post_broadcast(
        client,
        {
            "groups": ["county_leaders", "township_leaders"],
            "channels": ["sms"],
            "text": "请各级防汛责任人立即到岗值守。",
        },
    )
    assert status == 201, data
    rows = await all_deliveries(client, data["id"])
    expected = {p.name for p in app.config.subscribers if p.role in ("county_leader", "township_leader")}
    assert len(expected) == 4
    assert {r["recipient"] for r in rows} == expected and len(rows) == len(expected)
    assert all("立即到岗值守" in r["body"] for r in rows)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"areas": ["500228101000"], "channels": ["fax"], "text": "x"}, "fax"),
        ({"groups": ["nobody"], "channels": ["sms"], "text": "x"}, "nobody"),
        ({"areas": ["5002281"], "channels": ["sms"], "text": "x"}, "5002281"),
        ({"channels": ["sms"], "text": "x"}, "groups"),
        ({"areas": ["500228101000"], "channels": ["sms"], "text": "x", "priority": 1}, "priority"),
        ({"areas": ["500228101000"], "channels": [], "text": "x"}, "channel"),
        ({"areas": ["500228101000"], "channels": ["sms"]}, "text"),
        ({"areas": ["500228101000"], "channels": ["sms"], "hazard": "陨石", "colour": "red"}, "陨石"),
        ({"areas": ["500228101000"], "channels": "sms", "text": "x", "status": "Draft"}, "Draft"),
    ],
)
async def test_bad_broadcast_is_400_naming_the_problem(
    client: TestClient, body: dict[str, Any], named: str
) -> None:
    status, data = await post_broadcast(client, body)
    assert status == 400, data
    assert named in data["error"]
    assert (await get_json(client, "/api/v1/alerts"))[1]["alerts"] == []


async def test_broadcast_body_must_be_a_json_object(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/broadcasts", data=b"not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400 and "JSON" in (await resp.json())["error"]
    status, data = await post_broadcast(client, ["sms"])
    assert status == 400 and "object" in data["error"]


async def test_exercise_broadcast_reaches_only_drill_groups(client: TestClient, app: App) -> None:
    status, data = await post_broadcast(
        client,
        {
            "areas": [DISTRICT],
            "channels": ["sms", "loudspeaker"],
            "hazard": "暴雨",
            "colour": "red",
            "status": "Exercise",
        },
    )
    assert status == 201, data
    assert data["status"] == "Exercise"
    rows = await all_deliveries(client, data["id"])
    drill_roles = {role for g in app.config.groups.values() if g.drill for role in g.roles}
    assert "public" not in drill_roles
    expected = {(p.name, "sms") for p in app.config.subscribers if p.phone and p.role in drill_roles}
    expected |= {(t.name, "loudspeaker") for t in app.config.terminals}
    assert {(r["recipient"], r["channel"]) for r in rows} == expected
    assert all(r["role"] in drill_roles for r in rows)
    for row in rows:
        body = row["body"].removeprefix("【梁平区应急管理局】")
        assert body.startswith("【演练】"), row["body"]


# --- health and authentication ---


async def test_healthz(client: TestClient, app: App) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    data = await resp.json()
    assert data["status"] == "ok"
    assert data["channels"] == sorted(app.channels)


async def test_post_is_audited_with_the_token_principal(client: TestClient, app: App) -> None:
    status, created = await post_cap(client, cap_cn())
    assert status == 201
    [entry] = [e for e in await app.store.audit_entries() if e["action"] == "alert.post"]
    assert entry["actor"] == "token:tests"
    assert entry["target"] == str(created["id"])
    assert entry["detail"] == {"outcomes": ["created"]}


@pytest.fixture
async def secured(config_dir: Path, clock: FakeClock) -> AsyncIterator[tuple[App, TestClient]]:
    def add_token(data: dict[str, Any]) -> None:
        data.setdefault("api", {})["tokens"] = [{"name": "ops", "token": TOKEN}]

    edit_yaml(config_dir / "warnd.yaml", add_token)
    application = App(load_config(config_dir), clock=clock)
    await application.start(channels=True)
    try:
        async with api_client(application, headers={}) as test_client:
            yield application, test_client
    finally:
        await application.close()


async def test_token_required_when_configured(secured: tuple[App, TestClient]) -> None:
    app, client = secured
    assert [t.name for t in app.config.api.tokens] == ["ops"]
    for method, path in (
        ("GET", "/api/v1/alerts"),
        ("GET", "/api/v1/quarantine"),
        ("GET", "/api/v1/feeds"),
        ("GET", "/api/v1/push/vapid-public-key"),
        ("POST", "/api/v1/alerts"),
        ("POST", "/api/v1/broadcasts"),
    ):
        resp = await client.request(method, path, data=cap_cn() if method == "POST" else None)
        assert resp.status == 401, (method, path)
        assert "Bearer" in (await resp.json())["error"]
    wrong = await client.get("/api/v1/alerts", headers={"Authorization": "Bearer s3cret-token-12345"})
    assert wrong.status == 401
    basic = await client.get("/api/v1/alerts", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status == 401
    # nothing reached the pipeline
    assert await app.store.list_alerts() == []
    assert await app.store.audit_entries() == []

    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"

    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.post("/api/v1/alerts", data=cap_cn(), headers=auth)
    assert resp.status == 201
    created = await resp.json()
    listing = await client.get("/api/v1/alerts", headers=auth)
    assert listing.status == 200
    assert [a["id"] for a in (await listing.json())["alerts"]] == [created["id"]]
    assert created["source"] == "http:token:ops"

    vapid = await client.get("/api/v1/push/vapid-public-key", headers=auth)
    assert vapid.status == 200 and set((await vapid.json())["channels"]) == {"push"}

    [entry] = await app.store.audit_entries()
    assert entry["action"] == "alert.post"
    assert entry["actor"] == "token:ops"
    assert entry["target"] == str(created["id"])
    assert entry["remote"] == "127.0.0.1"


async def test_broadcast_is_audited_with_the_token_name(secured: tuple[App, TestClient]) -> None:
    app, client = secured
    resp = await client.post(
        "/api/v1/broadcasts",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"groups": ["county_leaders"], "channels": ["sms"], "text": "请到岗。"},
    )
    assert resp.status == 201
    data = await resp.json()
    entries = [(e["action"], e["actor"], e["target"]) for e in reversed(await app.store.audit_entries())]
    target = f"broadcast:{data['broadcast']['id']}"
    assert entries == [("broadcast.submit", "token:ops", target), ("broadcast.sent", "token:ops", target)]
    assert data["source"] == "broadcast:token:ops" and data["broadcast"]["alert_id"] == data["id"]


# --- body size limit ---


async def test_body_over_the_limit_is_413_json(config_dir: Path, clock: FakeClock) -> None:
    limit = 4096
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.setdefault("api", {}).update(max_body_bytes=limit))
    application = App(load_config(config_dir), clock=clock)
    await application.start()
    try:
        assert application.config.api.max_body_bytes == limit
        async with api_client(application) as client:
            small = cap_cn()
            assert len(small) < limit
            padded = small.replace(b"<note></note>", b"<note>" + "注".encode() * limit + b"</note>")
            assert len(padded) > limit
            resp = await client.post(
                "/api/v1/alerts", data=padded, headers={"Content-Type": "application/cap+xml"}
            )
            assert resp.status == 413
            assert resp.content_type == "application/json"
            data = await resp.json()
            assert str(limit) in data["error"]
            resp = await client.post(
                "/api/v1/broadcasts", json={"groups": ["public"], "channels": ["sms"], "text": "字" * limit}
            )
            assert resp.status == 413
            assert "error" in await resp.json()
            assert await application.store.list_alerts() == []
            # a body under the limit still goes through
            resp = await client.post("/api/v1/alerts", data=small)
            assert resp.status == 201
    finally:
        await application.close()
