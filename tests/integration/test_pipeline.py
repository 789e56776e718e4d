"""The pipeline on the example district config, a real SQLite file and the file channels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import cap_cn, edit_yaml
from sqlalchemy import Row, select

from warnd import schema
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.pipeline import BroadcastInvalid, BroadcastRequest

FIRST = "50022841600000_20240712053000"


async def deliveries(app: App, alert_id: int) -> list[dict]:
    return await app.store.deliveries_page({"alert_id": alert_id}, limit=10_000)


@pytest.mark.file_push  # the example has no push subscriptions: four subscribers get a token here
async def test_red_rainstorm_reaches_every_channel_and_group(app: App) -> None:
    [result] = await app.pipeline.ingest(cap_cn(), source="test")
    assert result.outcome == "created"
    alert = await app.store.get_alert(result.alert_id)
    assert (alert["colour"], alert["level"], alert["hazard_code"], alert["state"]) == (
        "red",
        1,
        "11B03",
        "active",
    )
    rows = await deliveries(app, result.alert_id)
    assert {r["channel"] for r in rows} == {"sms", "push", "loudspeaker"}
    reached_roles = {r["role"] for r in rows}
    assert reached_roles == {
        "county_leader",
        "township_leader",
        "duty_person",
        "village_cadre",
        "grid_worker",
        "public",
        "loudspeaker",
    }
    people = app.config.subscribers
    assert Counter(r["channel"] for r in rows) == {
        "sms": len(people),
        "push": sum(1 for p in people if p.push_tokens),
        "loudspeaker": len(app.config.terminals),
    }
    sms = [r for r in rows if r["channel"] == "sms"]
    assert all(r["body"].startswith("【梁平区应急管理局】") and r["segments"] >= 2 for r in sms)
    assert all("暴雨红色预警" in r["body"] for r in sms if r["role"] != "public" or "英" not in r["body"])
    loudspeaker = [r for r in rows if r["channel"] == "loudspeaker"]
    assert all(r["repeat"] == 3 and not any(c.isdigit() for c in r["body"]) for r in loudspeaker)
    duty = [r for r in sms if r["role"] == "duty_person"]
    assert all(r["ack_required"] and r["ack_deadline"] is not None for r in duty)
    assert not any(r["ack_required"] for r in sms if r["role"] == "public")
    # the English-speaking subscriber gets the English template
    english = next(r for r in sms if r["recipient"] == "彭海涛")
    assert "Rainstorm" in english["body"] or "rainstorm" in english["body"]


async def test_same_alert_twice_is_one_alert(app: App) -> None:
    first = await app.pipeline.ingest(cap_cn(), source="a")
    second = await app.pipeline.ingest(cap_cn(), source="b")
    assert second[0].outcome == "duplicate" and second[0].alert_id == first[0].alert_id
    assert len(await app.store.list_alerts()) == 1
    rows = await deliveries(app, first[0].alert_id)
    # the bare example: 24 people by SMS, 3 loudspeakers; nobody has subscribed to app push yet
    assert Counter(r["channel"] for r in rows) == {"sms": 24, "loudspeaker": 3}


async def test_cancel_sends_jiechu_to_everyone_reached(app: App, clock: FakeClock) -> None:
    [alert] = await app.pipeline.ingest(cap_cn(), source="t")
    await app.dispatcher.drain()
    reached = {
        (r["recipient_key"], r["channel"])
        for r in await deliveries(app, alert.alert_id)
        if r["status"] == "sent"
    }
    clock.advance(7200)
    [cancel] = await app.pipeline.ingest(
        cap_cn(
            identifier="50022841600000_20240712073000",
            msg_type="Cancel",
            references=FIRST,
            sent="2024-07-12 07:30:00+08:00",
            note="降雨明显减弱",
        ),
        source="t",
    )
    row = await app.store.get_alert(cancel.alert_id)
    assert row["root_id"] == alert.alert_id and row["previous_id"] == alert.alert_id
    assert (await app.store.get_alert(alert.alert_id))["state"] == "cancelled"
    rows = await deliveries(app, cancel.alert_id)
    assert {(r["recipient_key"], r["channel"]) for r in rows} == reached
    assert all("解除" in r["body"] or "lifted" in r["body"] for r in rows)
    assert all("解除" in r["body"] for r in rows if r["recipient"] != "彭海涛")


async def test_update_upgrade_wording_and_supersedes_unsent(app: App, clock: FakeClock) -> None:
    [orange] = await app.pipeline.ingest(cap_cn(severity="Orange"), source="t")
    orange_rows = await deliveries(app, orange.alert_id)
    assert orange_rows and all(r["status"] == "queued" for r in orange_rows)
    clock.advance(600)
    [red] = await app.pipeline.ingest(
        cap_cn(
            identifier="50022841600000_20240712054000",
            msg_type="Update",
            references=FIRST,
            severity="Red",
            sent="2024-07-12 05:40:00+08:00",
        ),
        source="t",
    )
    # the orange revision was never sent: superseded, not sent late
    assert {r["status"] for r in await deliveries(app, orange.alert_id)} == {"superseded"}
    sms = [r for r in await deliveries(app, red.alert_id) if r["channel"] == "sms" and r["role"] != "public"]
    assert sms and all("升级" in r["body"] for r in sms if r["recipient"] != "彭海涛")


async def test_downgrade_reaches_people_the_new_colour_would_not(app: App, clock: FakeClock) -> None:
    [_red] = await app.pipeline.ingest(cap_cn(), source="t")
    await app.dispatcher.drain()
    clock.advance(3600)
    [blue] = await app.pipeline.ingest(
        cap_cn(
            identifier="50022841600000_20240712063000",
            msg_type="Update",
            references=FIRST,
            severity="Blue",
            sent="2024-07-12 06:30:00+08:00",
        ),
        source="t",
    )
    rows = await deliveries(app, blue.alert_id)
    # blue rules target only responsible persons, but the public had the red one and must hear it is lower now
    public = [r for r in rows if r["role"] == "public" and r["channel"] == "sms"]
    assert len(public) == sum(1 for s in app.config.subscribers if s.role == "public")
    assert all("降级" in r["body"] for r in public if r["recipient"] != "彭海涛")


async def test_invalid_alert_is_quarantined_with_reason(app: App) -> None:
    bad = cap_cn().replace(b"<msgType>Alert</msgType>", b"")
    [result] = await app.pipeline.ingest(bad, source="test")
    assert result.outcome == "rejected"
    assert any("msgType" in e for e in result.errors)
    [kept] = await app.store.quarantine()
    assert kept["id"] == result.payload_id and any("msgType" in e for e in kept["errors"])
    assert (await app.store.payload(result.payload_id))["body"] == bad
    assert await app.store.list_alerts() == []


async def test_doctype_is_rejected(app: App) -> None:
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]><alert>&x;</alert>'
    )
    [result] = await app.pipeline.ingest(hostile, source="test")
    assert result.outcome == "rejected" and any("DOCTYPE" in e for e in result.errors)


@pytest.mark.parametrize(("status", "marker"), [("Exercise", "【演练】"), ("Test", "【测试】")])
async def test_drills_reach_only_drill_groups_with_marker(app: App, status: str, marker: str) -> None:
    [result] = await app.pipeline.ingest(cap_cn(status=status), source="t")
    rows = await deliveries(app, result.alert_id)
    assert rows
    drill_roles = {role for g in app.config.groups.values() if g.drill for role in g.roles}
    assert {r["role"] for r in rows} <= drill_roles
    assert "public" not in {r["role"] for r in rows}
    assert all(
        r["body"].startswith(marker) or r["body"].startswith(f"【梁平区应急管理局】{marker}") for r in rows
    )


async def test_draft_reaches_nobody(app: App) -> None:
    [result] = await app.pipeline.ingest(cap_cn(status="Draft"), source="t")
    assert result.outcome == "created"
    assert (await app.store.get_alert(result.alert_id))["state"] == "inactive"
    assert await deliveries(app, result.alert_id) == []


async def test_alert_expired_on_arrival_is_recorded_not_sent(app: App, clock: FakeClock) -> None:
    clock.advance(86400)
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    assert (await app.store.get_alert(result.alert_id))["state"] == "expired"
    assert await deliveries(app, result.alert_id) == []


async def test_township_warning_reaches_township_and_the_offices_above_it(app: App) -> None:
    [result] = await app.pipeline.ingest(cap_cn(severity="Red", geocode="500228101000"), source="t")
    areas = {r["area_code"] for r in await deliveries(app, result.alert_id)}
    assert areas and all(a.startswith("500228101") or a == "500228000000" for a in areas)
    assert "500228000000" in areas  # the district flood-control office hears about every township


async def test_polygon_uses_lat_lon_order(app: App) -> None:
    # 何桂兰 lives at 30.6721 N, 107.8012 E; the polygon surrounds that point (CAP writes lat,lon)
    around = "30.66,107.79 30.66,107.81 30.68,107.81 30.68,107.79 30.66,107.79"
    [inside] = await app.pipeline.ingest(cap_cn(geocode="", polygon=around), source="t")
    names = {r["recipient"] for r in await deliveries(app, inside.alert_id)}
    assert names == {"何桂兰"}
    # written lon,lat by mistake: latitude 107.79 is impossible, so the alert is rejected, not misplaced
    swapped = "107.79,30.66 107.81,30.66 107.81,30.68 107.79,30.68 107.79,30.66"
    [wrong] = await app.pipeline.ingest(cap_cn(identifier="x2", geocode="", polygon=swapped), source="t")
    assert wrong.outcome == "rejected" and any("polygon" in e for e in wrong.errors)


async def test_higher_level_wins_for_the_same_hazard(app: App, clock: FakeClock) -> None:
    [red] = await app.pipeline.ingest(cap_cn(), source="t")
    await app.dispatcher.drain()
    clock.advance(60)
    yellow_xml = cap_cn(
        identifier="water_20240712053100",
        severity="Yellow",
        geocode="500228101000",
        sent="2024-07-12 05:31:00+08:00",
    ).replace("梁平区气象台".encode(), "梁平区水利局".encode(), 1)
    [yellow] = await app.pipeline.ingest(yellow_xml, source="t")
    rows = await deliveries(app, yellow.alert_id)
    assert rows and {r["status"] for r in rows} == {"suppressed"}
    assert all("更高级别" in r["reason"] for r in rows)
    assert (await app.store.get_alert(red.alert_id))["state"] == "active"


async def schedule(app: App, alert_id: int) -> list[Row]:
    """(status, visible_at, created_at) of an alert's deliveries: when each may be claimed."""
    d = schema.deliveries.c
    async with app.store.read() as conn:
        query = select(d.status, d.visible_at, d.created_at).where(d.alert_id == alert_id)
        return list((await conn.execute(query)).all())


