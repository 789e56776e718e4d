"""FeedPoller (warnd.feeds) against a real local aiohttp server: fat and thin ATOM feeds, conditional GET,
failures with backoff, and the feed health the API shows."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import cap_cn, edit_yaml

from tests.conftest import AUTH
from warnd.api import make_web_app
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import Feed, load_config
from warnd.feeds import FeedPoller, backoff_delay

ETAG = '"fat-v1"'
FAT_ID = "CQ-LP-20240712053000-RAINSTORM-RED"


def oasis_alert(identifier: str = FAT_ID, *, sent: str = "2024-07-12T05:30:00+08:00") -> str:
    """An OASIS CAP 1.2 red rainstorm warning for 梁平区 (GB/T 2260 geocode)."""
    return f"""<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
      <identifier>{identifier}</identifier>
      <sender>lpqx@cq.cma.gov.cn</sender>
      <sent>{sent}</sent>
      <status>Actual</status>
      <msgType>Alert</msgType>
      <scope>Public</scope>
      <info>
        <language>zh-CN</language>
        <category>Met</category>
        <event>暴雨</event>
        <urgency>Immediate</urgency>
        <severity>Extreme</severity>
        <certainty>Likely</certainty>
        <expires>2024-07-12T17:30:00+08:00</expires>
        <senderName>梁平区气象台</senderName>
        <headline>梁平区气象台发布暴雨红色预警</headline>
        <description>梁平区气象台发布暴雨红色预警信号：预计未来3小时梁平区将出现100毫米以上降雨。</description>
        <area>
          <areaDesc>重庆市梁平区</areaDesc>
          <geocode><valueName>GB/T 2260</valueName><value>500228000000</value></geocode>
        </area>
      </info>
    </alert>"""


def fat_feed() -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>urn:test:lp:fat</id>
  <title>梁平区气象预警</title>
  <updated>2024-07-11T21:30:00+00:00</updated>
  <entry>
    <id>urn:test:lp:fat:{FAT_ID}</id>
    <title>梁平区气象台发布暴雨红色预警</title>
    <updated>2024-07-11T21:30:00+00:00</updated>
    <content type="application/cap+xml">{oasis_alert()}</content>
  </entry>
</feed>""".encode()


