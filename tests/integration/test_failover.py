"""Health and failover: circuit breakers open on a failing SMS gateway and red warnings go out through the
backup gateway; a half-open probe closes the breaker; an offline loudspeaker's village hears it from its grid
workers by SMS. Real SQLite, real local HTTP gateways, a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import cap_cn, edit_yaml
from support.gateway import FakeSmsGateway

import channels
from tests.conftest import AUTH
from warnd.api import make_web_app
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config

GALE_RED = {"identifier": "gale-red-1", "event_code": "11B06", "event": "大风", "severity": "Red"}


def sms_channel(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "adapter": "sms_http",
        "url": url,
        "signature": "梁平区应急管理局",
        "template": "sms",
        "max_recipients_per_request": 100,
        "max_attempts": 3,
        "backoff_initial": 2,
        "timeout": 5,
        **extra,
    }


@pytest.fixture
async def gateways() -> AsyncIterator[tuple[FakeSmsGateway, FakeSmsGateway]]:
    async with FakeSmsGateway() as a, FakeSmsGateway() as b:
        yield a, b


@pytest.fixture
async def two_gateways_app(
    config_dir: Path, gateways: tuple[FakeSmsGateway, FakeSmsGateway], clock: FakeClock
) -> AsyncIterator[App]:
    a, b = gateways

    def change(data: dict[str, Any]) -> None:
        data["channels"]["sms"] = sms_channel(a.url, breaker={"failures": 2, "open_for": 60})
        data["channels"]["sms_backup"] = sms_channel(b.url)

    edit_yaml(config_dir / "channels.yaml", change)
    # no one-tap links: the leaders' 叫应 texts are then one text, and the first batch three requests
    edit_yaml(config_dir / "warnd.yaml", lambda d: d["feedback"].update(public_url=None))
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    yield app
    await app.close()


async def rows(app: App, alert_id: int, channel: str) -> list[dict[str, Any]]:
    return await app.store.deliveries_page({"alert_id": alert_id, "channel": channel}, limit=10_000)


async def test_gateway_down_red_warning_reaches_everyone_through_the_backup(
    two_gateways_app: App, gateways: tuple[FakeSmsGateway, FakeSmsGateway], clock: FakeClock
) -> None:
    app, (a, b) = two_gateways_app, gateways
    # the three requests of the first batch (leaders' 叫应 text, the public's, English) fail: the breaker opens
    a.fail_next(3, status=503)
    [red] = await app.pipeline.ingest(cap_cn(), source="t")
    await app.dispatcher.drain()

    originals = await rows(app, red.alert_id, "sms")
    alternates = await rows(app, red.alert_id, "sms_backup")
    assert len(originals) == 24 and {r["status"] for r in originals} == {"failed_over"}
    assert all(
        "已改由 sms_backup 发送" in r["reason"] and "sent by sms_backup" in r["reason"] for r in originals
    )
    assert all("503" in r["error"] for r in originals)
    # nobody lost, nobody twice: one alternate per original, every one sent, by gateway B only
    assert len(alternates) == 24 and {r["status"] for r in alternates} == {"sent"}
    assert {r["phone"] for r in alternates} == {r["phone"] for r in originals}
    assert a.accepted_keys == {} and len(b.accepted_keys) == 24
    assert {k.split(">fo:")[1] for k in b.accepted_keys} == {"sms_backup"}
    assert all(r["reason"].startswith("改道发送：sms 不可用 (failover from sms #") for r in alternates)
    assert all("circuit open since" in r["reason"] for r in alternates)
    assert {s.signature for s in b.sent} == {"梁平区应急管理局"}
    # the delivery log says why: the original's last event names its alternate
    events = await app.store.delivery_events([originals[0]["id"]])
    last = events[originals[0]["id"]][-1]
    assert last["kind"] == "failed_over" and last["detail"]["alternates"][0]["channel"] == "sms_backup"
    # failing over again (a crash before the original's status landed) adds nothing
    assert await app.dispatcher.drain() == 0
    assert len(await rows(app, red.alert_id, "sms_backup")) == 24

    # health: the breaker is open, the API and /healthz say so
    async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0), headers=AUTH) as client:
        health = await (await client.get("/api/v1/channels")).json()
        assert health["status"] == "degraded" and health["open"] == ["sms"]
        sms = next(c for c in health["channels"] if c["name"] == "sms")
        assert sms["state"] == "open" and sms["failures"] == 3 and "503" in sms["last_error"]
        assert sms["opened_at"] and sms["retry_at"]
        healthz = await (await client.get("/healthz")).json()
        assert healthz["status"] == "degraded" and healthz["breakers"]["open"] == ["sms"]

    # after open_for the breaker is half-open: one probe goes to A, succeeds, closes it; the rest follow on A
    clock.advance(61)
    [gale] = await app.pipeline.ingest(cap_cn(**GALE_RED), source="t")  # another family: not inhibited
    await app.dispatcher.drain()
    assert app.dispatcher.health.channel("sms").state == "closed"
    sent = await rows(app, gale.alert_id, "sms")
    assert len(sent) == 24 and {r["status"] for r in sent} == {"sent"}
    assert {r["attempts"] for r in sent} == {1}  # waiting for the probe is not an attempt
    assert await rows(app, gale.alert_id, "sms_backup") == []
    assert len(a.accepted_keys) == 24 and len(b.accepted_keys) == 24


async def test_a_blue_warning_without_failover_waits_for_the_breaker(
    two_gateways_app: App, gateways: tuple[FakeSmsGateway, FakeSmsGateway], clock: FakeClock
) -> None:
    app, (a, b) = two_gateways_app, gateways
    breaker = app.dispatcher.health.channel("sms")
    breaker.failure("HTTP 503")
    breaker.failure("HTTP 503")
    assert breaker.is_open
    [blue] = await app.pipeline.ingest(cap_cn(severity="Blue"), source="t")
    await app.dispatcher.drain()
    queued = await rows(app, blue.alert_id, "sms")
    assert queued and {r["status"] for r in queued} == {"queued"} and {r["attempts"] for r in queued} == {0}
    assert a.request_count == 0 and await app.store.next_due("sms") == breaker.retry_at
    clock.advance(60)
    await app.dispatcher.drain()
    assert {r["status"] for r in await rows(app, blue.alert_id, "sms")} == {"sent"}
    assert b.request_count == 0


async def test_retries_exhausted_fail_over_and_a_bad_number_does_not(
    config_dir: Path, gateways: tuple[FakeSmsGateway, FakeSmsGateway], clock: FakeClock
) -> None:
    a, b = gateways

    def change(data: dict[str, Any]) -> None:
        # a breaker that does not open: only running out of retries sends them elsewhere
        data["channels"]["sms"] = sms_channel(a.url, breaker={"failures": 100, "min_attempts": 100})
        data["channels"]["sms_backup"] = sms_channel(b.url)

    edit_yaml(config_dir / "channels.yaml", change)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    try:
        a.fail_phones("13800230043")  # invalid number: permanent, not the provider's fault
        a.fail_next(100, status=500)
        [red] = await app.pipeline.ingest(cap_cn(), source="t")
        for _ in range(5):
            await app.dispatcher.drain()
            clock.advance(60)
        originals = {r["recipient"]: r for r in await rows(app, red.alert_id, "sms")}
        assert {r["status"] for r in originals.values()} == {"failed_over"}
        assert all("gave up after 3 attempts" in r["error"] for r in originals.values())
        assert len(b.accepted_keys) == 24
        # the same number at a working gateway: failed, not failed over
        a._failures.clear()
        b.fail_phones("13800230043")
        [gale] = await app.pipeline.ingest(cap_cn(**GALE_RED), source="t")
        await app.dispatcher.drain()
        gale_rows = {r["recipient"]: r for r in await rows(app, gale.alert_id, "sms")}
        a_failed = {n for n, r in gale_rows.items() if r["status"] == "failed"}
        assert a_failed == {"谢芳"} and "invalid number" in gale_rows["谢芳"]["error"]
        assert await rows(app, gale.alert_id, "sms_backup") == []
    finally:
        await app.close()


# --- a village loudspeaker offline -> the village's grid workers by SMS -------------------------------------

WANNIAN, CHUANXI, LONGXI = "LS-500228101201-01", "LS-500228102201-01", "LS-500228001201-01"


@pytest.fixture
async def loudspeaker_app(
    config_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[App]:
    monkeypatch.setitem(channels.REGISTRY, "offline_terminals", "tests.support.offline:OfflineTerminals")

    def change(data: dict[str, Any]) -> None:
        data["channels"]["loudspeaker"] = {
            "adapter": "offline_terminals",
            "template": "loudspeaker",
            "breaker": {"open_for": 300},
        }

    def grid_workers_not_by_sms(data: dict[str, Any]) -> None:
        # so the failover SMS is the grid workers' only one (with the example rules they already have it)
        for rule in data["rules"]:
            if rule["name"] in ("rainstorm-red", "gale-red"):
                rule["targets"] = [
                    t
                    for t in rule["targets"]
                    if not (t["groups"] == ["grid_workers"] and t["channels"] == ["sms"])
                ]

    edit_yaml(config_dir / "channels.yaml", change)
    edit_yaml(config_dir / "rules.yaml", grid_workers_not_by_sms)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    yield app
    await app.close()


async def test_offline_loudspeaker_fails_over_to_the_villages_grid_workers(
    loudspeaker_app: App, clock: FakeClock
) -> None:
    app = loudspeaker_app
    terminals = app.channels["loudspeaker"]
    terminals.offline = {WANNIAN, CHUANXI}  # type: ignore[attr-defined]
    [red] = await app.pipeline.ingest(cap_cn(), source="t")
    await app.dispatcher.drain()

    speakers = {r["recipient"]: r for r in await rows(app, red.alert_id, "loudspeaker")}
    assert speakers["龙溪村大喇叭"]["status"] == "sent"
    for name in ("万年村大喇叭", "川西村大喇叭"):
        assert speakers[name]["status"] == "failed_over"
        assert speakers[name]["error"] == "terminal offline (test)"
        assert "已改由本村网格员 1 人经 sms 转告" in speakers[name]["reason"]
    sms = {r["recipient"]: r for r in await rows(app, red.alert_id, "sms")}
    # grid workers of 万年村 and 川西村 (not 黄丽 of 龙溪 township's other village, not 冯志刚 elsewhere)
    relayed = {n: r for n, r in sms.items() if r["reason"]}
    assert set(relayed) == {"吴强", "郑小燕"}
    assert {r["area_code"] for r in relayed.values()} == {"500228101201", "500228102201"}
    assert all(
        r["status"] == "sent" and "failover from loudspeaker to" in r["reason"] for r in relayed.values()
    )
    assert "万年村大喇叭" in relayed["吴强"]["reason"]
    assert sms["吴强"]["body"] == sms["谢芳"]["body"]  # the same SMS the public gets, rendered for sms

    # the offline terminals' breakers are open: the next warning fails over without trying them
    assert app.dispatcher.health.open_breakers() == [f"loudspeaker/{WANNIAN}", f"loudspeaker/{CHUANXI}"]
    calls = len(terminals.calls)  # type: ignore[attr-defined]
    [gale] = await app.pipeline.ingest(cap_cn(**GALE_RED), source="t")
    await app.dispatcher.drain()
    assert terminals.calls[calls:] == [LONGXI]  # type: ignore[attr-defined]
    gale_speakers = {r["recipient"]: r["status"] for r in await rows(app, gale.alert_id, "loudspeaker")}
    assert gale_speakers == {
        "龙溪村大喇叭": "sent",
        "万年村大喇叭": "failed_over",
        "川西村大喇叭": "failed_over",
    }
    assert {r["recipient"] for r in await rows(app, gale.alert_id, "sms") if r["reason"]} == {
        "吴强",
        "郑小燕",
    }

    # back online: after open_for a probe goes through and the breaker closes
    terminals.offline = set()  # type: ignore[attr-defined]
    clock.advance(300)
    [heat] = await app.pipeline.ingest(
        cap_cn(identifier="heat-red-1", event_code="11B09", event="高温", severity="Red"), source="t"
    )
    await app.dispatcher.drain()
    assert {r["status"] for r in await rows(app, heat.alert_id, "loudspeaker")} == {"sent"}
    assert app.dispatcher.health.open_breakers() == []


async def test_grid_workers_who_already_have_it_are_not_sent_twice(
    config_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(channels.REGISTRY, "offline_terminals", "tests.support.offline:OfflineTerminals")
    edit_yaml(
        config_dir / "channels.yaml",
        lambda d: d["channels"].update(
            loudspeaker={"adapter": "offline_terminals", "template": "loudspeaker"}
        ),
    )
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    try:
        app.channels["loudspeaker"].offline = {WANNIAN}  # type: ignore[attr-defined]
        [red] = await app.pipeline.ingest(cap_cn(), source="t")
        await app.dispatcher.drain()
        [speaker] = [
            r for r in await rows(app, red.alert_id, "loudspeaker") if r["recipient"] == "万年村大喇叭"
        ]
        assert speaker["status"] == "failed_over" and "新发 0" in speaker["reason"]
        sms = [r for r in await rows(app, red.alert_id, "sms") if r["recipient"] == "吴强"]
        assert len(sms) == 1 and sms[0]["status"] == "sent" and sms[0]["reason"] is None
    finally:
        await app.close()
