"""The escalation ladder on a real SQLite file with a real fake SMS gateway and a fake clock: an undelivered
person climbs resend → superior → door-knock on schedule; an acknowledgement, a late receipt or a cancelled
alert ends the ladder; two sweeps (two App objects on one database, or two concurrent sweeps) never climb a rung
twice or send a notice twice; a household is knocked once (docs/escalation.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cap_cn, edit_yaml
from tests.support.escalation import (
    CHEN,
    CHEN_XIAOHONG_PHONE,
    LI_XIUYING_PHONE,
    LIU,
    PUBLIC_URL,
    WANG,
    WANNIAN,
    WU_QIANG_PHONE,
    ZHOU_JIANGUO_PHONE,
    TickingClock,
    deliver_all_except,
    edit_subscriber,
    ladder_config,
    receipt,
    resync,
    sms_of,
)
from tests.support.gateway import FakeSmsGateway
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.store.acks import AckStore

STEP = 5 * 60


async def start_app(config_dir: Path, clock: FakeClock) -> App:
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    return app


@pytest.fixture
async def app(config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock) -> AsyncIterator[App]:
    ladder_config(config_dir, gateway.url)
    application = await start_app(config_dir, clock)
    yield application
    await application.close()


async def issue(app: App, *undelivered: str) -> int:
    """The red rainstorm goes out; everyone's SMS is confirmed delivered except ``undelivered``'s."""
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    assert result.alert_id is not None
    await app.dispatcher.drain()
    assert await deliver_all_except(app, result.alert_id, *undelivered) > 20
    return result.alert_id


async def ladder_of(app: App, alert_id: int, name: str) -> dict[str, Any]:
    ladders = await app.escalator.ladders(alert_id)
    [ladder] = [row for row in ladders if row["name"] == name]
    return ladder


def steps(ladder: dict[str, Any]) -> list[str]:
    return [e["step"] for e in ladder["events"]]


def notices_to(gateway: FakeSmsGateway, phone: str) -> list[str]:
    return [
        s.content or ""
        for s in gateway.sent
        if s.phone == phone and (":notice:" in s.key or ":doorknock:" in s.key)
    ]


async def test_undelivered_person_climbs_resend_superior_doorknock(
    app: App, gateway: FakeSmsGateway, clock: FakeClock, config_dir: Path
) -> None:
    alert_id = await issue(app, CHEN)
    # before the delivery deadline: nothing
    clock.advance(9 * 60)
    assert await app.escalator.sweep() == {}

    # 10 minutes: the ladder opens and the first rung (resend) runs at once: push cannot reach her (no app), so
    # the warning is played again on 万年村's loudspeaker
    clock.advance(60)
    assert await app.escalator.sweep() == {"opened": 1, "resend": 1, "outbox": 1}
    ladder = await ladder_of(app, alert_id, CHEN)
    assert ladder["reason"] == "undelivered" and ladder["state"] == "open" and ladder["step"] == 1
    assert steps(ladder) == ["opened", "resend"]
    resend = ladder["events"][1]
    assert resend["detail"]["channel"] == "loudspeaker" and resend["detail"]["tried"] == [
        "push：无法送达此人"
    ]
    assert "经 loudspeaker 补发" in resend["reason"]
    await app.dispatcher.drain()
    [played] = await app.store.deliveries_page({"alert_id": alert_id, "channel": "loudspeaker"}, limit=10)
    assert played["recipient"] == "万年村大喇叭" and played["status"] == "sent"
    assert played["reason"].startswith("叫应升级：万年村陈玉兰未收到预警，经本村 loudspeaker 补播")
    lines = (
        (config_dir.parent / "data" / "outbox" / "loudspeaker.jsonl").read_text(encoding="utf-8").splitlines()
    )
    assert [json.loads(line)["address"] for line in lines] == ["LS-500228101201-01"]

    # the next rung waits step_after: an early sweep does nothing
    clock.advance(STEP - 1)
    assert await app.escalator.sweep() == {}
    # 15 minutes: her registered superior, 李秀英, is told by SMS — with her full number, to call her
    clock.advance(1)
    assert await app.escalator.sweep() == {"superior": 1, "outbox": 1}
    await app.dispatcher.drain()
    [notice] = notices_to(gateway, LI_XIUYING_PHONE)
    assert notice == (
        "叫应提醒：万年村社会公众陈玉兰（13800230049）未收到暴雨红色预警（梁平区气象台 7月12日5时30分发布），"
        "请立即电话联系并督促落实。"
    )
    ladder = await ladder_of(app, alert_id, CHEN)
    assert steps(ladder) == ["opened", "resend", "superior"]
    assert ladder["events"][2]["reason"].startswith("已告知登记的上级李秀英：陈玉兰未收到预警")

    # 20 minutes: door-knock: her household goes on 万年村's list and its grid worker 吴强 gets the task
    clock.advance(STEP)
    assert await app.escalator.sweep() == {"doorknock": 1, "outbox": 1}
    await app.dispatcher.drain()
    [task] = notices_to(gateway, WU_QIANG_PHONE)
    assert task.startswith(
        "敲门任务：暴雨红色预警，万年村有1户未收到或未确认（含独居老人1户），请立即入户通知并登记："
        f"{PUBLIC_URL}/k/"
    )
    listing = await app.escalator.doorknock_list(alert_id)
    assert listing is not None
    [village] = listing["villages"]
    assert village["area_code"] == WANNIAN and village["open"] == 1
    [household] = village["households"]
    assert household["household"] == "wn-3-12" and household["vulnerable"] == ["elderly_alone"]
    assert household["members"][0]["reason"] == "未收到预警（送达期限已过）"

    # 25 minutes: no rung left
    clock.advance(STEP)
    assert await app.escalator.sweep() == {"exhausted": 1}
    ladder = await ladder_of(app, alert_id, CHEN)
    assert ladder["state"] == "exhausted"
    assert steps(ladder) == ["opened", "resend", "superior", "doorknock", "exhausted"]
    assert all(e["reason"] for e in ladder["events"])
    clock.advance(STEP)
    assert await app.escalator.sweep() == {}
    # every notice is an outbox row of its own purpose; none of them is the warning
    keys = sorted(k for k in gateway.accepted_keys if ":notice:" in k or ":doorknock:" in k)
    assert (
        len(keys) == 2
        and keys[0].endswith(f":sms:doorknock:{WANNIAN}:1")
        and keys[1].endswith(":sms:notice:1")
    )


async def test_acknowledgement_stops_the_ladder(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    ladder_config(config_dir, gateway.url, ack=True)
    app = await start_app(config_dir, clock)
    try:
        alert_id = await issue(app)  # everyone's SMS is delivered; leaders and duty persons must also answer
        acks = AckStore(app.store)
        li = await app.escalator.db.person_by_phone(LI_XIUYING_PHONE)
        assert li is not None
        for row in await app.store.deliveries_page({"alert_id": alert_id}, limit=1000):
            if row["ack_required"] and row["recipient"] != "李秀英":
                person = await app.escalator.db.person_by_phone(row["phone"])
                assert person is not None
                await acks.record(
                    alert_id=alert_id,
                    recipient_id=person["id"],
                    at=clock.now(),
                    channel="reply",
                    recorded_by="t",
                )
        clock.advance(5 * 60)  # 李秀英's 叫应 deadline passes: she was reached but did not answer
        assert await app.escalator.sweep() == {"opened": 1, "resend": 1, "outbox": 1}
        ladder = await ladder_of(app, alert_id, "李秀英")
        assert ladder["reason"] == "unacknowledged"
        assert ladder["events"][0]["reason"].startswith("叫应期限已过，仍未确认")
        await app.dispatcher.drain()
        # she calls back: an operator records it; the next rung finds the ladder answered
        await acks.record(
            alert_id=alert_id, recipient_id=li["id"], at=clock.now(), channel="call", recorded_by="t"
        )
        clock.advance(STEP)
        assert await app.escalator.sweep() == {"resolved": 1}
        ladder = await ladder_of(app, alert_id, "李秀英")
        assert ladder["state"] == "resolved" and ladder["resolution"] == "已确认"
        assert steps(ladder) == ["opened", "resend", "resolved"]
        await app.dispatcher.drain()
        assert not [s for s in gateway.sent if ":notice:" in s.key]  # her superior was never bothered
    finally:
        await app.close()


async def test_late_delivery_receipt_resolves(app: App, gateway: FakeSmsGateway, clock: FakeClock) -> None:
    alert_id = await issue(app, CHEN)
    clock.advance(10 * 60)
    assert (await app.escalator.sweep())["resend"] == 1
    clock.advance(60)
    await receipt(app, await sms_of(app, alert_id, CHEN))  # the SMS did arrive after all
    clock.advance(STEP)
    assert await app.escalator.sweep() == {"resolved": 1}
    ladder = await ladder_of(app, alert_id, CHEN)
    assert ladder["state"] == "resolved" and ladder["resolution"] == "已送达"
    assert ladder["events"][-1]["reason"].startswith("已送达")
    await app.dispatcher.drain()
    assert not notices_to(gateway, LI_XIUYING_PHONE)


async def test_cancelled_alert_closes_the_ladder(app: App, gateway: FakeSmsGateway, clock: FakeClock) -> None:
    alert_id = await issue(app, CHEN)
    clock.advance(10 * 60)
    await app.escalator.sweep()
    cancel = cap_cn(
        identifier="50022841600000_20240712060000",
        msg_type="Cancel",
        sent="2024-07-12 06:00:00+08:00",
        references="梁平区气象台,50022841600000_20240712053000,2024-07-12T05:30:00+08:00",
    )
    [cancelled] = await app.pipeline.ingest(cancel, source="t")
    assert cancelled.outcome == "created", cancelled
    clock.advance(STEP)
    assert await app.escalator.sweep() == {"closed": 1}
    ladder = await ladder_of(app, alert_id, CHEN)
    assert ladder["state"] == "closed" and ladder["resolution"] == "预警已解除"
    assert steps(ladder) == ["opened", "resend", "closed"]
    await app.dispatcher.drain()
    assert not notices_to(gateway, LI_XIUYING_PHONE)


async def test_two_nodes_climb_each_rung_once(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    ladder_config(config_dir, gateway.url)
    one = await start_app(config_dir, clock)
    two = await start_app(config_dir, clock)  # another node on the same database file
    try:
        alert_id = await issue(one, CHEN, LIU, WANG)
        outcomes = []
        for minutes in (10, 5, 5, 5, 5):
            clock.advance(minutes * 60)
            outcomes.append(
                await asyncio.gather(
                    one.escalator.sweep(), two.escalator.sweep(), one.escalator.sweep(), two.escalator.sweep()
                )
            )
            await one.dispatcher.drain()
        assert sum(r.get("opened", 0) for batch in outcomes for r in batch) == 3
        ladders = await one.escalator.ladders(alert_id)
        assert len(ladders) == 3 and {row["state"] for row in ladders} == {"exhausted"}
        for row in ladders:
            climbed = [s for s in steps(row) if s != "opened"]
            assert steps(row)[0] == "opened" and len(climbed) == len(set(climbed)), steps(row)
        # one notice per superior and ladder, one door-knock task per list size: nothing twice
        assert all(n == 1 for n in gateway.accepted_keys.values())
        told = [s.key for s in gateway.sent if ":notice:" in s.key]
        assert len(told) == len(set(told)) == 3  # 李秀英 once for each of the three
        tasks = [s for s in gateway.sent if ":doorknock:" in s.key]
        assert sorted(s.key.rsplit(":", 1)[1] for s in tasks) == sorted(
            {s.key.rsplit(":", 1)[1] for s in tasks}
        )
        assert (
            "万年村有2户" in tasks[-1].content
        )  # 陈玉兰's household and the 刘 household (two people, one door)
        listing = await one.escalator.doorknock_list(alert_id)
        assert listing is not None and listing["total"]["households"] == 2 and listing["total"]["people"] == 3
        [village] = listing["villages"]
        assert [h["household"] for h in village["households"]] == ["wn-3-12", "wn-3-15"]  # elderly first
        assert village["households"][1]["vulnerable"] == ["pregnant"]
    finally:
        await two.close()
        await one.close()


async def test_household_member_reached_resolves(app: App, gateway: FakeSmsGateway, clock: FakeClock) -> None:
    alert_id = await issue(app, LIU)  # his wife 王春燕 got the SMS: their household was reached
    for minutes in (10, 5, 5):
        clock.advance(minutes * 60)
        await app.escalator.sweep()
        await app.dispatcher.drain()
    ladder = await ladder_of(app, alert_id, LIU)
    assert steps(ladder) == ["opened", "resend", "superior", "doorknock"]
    assert ladder["state"] == "resolved" and ladder["resolution"].startswith("同户已送达：王春燕")
    listing = await app.escalator.doorknock_list(alert_id)
    assert listing is not None and listing["villages"] == []
    assert not notices_to(gateway, WU_QIANG_PHONE)


async def test_township_leader_who_never_answers_is_called_not_knocked(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    """A township leader who does not answer: the county leader is told (by role, one level up); a township
    office has no household to knock on, so the door-knock rung is skipped with its reason and the ladder ends
    exhausted — no door-knock list entry, no grid worker bothered."""
    ladder_config(config_dir, gateway.url, ack=True)
    app = await start_app(config_dir, clock)
    try:
        alert_id = await issue(app)
        acks = AckStore(app.store)
        for row in await app.store.deliveries_page({"alert_id": alert_id}, limit=1000):
            if row["ack_required"] and row["recipient"] != "陈晓红":
                person = await app.escalator.db.person_by_phone(row["phone"])
                assert person is not None
                await acks.record(
                    alert_id=alert_id,
                    recipient_id=person["id"],
                    at=clock.now(),
                    channel="reply",
                    recorded_by="t",
                )
        clock.advance(5 * 60)
        for _ in range(3):  # opened + resend, then superior, then door-knock (skipped) → exhausted
            await app.escalator.sweep()
            await app.dispatcher.drain()
            clock.advance(STEP)
        ladder = await ladder_of(app, alert_id, "陈晓红")
        assert steps(ladder) == ["opened", "resend", "superior", "doorknock", "exhausted"]
        superior, knock = ladder["events"][2], ladder["events"][3]
        assert superior["reason"].startswith("已告知区县责任人周建国：")
        assert knock["reason"].startswith("跳过敲门：") and ladder["state"] == "exhausted"
        told = notices_to(gateway, "13800230001")
        assert len(told) == 1 and "陈晓红" in told[0] and "13800230012" in told[0]
        assert await app.escalator.db.doorknock_rows(alert_id, app.escalator.sent_is_enough) == []
    finally:
        await app.close()


async def test_drill_bothers_nobody_outside_the_drill(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    """An Exercise reaches the drill groups only — and so does its ladder: 万年村's loudspeaker, the township
    leader and the grid worker are not in the drill and are never used; the county leader, a drill member by
    explicit membership (not by role), is the superior told."""
    ladder_config(config_dir, gateway.url)

    def groups(data: dict[str, Any]) -> None:
        for name in ("grid_workers", "township_leaders", "county_leaders", "loudspeakers"):
            data["groups"][name]["drill"] = False
        data["groups"]["drill_team"] = {"label": "演练联络组", "roles": [], "drill": True, "priority": 1}

    edit_yaml(config_dir / "groups.yaml", groups)
    edit_subscriber(config_dir, "周建国", groups=["drill_team"])
    app = await start_app(config_dir, clock)
    try:
        [result] = await app.pipeline.ingest(cap_cn(status="Exercise"), source="t")
        alert_id = result.alert_id
        assert alert_id is not None
        await app.dispatcher.drain()
        assert await deliver_all_except(app, alert_id, "李秀英") == 4  # the other duty persons

        clock.advance(10 * 60)
        assert await app.escalator.sweep() == {"opened": 1, "superior": 1, "outbox": 1}
        await app.dispatcher.drain()
        ladder = await ladder_of(app, alert_id, "李秀英")
        resend, superior = ladder["events"][1], ladder["events"][2]
        assert (
            resend["detail"]["skipped"] and "loudspeaker：本村没有参加演练的终端" in resend["detail"]["tried"]
        )
        assert superior["reason"].startswith("已告知区县责任人周建国：李秀英未收到预警")
        assert not await app.store.deliveries_page({"alert_id": alert_id, "channel": "loudspeaker"}, limit=10)
        [told] = notices_to(gateway, ZHOU_JIANGUO_PHONE)
        assert told.startswith("【演练】叫应提醒：万年村村防汛责任人李秀英")

        clock.advance(STEP)
        assert await app.escalator.sweep() == {"doorknock": 1}
        ladder = await ladder_of(app, alert_id, "李秀英")
        assert ladder["events"][-1]["reason"].endswith(
            "本村没有可通知的参加演练的网格员或责任人 (put on the door-knock list)"
        )
        await app.dispatcher.drain()
        assert not notices_to(gateway, CHEN_XIAOHONG_PHONE) and not notices_to(gateway, WU_QIANG_PHONE)
        listing = await app.escalator.doorknock_list(alert_id)
        assert listing is not None and listing["villages"][0]["door_knockers"] == []
    finally:
        await app.close()


async def test_the_only_grid_worker_unreached_duty_person_knocks(
    app: App, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    """吴强 is 万年村's only grid worker and his SMS never arrives: he cannot knock on his own door, so the
    village's duty person gets the task (the level is chosen after leaving him out)."""
    alert_id = await issue(app, "吴强")
    for minutes in (10, 5, 5):
        clock.advance(minutes * 60)
        await app.escalator.sweep()
        await app.dispatcher.drain()
    ladder = await ladder_of(app, alert_id, "吴强")
    assert steps(ladder) == ["opened", "resend", "superior", "doorknock"]
    assert "通知李秀英" in ladder["events"][-1]["reason"]
    [task] = [t for t in notices_to(gateway, LI_XIUYING_PHONE) if t.startswith("敲门任务")]
    assert task.startswith("敲门任务：暴雨红色预警，万年村有1户未收到或未确认")
    assert not [t for t in notices_to(gateway, WU_QIANG_PHONE) if t.startswith("敲门任务")]