def thin_feed(base: str, entries: list[str]) -> bytes:
    items = "".join(
        f"""
  <entry>
    <id>urn:test:lp:thin:{name}</id>
    <title>预警 {name}</title>
    <updated>2024-07-11T21:30:00+00:00</updated>
    <link rel="alternate" type="application/cap+xml" href="{base}/cap/{name}.xml"/>
  </entry>"""
        for name in entries
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>urn:test:lp:thin</id>
  <title>梁平区预警索引</title>
  <updated>2024-07-11T21:30:00+00:00</updated>{items}
</feed>""".encode()


CAP_DOCS = {
    "gale": cap_cn(
        identifier="50022841600000_20240712054000",
        event_code="11B06",
        event="大风",
        severity="Orange",
        sent="2024-07-12 05:40:00+08:00",
    ),
    "heat": cap_cn(
        identifier="50022841600000_20240712055000",
        event_code="11B09",
        event="高温",
        severity="Yellow",
        sent="2024-07-12 05:50:00+08:00",
    ),
    "flood": cap_cn(
        identifier="50022841600000_20240712056000",
        event_code="11B03",
        event="暴雨",
        severity="Blue",
        sent="2024-07-12 05:56:00+08:00",
        geocode="500228101000",
    ),
}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class FeedServer:
    """What the fake publisher serves, and every request it saw."""

    requests: list[Seen] = field(default_factory=list)
    thin_entries: list[str] = field(default_factory=lambda: ["gale", "heat"])
    broken_answers: list[tuple[int, bytes]] = field(default_factory=list)
    base: str = ""

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def app(self) -> web.Application:
        application = web.Application()
        application.middlewares.append(self._record)
        application.router.add_get("/fat.atom", self._fat)
        application.router.add_get("/thin.atom", self._thin)
        application.router.add_get("/cap/{name}.xml", self._cap)
        application.router.add_get("/broken.atom", self._broken)
        return application

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(Seen(request.path, dict(request.headers)))
        return await handler(request)

    async def _fat(self, request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers={"ETag": ETAG})
        return web.Response(body=fat_feed(), content_type="application/atom+xml", headers={"ETag": ETAG})

    async def _thin(self, request: web.Request) -> web.Response:
        return web.Response(body=thin_feed(self.base, self.thin_entries), content_type="application/atom+xml")

    async def _cap(self, request: web.Request) -> web.Response:
        doc = CAP_DOCS.get(request.match_info["name"])
        if doc is None:
            raise web.HTTPNotFound()
        return web.Response(body=doc, content_type="application/cap+xml")

    async def _broken(self, request: web.Request) -> web.Response:
        status, body = self.broken_answers.pop(0) if self.broken_answers else (200, fat_feed())
        return web.Response(status=status, body=body, content_type="application/atom+xml")


@dataclass
class Env:
    app: App
    server: FeedServer
    poller: FeedPoller
    api: TestClient
    clock: FakeClock

    def feed(self, name: str) -> Feed:
        return next(f for f in self.app.config.feeds if f.name == name)


@pytest.fixture
async def env(config_dir: Path, clock: FakeClock) -> AsyncIterator[Env]:
    server = FeedServer()
    async with TestServer(server.app(), host="127.0.0.1", port=0) as http:
        server.base = str(http.make_url("")).rstrip("/")

        def feeds(data: dict[str, Any]) -> None:
            data["feeds"] = [
                {"name": name, "url": f"{server.base}/{name}.atom", "interval": "60s"}
                for name in ("fat", "thin", "broken")
            ]

        edit_yaml(config_dir / "feeds.yaml", feeds)
        application = App(load_config(config_dir), clock=clock)
        await application.start(channels=True)
        poller = FeedPoller(store=application.store, pipeline=application.pipeline, clock=application.clock)
        try:
            async with TestClient(
                TestServer(make_web_app(application), host="127.0.0.1", port=0), headers=AUTH
            ) as api:
                yield Env(application, server, poller, api, clock)
        finally:
            await poller.close()
            await application.close()


def at(value: str | None) -> datetime | None:
    """An API timestamp (ISO 8601 with the district's offset) as an aware datetime."""
    return None if value is None else datetime.fromisoformat(value)


async def feeds_view(env: Env) -> dict[str, dict[str, Any]]:
    resp = await env.api.get("/api/v1/feeds")
    assert resp.status == 200
    return {f["name"]: f for f in (await resp.json())["feeds"]}


async def test_fat_feed_conditional_get(env: Env) -> None:
    feed = env.feed("fat")
    first = await env.poller.poll(feed)
    assert first["status"] == 200 and first["created"] == 1, first
    [alert] = await env.app.store.list_alerts()
    assert alert["identifier"] == FAT_ID and alert["profile"] == "cap1.2"
    assert (alert["hazard_code"], alert["colour"], alert["level"]) == ("11B03", "red", 1)
    assert alert["source"] == "feed:fat"
    deliveries = await env.app.store.deliveries_page({"alert_id": alert["id"]}, limit=1000)
    assert {d["channel"] for d in deliveries} == {
        "sms",
        "loudspeaker",
    }  # no push subscriptions in the example
    state = await env.app.store.feed_state("fat")
    assert state is not None
    assert state["etag"] == ETAG and state["items"] == 1 and state["consecutive_failures"] == 0
    assert state["last_success"] == env.clock.now() and state["last_error"] is None

    env.clock.advance(feed.interval)
    second = await env.poller.poll(feed)
    assert second["status"] == 304, second
    assert second["created"] == second["duplicate"] == second["rejected"] == 0
    requests = env.server.seen("/fat.atom")
    assert len(requests) == 2
    assert "If-None-Match" not in requests[0].headers
    assert requests[1].headers.get("If-None-Match") == ETAG
    assert requests[1].headers.get("User-Agent", "").startswith("warnd/")
    assert len(await env.app.store.list_alerts()) == 1
    state = await env.app.store.feed_state("fat")
    assert state["items"] == 1 and state["etag"] == ETAG
    assert state["last_success"] == env.clock.now()
    assert (await feeds_view(env))["fat"]["stale"] is False


async def test_thin_feed_fetches_each_linked_cap_once(env: Env) -> None:
    feed = env.feed("thin")
    first = await env.poller.poll(feed)
    assert first["fetched"] == 2 and first["created"] == 2, first
    events = {a["event"] for a in await env.app.store.list_alerts()}
    assert events == {"大风", "高温"}
    assert all(a["source"].startswith("feed:thin:") for a in await env.app.store.list_alerts())

    env.clock.advance(feed.interval)
    second = await env.poller.poll(feed)
    assert second["fetched"] == 0 and second["created"] == 0, second
    assert len(env.server.seen("/thin.atom")) == 2
    assert len(env.server.seen("/cap/gale.xml")) == 1
    assert len(env.server.seen("/cap/heat.xml")) == 1
    assert len(await env.app.store.list_alerts()) == 2

    # a new entry appears: only it is fetched
    env.server.thin_entries.append("flood")
    env.clock.advance(feed.interval)
    third = await env.poller.poll(feed)
    assert third["fetched"] == 1 and third["created"] == 1, third
    assert [len(env.server.seen(f"/cap/{n}.xml")) for n in ("gale", "heat", "flood")] == [1, 1, 1]
    assert (await env.app.store.feed_state("thin"))["items"] == 3


async def test_thin_entry_that_fails_to_fetch_is_tried_again(env: Env) -> None:
    feed = env.feed("thin")
    env.server.thin_entries = ["gale", "missing"]
    first = await env.poller.poll(feed)
    assert first["fetched"] == 1 and first["fetch_failed"] == 1, first
    env.clock.advance(feed.interval)
    second = await env.poller.poll(feed)
    assert second["fetched"] == 0 and second["fetch_failed"] == 1, second
    assert len(env.server.seen("/cap/missing.xml")) == 2  # not claimed while it fails
    assert len(env.server.seen("/cap/gale.xml")) == 1


async def test_failing_feed_backs_off_and_recovers(env: Env) -> None:
    feed = env.feed("broken")
    env.server.broken_answers = [(500, b"internal error")]

    first = await env.poller.poll(feed)
    assert "500" in first["error"], first
    state = await env.app.store.feed_state("broken")
    assert state["consecutive_failures"] == 1
    assert "500" in state["last_error"] and state["last_error_at"] == env.clock.now()
    assert state["last_success"] is None
    view = (await feeds_view(env))["broken"]
    assert view["consecutive_failures"] == 1 and "500" in view["last_error"]
    # failing, but not yet stale: it has been failing for less than stale_after (3 x interval)
    assert view["state"] == "failing" and view["stale"] is False
    assert view["backoff_s"] == 2 * feed.interval
    assert at(view["next_try"]) == env.clock.now() + timedelta(seconds=2 * feed.interval)

    # an immediate retry is skipped: the server is not asked again, even just before the backoff ends
    assert await env.poller.poll(feed) == {"skipped": True}
    env.clock.advance(2 * feed.interval - 1)
    assert await env.poller.poll(feed) == {"skipped": True}
    assert len(env.server.seen("/broken.atom")) == 1

    # the publisher has recovered: the first poll after the backoff succeeds and clears the failure count
    env.clock.advance(2)
    second = await env.poller.poll(feed)
    assert second["created"] == 1 and second["status"] == 200, second
    assert len(env.server.seen("/broken.atom")) == 2
    state = await env.app.store.feed_state("broken")
    assert state["consecutive_failures"] == 0 and state["last_success"] == env.clock.now()
    view = (await feeds_view(env))["broken"]
    assert view["stale"] is False and view["consecutive_failures"] == 0 and view["state"] == "ok"
    assert view["backoff_s"] is None
    assert at(view["next_try"]) == env.clock.now() + timedelta(seconds=feed.interval)
    # and it is polled normally again (no backoff left over)
    assert "skipped" not in await env.poller.poll(feed)
    assert len(env.server.seen("/broken.atom")) == 3


async def test_feed_answering_500_then_garbage_keeps_failing_with_backoff(env: Env) -> None:
    feed = env.feed("broken")
    env.server.broken_answers = [(500, b"internal error"), (200, b"\x00\x01 this is not a feed <<<")]

    first = await env.poller.poll(feed)
    assert "500" in first["error"], first
    assert (await env.app.store.feed_state("broken"))["consecutive_failures"] == 1
    assert await env.poller.poll(feed) == {"skipped": True}

    env.clock.advance(2 * feed.interval + 1)  # past the first backoff
    second = await env.poller.poll(feed)
    assert len(env.server.seen("/broken.atom")) == 2
    assert await env.app.store.list_alerts() == []
    # garbage instead of a feed is a failure of the feed, not a successful poll
    assert "error" in second, second
    state = await env.app.store.feed_state("broken")
    assert state["consecutive_failures"] == 2
    assert state["last_error"] and state["last_error_at"] == env.clock.now()
    assert state["last_success"] is None
    assert await env.poller.poll(feed) == {"skipped": True}  # backed off again
    assert len(env.server.seen("/broken.atom")) == 2
    view = (await feeds_view(env))["broken"]
    assert view["state"] == "failing" and view["stale"] is False and view["consecutive_failures"] == 2
    assert view["backoff_s"] == 4 * feed.interval  # doubled


async def test_feed_never_polled_goes_stale_after_stale_after_and_so_does_an_old_success(env: Env) -> None:
    view = await feeds_view(env)
    assert set(view) == {"fat", "thin", "broken"}
    assert all(f["state"] == "never polled" and f["stale"] is False for f in view.values())
    assert all(f["next_try"] is None and f["items"] == 0 for f in view.values())
    assert view["fat"]["url"] == f"{env.server.base}/fat.atom" and view["fat"]["interval_s"] == 60
    assert view["fat"]["stale_after_s"] == 180  # default: 3 x interval

    env.clock.advance(3 * 60 + 1)  # never polled since warnd started, for longer than stale_after
    view = await feeds_view(env)
    assert all(f["state"] == "stale" and f["stale"] is True for f in view.values())

    await env.poller.poll(env.feed("fat"))
    view = await feeds_view(env)
    assert view["fat"]["stale"] is False and view["fat"]["state"] == "ok" and view["fat"]["items"] == 1
    assert view["fat"]["latency_ms"] > 0
    env.clock.advance(3 * 60 + 1)
    assert (await feeds_view(env))["fat"]["stale"] is True


async def test_poller_with_feed_built_directly(env: Env) -> None:
    feed = Feed(name="adhoc", url=f"{env.server.base}/fat.atom", interval=60)
    summary = await env.poller.poll(feed)
    assert summary["created"] == 1 and summary["status"] == 200
    state = await env.app.store.feed_state("adhoc")
    assert state["url"] == feed.url and state["items"] == 1 and state["last_success"] == env.clock.now()
    # the same alert through another feed is a duplicate, not a second warning
    again = await env.poller.poll(env.feed("fat"))
    assert again["duplicate"] == 1 and again["created"] == 0
    assert len(await env.app.store.list_alerts()) == 1


async def test_repeated_failures_show_growing_backoff_and_the_last_error(env: Env) -> None:
    feed = env.feed("broken")
    env.server.broken_answers = [(500, b"a"), (502, b"b"), (503, b"c"), (504, b"d")]
    backoffs = []
    for n, status in enumerate((500, 502, 503, 504), start=1):
        summary = await env.poller.poll(feed)
        assert str(status) in summary["error"], summary
        view = (await feeds_view(env))["broken"]
        assert view["consecutive_failures"] == n and f"HTTP {status}" in view["last_error"]
        assert at(view["last_error_at"]) == env.clock.now()
        assert at(view["next_try"]) == env.clock.now() + timedelta(seconds=view["backoff_s"])
        backoffs.append(view["backoff_s"])
        # nothing is fetched until the backoff is over
        env.clock.advance(view["backoff_s"] - 1)
        assert await env.poller.poll(feed) == {"skipped": True}
        assert len(env.server.seen("/broken.atom")) == n
        env.clock.advance(1)
    assert backoffs == [120, 240, 480, 960]
    assert [backoff_delay(feed, n) for n in (6, 7, 20)] == [3600, 3600, 3600]  # capped at an hour


async def test_feed_that_stops_answering_goes_stale_once_and_recovers(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="warnd.feeds")
    feed = env.feed("broken")
    assert (await env.poller.poll(feed))["status"] == 200  # healthy at first
    ok_at = env.clock.now()
    env.server.broken_answers = [(503, b"down for maintenance")] * 20

    def stale_warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno == logging.WARNING and "is stale" in r.getMessage()]

    # the scheduler calls poll() every interval; failures back off, and for stale_after (180 s) it is not stale
    for _ in range(3):
        env.clock.advance(feed.interval)
        await env.poller.poll(feed)
    assert env.clock.now() - ok_at == timedelta(seconds=180)
    view = (await feeds_view(env))["broken"]
    assert view["state"] == "failing" and view["stale"] is False and stale_warnings() == []
    assert (await (await env.api.get("/healthz")).json())["status"] == "ok"

    # past stale_after: one WARNING, one audit record, however many polls follow
    for _ in range(5):
        env.clock.advance(feed.interval)
        await env.poller.poll(feed)
    [warning] = stale_warnings()
    assert "broken" in warning.getMessage() and "HTTP 503" in warning.getMessage()
    stale_audit = [a for a in await env.app.store.audit_entries() if a["action"] == "feed.stale"]
    assert (
        len(stale_audit) == 1 and stale_audit[0]["target"] == "broken" and stale_audit[0]["actor"] == "warnd"
    )
    assert "503" in stale_audit[0]["detail"]["last_error"]

    resp = await env.api.get("/api/v1/feeds")
    listing = await resp.json()
    assert listing["status"] == "degraded" and "broken" in listing["stale"]
    view = {f["name"]: f for f in listing["feeds"]}["broken"]
    assert view["state"] == "stale" and view["stale"] is True
    assert at(view["last_success"]) == ok_at and at(view["stale_since"]) == ok_at + timedelta(seconds=180)
    assert view["consecutive_failures"] >= 2 and "503" in view["last_error"]
    health = await (await env.api.get("/healthz")).json()
    assert health["status"] == "degraded" and "broken" in health["feeds"]["stale"]

    # the publisher is back: the first poll after the backoff succeeds; one INFO, one audit record
    env.server.broken_answers = []
    while "skipped" in (summary := await env.poller.poll(feed)):
        env.clock.advance(feed.interval)
    assert summary["status"] == 200, summary
    recovered = [r for r in caplog.records if r.levelno == logging.INFO and "recovered" in r.getMessage()]
    assert len(recovered) == 1 and "broken" in recovered[0].getMessage()
    env.clock.advance(feed.interval)
    await env.poller.poll(feed)
    assert len([r for r in caplog.records if "recovered" in r.getMessage()]) == 1
    assert len(stale_warnings()) == 1
    actions = [a["action"] for a in await env.app.store.audit_entries() if a["action"].startswith("feed.")]
    assert actions == ["feed.recovered", "feed.stale"]  # newest first
    view = (await feeds_view(env))["broken"]
    assert view["state"] == "ok" and view["stale"] is False and view["consecutive_failures"] == 0
    assert "broken" not in (await (await env.api.get("/healthz")).json())["feeds"]["stale"]


async def test_stale_is_counted_from_start_when_the_last_success_is_older(env: Env) -> None:
    """After a restart, the time warnd itself was down does not count against the publisher."""
    feed = env.feed("fat")
    await env.poller.poll(feed)
    env.clock.advance(24 * 3600)  # warnd was stopped for a day
    restarted = FeedPoller(
        store=env.app.store, pipeline=env.app.pipeline, clock=env.clock, started_at=env.clock.now()
    )
    try:
        [health] = await restarted.check_health([feed])
        assert health["stale"] is False and health["state"] == "ok"
        env.clock.advance(feed.stale_seconds + 1)
        [health] = await restarted.check_health([feed])
        assert health["stale"] is True
    finally:
        await restarted.close()


async def test_disabled_feed_is_never_stale(env: Env) -> None:
    feed = env.feed("fat").model_copy(update={"enabled": False})
    env.clock.advance(3600)
    [health] = await env.poller.check_health([feed])
    assert health["state"] == "disabled" and health["stale"] is False and health["next_try"] is None
