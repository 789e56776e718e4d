"""Recommendations from the delivery logs on a real SQLite store: each kind appears on data made to trigger it
and not on clean data; the learned channel order is written only when config enables it (docs/reports.md).

Blue rainstorm warnings go by SMS only, without 叫应, to 12 people (township leaders, duty persons, grid
workers): the clean baseline. Deliveries go through the real pipeline, dispatcher and fake SMS gateway."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import AUTH, cap_cn, edit_yaml
from tests.support.gateway import FakeSmsGateway
from tests.support.reports import (
    add_notice,
    learned_orders,
    postgres_refusals,
    receipt,
    rows_by_name,
    use_sms_gateway,
)
from warnd import sms
from warnd.api import make_web_app
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config

# 31 characters: the blue SMS is 103 characters with the signature (2 segments, 33 over one): nothing to cut
CLEAN = "预计未来3小时梁平区大部将出现100毫米以上降雨，请注意防范。"
# 6 characters: the blue SMS is 78 characters (2 segments; 8 fewer would be one)
ALMOST_ONE = "请注意防范。"
# 18 characters: the yellow SMS is 88 characters without its 叫应 request (2 segments, 18 over one: nothing to
# cut); each duty person's own copy with the reply keyword and their link is 140 (3 segments; 6 fewer: 2)
ALMOST_TWO = "预计未来3小时有强降雨，请注意防范。"


async def make_app(config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock, **feedback: Any) -> App:
    use_sms_gateway(config_dir, gateway.url)
    if feedback:
        edit_yaml(config_dir / "warnd.yaml", lambda d: d.setdefault("feedback", {}).update(feedback))
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    return app


@pytest.fixture
async def oapp(config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock) -> AsyncIterator[App]:
    app = await make_app(config_dir, gateway, clock)
    yield app
    await app.close()


async def blue(
    app: App,
    clock: FakeClock,
    n: int,
    *,
    description: str = CLEAN,
    delays: dict[str, int] | None = None,
    silent: tuple[str, ...] = (),
) -> int:
    """Blue warning number ``n`` (its own chain): sent, then a DELIVRD receipt for everyone sent (after
    ``delays[name]`` seconds, default 10 + their order), none for ``silent``. The clock ends 1000 s later (or
    after the last receipt) and the warning is over (expired): the next one is not held back by it."""
    sent = f"2024-07-12 0{5 + n}:30:00+08:00"
    [result] = await app.pipeline.ingest(
        cap_cn(identifier=f"blue-{n}", severity="Blue", description=description, sent=sent), source="t"
    )
    assert result.alert_id is not None
    await app.dispatcher.drain()
    t0 = clock.now()
    rows = await rows_by_name(app, result.alert_id, "sms")
    assert len(rows) == 12
    plan = {
        name: (delays or {}).get(name, 10 + i)
        for i, name in enumerate(sorted(rows))
        if rows[name]["status"] == "sent" and name not in silent
    }
    for name, delay in sorted(plan.items(), key=lambda item: item[1]):
        clock.advance((t0 + timedelta(seconds=delay) - clock.now()).total_seconds())
        assert await receipt(app, rows[name], "DELIVRD") == "matched"
    clock.advance((t0 + timedelta(seconds=max(1000, *plan.values(), 0) + 1) - clock.now()).total_seconds())
    await app.store.set_alert(result.alert_id, state="expired")
    return result.alert_id


def kinds(recs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in recs if r["kind"] == kind]


async def recommend(app: App, **kw: Any) -> list[dict[str, Any]]:
    recs = await app.reporter.recommendations(since=app.reporter.default_since(), **kw)
    assert recs is not None
    for r in recs:
        assert set(r) == {"kind", "subject", "message", "evidence", "action"}
        json.dumps(r, ensure_ascii=False)  # JSON-ready
    return recs


async def test_clean_data_gives_no_recommendations(oapp: App, clock: FakeClock) -> None:
    first = await blue(oapp, clock, 1)
    second = await blue(oapp, clock, 2)
    assert await oapp.reporter.keep_ended() == [first, second]  # kept, every village at 100 %
    for alert_id in (first, second):
        kept = await oapp.reporter.kept_one(alert_id)
        assert kept is not None and kept["total"]["coverage"] == 1.0 and kept["total"]["targeted"] == 12
        assert kept["recommendations"] == []
    assert await recommend(oapp) == []
    assert await learned_orders(oapp) == {}


async def test_wrong_number_after_failures_in_two_chains(
    oapp: App, clock: FakeClock, gateway: FakeSmsGateway
) -> None:
    # 吴强 fails in chains 1 and 2 (and never since); 郑小燕 fails in 1 and 2 but chain 3 reaches her again;
    # 冯志刚 fails only in chain 1
    gateway.fail_phones("13800230032", "13800230033", "13800230034")
    c1 = await blue(oapp, clock, 1)
    gateway.failing_phones.discard("13800230034")
    c2 = await blue(oapp, clock, 2)
    gateway.failing_phones.discard("13800230033")
    c3 = await blue(oapp, clock, 3)
    recs = await recommend(oapp)
    [wrong] = kinds(recs, "wrong_number")
    assert wrong["evidence"]["name"] == "吴强" and wrong["evidence"]["alerts"] == [c1, c2, c3]
    assert wrong["evidence"]["phone"] == "138****0032" and "13800230032" not in json.dumps(wrong)
    assert wrong["evidence"]["failures"] == 3 and wrong["action"] == "verify_phone"  # 2 chains are enough
    assert "吴强" in wrong["subject"] and "号码" in wrong["message"]
    # about one chain: only if the person was in it
    [about] = kinds(await recommend(oapp, alert_id=c2), "wrong_number")
    assert about["evidence"]["name"] == "吴强"


@pytest.mark.file_loudspeaker
async def test_terminal_maintenance_after_two_failed_plays(oapp: App, clock: FakeClock) -> None:
    for n in (1, 2):
        [result] = await oapp.pipeline.ingest(
            cap_cn(identifier=f"red-{n}", sent=f"2024-07-12 0{5 + n}:30:00+08:00"), source="t"
        )
        assert result.alert_id is not None
        await oapp.dispatcher.drain()
        speakers = await rows_by_name(oapp, result.alert_id, "loudspeaker")
        assert await receipt(oapp, speakers["川西村大喇叭"], "failed", kind="loudspeaker") == "matched"
        if n == 1:  # 万年村's fails once only
            assert await receipt(oapp, speakers["万年村大喇叭"], "4", kind="loudspeaker") == "matched"
        clock.advance(60)
    recs = await recommend(oapp)
    [terminal] = kinds(recs, "terminal_maintenance")
    assert terminal["evidence"]["terminal_id"] == "LS-500228102201-01"
    assert terminal["evidence"]["failed"] == 2 and terminal["action"] == "inspect_terminal"
    assert "川西村大喇叭" in terminal["subject"] and "检查" in terminal["message"]


async def test_slow_provider_in_one_township(oapp: App, clock: FakeClock) -> None:
    # 屏锦镇 (500228101): 陈晓红, 李秀英, 张永福, 吴强 in each chain; one of its 8 receipts takes 20 minutes
    await blue(oapp, clock, 1, delays={"李秀英": 1200})
    await blue(oapp, clock, 2)
    recs = await recommend(oapp)
    [slow] = kinds(recs, "slow_provider")
    assert slow["evidence"]["channel"] == "sms" and slow["evidence"]["township"] == "500228101000"
    assert slow["evidence"]["samples"] == 8 and slow["evidence"]["p90"] == 1200
    assert slow["evidence"]["channel_p90"] < 600 and "屏锦镇" in slow["subject"]
    assert slow["action"] == "review_provider"


async def test_not_slow_below_300_seconds(oapp: App, clock: FakeClock) -> None:
    await blue(oapp, clock, 1, delays={"李秀英": 250})
    await blue(oapp, clock, 2)
    assert kinds(await recommend(oapp), "slow_provider") == []


async def test_extra_segment_says_how_much_to_cut(oapp: App, clock: FakeClock) -> None:
    alert_id = await blue(oapp, clock, 1, description=ALMOST_ONE)
    rows = await rows_by_name(oapp, alert_id, "sms")
    body = next(iter(rows.values()))
    [text] = {r["message_id"] for r in rows.values()}
    recs = await recommend(oapp)
    [extra] = kinds(recs, "extra_segment")
    async with oapp.store.read() as conn:
        from sqlalchemy import select

        from warnd.schema import messages

        stored = (await conn.execute(select(messages).where(messages.c.id == text))).one()
    # ground truth: the signed body's length, the 70/67 rule
    n = len(stored.body)
    assert stored.body.startswith("【梁平区应急管理局】") and n == 78 and body["segments"] == 2
    assert extra["evidence"]["length"] == n and extra["evidence"]["cut"] == n - 70 == 8
    assert extra["evidence"]["deliveries"] == 12 and extra["evidence"]["sms_saved"] == 12
    assert "删去 8 个字" in extra["message"] and "12 条" in extra["message"]
    assert sms.segments(stored.body[: n - 8]) == 1


async def test_extra_segment_once_for_every_personal_copy(oapp: App, clock: FakeClock) -> None:
    """Each of the 8 people asked for 叫应 gets their own copy (their own link) of one text: one template to
    shorten, so one recommendation counting all their SMS, not one per copy."""
    [result] = await oapp.pipeline.ingest(
        cap_cn(identifier="yellow-1", severity="Yellow", description=ALMOST_TWO), source="t"
    )
    assert result.alert_id is not None
    await oapp.dispatcher.drain()
    rows = await rows_by_name(oapp, result.alert_id, "sms")
    asked = [r for r in rows.values() if r["ack_required"]]
    assert len(asked) == 8 and len({r["message_id"] for r in asked}) == 8  # personal copies
    async with postgres_refusals(oapp.store) as refused:
        recs = await recommend(oapp)
        about = await recommend(oapp, alert_id=result.alert_id)
    assert refused == []  # no GROUP BY on the json column messages.data (PostgreSQL refuses it)
    [extra] = kinds(recs, "extra_segment")
    assert kinds(about, "extra_segment") == [extra]
    ev = extra["evidence"]
    assert sorted(ev["message_ids"]) == sorted(r["message_id"] for r in asked)
    assert (ev["root_id"], ev["alert_ids"], ev["language"]) == (result.alert_id, [result.alert_id], "zh-CN")
    assert (ev["length"], ev["segments"], ev["cut"]) == (140, 3, 6)
    assert ev["deliveries"] == ev["sms_saved"] == 8
    assert "等 8 条" in extra["subject"] and "按 8 次发送" in extra["message"]


async def test_extra_segment_only_from_warning_deliveries(oapp: App, clock: FakeClock) -> None:
    """A notice to a superior (not the warning template) one segment too long is not the operator's to
    shorten: no recommendation."""
    alert_id = await blue(oapp, clock, 1)  # its own SMS: nothing to cut
    row = next(iter((await rows_by_name(oapp, alert_id, "sms")).values()))
    notice = "【梁平区应急管理局】" + "预" * 65  # 75 characters: 2 segments, 5 over one
    await add_notice(oapp, row, notice, purpose="notice:1")
    async with postgres_refusals(oapp.store) as refused:
        recs = await recommend(oapp)
        assert await oapp.reporter.keep_ended() == [alert_id]
    assert refused == []
    assert kinds(recs, "extra_segment") == []
    kept = await oapp.reporter.kept_one(alert_id)
    assert kept is not None and kinds(kept["recommendations"], "extra_segment") == []


async def test_recommendations_since_a_local_time(oapp: App, clock: FakeClock) -> None:
    """An ISO ``since`` without an offset is local time (config.timezone, Asia/Shanghai) like everywhere else."""
    async with TestClient(TestServer(make_web_app(oapp), host="127.0.0.1", port=0), headers=AUTH) as client:
        resp = await client.get("/api/v1/recommendations", params={"since": "2024-07-12T05:30:00"})
        assert resp.status == 200
        assert (await resp.json())["since"] == "2024-07-12T05:30:00+08:00"
        resp = await client.get("/api/v1/recommendations", params={"since": "2024-07-12T05:30:00+00:00"})
        assert (await resp.json())["since"] == "2024-07-12T13:30:00+08:00"


async def test_low_coverage_from_kept_reports_of_real_alerts_only(
    oapp: App, clock: FakeClock, gateway: FakeSmsGateway
) -> None:
    real = await blue(oapp, clock, 1, silent=("李秀英", "吴强"))  # 万年村: 0 of 2
    [drill] = await oapp.pipeline.ingest(
        cap_cn(identifier="drill-1", severity="Blue", status="Exercise", sent="2024-07-12 07:30:00+08:00"),
        source="t",
    )
    assert drill.alert_id is not None
    await oapp.dispatcher.drain()  # the drill: sent, no receipts: every village at 0 %
    await oapp.store.set_alert(drill.alert_id, state="expired")
    assert sorted(await oapp.reporter.keep_ended()) == sorted([real, drill.alert_id])
    recs = await recommend(oapp)
    low = kinds(recs, "low_coverage")
    assert [r["evidence"]["area_code"] for r in low] == ["500228101201"]
    assert low[0]["subject"] == "万年村" and low[0]["evidence"]["worst"] == 0.0
    assert [a["root_id"] for a in low[0]["evidence"]["alerts"]] == [real]
    kept = await oapp.reporter.kept_one(real)
    assert (
        kept is not None and kinds(kept["recommendations"], "low_coverage") == []
    )  # computed before it was kept
    async with TestClient(TestServer(make_web_app(oapp), host="127.0.0.1", port=0), headers=AUTH) as client:
        resp = await client.get("/api/v1/recommendations", params={"since": "30d"})
        assert resp.status == 200
        data = await resp.json()
        assert [r["kind"] for r in data["recommendations"]] == ["low_coverage"] and data["count"] == 1
        resp = await client.get("/api/v1/recommendations", params={"alert": str(real)})
        assert [r["kind"] for r in (await resp.json())["recommendations"]] == ["low_coverage"]
        assert (await client.get("/api/v1/recommendations", params={"alert": "999"})).status == 404
        assert (await client.get("/api/v1/recommendations", params={"since": "soon"})).status == 400


async def _push_history(app: App, clock: FakeClock) -> int:
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    assert result.alert_id is not None
    await app.dispatcher.drain()
    rows = await rows_by_name(app, result.alert_id, "sms")
    clock.advance(120)  # SMS receipts 2 minutes later; push (file adapter: sent is enough) was at once
    for row in rows.values():
        if row["status"] == "sent":
            await receipt(app, row, "DELIVRD")
    return result.alert_id


@pytest.mark.file_push
@pytest.mark.file_loudspeaker
@pytest.mark.parametrize("learn", [False, True])
async def test_channel_order_learned_only_when_enabled(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock, learn: bool
) -> None:
    app = await make_app(config_dir, gateway, clock, learn_channel_order=learn)
    try:
        alert_id = await _push_history(app, clock)
        shown = kinds(await recommend(app), "channel_order")
        # the four people with a push subscription have sms and push: push reached them faster
        assert {r["evidence"]["name"] for r in shown} == {"王大山", "黄丽", "罗文军", "唐建华"}
        assert all(r["evidence"]["learned"] == ["push", "sms"] for r in shown)
        assert all(r["evidence"]["configured"] == ["sms", "push"] for r in shown)
        assert all(r["evidence"]["channels"]["push"]["success_rate"] == 1.0 for r in shown)
        assert await learned_orders(app) == {}  # the API's view never writes
        await app.store.set_alert(alert_id, state="cancelled")
        assert await app.reporter.keep_ended() == [alert_id]
        kept = await app.reporter.kept_one(alert_id)
        assert kept is not None
        applied = kinds(kept["recommendations"], "channel_order")
        assert len(applied) == 4
        prefs = await learned_orders(app)
        if learn:
            assert len(prefs) == 4 and all(order == ["push", "sms"] for order in prefs.values())
            assert all(r["evidence"]["applied"] and r["action"] == "channel_order_learned" for r in applied)
        else:
            assert prefs == {}
            assert all(
                not r["evidence"]["applied"] and r["action"] == "review_channel_order" for r in applied
            )
    finally:
        await app.close()
