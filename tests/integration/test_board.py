"""The live board, its event stream, an alert's timeline and the dashboard (docs/board.md), on a real SQLite file
with the real pipeline, dispatcher and a fake HTTP SMS gateway on a real socket; the API through aiohttp's test
client and a plain client session.

The red rainstorm of ``cap_cn()`` goes to the example's 24 people by SMS and to its 3 village loudspeakers (file
adapter here: sent counts as reached). What becomes of each person is PLAN / ACKS / KNOCKS below; the expected
numbers are counted from that plan in this file, not by warnd.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import AUTH, cap_cn, edit_yaml
from tests.support.gateway import FakeSmsGateway
from tests.support.reports import add_ack, add_doorknock, people, receipt, rows_by_name, use_sms_gateway
from warnd import api_board
from warnd.api import make_web_app
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.optimise import percentile

pytestmark = pytest.mark.file_loudspeaker

LIVE_EVERY = 0.05
# delivered: a DELIVRD receipt this many seconds after the alert arrived; gateway_fail: refused at send;
# undeliv: sent, then a failure receipt; everyone else: sent, nothing heard back
DELIVERED = {
    "周建国": 5,
    "刘德明": 20,
    "陈晓红": 45,
    "李秀英": 90,
    "吴强": 200,
    "谢芳": 400,
    "何桂兰": 700,
    "罗文军": 1000,
}
GATEWAY_FAIL = {"孙长林": "13800230025", "曹玉珍": "13800230046"}
UNDELIV = {"韩梅"}
# 叫应: 王大山's SMS was never confirmed and 孙长林's failed: both reached by acknowledging
ACKS = {"周建国": "link", "王大山": "reply", "孙长林": "call"}
# 敲门: 曹玉珍 reached at home, 唐建华 not at home, 陈玉兰 listed and not knocked yet
KNOCKS = {"曹玉珍": "reached", "唐建华": "not_home", "陈玉兰": None}
ACK_ROLES = {"county_leader", "township_leader", "duty_person", "village_cadre"}
PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


@pytest.fixture
async def gateway() -> AsyncIterator[FakeSmsGateway]:
    async with FakeSmsGateway() as gw:
        gw.fail_phones(*GATEWAY_FAIL.values())
        yield gw


@pytest.fixture
async def bapp(config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock) -> AsyncIterator[App]:
    use_sms_gateway(config_dir, gateway.url)
    edit_yaml(
        config_dir / "warnd.yaml", lambda data: data.setdefault("api", {}).update(live_every=LIVE_EVERY)
    )
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    yield app
    await app.close()


@pytest.fixture
async def server(bapp: App) -> AsyncIterator[TestServer]:
    async with TestServer(make_web_app(bapp), host="127.0.0.1", port=0) as test_server:
        yield test_server


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[TestClient]:
    async with TestClient(server, headers=AUTH) as test_client:
        yield test_client


async def post(client: TestClient, cap: bytes) -> int:
    answer = await client.post("/api/v1/alerts", data=cap, headers={"Content-Type": "application/cap+xml"})
    assert answer.status in (201, 202), await answer.text()
    return int((await answer.json())["id"])


async def run_scenario(app: App, client: TestClient, clock: FakeClock) -> int:
    """The red rainstorm posted through the API, sent, then receipts / 叫应 / door-knocks per the plan."""
    alert_id = await post(client, cap_cn())
    await app.dispatcher.drain()
    t0 = clock.now()
    sms = await rows_by_name(app, alert_id, "sms")
    for name, delay in sorted(DELIVERED.items(), key=lambda item: item[1]):
        clock.advance((t0 + timedelta(seconds=delay) - clock.now()).total_seconds())
        assert await receipt(app, sms[name], "DELIVRD") == "matched"
    for name in UNDELIV:
        assert await receipt(app, sms[name], "UNDELIV") == "matched"
    speakers = await rows_by_name(app, alert_id, "loudspeaker")
    assert await receipt(app, speakers["川西村大喇叭"], "failed", kind="loudspeaker") == "matched"
    who = await people(app)
    await add_ack(
        app,
        alert_id=alert_id,
        root_id=alert_id,
        recipient_id=who["周建国"]["id"],
        at=clock.now(),
        channel="link",
    )
    replied = await app.acks.from_reply(who["王大山"]["phone"], "收到", clock.now(), {"channel": "sms"})
    assert replied
    call = await client.post(
        f"/api/v1/alerts/{alert_id}/acks",
        json={"recipient": GATEWAY_FAIL["孙长林"], "channel": "call", "note": "电话已叫应"},
    )
    assert call.status == 201, await call.text()
    for name, outcome in KNOCKS.items():
        await add_doorknock(
            app, root_id=alert_id, alert_id=alert_id, person=who[name], result=outcome, at=clock.now()
        )
    return alert_id


async def truth(app: App) -> dict[str, Any]:
    """Ground truth per village and in total, from the plan."""
    who = await people(app)
    persons = [p for p in who.values() if p["kind"] == "person"]
    villages: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    households: dict[str, dict[str, bool]] = defaultdict(dict)
    for p in persons:
        name = p["name"]
        delivered = name in DELIVERED
        reached = delivered or name in ACKS or KNOCKS.get(name) in ("reached", "moved")
        counts = {
            "targeted": 1,
            "sent": int(name not in GATEWAY_FAIL),
            "delivered": int(delivered),
            "failed": int(name in GATEWAY_FAIL or name in UNDELIV),
            "reached": int(reached),
            "ack_required": int(p["role"] in ACK_ROLES),
            "acknowledged": int(name in ACKS),
        }
        for key in (p["area_code"], "total"):
            for k, v in counts.items():
                villages[key][k] += v
        if name in KNOCKS:
            households[p["area_code"]][p["household"]] = KNOCKS[name] is not None
    for key, row in villages.items():
        row["coverage"] = row["reached"] / row["targeted"]
        knocked = households.get(key, {})
        row["doorknock_households"] = len(knocked)
        row["doorknock_done"] = sum(knocked.values())
    total = villages["total"]
    total["doorknock_households"] = sum(len(h) for h in households.values())
    total["doorknock_done"] = sum(sum(h.values()) for h in households.values())
    return dict(villages)


async def fresh(client: TestClient, app: App, path: str = "/api/v1/board") -> dict[str, Any]:
    """GET a board newer than anything that happened before the call (the board is kept for live_every)."""
    await asyncio.sleep(app.board.every)
    answer = await client.get(path)
    assert answer.status == 200, await answer.text()
    return dict(await answer.json())


# --- the board -------------------------------------------------------------------------------------------------


async def test_board_numbers_equal_ground_truth(bapp: App, client: TestClient, clock: FakeClock) -> None:
    # before anything is sent: everyone is waiting
    alert_id = await post(client, cap_cn())
    [waiting] = (await fresh(client, bapp))["alerts"]
    assert (
        waiting["id"] == alert_id and waiting["progress"]["queued"] == waiting["progress"]["targeted"] == 24
    )
    assert waiting["progress"]["sent"] == 0 and waiting["progress"]["reached"] == 0
    # the rest of the scenario on a second chain would double the people: start it on this one
    await bapp.dispatcher.drain()
    sms = await rows_by_name(bapp, alert_id, "sms")
    t0 = clock.now()
    for name, delay in sorted(DELIVERED.items(), key=lambda item: item[1]):
        clock.advance((t0 + timedelta(seconds=delay) - clock.now()).total_seconds())
        await receipt(bapp, sms[name], "DELIVRD")
    for name in UNDELIV:
        await receipt(bapp, sms[name], "UNDELIV")
    who = await people(bapp)
    for name, how in ACKS.items():
        await add_ack(
            bapp,
            alert_id=alert_id,
            root_id=alert_id,
            recipient_id=who[name]["id"],
            at=clock.now(),
            channel=how,
        )
    for name, outcome in KNOCKS.items():
        await add_doorknock(
            bapp, root_id=alert_id, alert_id=alert_id, person=who[name], result=outcome, at=clock.now()
        )

    answer = await fresh(client, bapp)
    assert set(answer) >= {"generated_at", "alerts"}
    assert answer["generated_at"].endswith("+08:00")
    [item] = answer["alerts"]
    expected = await truth(bapp)
    total = expected["total"]
    progress = item["progress"]
    for key in ("targeted", "sent", "delivered", "failed", "reached"):
        assert progress[key] == total[key], key
    assert progress["queued"] == 0
    assert progress["coverage"] == pytest.approx(total["coverage"], abs=1e-4)
    assert item["acks"] == {"required": total["ack_required"], "acknowledged": total["acknowledged"]}
    assert item["doorknock"] == {"households": 3, "done": 2}
    assert item["doorknock"]["households"] == total["doorknock_households"]
    assert (item["colour"], item["colour_label"], item["level"], item["level_label"]) == (
        "red",
        "红色",
        1,
        "Ⅰ级",
    )
    assert (item["root_id"], item["msg_type"], item["state"], item["drill"]) == (
        alert_id,
        "Alert",
        "active",
        False,
    )
    assert item["terminals"]["targeted"] == 3
    villages = {v["code"]: v for v in item["villages"]}
    assert set(villages) == {k for k in expected if k != "total"}
    for code, v in villages.items():
        for key in (
            "targeted",
            "reached",
            "ack_required",
            "acknowledged",
            "doorknock_households",
            "doorknock_done",
        ):
            assert v[key] == expected[code][key], (code, key)
        assert v["coverage"] == pytest.approx(expected[code]["coverage"], abs=1e-4)
        assert v["below_target"] is (expected[code]["coverage"] < bapp.config.feedback.coverage_target)
        assert v["township_code"] == code[:9] + "000"
        assert v["township_name"] == bapp.config.area_name(code[:9] + "000")
    assert (
        villages["500228101201"]["name"] == "万年村" and villages["500228101201"]["township_name"] == "屏锦镇"
    )
    # the same numbers as the chain's coverage report
    report = await (await client.get(f"/api/v1/alerts/{alert_id}/report")).json()
    assert {k: report["total"][k] for k in ("targeted", "reached", "delivered")} == {
        k: progress[k] for k in ("targeted", "reached", "delivered")
    }
    assert not PHONE.search(json.dumps(answer))


async def test_board_order_red_first_newest_first_and_ended_chains_leave(
    bapp: App, client: TestClient, clock: FakeClock
) -> None:
    gale = await post(
        client,
        cap_cn(
            identifier="gale-yellow-1",
            event_code="11B06",
            event="大风",
            severity="Yellow",
            expires="2024-07-12 06:30:00+08:00",
        ),
    )
    clock.advance(30)
    red = await post(client, cap_cn())
    clock.advance(30)
    heat = await post(
        client, cap_cn(identifier="heat-yellow-1", event_code="11B09", event="高温", severity="Yellow")
    )
    clock.advance(30)
    flood = await post(
        client, cap_cn(identifier="flood-blue-1", event_code="11A01", event="洪水", severity="Blue")
    )
    board = await fresh(client, bapp)
    assert [a["id"] for a in board["alerts"]] == [red, heat, gale, flood]
    assert [a["colour"] for a in board["alerts"]] == ["red", "yellow", "yellow", "blue"]

    # an Update replaces its chain's entry (the newest revision, same root)
    clock.advance(60)
    update = await post(
        client,
        cap_cn(
            identifier="flood-blue-2",
            event_code="11A01",
            event="洪水",
            severity="Orange",
            msg_type="Update",
            references="flood-blue-1",
            sent="2024-07-12 05:33:00+08:00",
        ),
    )
    board = await fresh(client, bapp)
    assert [a["id"] for a in board["alerts"]] == [red, update, heat, gale]
    upgraded = board["alerts"][1]
    assert (upgraded["root_id"], upgraded["revisions"], upgraded["colour"]) == (
        flood,
        [flood, update],
        "orange",
    )

    # the gale expires at 06:30: off the board at once, before the expiry sweep marks it, and after
    clock.advance(3600)
    assert [a["id"] for a in (await fresh(client, bapp))["alerts"]] == [red, update, heat]
    assert gale in await bapp.store.expire_alerts(clock.now())
    assert [a["id"] for a in (await fresh(client, bapp))["alerts"]] == [red, update, heat]

    # a Cancel ends the red chain
    await post(
        client,
        cap_cn(
            identifier="red-cancel",
            msg_type="Cancel",
            references="50022841600000_20240712053000",
            sent="2024-07-12 06:40:00+08:00",
        ),
    )
    assert [a["id"] for a in (await fresh(client, bapp))["alerts"]] == [update, heat]


async def test_board_is_computed_once_per_interval(bapp: App, client: TestClient, clock: FakeClock) -> None:
    """Many readers within live_every share one computation."""
    await post(client, cap_cn())
    bapp.board.every = 60.0  # however slowly the 20 requests arrive, they are within one interval
    before = bapp.board.computations
    answers = await asyncio.gather(*(client.get("/api/v1/board") for _ in range(20)))
    assert [a.status for a in answers] == [200] * 20
    assert bapp.board.computations - before == 1
    assert answers[0].headers["Cache-Control"] == "no-store"
    assert len({await a.text() for a in answers}) == 1
    # once the interval is over, the next reader gets a new board
    bapp.board.every = LIVE_EVERY
    clock.advance(5)
    await post(
        client, cap_cn(identifier="heat-yellow-1", event_code="11B09", event="高温", severity="Yellow")
    )
    assert len((await fresh(client, bapp))["alerts"]) == 2
    assert bapp.board.computations - before == 2


# --- the event stream ------------------------------------------------------------------------------------------


async def read_event(response: aiohttp.ClientResponse, timeout: float = 10.0) -> dict[str, Any]:
    """The next event (comments skipped): its fields, ``data`` parsed as JSON."""
    fields: dict[str, Any] = {}
    async with asyncio.timeout(timeout):
        while True:
            line = (await response.content.readline()).decode("utf-8")
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if not line:
                if fields:
                    fields["data"] = json.loads(fields["data"])
                    return fields
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Wait (polling) until ``condition()`` holds; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / LIVE_EVERY)):
        if condition():
            return
        await asyncio.sleep(LIVE_EVERY)
    raise AssertionError(f"still not true after {timeout} s")


async def test_event_stream_sends_the_board_then_each_change(
    bapp: App, client: TestClient, clock: FakeClock
) -> None:
    alert_id = await post(client, cap_cn())
    await bapp.dispatcher.drain()
    stream = await client.get("/api/v1/events")
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.headers["Cache-Control"] == "no-store"
    assert stream.headers["X-Accel-Buffering"] == "no"
    first = await read_event(stream)
    assert first["event"] == "board"
    [item] = first["data"]["alerts"]
    assert item["id"] == alert_id and item["progress"]["delivered"] == 0 and item["progress"]["sent"] == 22
    assert bapp.board.watchers == 1 and bapp.board.polling

    # a delivery receipt arrives: the next event shows it
    sms = await rows_by_name(bapp, alert_id, "sms")
    clock.advance(12)
    assert await receipt(bapp, sms["李秀英"], "DELIVRD") == "matched"
    second = await read_event(stream)
    assert second["event"] == "board" and int(second["id"]) > int(first["id"])
    [item] = second["data"]["alerts"]
    assert item["progress"]["delivered"] == 1
    village = next(v for v in item["villages"] if v["code"] == "500228101201")
    assert village["reached"] == 1
    # a second alert appears on the stream too, red before yellow
    clock.advance(5)
    heat = await post(
        client, cap_cn(identifier="heat-yellow-1", event_code="11B09", event="高温", severity="Yellow")
    )
    third = await read_event(stream)
    assert [a["id"] for a in third["data"]["alerts"]] == [alert_id, heat]

    # the client goes away: its handler ends within live_every and the poller with it
    stream.close()
    await until(lambda: bapp.board.watchers == 0 and not bapp.board.polling)


async def test_quiet_stream_gets_keepalive_comments(
    bapp: App, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_board, "KEEPALIVE", 4 * LIVE_EVERY)  # 15 s in real life
    stream = await client.get("/api/v1/events")
    assert (await read_event(stream))["data"]["alerts"] == []
    lines = []
    async with asyncio.timeout(5):
        while len(lines) < 2:
            line = (await stream.content.readline()).decode()
            if line.strip():
                lines.append(line)
    assert lines == [": keepalive\n", ": keepalive\n"]  # nothing changed: comments only
    stream.close()


async def test_a_stream_ends_when_its_session_does(
    bapp: App, server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials are checked again at every keepalive: logging out (or a disabled account, a revoked token)
    ends an open board stream too, not just the next request."""
    monkeypatch.setattr(api_board, "KEEPALIVE", 4 * LIVE_EVERY)  # 15 s in real life
    await bapp.accounts.add_user("duty", "correct-horse-battery", "viewer", actor="test")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:  # 127.0.0.1
        login = await browser.post(
            server.make_url("/api/v1/session"), json={"name": "duty", "password": "correct-horse-battery"}
        )
        csrf = (await login.json())["csrf_token"]
        stream = await browser.get(server.make_url("/api/v1/events"))
        assert (await read_event(stream))["event"] == "board"
        assert bapp.board.watchers == 1
        out = await browser.delete(server.make_url("/api/v1/session"), headers={"X-CSRF-Token": csrf})
        assert out.status == 200
        async with asyncio.timeout(5):
            assert await stream.content.read() == b""  # the server ended the stream, no keepalive after
        await until(lambda: bapp.board.watchers == 0)