async def test_queued_warning_opens_no_ladder(app: App, gateway: FakeSmsGateway, clock: FakeClock) -> None:
    """A slow outbox: the deadline passes while the warnings still wait to be sent. Nobody is escalated — the
    dispatcher is on it; once sent, only the one whose SMS then does not arrive gets a ladder."""
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    alert_id = result.alert_id
    assert alert_id is not None
    clock.advance(10 * 60)  # nothing drained: every warning is still queued
    assert await app.escalator.sweep() == {}
    assert await app.escalator.ladders(alert_id) == []
    await app.dispatcher.drain()
    await deliver_all_except(app, alert_id, CHEN)
    clock.advance(60)
    assert (await app.escalator.sweep())["opened"] == 1
    [ladder] = await app.escalator.ladders(alert_id)
    assert ladder["name"] == CHEN and ladder["reason"] == "undelivered"


async def test_each_claim_batch_reads_the_clock(app: App, gateway: FakeSmsGateway, clock: FakeClock) -> None:
    """Work takes time: every batch is claimed (and its rungs stamped) at the time it is claimed, not at the
    time the sweep began, so no lease is born expired."""
    alert_id = await issue(app, CHEN, LIU, WANG)
    clock.advance(10 * 60)
    ticking = TickingClock(clock.now(), tick=30)
    app.escalator.clock = ticking
    app.escalator.claim_batch = 1
    assert (await app.escalator.sweep())["opened"] == 3
    ladders = await app.escalator.ladders(alert_id)
    opened = [row["events"][0]["at"] for row in ladders]
    climbed = [row["events"][1]["at"] for row in ladders]
    assert len(set(opened)) == 1 and opened[0] < climbed[0] < climbed[1] < climbed[2]
    for row, at in zip(ladders, climbed, strict=True):  # the next rung: step_after from its own claim
        assert row["due_at"] == at + timedelta(seconds=STEP)
    assert ticking.now() - opened[0] > timedelta(seconds=app.config.dispatch.lease)