async def test_fanout_holds_back_what_an_active_warning_may_inhibit(
    app: App, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries are sendable chunk by chunk while the fan-out writes, except when another warning of the
    family is active: the inhibit step at the end may suppress them, so until then they are held back. A crash
    before that step leaves them held; resuming suppresses them, and none is ever sendable."""
    [red] = await app.pipeline.ingest(cap_cn(), source="t")
    red_rows = await schedule(app, red.alert_id)
    assert red_rows and all(
        r.visible_at == r.created_at for r in red_rows
    )  # nothing else active: due at once
    await app.dispatcher.drain()
    clock.advance(60)

    async def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed between writing the deliveries and the inhibit step")

    monkeypatch.setattr(app.store, "inhibit", crash)
    yellow_xml = cap_cn(
        identifier="water_20240712053100",
        severity="Yellow",
        geocode="500228101000",
        sent="2024-07-12 05:31:00+08:00",
    ).replace("梁平区气象台".encode(), "梁平区水利局".encode(), 1)
    with pytest.raises(RuntimeError, match="killed"):
        await app.pipeline.ingest(yellow_xml, source="t")
    [yellow] = await app.store.list_alerts(limit=1)
    held = await schedule(app, yellow["id"])
    assert held and all(r.status == "queued" and r.visible_at > clock.now() for r in held)
    assert await app.dispatcher.drain() == 0  # nothing of it can be claimed

    monkeypatch.undo()
    assert await app.pipeline.resume() == [yellow["id"]]
    assert {r["status"] for r in await deliveries(app, yellow["id"])} == {"suppressed"}
    assert await app.dispatcher.drain() == 0


async def test_lower_queued_warning_is_suppressed_when_a_higher_one_arrives(
    app: App, clock: FakeClock
) -> None:
    [yellow] = await app.pipeline.ingest(cap_cn(identifier="y1", severity="Yellow"), source="t")
    clock.advance(60)
    red_xml = cap_cn(identifier="r1", sent="2024-07-12 05:31:00+08:00").replace(
        "梁平区气象台".encode(), "重庆市气象台".encode(), 1
    )
    await app.pipeline.ingest(red_xml, source="t")
    assert {r["status"] for r in await deliveries(app, yellow.alert_id)} == {"suppressed"}


async def test_rules_combine_strictest_settings(config_dir: Path, clock: FakeClock) -> None:
    def add_rule(data: dict) -> None:
        data["rules"].append(
            {
                "name": "duty-extra",
                "hazards": ["11B03"],
                "colours": ["红"],
                "level": "II",
                "targets": [
                    {
                        "groups": ["duty_persons"],
                        "channels": ["sms"],
                        "repeat": 2,
                        "ack_required": True,
                        "ack_within": "2m",
                    }
                ],
            }
        )

    edit_yaml(config_dir / "rules.yaml", add_rule)
    app = App(load_config(config_dir), clock=clock)
    await app.start()
    try:
        [result] = await app.pipeline.ingest(cap_cn(), source="t")
        alert = await app.store.get_alert(result.alert_id)
        assert alert["level"] == 1 and set(alert["rules"]["rules"]) == {"rainstorm-red", "duty-extra"}
        duty = [
            r
            for r in await deliveries(app, result.alert_id)
            if r["role"] == "duty_person" and r["channel"] == "sms"
        ]
        assert duty and all(r["repeat"] == 2 and r["level"] == 1 for r in duty)
        assert all((r["ack_deadline"] - r["created_at"]).total_seconds() == 120 for r in duty)
        keys = [(r["recipient_key"], r["channel"]) for r in await deliveries(app, result.alert_id)]
        assert len(keys) == len(set(keys))  # one delivery per recipient x channel
    finally:
        await app.close()


async def test_manual_broadcast_runs_the_same_pipeline(app: App) -> None:
    result = await app.pipeline.broadcast(
        BroadcastRequest(
            channels=["sms", "loudspeaker"],
            areas=["500228102000"],
            hazard="山洪",
            colour="orange",
            text="礼让镇川西村一带山洪风险高，请沿河群众立即转移。",
            actor="duty-officer",
        )
    )
    alert = await app.store.get_alert(result.alert_id)
    assert alert["profile"] == "cap1.2" and alert["hazard_code"] == "11A51" and alert["colour"] == "orange"
    payload = await app.store.payload(alert["payload_id"])
    assert b"<identifier>" in payload["body"]  # kept as a real CAP message
    rows = await deliveries(app, result.alert_id)
    assert {r["channel"] for r in rows} == {"sms", "loudspeaker"}
    assert all(r["area_code"].startswith("500228102") or r["area_code"] == "500228000000" for r in rows)
    with pytest.raises(BroadcastInvalid, match="unknown channel"):
        await app.pipeline.broadcast(
            BroadcastRequest(channels=["fax"], areas=["500228102000"], hazard="暴雨", colour="red", actor="x")
        )


async def test_group_broadcast_without_area(app: App) -> None:
    result = await app.pipeline.broadcast(
        BroadcastRequest(
            channels=["sms"],
            groups=["township_leaders"],
            text="请各镇街立即启动防汛Ⅳ级应急响应。",
            actor="hq",
        )
    )
    rows = await deliveries(app, result.alert_id)
    assert {r["role"] for r in rows} == {"township_leader"}


async def test_fanout_resumes_after_interruption(app: App) -> None:
    """A crash between storing the alert and finishing its fan-out: resume completes it without duplicates."""
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    before = await deliveries(app, result.alert_id)
    await app.store.set_alert(result.alert_id, fanout="pending")
    assert await app.pipeline.resume() == [result.alert_id]
    after = await deliveries(app, result.alert_id)
    assert len(after) == len(before)


@pytest.mark.file_loudspeaker
async def test_file_channel_output(app: App) -> None:
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    await app.dispatcher.drain()
    lines = (app.config.data_dir / "outbox" / "loudspeaker.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["address"] for r in records} == {t.id for t in app.config.terminals}
    assert all(r["repeat"] == 3 for r in records)
    assert {r["status"] for r in await deliveries(app, result.alert_id)} == {"sent"}


async def test_template_with_recipient_fields_renders_per_recipient(
    config_dir: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """Rendering is once per channel x language, unless a template uses recipient fields."""
    templates = tmp_path / "templates"  # the config copy's own templates (tests/conftest.py)
    (templates / "zh-CN" / "duty.j2").write_text(
        "{{ recipient.name }}同志：{{ hazard_name }}{{ alert.colour|colour_name }}预警，请立即到岗并回复收到。",
        encoding="utf-8",
    )

    def add_channel(data: dict) -> None:
        data["channels"]["duty_sms"] = {
            "adapter": "file",
            "address": "phone",
            "template": "duty",
            "style": "sms",
            "signature": "梁平区防汛办",
        }

    def add_rule(data: dict) -> None:
        data["rules"].append(
            {
                "name": "duty-call",
                "hazards": ["暴雨"],
                "colours": ["red"],
                "level": 1,
                "targets": [{"groups": ["duty_persons"], "channels": ["duty_sms"]}],
            }
        )

    edit_yaml(config_dir / "channels.yaml", add_channel)
    edit_yaml(config_dir / "rules.yaml", add_rule)
    app = App(load_config(config_dir), clock=clock)
    await app.start()
    try:
        [result] = await app.pipeline.ingest(cap_cn(), source="t")
        duty = [r for r in await deliveries(app, result.alert_id) if r["channel"] == "duty_sms"]
        assert len(duty) == 5
        assert all(r["body"].startswith(f"【梁平区防汛办】{r['recipient']}同志：暴雨红色预警") for r in duty)
        stats = (await app.store.get_alert(result.alert_id))["fanout_stats"]
        # sms zh-CN plain + sms en + loudspeaker once each (push reaches nobody in the example, so nothing to
        # render), sms zh-CN asking for 叫应 once per leader and duty person (each carries the person's own
        # one-tap link: feedback.public_url is set), duty_sms once per duty person
        assert stats["messages_rendered"] == 3 + 9 + 5
    finally:
        await app.close()