async def test_one_poller_for_many_streams(bapp: App, server: TestServer, clock: FakeClock) -> None:
    alert_id = await post_with_session(server)
    async with aiohttp.ClientSession(headers=AUTH) as session:
        streams = [await session.get(server.make_url("/api/v1/events")) for _ in range(12)]
        firsts = [await read_event(s) for s in streams]
        assert len({f["id"] for f in firsts}) == 1  # every stream got the same version of the board
        assert bapp.board.watchers == 12
        start, loop = bapp.board.computations, asyncio.get_running_loop()
        began = loop.time()
        await asyncio.sleep(20 * LIVE_EVERY)
        elapsed = loop.time() - began
        computed = bapp.board.computations - start
        # one poller: about one computation per interval (each waits live_every after the last one ended),
        # not one per stream per interval
        assert 2 <= computed <= elapsed / LIVE_EVERY + 1, (computed, elapsed)
        # a change reaches every stream
        await bapp.dispatcher.drain()
        sent = [await read_event(s) for s in streams]
        assert {e["data"]["alerts"][0]["progress"]["sent"] for e in sent} == {22}
        assert {e["data"]["alerts"][0]["id"] for e in sent} == {alert_id}
        for s in streams:
            s.close()
    await until(lambda: bapp.board.watchers == 0 and not bapp.board.polling)


