"""Delivery log review (warnd/api_logs.py): the log across alerts with its filters and keyset pages, the CSV
export, phone masking by role, the audit of unmasking and exports, and one person's history with their 叫应 and
door-knock result. Real SQLite, a real fake SMS gateway, real aiohttp test servers, a fake clock."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import cap_cn
from tests.support.api import api_client
from tests.support.escalation import CHEN, LIU, WANG, WANNIAN, acknowledge, deliver_all_except, ladder_config
from tests.support.gateway import FakeSmsGateway
from warnd.app import App
from warnd.auth import Accounts
from warnd.clock import FakeClock
from warnd.config import load_config

CHEN_PHONE = "13800230049"  # 陈玉兰, 万年村三组12号 (household wn-3-12), lives alone
FULL_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
UPDATE = cap_cn(
    identifier="50022841600000_20240712060000",
    msg_type="Update",
    sent="2024-07-12 06:00:00+08:00",
    references="梁平区气象台,50022841600000_20240712053000,2024-07-12T05:30:00+08:00",
)
OTHER = cap_cn(identifier="50022841600000_20240712070000", sent="2024-07-12 07:00:00+08:00")


@dataclass
class Log:
    """What the scenario made: the first red rainstorm, its Update (same chain), an unrelated third alert and every
    delivery row as the store has it (phones in full)."""

    first: int
    update: int
    other: int
    rows: list[dict[str, Any]]


@pytest.fixture
async def app(config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock) -> AsyncIterator[App]:
    ladder_config(config_dir, gateway.url, ack=True, grace="12h")
    application = App(load_config(config_dir), clock=clock)
    await application.start(channels=True)
    yield application
    await application.close()


@pytest.fixture
async def client(app: App) -> AsyncIterator[TestClient]:
    async with api_client(app) as test_client:
        yield test_client


@pytest.fixture
async def log(app: App, clock: FakeClock) -> Log:
    """The red rainstorm at 05:31 (local); 陈玉兰 and the 刘 household never get the SMS, so the ladder sends
    superiors' notices (05:41), grid workers' door-knock tasks (05:46) and loudspeaker resends (05:51); the
    Update at 05:52 goes to everyone again; an unrelated red rainstorm at 05:53 is suppressed (the chain covers
    them)."""
    [first] = await app.pipeline.ingest(cap_cn(), source="t")
    assert first.alert_id is not None
    await app.dispatcher.drain()
    await deliver_all_except(app, first.alert_id, CHEN, LIU, WANG)
    for minutes in (10, 5, 5):
        clock.advance(minutes * 60)
        await app.escalator.sweep()
        await app.dispatcher.drain()
    clock.advance(60)
    [update] = await app.pipeline.ingest(UPDATE, source="t")
    await app.dispatcher.drain()
    clock.advance(60)
    [other] = await app.pipeline.ingest(OTHER, source="t")
    await app.dispatcher.drain()
    assert update.alert_id and other.alert_id
    rows = await app.store.deliveries_page({}, limit=100_000)
    return Log(first.alert_id, update.alert_id, other.alert_id, rows)


async def token(app: App, role: str) -> dict[str, str]:
    value = await Accounts(app.store, app.clock).add_token(f"log-{role}", role, actor="tests")
    return {"Authorization": f"Bearer {value}"}


async def walk(
    client: TestClient, params: dict[str, str], *, limit: int = 1000, **kw: Any
) -> list[dict[str, Any]]:
    """Every delivery the log answers for ``params``, following next_after."""
    items: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        query = {**params, "limit": str(limit), **({"after": str(after)} if after else {})}
        response = await client.get("/api/v1/deliveries", params=query, **kw)
        assert response.status == 200, await response.text()
        data = await response.json()
        items += data["deliveries"]
        after = data["next_after"]
        if after is None:
            return items
        assert after == data["deliveries"][-1]["id"]


def ids(rows: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool] = lambda r: True) -> list[int]:
    """Ids of the rows ``keep`` keeps, newest first (the log's order)."""
    return sorted((r["id"] for r in rows if keep(r)), reverse=True)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00")


async def audit(app: App, action: str) -> list[dict[str, Any]]:
    return [e for e in await app.store.audit_entries(500) if e["action"] == action]


async def test_each_filter_narrows(app: App, client: TestClient, log: Log, clock: FakeClock) -> None:
    rows = log.rows
    everything = await walk(client, {})
    assert [d["id"] for d in everything] == ids(rows) and len(rows) > 60
    cases: list[tuple[dict[str, str], Callable[[dict[str, Any]], bool]]] = [
        # any revision id stands for its whole chain
        ({"alert": str(log.update)}, lambda r: r["alert_id"] in (log.first, log.update)),
        ({"alert": str(log.first)}, lambda r: r["alert_id"] in (log.first, log.update)),
        ({"alert": str(log.other)}, lambda r: r["alert_id"] == log.other),
        ({"channel": "loudspeaker"}, lambda r: r["channel"] == "loudspeaker"),
        ({"status": "delivered"}, lambda r: r["status"] == "delivered"),
        ({"status": "suppressed"}, lambda r: r["status"] == "suppressed"),
        ({"village": WANNIAN}, lambda r: r["area_code"] == WANNIAN),
        # a township: its 12-digit code or its 9-digit prefix
        ({"village": "500228101000"}, lambda r: r["area_code"].startswith("500228101")),
        ({"village": "500228101"}, lambda r: r["area_code"].startswith("500228101")),
        ({"phone_suffix": CHEN_PHONE[-4:]}, lambda r: (r["phone"] or "").endswith(CHEN_PHONE[-4:])),
        ({"phone_suffix": CHEN_PHONE}, lambda r: r["phone"] == CHEN_PHONE),
        ({"purpose": "warning"}, lambda r: r["purpose"] == "warning"),
        ({"purpose": "notice"}, lambda r: r["purpose"] != "warning"),
        # local times (Asia/Shanghai) without an offset; the ladder's notices went out at 05:41 and 05:46
        ({"since": "2024-07-12T05:40:00"}, lambda r: r["created_at"] >= local("2024-07-12T05:40:00")),
        ({"until": "2024-07-12T05:40:00"}, lambda r: r["created_at"] < local("2024-07-12T05:40:00")),
        (
            {"since": "2024-07-12T05:40", "until": "2024-07-12T05:50"},
            lambda r: local("2024-07-12T05:40:00") <= r["created_at"] < local("2024-07-12T05:50:00"),
        ),
        # a duration ago, on the app's clock
        ({"since": "90s"}, lambda r: r["created_at"] >= clock.now() - timedelta(seconds=90)),
        (
            {"channel": "sms", "status": "sent", "purpose": "notice", "village": "500228101"},
            lambda r: (
                r["channel"] == "sms"
                and r["status"] == "sent"
                and r["purpose"] != "warning"
                and r["area_code"].startswith("500228101")
            ),
        ),
    ]
    for params, keep in cases:
        expected = ids(rows, keep)
        assert 0 < len(expected) < len(rows), (params, len(expected))  # the case really narrows
        got = await walk(client, params)
        assert [d["id"] for d in got] == expected, params
    assert [d["id"] for d in await walk(client, {"purpose": "all"})] == ids(rows)  # the default
    data = await (await client.get("/api/v1/deliveries", params={"alert": str(log.update)})).json()
    assert data["filters"] == {"alert": str(log.update)} and data["order"] == "id_desc"
    first = data["deliveries"][0]
    assert first["root_id"] == log.first and first["area_name"] and first["identifier"]
    # nothing matches: an empty page, no next page
    none = await (await client.get("/api/v1/deliveries", params={"phone_suffix": "99999"})).json()
    assert none["deliveries"] == [] and none["next_after"] is None


async def test_pages_walk_every_row_once(app: App, client: TestClient, log: Log) -> None:
    chain = (log.first, log.update)
    for params, expected in (
        ({}, ids(log.rows)),
        ({"channel": "sms"}, ids(log.rows, lambda r: r["channel"] == "sms")),
        ({"alert": str(log.first)}, ids(log.rows, lambda r: r["alert_id"] in chain)),
    ):
        pages = []
        after: int | None = None
        while True:
            query = {**params, "limit": "7", **({"after": str(after)} if after else {})}
            data = await (await client.get("/api/v1/deliveries", params=query)).json()
            pages.append([d["id"] for d in data["deliveries"]])
            after = data["next_after"]
            if after is None:
                break
        seen = [i for page in pages for i in page]
        assert seen == expected and len(set(seen)) == len(seen), params  # all, once, newest first
        assert all(len(p) == 7 for p in pages[:-1]) and len(pages[-1]) <= 7
    # a page ending exactly at the last row still says next_after; the page after it is empty
    total = len(log.rows)
    data = await (await client.get("/api/v1/deliveries", params={"limit": str(total)})).json()
    assert len(data["deliveries"]) == total and data["next_after"] == min(r["id"] for r in log.rows)
    tail = await (await client.get("/api/v1/deliveries", params={"after": str(data["next_after"])})).json()
    assert tail["deliveries"] == [] and tail["next_after"] is None


async def test_query_plan_walks_the_primary_key(app: App, log: Log) -> None:
    """Page N costs what page 1 does: the unfiltered log and the column filters walk deliveries' primary key
    backwards from ``after`` (no OFFSET, no sort of the log); joins are primary-key look-ups; a phone suffix
    searches recipients first and then ix_deliveries_recipient."""
    if not app.store.is_sqlite:
        pytest.skip("the plan checked is SQLite's (EXPLAIN QUERY PLAN); PostgreSQL's planner has statistics")
    middle = log.rows[len(log.rows) // 2]["id"]
    for filters in ({}, {"channel": "sms", "status": "sent"}, {"area": "500228101"}, {"purpose": "warning"}):
        plan = await app.store.explain_log_page(filters, limit=100, after_id=middle, descending=True)
        assert plan[0] == "SEARCH deliveries USING INTEGER PRIMARY KEY (rowid<?)", (filters, plan)
        assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in plan), (filters, plan)
    plan = await app.store.explain_log_page(
        {"phone_suffix": "0049"}, limit=100, after_id=middle, descending=True
    )
    assert any("ix_deliveries_recipient (recipient_id=? AND rowid<?)" in step for step in plan), plan
    assert not any(step.startswith("SCAN deliveries") for step in plan), plan


async def test_phones_by_role(app: App, client: TestClient, log: Log) -> None:
    viewer, operator = await token(app, "viewer"), await token(app, "operator")
    # viewer: masked phones and bodies (a superior's notice names the person's phone)
    response = await client.get("/api/v1/deliveries", params={"limit": "1000"}, headers=viewer)
    assert response.status == 200
    text = await response.text()
    assert not FULL_PHONE.search(text)
    data = await response.json()
    assert {d["phone"] for d in data["deliveries"] if d["phone"]} >= {"138****0049"}
    assert data["phones"] == "masked"
    for headers in (viewer, operator):
        refused = await client.get("/api/v1/deliveries", params={"phones": "full"}, headers=headers)
        assert refused.status == 403 and "admin" in (await refused.json())["error"]
    refused = await client.get("/api/v1/deliveries", params={"format": "csv"}, headers=viewer)
    assert refused.status == 403 and "operator" in (await refused.json())["error"]
    refused = await client.get(
        "/api/v1/deliveries", params={"format": "csv", "phones": "full"}, headers=operator
    )
    assert refused.status == 403
    assert await audit(app, "deliveries.export") == [] and await audit(app, "deliveries.unmask") == []

    # operator: CSV, masked
    response = await client.get(
        "/api/v1/deliveries", params={"format": "csv", "channel": "sms"}, headers=operator
    )
    assert response.status == 200
    assert (
        response.headers["Content-Type"].startswith("text/csv")
        and "attachment" in response.headers["Content-Disposition"]
    )
    raw = await response.read()
    assert raw.startswith("\ufeff".encode())
    body = raw.decode("utf-8")[1:]
    assert not FULL_PHONE.search(body)
    header, *lines = list(csv.reader(io.StringIO(body)))
    assert header[:3] == ["编号 id", "预警 alert_id", "预警链 root_id"] and "手机号 phone" in header
    sms = ids(log.rows, lambda r: r["channel"] == "sms")
    assert [int(line[0]) for line in lines] == sms
    phone = header.index("手机号 phone")
    assert {line[phone] for line in lines} >= {"138****0049"}
    created = header.index("生成时间 created_at")
    assert lines[-1][created] == "2024-07-12T05:31:00+08:00"  # the configured time zone
    [entry] = await audit(app, "deliveries.export")
    assert entry["actor"] == "token:log-operator" and entry["remote"] == "127.0.0.1"
    assert entry["detail"] == {
        "format": "csv",
        "filters": {"channel": "sms"},
        "phones": "masked",
        "rows": len(sms),
        "complete": True,
    }

    # admin: full phone numbers when asked, audited
    response = await client.get("/api/v1/deliveries", params={"phones": "full", "phone_suffix": "0049"})
    assert response.status == 200
    data = await response.json()
    assert data["phones"] == "full" and {d["phone"] for d in data["deliveries"]} == {CHEN_PHONE}
    [unmask] = await audit(app, "deliveries.unmask")
    assert unmask["actor"] == "token:tests" or unmask["actor"].startswith("token:")
    assert unmask["detail"]["filters"] == {"phone_suffix": "0049"} and unmask["remote"] == "127.0.0.1"
    assert unmask["detail"]["rows"] == len(data["deliveries"])
    response = await client.get(
        "/api/v1/deliveries", params={"format": "csv", "phones": "full", "alert": str(log.other)}
    )
    body = (await response.read()).decode("utf-8")[1:]
    header, *lines = list(csv.reader(io.StringIO(body)))
    assert len(lines) == len(ids(log.rows, lambda r: r["alert_id"] == log.other))
    assert CHEN_PHONE in {line[header.index("手机号 phone")] for line in lines}
    full_export = (await audit(app, "deliveries.export"))[0]
    assert full_export["detail"]["phones"] == "full" and full_export["detail"]["rows"] == len(lines)
    assert full_export["detail"]["filters"] == {"alert": str(log.other)}


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("village", "万年村"),
        ("village", "5002281012011"),
        ("village", "5"),
        ("phone_suffix", "49"),
        ("phone_suffix", "00x9"),
        ("phone_suffix", "138002300491"),
        ("since", "yesterday"),
        ("until", "2024-13-01"),
        ("since", "99999999999d"),
        ("status", "lost"),
        ("purpose", "alerts"),
        ("channel", "sms;drop"),
        ("alert", "1 or 1=1"),
        ("limit", "0"),
        ("limit", "1001"),
        ("after", "-1"),
        ("phones", "yes"),
        ("format", "xml"),
    ],
)
async def test_bad_values_name_the_parameter(app: App, client: TestClient, param: str, value: str) -> None:
    for fmt in ("json", "csv"):
        if fmt == "csv" and param in ("limit", "after", "format"):
            continue  # the export has no pages
        response = await client.get("/api/v1/deliveries", params={"format": fmt, param: value})
        assert response.status == 400, (fmt, param, value)
        data = await response.json()
        assert data["parameter"] == param and data["error"].startswith(f"{param}: ")
    assert await audit(app, "deliveries.export") == []