async def test_a_failing_rung_backs_off_then_gives_up(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The loudspeaker replay cannot be rendered (the audio directory is a file): the rung fails. Each failure is
    an ``error`` event with its text and waits step_after; the third ends the ladder exhausted."""
    ladder_config(config_dir, gateway.url)

    def audio(data: dict[str, Any]) -> None:
        data["audio"] = {"enabled": True, "command": sys.executable}

    edit_yaml(config_dir / "warnd.yaml", audio)
    app = await start_app(config_dir, clock)
    try:
        (app.config.data_dir / "audio").write_text("not a directory", encoding="utf-8")
        alert_id = await issue(app, CHEN)
        clock.advance(10 * 60)
        with caplog.at_level(logging.WARNING, logger="warnd.escalation"):
            assert await app.escalator.sweep() == {"opened": 1, "errors": 1}
        [warning] = [r for r in caplog.records if r.name == "warnd.escalation"]
        assert warning.levelno == logging.WARNING and "climb failed (1 of 3)" in warning.getMessage()
        ladder = await ladder_of(app, alert_id, CHEN)
        assert ladder["state"] == "open" and ladder["step"] == 0 and steps(ladder) == ["opened", "error"]
        assert "FileExistsError" in ladder["events"][1]["detail"]["error"]
        assert ladder["due_at"] == clock.now() + timedelta(seconds=STEP)
        assert await app.escalator.sweep() == {}  # backed off: not retried at once
        clock.advance(STEP)
        assert await app.escalator.sweep() == {"errors": 1}
        clock.advance(STEP)
        assert await app.escalator.sweep() == {"errors": 1, "exhausted": 1}
        ladder = await ladder_of(app, alert_id, CHEN)
        assert ladder["state"] == "exhausted" and ladder["resolution"].startswith("升级步骤连续出错3次")
        assert steps(ladder) == ["opened", "error", "error", "error", "exhausted"]
        assert [e["detail"]["failures"] for e in ladder["events"][1:4]] == [1, 2, 3]
        clock.advance(STEP)
        assert await app.escalator.sweep() == {}
    finally:
        await app.close()


async def test_deactivated_recipient_ladder_closes(
    app: App, gateway: FakeSmsGateway, clock: FakeClock, config_dir: Path
) -> None:
    alert_id = await issue(app, CHEN)
    clock.advance(10 * 60)
    assert (await app.escalator.sweep())["resend"] == 1
    edit_subscriber(config_dir, CHEN, remove=True)  # she moved away: the operator takes her out
    await resync(config_dir, clock)
    clock.advance(STEP)
    assert await app.escalator.sweep() == {"closed": 1}
    ladder = await ladder_of(app, alert_id, CHEN)
    assert ladder["state"] == "closed" and ladder["resolution"] == "接收人已停用"
    assert steps(ladder) == ["opened", "resend", "closed"]
    await app.dispatcher.drain()
    assert not notices_to(gateway, LI_XIUYING_PHONE)