async def post_with_session(server: TestServer) -> int:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        answer = await session.post(
            server.make_url("/api/v1/alerts"), data=cap_cn(), headers={"Content-Type": "application/cap+xml"}
        )
        assert answer.status in (201, 202)
        return int((await answer.json())["id"])


async def test_shutdown_ends_open_streams(bapp: App) -> None:
    server = TestServer(make_web_app(bapp), host="127.0.0.1", port=0)
    await server.start_server()
    async with aiohttp.ClientSession(headers=AUTH) as session:
        stream = await session.get(server.make_url("/api/v1/events"))
        assert (await read_event(stream))["event"] == "board"
        loop = asyncio.get_running_loop()
        began = loop.time()
        await server.close()  # on_shutdown closes the board: the open stream ends instead of holding shutdown
        assert loop.time() - began < 5
        async with asyncio.timeout(5):
            rest = await stream.content.read()
        assert b"event: board" not in rest
    assert bapp.board.closed and not bapp.board.polling and bapp.board.watchers == 0


# --- the timeline ----------------------------------------------------------------------------------------------


async def test_timeline_tells_what_happened_in_order(bapp: App, client: TestClient, clock: FakeClock) -> None:
    alert_id = await run_scenario(bapp, client, clock)
    # the duty persons who did not answer climb the ladder: 5 minutes to acknowledge, then the sweep
    clock.advance(6 * 60)
    await bapp.escalator.sweep()
    await bapp.dispatcher.drain()
    clock.advance(60)
    update = await post(
        client,
        cap_cn(
            identifier="50022841600000_20240712055000",
            msg_type="Update",
            references="50022841600000_20240712053000",
            sent="2024-07-12 05:50:00+08:00",
        ),
    )

    # an operator asks to lift it: a red Cancel waits for a second person's approval (docs/broadcasts.md)
    clock.advance(60)
    cancel = await client.post(f"/api/v1/alerts/{update}/cancel", json={"reason": "降雨已减弱"})
    assert cancel.status in (201, 202), await cancel.text()

    answer = await client.get(f"/api/v1/alerts/{update}/timeline")
    assert answer.status == 200, await answer.text()
    text = await answer.text()
    assert not PHONE.search(text), PHONE.search(text)
    data = json.loads(text)
    assert (data["alert_id"], data["root_id"], data["latest_id"]) == (update, alert_id, update)
    events = data["events"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)  # one offset: ISO strings sort
    assert all(e["at"].endswith("+08:00") for e in events)
    kinds = [e["kind"] for e in events]
    assert kinds[:3] == ["received", "validated", "matched"]
    assert {
        "received",
        "validated",
        "matched",
        "revision",
        "deliveries",
        "escalation",
        "ack",
        "doorknock",
        "action",
    } <= set(kinds)
    titles = [e["title"] for e in events]
    assert titles[0] == "收到预警" and titles[2] == "规则匹配：rainstorm-red"
    assert "短信开始发送" in titles and "大喇叭开始发送" in titles
    done = next(e for e in events if e["title"].startswith("短信发送完毕"))
    assert done["detail"]["counts"] == {
        "delivered": len(DELIVERED),
        "sent": 24 - len(DELIVERED) - 3,
        "failed": 3,
    }
    assert "已送达 8" in done["title"] and "失败 3" in done["title"]
    started = next(e for e in events if e["title"] == "短信开始发送")
    assert done["at"] == started["at"] == events[0]["at"]  # all went out (or failed) at once, at 05:31
    last = next(e for e in events if e["title"].startswith("短信最近一条送达回执"))
    assert last["title"] == "短信最近一条送达回执（已送达 8）"
    assert last["at"] == "2024-07-12T05:47:40+08:00"  # the last receipt came 1000 s after 05:31
    assert "王大山 已确认收到（回复短信）" in titles and "周建国 已确认收到（点击链接）" in titles
    call = next(t for t in titles if t.startswith("孙长林 已确认收到"))
    assert call == "孙长林 已确认收到（电话确认，token:tests 记录）"
    ack = next(e for e in events if e["title"].startswith("王大山"))
    assert ack["detail"]["phone"] == "138****0021"
    assert (
        "敲门：新店村 xd-1-02 已通知到（网格员）" in titles
        and "敲门：红光村 hg-4-06 不在家（网格员）" in titles
    )
    posted = next(e for e in events if e["kind"] == "action" and e["detail"]["action"] == "alert.post")
    assert posted["title"] == "通过接口提交预警（tests）" and posted["alert_id"] == alert_id
    ladders = [e for e in events if e["kind"] == "escalation"]
    assert ladders and all(e["title"].startswith("升级·") for e in ladders)
    assert any("叫应期限已过" in e["title"] for e in ladders)
    revision = next(e for e in events if e["kind"] == "revision")
    assert revision["title"] == "收到更新（第2版）" and revision["alert_id"] == update
    assert kinds.index("revision") > kinds.index("doorknock")  # the update came after those
    asked = next(e for e in events if e["kind"] == "broadcast")
    assert asked["alert_id"] == update and asked["detail"]["action"].startswith("broadcast.")
    assert asked["title"].endswith("（tests）") and kinds.index("broadcast") > kinds.index("revision")
    # per channel and status over the chain's warning deliveries
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rev in (alert_id, update):
        for channel in ("sms", "loudspeaker", "push", "sms_backup"):
            for row in (await rows_by_name(bapp, rev, channel)).values():
                if row["purpose"] == "warning":
                    counts[channel][row["status"]] += 1
    assert data["deliveries"] == {c: dict(s) for c, s in counts.items()}
    # the same timeline from the first revision; an unknown alert is 404
    again = await (await client.get(f"/api/v1/alerts/{alert_id}/timeline")).json()
    assert again["events"] == events and again["alert_id"] == alert_id
    assert (await client.get("/api/v1/alerts/9999/timeline")).status == 404