async def test_unknown_alert_and_since_after_until(app: App, client: TestClient) -> None:
    response = await client.get("/api/v1/deliveries", params={"alert": "999"})
    assert response.status == 404 and "999" in (await response.json())["error"]
    response = await client.get("/api/v1/deliveries", params={"since": "1h", "until": "2h"})
    assert response.status == 400 and (await response.json())["parameter"] == "until"


async def test_unauthenticated_is_401(app: App) -> None:
    async with api_client(app, headers={}) as anonymous:
        for path in ("/api/v1/deliveries", "/api/v1/deliveries?format=csv", "/api/v1/recipients/1/history"):
            assert (await anonymous.get(path)).status == 401, path


async def test_recipient_history(app: App, client: TestClient, log: Log, clock: FakeClock) -> None:
    [chen] = {r["recipient_id"] for r in log.rows if r["phone"] == CHEN_PHONE}
    clock.advance(60)
    await acknowledge(app, log.update, CHEN_PHONE)  # she answered the Update's SMS by phone
    knocked = await client.post(
        f"/api/v1/alerts/{log.first}/doorknock/wn-3-12", json={"result": "reached", "note": "已当面告知"}
    )
    assert knocked.status == 200, await knocked.text()

    viewer = await token(app, "viewer")
    response = await client.get(f"/api/v1/recipients/{chen}/history", headers=viewer)
    assert response.status == 200
    text = await response.text()
    assert not FULL_PHONE.search(text)
    data = await response.json()
    assert data["recipient"]["name"] == CHEN and data["recipient"]["phone"] == "138****0049"
    assert data["recipient"]["household"] == "wn-3-12" and data["recipient"]["area_code"] == WANNIAN
    expected = ids(log.rows, lambda r: r["recipient_id"] == chen)
    assert [d["id"] for d in data["deliveries"]] == expected and len(expected) >= 3  # newest first
    assert {d["alert_id"] for d in data["deliveries"]} == {log.first, log.update, log.other}
    [ack] = data["acknowledgements"]
    assert ack["alert_id"] == log.update and ack["root_id"] == log.first and ack["channel"] == "call"
    [knock] = data["doorknocks"]
    assert knock["root_id"] == log.first and knock["household"] == "wn-3-12"
    assert knock["result"] == "reached" and knock["note"] == "已当面告知" and knock["result_by"]
    assert datetime.fromisoformat(knock["result_at"]).astimezone(UTC) == clock.now()

    # pages of one: every delivery once; the ack and the door-knock row come with the page of their alerts
    seen: list[int] = []
    acks, knocks = 0, 0
    after: int | None = None
    while True:
        params = {"limit": "1", **({"after": str(after)} if after else {})}
        page = await (await client.get(f"/api/v1/recipients/{chen}/history", params=params)).json()
        seen += [d["id"] for d in page["deliveries"]]
        for item in page["acknowledgements"]:
            assert item["alert_id"] in {d["alert_id"] for d in page["deliveries"]}
        for item in page["doorknocks"]:
            assert item["root_id"] in {d["root_id"] for d in page["deliveries"]}
        acks += len(page["acknowledgements"])
        knocks += len(page["doorknocks"])
        after = page["next_after"]
        if after is None:
            break
    assert seen == expected and acks >= 1 and knocks >= 1

    missing = await client.get("/api/v1/recipients/999999/history")
    assert missing.status == 404
    bad = await client.get(f"/api/v1/recipients/{chen}/history", params={"limit": "5000"})
    assert bad.status == 400 and (await bad.json())["parameter"] == "limit"
