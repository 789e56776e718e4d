"""The alert lifecycle and "one event per hazard" on the example district (梁平区), a real SQLite file, the file
channels and a fake clock: Updates that move or shrink the area, warnings from several agencies about one
event, Updates/Cancels that arrive before their Alert, and the 解除 note on expiry."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import cap_cn, edit_yaml

from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.pipeline import EXPIRY_SOURCE

FIRST = "50022841600000_20240712053000"
PINGJIN = "500228101000"  # 屏锦镇
LIRANG = "500228102000"  # 礼让镇
YUNLONG = "500228103000"  # 云龙镇


def areas(*codes: str) -> str:
    """Several geocodes in cap_cn's one <geocode> slot."""
    return "</geocode><geocode>".join(codes)


def from_sender(xml: bytes, sender: str) -> bytes:
    return xml.replace("梁平区气象台".encode(), sender.encode())


async def deliveries(app: App, alert_id: int) -> list[dict]:
    return await app.store.deliveries_page({"alert_id": alert_id}, limit=10_000)


def by_recipient(rows: list[dict], channel: str = "sms") -> dict[str, dict]:
    return {r["recipient"]: r for r in rows if r["channel"] == channel}


# --- Updates: per-recipient wording ------------------------------------------------------------------------


@pytest.mark.file_push  # push wording per action
async def test_update_that_moves_the_area_speaks_to_each_recipient(app: App, clock: FakeClock) -> None:
    """Orange for 屏锦镇 + 礼让镇, then upgraded to red for 屏锦镇 + 云龙镇: 屏锦镇 hears 升级, 云龙镇 (newly inside)
    gets the full warning, 礼让镇 (no longer inside) a short note naming their village."""
    [orange] = await app.pipeline.ingest(
        cap_cn(severity="Orange", geocode=areas(PINGJIN, LIRANG)), source="t"
    )
    await app.dispatcher.drain()
    had = {(r["recipient"], r["channel"]) for r in await deliveries(app, orange.alert_id)}
    assert {r["status"] for r in await deliveries(app, orange.alert_id)} == {"sent"}
    clock.advance(3600)
    [red] = await app.pipeline.ingest(
        cap_cn(
            identifier="50022841600000_20240712063000",
            msg_type="Update",
            references=FIRST,
            severity="Red",
            geocode=areas(PINGJIN, YUNLONG),
            sent="2024-07-12 06:30:00+08:00",
            description="预计未来3小时屏锦镇、云龙镇将出现100毫米以上降雨。",
        ),
        source="t",
    )
    assert red.outcome == "created"
    rows = await deliveries(app, red.alert_id)
    sms = by_recipient(rows)

    # still inside (屏锦镇, and the district office above every township): the upgrade
    for name in ("谢芳", "李秀英", "陈晓红", "周建国"):
        assert "将暴雨橙色预警信号升级为红色预警信号" in sms[name]["body"], sms[name]["body"]
    # newly inside (云龙镇): the full warning, not an upgrade of something they never had
    for name in ("邓秀兰", "冯志刚"):
        body = sms[name]["body"]
        assert "发布暴雨红色预警信号" in body and "升级" not in body and "不再" not in body, body
        assert "屏锦镇、云龙镇" in body
    assert "issued a red rainstorm warning" in sms["彭海涛"]["body"]
    # no longer inside (礼让镇): the short note, naming their own village / township
    for name, place in (("韩梅", "川西村"), ("曹玉珍", "新店村"), ("杨光辉", "礼让镇"), ("赵春梅", "川西村")):
        body = sms[name]["body"]
        assert f"您所在的{place}不再在预警范围内" in body and "升级" not in body, body
        assert (name, "sms") in had
    speaker = by_recipient(rows, "loudspeaker")
    assert (
        "不再在预警范围内" in speaker["川西村大喇叭"]["body"] and "川西村" in speaker["川西村大喇叭"]["body"]
    )
    assert "升级为红色预警信号" in speaker["万年村大喇叭"]["body"]
    assert not any(c.isdigit() for r in speaker.values() for c in r["body"])
    push = by_recipient(rows, "push")
    assert "预警升级为红色" in push["唐建华"]["title"]
    # everyone who had the orange one hears about the change, on the channels they had it on
    lirang = {
        k for k in had if k[0] in ("韩梅", "曹玉珍", "杨光辉", "赵春梅", "孙长林", "郑小燕", "川西村大喇叭")
    }
    assert lirang and lirang <= {(r["recipient"], r["channel"]) for r in rows}
    # one delivery per recipient x channel x revision; nobody outside both areas
    keys = [(r["recipient_key"], r["channel"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert not any(r["area_code"].startswith("500228001") for r in rows)
    stats = (await app.store.get_alert(red.alert_id))["fanout_stats"]
    assert stats["no_longer_applies"] == len(lirang) and stats["newly_inside"] == 3  # 冯志刚, 邓秀兰, 彭海涛


@pytest.mark.file_push  # push wording per action
async def test_update_that_shrinks_the_area(app: App, clock: FakeClock) -> None:
    """Same colour, smaller area: 更新 for those still inside, the short note for the rest."""
    [orange] = await app.pipeline.ingest(cap_cn(severity="Orange"), source="t")
    await app.dispatcher.drain()
    clock.advance(1800)
    [update] = await app.pipeline.ingest(
        cap_cn(
            identifier="50022841600000_20240712060000",
            msg_type="Update",
            references=FIRST,
            severity="Orange",
            geocode=PINGJIN,
            sent="2024-07-12 06:00:00+08:00",
            description="暴雨区域收缩至屏锦镇。",
        ),
        source="t",
    )
    rows = await deliveries(app, update.alert_id)
    assert {r["status"] for r in rows} == {"queued"}
    sms = by_recipient(rows)
    for name in ("谢芳", "张永福", "周建国"):
        assert "更新暴雨橙色预警信号：暴雨区域收缩至屏锦镇。" in sms[name]["body"], sms[name]["body"]
    for name, place in (
        ("何桂兰", "龙溪村"),
        ("罗文军", "东风社区"),
        ("邓秀兰", "云龙村"),
        ("韩梅", "川西村"),
    ):
        assert f"您所在的{place}不再在预警范围内" in sms[name]["body"], sms[name]["body"]
    english = sms["彭海涛"]["body"]
    assert "is no longer in the warning area" in english and "云龙村" in english
    push = by_recipient(rows, "push")
    assert push["罗文军"]["title"] == "暴雨预警范围调整"
    assert "不再在预警范围内" in push["罗文军"]["body"]
    # every recipient of the orange one gets exactly one message about the update per channel
    before = {(r["recipient_key"], r["channel"]) for r in await deliveries(app, orange.alert_id)}
    assert before == {(r["recipient_key"], r["channel"]) for r in rows}
    # rendered once per channel x language x action (x area for the note), not per recipient
    notes = {r["body"] for r in rows if "不再" in r["body"] and r["channel"] == "sms"}
    assert len(notes) == len({r["area_code"] for r in rows if "不再" in r["body"] and r["channel"] == "sms"})


# --- one event per hazard family -----------------------------------------------------------------------------


async def test_two_agencies_one_township_one_message_per_person(app: App, clock: FakeClock) -> None:
    """区气象台 rainstorm orange + 区水利局 flash-flood orange on 屏锦镇, then a yellow flood warning from a third
    sender: each person gets one message, at the highest level; the others are recorded as suppressed."""
    [rain] = await app.pipeline.ingest(
        cap_cn(identifier="met-0530", severity="Orange", geocode=PINGJIN), source="t"
    )
    await app.dispatcher.drain()
    clock.advance(300)
    flash_xml = from_sender(
        cap_cn(
            identifier="water-0535",
            event_code="11A51",
            event="山洪",
            severity="Orange",
            geocode=PINGJIN,
            sent="2024-07-12 05:35:00+08:00",
            description="梁平区水利局发布山洪橙色预警：屏锦镇沿河一带发生山洪可能性大。",
        ),
        "梁平区水利局",
    )
    [flash] = await app.pipeline.ingest(flash_xml, source="t")
    clock.advance(300)
    flood_xml = from_sender(
        cap_cn(
            identifier="hydro-0540",
            event_code="11A01",
            event="洪水",
            severity="Yellow",
            geocode=PINGJIN,
            sent="2024-07-12 05:40:00+08:00",
            description="梁平区水文站发布洪水黄色预警。",
        ),
        "梁平区水文站",
    )
    [flood] = await app.pipeline.ingest(flood_xml, source="t")
    await app.dispatcher.drain()

    assert (await app.store.get_alert(flash.alert_id))["hazard_code"] == "11A51"
    rain_rows = await deliveries(app, rain.alert_id)
    flash_rows = await deliveries(app, flash.alert_id)
    flood_rows = await deliveries(app, flood.alert_id)
    assert rain_rows and flash_rows and flood_rows
    assert {r["status"] for r in rain_rows} == {"sent"}
    # the equal-level flash-flood warning: recorded, not re-sent; the reason names the covering alert
    assert {r["status"] for r in flash_rows} == {"suppressed"}
    assert all(f"同级别预警 #{rain.alert_id}" in r["reason"] for r in flash_rows)
    assert all(f"alert {rain.alert_id}" in r["reason"] for r in flash_rows)
    # the lower one: suppressed too, as covered by a higher level
    assert {r["status"] for r in flood_rows} == {"suppressed"}
    assert all(f"更高级别预警 #{rain.alert_id}" in r["reason"] for r in flood_rows)
    # per person and channel: exactly one message went out, the orange one
    sent = Counter(
        (r["recipient_key"], r["channel"])
        for r in rain_rows + flash_rows + flood_rows
        if r["status"] == "sent"
    )
    assert set(sent.values()) == {1}
    assert {r["recipient_key"] for r in flash_rows} <= {k for k, _ in sent}
    # all three are still active warnings: the suppression is per recipient, the alerts stay on record
    for alert in (rain, flash, flood):
        assert (await app.store.get_alert(alert.alert_id))["state"] == "active"
    stats = (await app.store.get_alert(flash.alert_id))["fanout_stats"]
    assert stats["suppressed"] == len(flash_rows)


async def test_higher_level_of_the_family_replaces_a_lower_unsent_one(app: App, clock: FakeClock) -> None:
    [rain] = await app.pipeline.ingest(
        cap_cn(identifier="met-0530", severity="Orange", geocode=PINGJIN), source="t"
    )
    clock.advance(60)
    flash_xml = from_sender(
        cap_cn(
            identifier="water-0531",
            event_code="11A51",
            event="山洪",
            severity="Red",
            geocode=PINGJIN,
            sent="2024-07-12 05:31:00+08:00",
        ),
        "梁平区水利局",
    )
    [flash] = await app.pipeline.ingest(flash_xml, source="t")
    rain_rows = await deliveries(app, rain.alert_id)
    assert {r["status"] for r in rain_rows} == {"suppressed"}
    assert all(f"被更高级别预警 #{flash.alert_id}" in r["reason"] for r in rain_rows)
    assert {r["status"] for r in await deliveries(app, flash.alert_id)} == {"queued"}


async def test_other_families_and_opted_out_rules_are_all_sent(config_dir: Path, clock: FakeClock) -> None:
    def opt_out(data: dict) -> None:
        for rule in data["rules"]:
            if rule["name"] == "flash-flood-orange":
                rule["inhibit"] = False

    edit_yaml(config_dir / "rules.yaml", opt_out)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    try:
        [rain] = await app.pipeline.ingest(
            cap_cn(identifier="met-0530", severity="Orange", geocode=PINGJIN), source="t"
        )
        await app.dispatcher.drain()
        clock.advance(60)
        [gale] = await app.pipeline.ingest(
            cap_cn(
                identifier="gale-0531",
                event_code="11B06",
                event="大风",
                severity="Orange",
                geocode=PINGJIN,
                sent="2024-07-12 05:31:00+08:00",
            ),
            source="t",
        )
        flash_xml = from_sender(
            cap_cn(
                identifier="water-0532",
                event_code="11A51",
                event="山洪",
                severity="Orange",
                geocode=PINGJIN,
                sent="2024-07-12 05:32:00+08:00",
            ),
            "梁平区水利局",
        )
        [flash] = await app.pipeline.ingest(flash_xml, source="t")
        assert {r["status"] for r in await deliveries(app, gale.alert_id)} == {"queued"}  # another family
        assert {r["status"] for r in await deliveries(app, flash.alert_id)} == {"queued"}  # inhibit: false
        assert {r["status"] for r in await deliveries(app, rain.alert_id)} == {"sent"}
    finally:
        await app.close()


async def test_a_chain_keeps_its_own_recipients_informed(app: App, clock: FakeClock) -> None:
    """People who had a chain hear its Update and its Cancel even while another chain of the family covers them
    at a higher level: a chain's revisions are never suppressed for its own recipients."""
    [_rain] = await app.pipeline.ingest(
        cap_cn(identifier="met-0530", severity="Orange", geocode=PINGJIN), source="t"
    )
    await app.dispatcher.drain()
    clock.advance(60)
    flash_xml = from_sender(
        cap_cn(
            identifier="water-0531",
            event_code="11A51",
            event="山洪",
            severity="Red",
            geocode=PINGJIN,
            sent="2024-07-12 05:31:00+08:00",
        ),
        "梁平区水利局",
    )
    [flash] = await app.pipeline.ingest(flash_xml, source="t")
    await app.dispatcher.drain()
    assert {r["status"] for r in await deliveries(app, flash.alert_id)} == {"sent"}  # higher: sent
    clock.advance(600)
    [update] = await app.pipeline.ingest(
        cap_cn(
            identifier="met-0540",
            msg_type="Update",
            references="met-0530",
            severity="Orange",
            geocode=PINGJIN,
            sent="2024-07-12 05:40:00+08:00",
        ),
        source="t",
    )
    assert {r["status"] for r in await deliveries(app, update.alert_id)} == {"queued"}
    await app.dispatcher.drain()
    clock.advance(600)
    [cancel] = await app.pipeline.ingest(
        cap_cn(
            identifier="met-0550",
            msg_type="Cancel",
            references="met-0530",
            severity="Orange",
            geocode=PINGJIN,
            sent="2024-07-12 05:50:00+08:00",
        ),
        source="t",
    )
    cancel_rows = await deliveries(app, cancel.alert_id)
    assert cancel_rows and {r["status"] for r in cancel_rows} == {"queued"}
    assert all("解除" in r["body"] for r in cancel_rows if r["recipient"] != "彭海涛")


# --- the covering warning ends: what it suppressed goes out ---------------------------------------------------


def flash_flood(
    identifier: str = "water-0535",
    *,
    severity: str = "Orange",
    geocode: str = PINGJIN,
    sent: str = "2024-07-12 05:35:00+08:00",
    msg_type: str = "Alert",
    references: str = "",
) -> bytes:
    """The water bureau's flash-flood (山洪) warning, same family as the rainstorm."""
    return from_sender(
        cap_cn(
            identifier=identifier,
            msg_type=msg_type,
            references=references,
            event_code="11A51",
            event="山洪",
            severity=severity,
            geocode=geocode,
            sent=sent,
            description="梁平区水利局发布山洪橙色预警：屏锦镇沿河一带发生山洪可能性大。",
        ),
        "梁平区水利局",
    )


def rain_revision(identifier: str, sent: str, *, msg_type: str = "Update", **overrides: str) -> bytes:
    return cap_cn(identifier=identifier, msg_type=msg_type, references="met-0530", sent=sent, **overrides)


async def rain_covers_flash(
    app: App, clock: FakeClock, *, severity: str = "Orange", geocode: str = PINGJIN, **rain: str
) -> tuple[int, int]:
    """Rainstorm (weather bureau) sent, then the water bureau's orange flash-flood warning for the same people:
    suppressed for every one of them. Returns both alert ids."""
    [covering] = await app.pipeline.ingest(
        cap_cn(identifier="met-0530", severity=severity, geocode=geocode, **rain), source="t"
    )
    await app.dispatcher.drain()
    clock.advance(300)
    [flash] = await app.pipeline.ingest(flash_flood(geocode=geocode), source="t")
    await app.dispatcher.drain()
    assert covering.alert_id and flash.alert_id
    rows = await deliveries(app, flash.alert_id)
    assert rows and {r["status"] for r in rows} == {"suppressed"}
    assert {r["suppressed_by"] for r in rows} == {covering.alert_id}
    return covering.alert_id, flash.alert_id


async def assert_resent(app: App, flash_id: int, before: list[dict], why: str) -> None:
    """Every suppressed flash-flood delivery went out: the same rows (same idempotency), queued → sent, with
    the reason and a ``requeued`` event."""
    rows = await deliveries(app, flash_id)
    assert [r["id"] for r in rows] == [r["id"] for r in before]
    assert {r["status"] for r in rows} == {"queued"}
    assert all(why in r["reason"] and "补发" in r["reason"] and "sent now" in r["reason"] for r in rows)
    # an acknowledgement deadline counts from now, not from when the warning was suppressed
    acked = [r for r in rows if r["ack_required"]]
    assert acked and all(r["ack_deadline"] > app.clock.now() for r in acked)
    events = await app.store.delivery_events(r["id"] for r in rows)
    assert all([e["kind"] for e in events[r["id"]]] == ["suppressed", "requeued"] for r in rows)
    await app.dispatcher.drain()
    rows = await deliveries(app, flash_id)
    assert {r["status"] for r in rows} == {"sent"}
    assert all("山洪" in r["body"] for r in rows if r["recipient"] != "彭海涛")


async def test_cancel_of_the_covering_warning_sends_the_suppressed_one(app: App, clock: FakeClock) -> None:
    """Rainstorm orange covers 屏锦镇; the flash-flood orange for 屏锦镇 is suppressed; the rainstorm is lifted
    (解除) while the flash-flood warning is still active: everyone gets the 解除 and the flash-flood warning."""
    rain_id, flash_id = await rain_covers_flash(app, clock)
    before = await deliveries(app, flash_id)
    clock.advance(1800)
    [cancel] = await app.pipeline.ingest(
        rain_revision("met-0600", "2024-07-12 06:00:00+08:00", msg_type="Cancel", severity="Orange"),
        source="t",
    )
    assert (await app.store.get_alert(cancel.alert_id))["fanout_stats"]["released"] == len(before)
    await assert_resent(app, flash_id, before, f"原覆盖预警 #{rain_id} 已解除")
    # both went out: the 解除 of the rainstorm and the flash-flood warning, to the same people
    cancel_rows = await deliveries(app, cancel.alert_id)
    assert {r["status"] for r in cancel_rows} == {"sent"}
    assert {r["recipient_key"] for r in before} <= {r["recipient_key"] for r in cancel_rows}
    # nothing more happens when the sweep or another revision runs again
    assert await app.pipeline.expire() == []
    assert {r["status"] for r in await deliveries(app, flash_id)} == {"sent"}


async def test_the_lower_of_two_suppressed_warnings_stays_covered(app: App, clock: FakeClock) -> None:
    """Rainstorm orange covers a flash-flood orange and a flood yellow: when it is lifted only the flash-flood
    warning goes out; the flood yellow is now covered by it (and recorded so)."""
    rain_id, flash_id = await rain_covers_flash(app, clock)
    clock.advance(60)
    flood_xml = from_sender(
        cap_cn(
            identifier="hydro-0540",
            event_code="11A01",
            event="洪水",
            severity="Yellow",
            geocode=PINGJIN,
            sent="2024-07-12 05:40:00+08:00",
        ),
        "梁平区水文站",
    )
    [flood] = await app.pipeline.ingest(flood_xml, source="t")
    flood_rows = await deliveries(app, flood.alert_id)
    assert {(r["status"], r["suppressed_by"]) for r in flood_rows} == {("suppressed", rain_id)}
    clock.advance(1800)
    await app.pipeline.ingest(
        rain_revision("met-0600", "2024-07-12 06:00:00+08:00", msg_type="Cancel", severity="Orange"),
        source="t",
    )
    assert {r["status"] for r in await deliveries(app, flash_id)} == {"queued"}
    flood_rows = await deliveries(app, flood.alert_id)
    assert {(r["status"], r["suppressed_by"]) for r in flood_rows} == {("suppressed", flash_id)}


async def test_expiry_of_the_covering_warning_sends_the_suppressed_one(app: App, clock: FakeClock) -> None:
    rain_id, flash_id = await rain_covers_flash(app, clock, expires="2024-07-12 08:00:00+08:00")
    before = await deliveries(app, flash_id)
    clock.advance(2 * 3600)
    assert await app.pipeline.expire() == []
    assert {r["status"] for r in await deliveries(app, flash_id)} == {"suppressed"}
    clock.advance(3600)  # 08:31 (+08:00): the rainstorm has expired, the flash-flood warning (17:30) has not
    assert await app.pipeline.expire() == [rain_id]
    await assert_resent(app, flash_id, before, f"原覆盖预警 #{rain_id} 已到期")
    assert await app.pipeline.expire() == []


async def test_a_stale_revision_of_the_covering_warning_ends_it(app: App, clock: FakeClock) -> None:
    """An Update of the rainstorm that arrives already expired is not sent, but the chain is over: the
    suppressed flash-flood warning goes out."""
    rain_id, flash_id = await rain_covers_flash(app, clock)
    before = await deliveries(app, flash_id)
    [stale] = await app.pipeline.ingest(
        rain_revision(
            "met-0531", "2024-07-12 05:31:00+08:00", severity="Orange", expires="2024-07-12 05:35:00+08:00"
        ),
        source="t",
    )
    assert (await app.store.get_alert(stale.alert_id))["state"] == "expired"
    await assert_resent(app, flash_id, before, f"原覆盖预警 #{rain_id} 已到期")


async def test_downgrade_of_the_covering_warning_below_the_suppressed_level(
    app: App, clock: FakeClock
) -> None:
    """Rainstorm red covers the flash-flood orange; red → orange still covers it (nothing sent); orange →
    yellow no longer does: the flash-flood orange goes out."""
    rain_id, flash_id = await rain_covers_flash(app, clock, severity="Red")
    before = await deliveries(app, flash_id)
    clock.advance(1800)
    [orange] = await app.pipeline.ingest(
        rain_revision("met-0600", "2024-07-12 06:00:00+08:00", severity="Orange"), source="t"
    )
    assert (await app.store.get_alert(orange.alert_id))["fanout_stats"].get("released") == 0
    rows = await deliveries(app, flash_id)
    assert {(r["status"], r["suppressed_by"]) for r in rows} == {("suppressed", rain_id)}
    await app.dispatcher.drain()
    clock.advance(1800)
    [yellow] = await app.pipeline.ingest(
        rain_revision("met-0630", "2024-07-12 06:30:00+08:00", severity="Yellow"), source="t"
    )
    assert {r["status"] for r in await deliveries(app, yellow.alert_id)} == {"queued"}  # the downgrade
    await assert_resent(app, flash_id, before, f"原覆盖预警 #{rain_id} 已降级或调整范围")


async def test_update_that_moves_the_covering_warning_away(app: App, clock: FakeClock) -> None:
    """Rainstorm orange for 屏锦镇 + 礼让镇 covers the flash-flood orange for both; the rainstorm shrinks to 屏锦镇:
    礼让镇 (who only get the "no longer in the area" note) get the flash-flood warning, 屏锦镇 do not."""
    _rain_id, flash_id = await rain_covers_flash(app, clock, geocode=areas(PINGJIN, LIRANG))
    clock.advance(1800)
    [update] = await app.pipeline.ingest(
        rain_revision("met-0600", "2024-07-12 06:00:00+08:00", severity="Orange", geocode=PINGJIN), source="t"
    )
    assert (await app.store.get_alert(update.alert_id))["fanout_stats"]["no_longer_applies"]
    rows = await deliveries(app, flash_id)
    moved = {r["id"] for r in rows if r["area_code"].startswith(LIRANG[:9])}
    assert moved and len(moved) < len(rows)
    assert {r["id"] for r in rows if r["status"] == "queued"} == moved
    assert {r["status"] for r in rows if r["id"] not in moved} == {"suppressed"}
    await app.dispatcher.drain()
    assert {r["id"] for r in await deliveries(app, flash_id) if r["status"] == "sent"} == moved


async def test_nothing_is_resent_for_a_cancelled_or_superseded_warning(app: App, clock: FakeClock) -> None:
    rain_id, flash_id = await rain_covers_flash(app, clock)
    clock.advance(600)
    # the flash-flood warning is revised (its earlier revision superseded), and both revisions are suppressed
    [flash_update] = await app.pipeline.ingest(
        flash_flood(
            "water-0545", msg_type="Update", references="water-0535", sent="2024-07-12 05:45:00+08:00"
        ),
        source="t",
    )
    updated_rows = await deliveries(app, flash_update.alert_id)
    assert {(r["status"], r["suppressed_by"]) for r in updated_rows} == {("suppressed", rain_id)}
    clock.advance(600)
    await app.pipeline.ingest(
        rain_revision("met-0600", "2024-07-12 06:00:00+08:00", msg_type="Cancel", severity="Orange"),
        source="t",
    )
    # only the latest revision goes out, once per person and channel
    assert {r["status"] for r in await deliveries(app, flash_id)} == {"suppressed"}
    assert {r["status"] for r in await deliveries(app, flash_update.alert_id)} == {"queued"}


async def test_nothing_is_resent_for_a_warning_cancelled_meanwhile(app: App, clock: FakeClock) -> None:
    _rain_id, flash_id = await rain_covers_flash(app, clock)
    clock.advance(600)
    [flash_cancel] = await app.pipeline.ingest(
        flash_flood(
            "water-0545", msg_type="Cancel", references="water-0535", sent="2024-07-12 05:45:00+08:00"
        ),
        source="t",
    )
    assert await deliveries(app, flash_cancel.alert_id) == []  # nobody had it
    clock.advance(600)
    [cancel] = await app.pipeline.ingest(
        rain_revision("met-0600", "2024-07-12 06:00:00+08:00", msg_type="Cancel", severity="Orange"),
        source="t",
    )
    assert {r["status"] for r in await deliveries(app, flash_id)} == {"suppressed"}
    assert "released" not in (await app.store.get_alert(cancel.alert_id))["fanout_stats"]


# --- out-of-order arrival ------------------------------------------------------------------------------------


def red_update(
    identifier: str = "50022841600000_20240712054000", sent: str = "2024-07-12 05:40:00+08:00"
) -> bytes:
    return cap_cn(identifier=identifier, msg_type="Update", references=FIRST, severity="Red", sent=sent)


async def test_update_before_its_alert_is_held_then_applied(app: App, clock: FakeClock) -> None:
    [held] = await app.pipeline.ingest(red_update(), source="feed:relay")
    assert held.outcome == "held" and held.alert_id is None and held.payload_id
    assert any("held" in w for w in held.warnings)
    assert await app.store.list_alerts() == []
    # the same Update again while it waits: still one held payload
    [again] = await app.pipeline.ingest(red_update(), source="feed:relay")
    assert again.outcome == "held" and again.payload_id == held.payload_id

    clock.advance(60)
    [original] = await app.pipeline.ingest(cap_cn(severity="Orange"), source="t")
    assert original.outcome == "created"
    alerts = {a["msg_type"]: a for a in await app.store.list_alerts()}
    assert set(alerts) == {"Alert", "Update"}
    update = alerts["Update"]
    assert update["previous_id"] == original.alert_id and update["root_id"] == original.alert_id
    assert update["colour"] == "red" and update["state"] == "active"
    assert (await app.store.get_alert(original.alert_id))["state"] == "updated"
    assert (await app.store.payload(held.payload_id))["outcome"] == "applied"
    # the Alert's deliveries were never sent: superseded by the Update, which speaks of the upgrade
    assert {r["status"] for r in await deliveries(app, original.alert_id)} == {"superseded"}
    sms = by_recipient(await deliveries(app, update["id"]))
    assert "升级为红色预警信号" in sms["谢芳"]["body"]
    # nothing is left waiting
    clock.advance(3600)
    assert await app.pipeline.release_held() == []


async def test_held_messages_apply_in_the_order_they_were_sent(app: App, clock: FakeClock) -> None:
    cancel = cap_cn(
        identifier="50022841600000_20240712063000",
        msg_type="Cancel",
        references=FIRST,
        sent="2024-07-12 06:30:00+08:00",
    )
    [c] = await app.pipeline.ingest(cancel, source="t")
    [u] = await app.pipeline.ingest(red_update(), source="t")
    assert (c.outcome, u.outcome) == ("held", "held")
    await app.pipeline.ingest(cap_cn(severity="Orange"), source="t")
    chain = await app.store.chain((await app.store.list_alerts())[-1]["id"])
    assert [a["msg_type"] for a in chain] == ["Alert", "Update", "Cancel"]
    assert [a["state"] for a in chain] == ["cancelled", "cancelled", "cancelled"]


async def test_held_update_is_released_as_new_after_the_timeout(app: App, clock: FakeClock) -> None:
    assert app.config.lifecycle.hold_for == 300
    [held] = await app.pipeline.ingest(red_update(), source="t")
    assert held.outcome == "held"
    clock.advance(299)
    assert await app.pipeline.release_held() == []
    clock.advance(2)
    [released] = await app.pipeline.release_held()
    assert released.outcome == "created"
    assert any("treated as a new warning" in w for w in released.warnings)
    alert = await app.store.get_alert(released.alert_id)
    assert (alert["msg_type"], alert["previous_id"], alert["root_id"]) == ("Update", None, alert["id"])
    assert (await app.store.payload(held.payload_id))["outcome"] == "released"
    rows = await deliveries(app, released.alert_id)
    assert rows and {r["status"] for r in rows} == {"queued"}
    assert "发布暴雨红色预警" in by_recipient(rows)["谢芳"]["body"]
    # released once only; the original arriving late is a separate warning now
    assert await app.pipeline.release_held() == []


# --- expiry ----------------------------------------------------------------------------------------------------


@pytest.mark.file_push  # push wording per action
async def test_expiry_sends_a_jiechu_note_when_the_rule_asks(config_dir: Path, clock: FakeClock) -> None:
    def notify(data: dict) -> None:
        for rule in data["rules"]:
            if rule["name"] == "rainstorm-red":
                rule["notify_on_expiry"] = True

    edit_yaml(config_dir / "rules.yaml", notify)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    try:
        [red] = await app.pipeline.ingest(cap_cn(), source="t")
        await app.dispatcher.drain()
        reached = {(r["recipient_key"], r["channel"]) for r in await deliveries(app, red.alert_id)}
        clock.advance(6 * 3600)
        assert await app.pipeline.expire() == []
        clock.advance(6 * 3600)  # past expires (17:30 +08:00)
        assert await app.pipeline.expire() == [red.alert_id]
        assert (await app.store.get_alert(red.alert_id))["state"] == "expired"
        [note] = [a for a in await app.store.list_alerts() if a["id"] != red.alert_id]
        assert (note["msg_type"], note["previous_id"], note["source"]) == (
            "Cancel",
            red.alert_id,
            EXPIRY_SOURCE,
        )
        rows = await deliveries(app, note["id"])
        assert {(r["recipient_key"], r["channel"]) for r in rows} == reached
        sms = by_recipient(rows)
        assert "暴雨红色预警信号已于7月12日17时30分到期，预警解除" in sms["谢芳"]["body"], sms["谢芳"]["body"]
        assert "expired" in sms["彭海涛"]["body"]
        speaker = by_recipient(rows, "loudspeaker")
        assert all("到期" in r["body"] and not any(c.isdigit() for c in r["body"]) for r in speaker.values())
        assert by_recipient(rows, "push")["唐建华"]["title"] == "暴雨预警到期解除"
        # a second sweep changes nothing
        assert await app.pipeline.expire() == []
        assert len(await app.store.list_alerts()) == 2
    finally:
        await app.close()


async def test_expiry_without_the_option_sends_nothing(app: App, clock: FakeClock) -> None:
    [red] = await app.pipeline.ingest(cap_cn(), source="t")
    await app.dispatcher.drain()
    clock.advance(13 * 3600)
    assert await app.pipeline.expire() == [red.alert_id]
    assert [a["id"] for a in await app.store.list_alerts()] == [red.alert_id]