async def test_timeline_limits_events_about_people(bapp: App, client: TestClient, clock: FakeClock) -> None:
    alert_id = await run_scenario(bapp, client, clock)
    data = await (await client.get(f"/api/v1/alerts/{alert_id}/timeline", params={"limit": "1"})).json()
    assert data["truncated"] is True and data["limit"] == 1
    assert [e["kind"] for e in data["events"]].count("ack") == 1
    assert (await client.get(f"/api/v1/alerts/{alert_id}/timeline", params={"limit": "x"})).status == 400


# --- the dashboard ---------------------------------------------------------------------------------------------


async def test_dashboard_numbers_equal_ground_truth(bapp: App, client: TestClient, clock: FakeClock) -> None:
    await run_scenario(bapp, client, clock)
    data = await fresh(client, bapp, "/api/v1/dashboard")
    assert data["days"] == 7 and data["alerts"] == 1
    assert data["alerts_by_colour"] == {"red": 1, "orange": 0, "yellow": 0, "blue": 0, "none": 0}
    expected = await truth(bapp)
    villages = {v["code"]: v for v in data["coverage_by_village"]}
    assert set(villages) == {k for k in expected if k != "total"}
    for code, v in villages.items():
        assert (v["targeted"], v["reached"]) == (expected[code]["targeted"], expected[code]["reached"]), code
        assert v["coverage"] == pytest.approx(expected[code]["coverage"], abs=1e-4)
    # time to delivery: the receipts' delays, and the two loudspeakers that played (sent counts: 0 s)
    seconds = [float(d) for d in DELIVERED.values()] + [0.0, 0.0]
    ttd = data["time_to_delivery"]
    assert [b["count"] for b in ttd["buckets"]] == [3, 1, 1, 1, 1, 1, 2]
    assert [b["le_seconds"] for b in ttd["buckets"]] == [10, 30, 60, 120, 300, 600, None]
    assert ttd["count"] == len(seconds)
    for p in (50, 90, 99):
        assert ttd[f"p{p}"] == percentile(seconds, p)
    channels = {c["channel"]: c for c in data["channels"]}
    assert channels["sms"] == {
        "channel": "sms",
        "sent": 24 - len(GATEWAY_FAIL),
        "delivered": len(DELIVERED),
        "failed": len(GATEWAY_FAIL) + len(UNDELIV),
        "attempted": 24,
        "success_rate": round(len(DELIVERED) / 24, 4),
    }
    assert channels["loudspeaker"] == {
        "channel": "loudspeaker",
        "sent": 3,
        "delivered": 2,
        "failed": 1,
        "attempted": 3,
        "success_rate": round(2 / 3, 4),
    }
    feeds = await (await client.get("/api/v1/feeds")).json()
    assert data["feeds"] == feeds["feeds"]
    assert data["until"].endswith("+08:00")

    # the window: eight days later the alert is outside the last 7 days, inside the last 9
    clock.advance(8 * 86400)
    assert (await (await client.get("/api/v1/dashboard")).json())["alerts"] == 0
    assert (await (await client.get("/api/v1/dashboard", params={"days": "9"})).json())["alerts"] == 1
    for bad in ("0", "91", "-1", "seven"):
        answer = await client.get("/api/v1/dashboard", params={"days": bad})
        assert answer.status == 400, bad
        assert "days" in (await answer.json())["error"]
