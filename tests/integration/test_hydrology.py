"""River gauges and danger zones on the example config (龙溪河 station ``longxi``, 川西村 danger zone), a real
SQLite file and the normal pipeline: readings in, flood / flash-flood warnings out."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import FIXTURE_TIME

from tests.conftest import AUTH
from tests.support.server import LocalServer
from warnd.api import make_web_app
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import Feed
from warnd.feeds import FeedPoller
from warnd.hydro.readings import Reading

LONGXI_VILLAGES = ("500228001201", "500228001001", "500228101201")


async def feed(app: App, clock: FakeClock, levels: list[float], *, every: float = 900) -> list[dict]:
    """Post one reading at a time, ``every`` seconds apart, as a gauge would; return the warnings emitted."""
    emitted: list[dict] = []
    for level in levels:
        clock.advance(every)
        reading = Reading("longxi", clock.now(), level=level)
        summary = await app.hydro.ingest([reading], source="test")
        await app.dispatcher.drain()  # the messages go out between readings, as in the daemon
        emitted += summary["warnings"]
    return emitted


async def deliveries(app: App, alert_id: int) -> list[dict]:
    return await app.store.deliveries_page({"alert_id": alert_id}, limit=10_000)


async def test_hydrograph_blue_yellow_orange_yellow_lift(app: App, clock: FakeClock) -> None:
    rising = [98.8, 99.2, 99.6, 99.9, 100.3, 101.0, 101.7, 102.2, 102.6]
    falling = [102.3, 101.8, 101.5, 101.2, 100.9, 100.5, 100.2]  # below 保证水位 - hysteresis for ≥ 30 min
    receding = [99.7, 99.3, 99.0, 98.7, 98.5, 98.3, 98.2]  # below every colour for ≥ 1 h
    emitted = await feed(app, clock, rising + falling + receding)
    assert [(e["kind"], e["colour"]) for e in emitted] == [
        ("issue", "blue"),
        ("upgrade", "yellow"),
        ("upgrade", "orange"),
        ("downgrade", "yellow"),
        ("lift", None),
    ]
    alerts = [await app.store.get_alert(e["alert_id"]) for e in emitted]
    assert [(a["msg_type"], a["colour"], a["hazard_code"]) for a in alerts] == [
        ("Alert", "blue", "11A01"),
        ("Update", "yellow", "11A01"),
        ("Update", "orange", "11A01"),
        ("Update", "yellow", "11A01"),
        ("Cancel", "yellow", "11A01"),  # 解除 of the warning as it last stood
    ]
    assert len({a["root_id"] or a["id"] for a in alerts}) == 1  # one chain
    assert alerts[-1]["state"] == "cancelled"

    # the right people: only the villages along the river (and those above them: township, district)
    everyone = {}
    for e in emitted:
        for d in await deliveries(app, e["alert_id"]):
            everyone.setdefault(e["kind"], []).append(d)
    for rows in everyone.values():
        assert rows
        for d in rows:
            assert d["area_code"].startswith(LONGXI_VILLAGES) or d["area_code"].endswith("000")
    reached_orange = {d["recipient_key"] for d in everyone["upgrade"]}
    reached_lift = {d["recipient_key"] for d in everyone["lift"]}
    assert reached_orange <= reached_lift  # everyone who heard the orange warning hears 解除
    sms_lift = [d for d in everyone["lift"] if d["channel"] == "sms"]
    assert sms_lift and all("解除" in d["body"] for d in sms_lift)
    # who had yellow hears 升级; who is reached for the first time at orange gets the full warning
    orange_sms = [d["body"] for d in everyone["upgrade"] if d["channel"] == "sms" and "橙色" in d["body"]]
    assert any("升级为橙色" in body for body in orange_sms)
    assert all("升级为橙色" in body or "发布洪水橙色预警" in body for body in orange_sms)
    downgrade_sms = [d for d in everyone["downgrade"] if d["channel"] == "sms"]
    assert downgrade_sms and all("降级" in d["body"] or "调整" in d["body"] for d in downgrade_sms)


async def test_wobbling_around_the_warning_stage_does_not_flap(app: App, clock: FakeClock) -> None:
    noisy = [99.2, 99.6, 99.98, 100.03, 99.96, 100.04, 99.95, 100.02, 99.97, 100.01, 99.94, 100.05] * 3
    emitted = await feed(app, clock, noisy, every=300)
    assert [(e["kind"], e["colour"]) for e in emitted] == [("issue", "blue"), ("upgrade", "yellow")]


async def test_no_data_and_gaps_are_kept_and_visible(app: App, clock: FakeClock) -> None:
    clock.advance(3600)
    now = clock.now()
    readings = [
        Reading("longxi", now - timedelta(minutes=30), level=99.0),
        Reading("longxi", now - timedelta(minutes=15), level=None, problem="no data (-999999)"),
        Reading("longxi", now, level=99.1, qualifiers=("P",)),
        Reading("nowhere", now, level=1.0),
        Reading("longxi", now + timedelta(hours=2), level=103.9),  # a gauge clock gone wrong
    ]
    summary = await app.hydro.ingest(readings, source="test")
    assert summary["new"] == 5 and summary["unknown_gauges"] == ["nowhere"]
    assert summary["warnings"] == []  # the future reading is kept and marked, not used
    assert "future" in summary["problems"][-1]["problem"]
    assert summary["problems"][0]["problem"] == "no data (-999999)"
    clock.advance(900)
    status = await app.hydro.status()
    [longxi] = status["stations"]
    assert longxi["latest_usable"]["level"] == 99.1 and longxi["latest_usable"]["qualifiers"] == ["P"]
    assert longxi["problems_24h"] == 2 and longxi["gap"] is False
    clock.advance(3 * 3600)  # no reading for hours: the gap is flagged
    [longxi] = (await app.hydro.status())["stations"]
    assert longxi["gap"] is True


async def test_a_backlog_after_a_gap_says_where_the_river_is_now(app: App, clock: FakeClock) -> None:
    start: datetime = clock.now()
    backlog = [
        Reading("longxi", start + timedelta(minutes=15 * i), level=level)
        for i, level in enumerate([99.0, 99.6, 100.2, 101.0, 102.1])
    ]
    clock.advance(2 * 3600)
    summary = await app.hydro.ingest(backlog, source="test")
    assert [(w["kind"], w["colour"]) for w in summary["warnings"]] == [("issue", "orange")]


async def feed_rain(app: App, clock: FakeClock, millimetres: list[float]) -> list[dict]:
    emitted: list[dict] = []
    for mm in millimetres:
        clock.advance(600)
        summary = await app.hydro.ingest([Reading("chuanxi-rain", clock.now(), rainfall=mm)], source="test")
        await app.dispatcher.drain()
        emitted += summary["warnings"]
    return emitted


async def test_flash_flood_prepare_then_evacuate_in_one_danger_zone(app: App, clock: FakeClock) -> None:
    # 10-minute rain: 1 h reaches 30 mm (准备转移) after the 4th reading, 45 mm (立即转移) after the 6th
    emitted = await feed_rain(app, clock, [5, 6, 9, 11, 6, 9])
    assert [(e["kind"], e["colour"]) for e in emitted] == [("issue", "orange"), ("upgrade", "red")]
    prepare, evacuate = [await app.store.get_alert(e["alert_id"]) for e in emitted]
    assert "准备转移" in prepare["headline"] and "立即转移" in evacuate["headline"]
    assert (prepare["hazard_code"], evacuate["msg_type"]) == ("11A51", "Update")
    rows = await deliveries(app, emitted[1]["alert_id"])
    names = {d["recipient"] for d in rows if d["channel"] == "sms"}
    assert "赵春梅" in names  # the zone's duty person
    assert all(d["area_code"] == "500228102201" or d["area_code"].endswith("000") for d in rows)
    assert any(d["channel"] == "loudspeaker" for d in rows)  # 川西村大喇叭
    # the rain stops: after 3 quiet hours the warning is lifted
    lifted = await feed_rain(app, clock, [0] * 24)  # 1 h total < 30 mm from the 3rd dry reading
    assert [(e["kind"], e["colour"]) for e in lifted] == [("lift", None)]


async def test_post_readings_api(app: App, clock: FakeClock) -> None:
    async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0), headers=AUTH) as client:
        await _post_readings(client, clock)


async def _post_readings(client: TestClient, clock: FakeClock) -> None:
    t0 = FIXTURE_TIME + timedelta(minutes=5)
    clock.advance(600)
    ok = await client.post(
        "/api/v1/readings",
        json=[
            {"station": "longxi", "time": t0.isoformat(), "level": 99.6},
            {
                "station": "longxi",
                "time": (t0 + timedelta(minutes=1)).isoformat(),
                "level": 100.4,
                "flow": 812.0,
            },
        ],
    )
    body = await ok.json()
    assert ok.status == 200, body
    assert body["new"] == 2 and [w["colour"] for w in body["warnings"]] == ["yellow"]
    bad = await client.post(
        "/api/v1/readings", json=[{"station": "longxi", "time": "2024-07-12 05:00", "level": 1}]
    )
    assert bad.status == 400
    error = (await bad.json())["error"]
    assert "time" in error and (await bad.json())["quarantine_id"]
    status = await (await client.get("/api/v1/hydrology")).json()
    assert status["stations"][0]["colour"] == "yellow"
    assert status["stations"][0]["latest"]["time"].endswith("+08:00")  # shown in the district's time zone


class GaugeServer(LocalServer):
    """A water-data service answering the Chinese CSV shape; ``rows`` is what it serves now."""

    def __init__(self) -> None:
        super().__init__(path="/rivers.csv")
        self.rows: list[str] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = "stcd,tm,z,q\n" + "".join(f"{row}\n" for row in self.rows)
        return web.Response(body=body.encode(), content_type="text/csv")


async def test_polled_gauge_feed_issues_a_flood_warning(app: App, clock: FakeClock) -> None:
    async with GaugeServer() as server:
        feed = Feed(name="cq-water", url=server.url, kind="readings", interval=300)
        poller = FeedPoller(store=app.store, pipeline=app.pipeline, clock=clock, hydro=app.hydro)
        try:
            local = clock.now().astimezone(ZoneInfo("Asia/Shanghai"))
            server.rows = [
                f"longxi,{(local - timedelta(minutes=30)):%Y-%m-%d %H:%M:%S},99.2,640",
                f"longxi,{(local - timedelta(minutes=15)):%Y-%m-%d %H:%M:%S},99.6,700",
            ]
            first = await poller.poll(feed)
            assert first["created"] == 2 and [w["colour"] for w in first["warnings"]] == ["blue"]
            server.rows.append(f"longxi,{local:%Y-%m-%d %H:%M:%S},-999999,")
            clock.advance(300)
            second = await poller.poll(feed)
            assert second["created"] == 1 and second["warnings"] == []  # no data changes nothing
            server.rows = ["longxi,not a time,99.0,1"]
            clock.advance(300)
            broken = await poller.poll(feed)
            assert "line 2" in broken["error"]  # the feed fails with the reason, and the body is kept
            [kept] = await app.store.quarantine(limit=1)
            assert kept["source"] == "feed:cq-water"
        finally:
            await poller.close()
