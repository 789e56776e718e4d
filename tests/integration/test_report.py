"""Coverage and timeliness reports on a real SQLite store, deliveries through the real pipeline, dispatcher and
fake HTTP SMS gateway; receipts through the store; the API through a real aiohttp test client; the CLI through
``warnd.cli.main`` (docs/reports.md).

The red rainstorm of ``cap_cn()`` goes to 21 people by SMS and to 3 village loudspeakers (file adapter here, on
which sent counts as delivered). The scenario below says what becomes of each person; the expected numbers are
counted from that plan in this file, independently of warnd.report.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import math
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update

from tests.conftest import AUTH, cap_cn
from tests.support.gateway import FakeSmsGateway
from tests.support.reports import (
    add_ack,
    add_doorknock,
    people,
    postgres_refusals,
    receipt,
    rows_by_name,
    sql_log,
    use_sms_gateway,
)
from warnd.api import make_web_app
from warnd.app import App
from warnd.cli import main
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.schema import alert_reports, messages

pytestmark = pytest.mark.file_loudspeaker

# what becomes of each person's SMS: ("delivered", seconds after the alert arrived) | "gateway_fail" (refused at
# send: never sent) | "undeliv" (sent, then a failure receipt) | "silent" (sent, no receipt ever comes)
PLAN: dict[str, tuple[str, int]] = {
    "周建国": ("delivered", 30),
    "刘德明": ("delivered", 45),
    "陈晓红": ("delivered", 60),
    "杨光辉": ("delivered", 90),
    "王大山": ("delivered", 120),
    "李秀英": ("delivered", 150),
    "张永福": ("silent", 0),
    "赵春梅": ("delivered", 200),
    "孙长林": ("gateway_fail", 0),
    "黄丽": ("delivered", 240),
    "吴强": ("delivered", 300),
    "郑小燕": ("delivered", 400),
    "冯志刚": ("silent", 0),
    "何桂兰": ("delivered", 500),
    "罗文军": ("delivered", 600),
    "谢芳": ("delivered", 700),
    "唐建华": ("silent", 0),
    "韩梅": ("undeliv", 0),
    "曹玉珍": ("gateway_fail", 0),
    "彭海涛": ("delivered", 900),
    "邓秀兰": ("silent", 0),
}
# 叫应: who acknowledged, how, and seconds after the alert arrived (张永福's SMS never confirmed: reached by ack)
ACKS = {"周建国": ("link", 100), "陈晓红": ("reply", 200), "张永福": ("reply", 400), "王大山": ("call", 250)}
# 敲门: door-knock results (唐建华 not at home: knocked, not reached; 邓秀兰 moved away: counts as reached)
KNOCKS = {"曹玉珍": "reached", "唐建华": "not_home", "邓秀兰": "moved", "冯志刚": None}
ACK_REQUIRED_ROLES = {"county_leader", "township_leader", "duty_person", "village_cadre"}
FAILING = {"孙长林": "13800230025", "曹玉珍": "13800230046"}


@pytest.fixture
async def gateway() -> AsyncIterator[FakeSmsGateway]:
    async with FakeSmsGateway() as gw:
        gw.fail_phones(*FAILING.values())
        yield gw


@pytest.fixture
async def rapp(config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock) -> AsyncIterator[App]:
    use_sms_gateway(config_dir, gateway.url)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    yield app
    await app.close()


async def run_scenario(app: App, clock: FakeClock) -> int:
    """Ingest, send, then receipts / acks / door-knocks per PLAN; returns the alert id."""
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    alert_id = result.alert_id
    assert alert_id is not None
    await app.dispatcher.drain()
    t0 = clock.now()
    sms = await rows_by_name(app, alert_id, "sms")
    assert set(sms) >= set(PLAN)
    for name, (outcome, _) in plan(sms).items():
        assert sms[name]["status"] == ("failed" if outcome == "gateway_fail" else "sent"), name
    # receipts in time order
    for name, (_, delay) in sorted(
        ((n, p) for n, p in PLAN.items() if p[0] == "delivered"), key=lambda item: item[1][1]
    ):
        clock.advance((t0 + timedelta(seconds=delay) - clock.now()).total_seconds())
        assert await receipt(app, sms[name], "DELIVRD") == "matched"
    assert await receipt(app, sms["韩梅"], "UNDELIV") == "matched"
    # the 川西村 loudspeaker reports a failed play
    speakers = await rows_by_name(app, alert_id, "loudspeaker")
    assert await receipt(app, speakers["川西村大喇叭"], "failed", kind="loudspeaker") == "matched"
    who = await people(app)
    for name, (channel, delay) in ACKS.items():
        await add_ack(
            app,
            alert_id=alert_id,
            root_id=alert_id,
            recipient_id=who[name]["id"],
            at=t0 + timedelta(seconds=delay),
            channel=channel,
        )
    for name, outcome in KNOCKS.items():
        await add_doorknock(
            app, root_id=alert_id, alert_id=alert_id, person=who[name], result=outcome, at=clock.now()
        )
    return alert_id


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1]


def plan(names: Any) -> dict[str, tuple[str, int]]:
    """PLAN for everyone the alert went to: people added to the example config later hear nothing back."""
    return {name: PLAN.get(name, ("silent", 0)) for name in names}


async def expected(app: App, alert_id: int, active: bool) -> dict[str, Any]:
    """Ground truth, counted from the plan."""
    who = await people(app)
    target = app.config.feedback.coverage_target
    groups: dict[str, dict[str, dict[str, int]]] = {"village": {}, "township": {}, "total": {}}
    for name, (outcome, _) in plan(await rows_by_name(app, alert_id, "sms")).items():
        person = who[name]
        delivered = outcome == "delivered"
        acked = name in ACKS
        knock = KNOCKS.get(name)
        counts = {
            "targeted": 1,
            "sent": int(outcome != "gateway_fail"),
            "delivered": int(delivered),
            "failed": int(outcome in ("gateway_fail", "undeliv")),
            "ack_required": int(person["role"] in ACK_REQUIRED_ROLES),
            "acknowledged": int(acked),
            "doorknocked": int(knock is not None),
            "reached_by_doorknock": int(knock in ("reached", "moved")),
            "reached": int(delivered or acked or knock in ("reached", "moved")),
            "covered_elsewhere": 0,
        }
        code = person["area_code"]
        for group, key in (("village", code), ("township", code[:9] + "000"), ("total", "total")):
            bucket = groups[group].setdefault(key, defaultdict(int))
            for k, v in counts.items():
                bucket[k] += v
    out: dict[str, Any] = {}
    for group, buckets in groups.items():
        out[group] = {}
        for key, counts in buckets.items():
            row = dict(counts)
            row["coverage"] = counts["reached"] / counts["targeted"]
            row["below_target"] = row["coverage"] < target
            row["flagged"] = active and row["below_target"]
            out[group][key] = row
    return out


def check_row(actual: dict[str, Any], truth: dict[str, Any]) -> None:
    for key, value in truth.items():
        if key == "coverage":
            assert actual[key] == pytest.approx(value, abs=1e-4), key
        else:
            assert actual[key] == value, key


async def test_report_numbers_equal_ground_truth(rapp: App, clock: FakeClock) -> None:
    alert_id = await run_scenario(rapp, clock)
    report = await rapp.reporter.report(alert_id)
    assert report is not None
    truth = await expected(rapp, alert_id, active=True)
    n = truth["total"]["total"]["targeted"]
    assert n >= 21
    assert report["active"] is True and report["target"] == 0.9
    check_row(report["total"], truth["total"]["total"])
    assert (
        report["total"]["targeted"] == n and report["total"]["reached"] == 17
    )  # 14 + 张永福 + 曹玉珍 + 邓秀兰
    assert {v["area_code"] for v in report["villages"]} == set(truth["village"])
    for village in report["villages"]:
        check_row(village, truth["village"][village["area_code"]])
        assert village["township"] == village["area_code"][:9] + "000"
        assert village["name"] == rapp.config.area_name(village["area_code"])
    assert {t["area_code"] for t in report["townships"]} == set(truth["township"])
    for township in report["townships"]:
        check_row(township, truth["township"][township["area_code"]])
    # 新店村: both numbers refused by the gateway, one household door-knocked: 1 of 2, flagged while active
    [xindian] = [v for v in report["villages"] if v["area_code"] == "500228102202"]
    assert (xindian["targeted"], xindian["failed"], xindian["reached"], xindian["flagged"]) == (2, 2, 1, True)
    # by channel: all people by SMS
    [sms] = report["channels"]
    assert sms["channel"] == "sms"
    assert (sms["targeted"], sms["sent"], sms["delivered"], sms["failed"]) == (n, n - 2, 14, 3)
    assert sms["acknowledged"] == 4 and sms["ack_required"] == 9
    # loudspeakers apart: 川西村's reported a failed play
    terminals = {t["area_code"]: t for t in report["terminals"]}
    assert set(terminals) == {"500228001201", "500228101201", "500228102201"}
    assert (terminals["500228102201"]["targeted"], terminals["500228102201"]["delivered"]) == (1, 0)
    assert terminals["500228102201"]["failed"] == 1
    assert terminals["500228102201"]["not_delivered"] == ["LS-500228102201-01"]
    assert all(terminals[c]["delivered"] == 1 for c in ("500228001201", "500228101201"))
    # timeliness: first delivered receipt − received_at per delivered person; acks − received_at
    delays = [float(d) for outcome, d in PLAN.values() if outcome == "delivered"]
    delivered = report["timeliness"]["delivered"]
    assert delivered["total"] == {
        "count": 14,
        "p50": nearest_rank(delays, 50),
        "p90": nearest_rank(delays, 90),
        "p99": nearest_rank(delays, 99),
    }
    assert (delivered["total"]["p50"], delivered["total"]["p90"], delivered["total"]["p99"]) == (
        200,
        700,
        900,
    )
    assert delivered["channels"]["sms"] == delivered["total"]
    acked = report["timeliness"]["acknowledged"]
    assert acked["total"]["count"] == 4
    assert acked["total"]["p50"] == nearest_rank([100.0, 200.0, 400.0, 250.0], 50) == 200
    assert acked["total"]["p99"] == 400
    assert acked["channels"]["reply"]["count"] == 2 and acked["channels"]["link"]["p90"] == 100
    # the alert block, resolved from any revision id
    assert report["alert"]["root_id"] == alert_id and report["alert"]["drill"] is False
    assert report["alert"]["event"] == "暴雨" and report["alert"]["colour"] == "red"
    assert report["alert"]["received_at"].endswith("+08:00")


async def test_update_resolves_to_root_and_cancel_message_does_not_count(rapp: App, clock: FakeClock) -> None:
    alert_id = await run_scenario(rapp, clock)
    before = await rapp.reporter.report(alert_id)
    clock.advance(60)
    cancel = cap_cn(
        identifier="50022841600000_20240712060000",
        msg_type="Cancel",
        sent="2024-07-12 06:00:00+08:00",
        references="梁平区气象台,50022841600000_20240712053000,2024-07-12T05:30:00+08:00",
    )
    [result] = await rapp.pipeline.ingest(cancel, source="t")
    assert result.alert_id is not None and result.alert_id != alert_id
    await rapp.dispatcher.drain()
    after = await rapp.reporter.report(result.alert_id)  # the Cancel's id resolves to the chain
    assert before is not None and after is not None
    assert after["alert"]["root_id"] == alert_id and after["alert"]["revisions"] == [
        alert_id,
        result.alert_id,
    ]
    assert after["active"] is False and after["alert"]["state"] == "cancelled"
    # the 解除 notes do not make anyone reached; nothing is flagged once the alert ended
    assert after["total"]["reached"] == before["total"]["reached"]
    assert after["total"]["targeted"] == before["total"]["targeted"]
    assert not any(v["flagged"] for v in after["villages"]) and any(
        v["below_target"] for v in after["villages"]
    )


async def test_person_covered_by_a_higher_alert_counts_as_covered_elsewhere(
    rapp: App, clock: FakeClock
) -> None:
    await rapp.pipeline.ingest(cap_cn(), source="t")
    await rapp.dispatcher.drain()
    clock.advance(60)
    yellow_xml = cap_cn(
        identifier="water_20240712053100",
        severity="Yellow",
        geocode="500228101000",
        sent="2024-07-12 05:31:00+08:00",
    ).replace("梁平区气象台".encode(), "梁平区水利局".encode(), 1)
    [yellow] = await rapp.pipeline.ingest(yellow_xml, source="t")
    assert yellow.alert_id is not None
    report = await rapp.reporter.report(yellow.alert_id)
    assert report is not None
    rows = await rapp.store.deliveries_page({"alert_id": yellow.alert_id}, limit=100)
    suppressed_people = {r["recipient"] for r in rows if r["status"] == "suppressed" and r["phone"]}
    assert suppressed_people and {r["status"] for r in rows} == {"suppressed"}
    assert report["total"]["targeted"] == 0 and report["total"]["covered_elsewhere"] == len(suppressed_people)
    assert report["total"]["coverage"] is None and report["total"]["below_target"] is False


async def test_api_report_json_csv_and_unknown(rapp: App, clock: FakeClock) -> None:
    alert_id = await run_scenario(rapp, clock)
    async with TestClient(TestServer(make_web_app(rapp), host="127.0.0.1", port=0), headers=AUTH) as client:
        resp = await client.get(f"/api/v1/alerts/{alert_id}/report")
        assert resp.status == 200
        data = await resp.json()
        assert set(data) >= {
            "alert",
            "active",
            "target",
            "total",
            "townships",
            "villages",
            "channels",
            "terminals",
            "timeliness",
            "computed_at",
        }
        assert set(data["alert"]) >= {
            "id",
            "root_id",
            "identifier",
            "event",
            "colour",
            "level",
            "status",
            "state",
            "drill",
            "area_desc",
            "received_at",
        }
        village_fields = {
            "area_code",
            "name",
            "township",
            "targeted",
            "sent",
            "delivered",
            "failed",
            "acknowledged",
            "ack_required",
            "doorknocked",
            "reached_by_doorknock",
            "reached",
            "coverage",
            "below_target",
            "flagged",
        }
        assert all(set(v) >= village_fields for v in data["villages"])
        assert data["total"]["reached"] == 17 and data["total"]["targeted"] >= 21
        resp = await client.get(f"/api/v1/alerts/{alert_id}/report", params={"format": "csv"})
        assert resp.status == 200 and resp.content_type == "text/csv"
        table = list(csv.DictReader(io.StringIO(await resp.text())))
        assert len(table) == len(data["villages"]) + 1 and table[-1]["area_code"] == "total"
        assert int(table[-1]["reached"]) == 17 and int(table[-1]["targeted"]) == data["total"]["targeted"]
        assert (await client.get("/api/v1/alerts/999/report")).status == 404
        assert (await client.get(f"/api/v1/alerts/{alert_id}/report", params={"format": "xml"})).status == 400
        assert (await client.get("/api/v1/reports/999")).status == 404


def _cli(config_dir: Path, *args: str) -> int:
    return main([*args, "-c", str(config_dir)])


async def test_cli_csv_table_and_unknown_alert(
    rapp: App, clock: FakeClock, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alert_id = await run_scenario(rapp, clock)
    truth = await expected(rapp, alert_id, active=True)
    capsys.readouterr()
    assert await asyncio.to_thread(_cli, config_dir, "report", str(alert_id), "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["area_code"] for r in rows] == [*sorted(truth["village"]), "total"]
    for row in rows[:-1]:
        t = truth["village"][row["area_code"]]
        assert {k: int(row[k]) for k in ("targeted", "sent", "delivered", "failed", "reached")} == {
            k: t[k] for k in ("targeted", "sent", "delivered", "failed", "reached")
        }
        assert float(row["coverage"]) == pytest.approx(t["coverage"], abs=1e-4)
        assert row["below_target"] == ("true" if t["below_target"] else "false")
    assert int(rows[-1]["reached"]) == 17

    assert await asyncio.to_thread(_cli, config_dir, "report", str(alert_id)) == 0
    out = capsys.readouterr().out
    assert "覆盖率 Coverage" in out and "合计 Total" in out
    [xindian] = [line for line in out.splitlines() if "500228102202" in line]
    assert "新店村" in xindian and "50.0% ⚠" in xindian
    [longxi] = [line for line in out.splitlines() if "500228001201" in line]
    assert "100.0%" in longxi and "⚠" not in longxi
    total = truth["total"]["total"]
    [total_line] = [line for line in out.splitlines() if line.startswith("合计 Total")]
    assert f"{total['reached'] / total['targeted'] * 100:.1f}% ⚠" in total_line

    assert await asyncio.to_thread(_cli, config_dir, "report", "4242") == 1
    assert "unknown alert: 4242" in capsys.readouterr().err


async def test_keep_ended_keeps_drills_apart_idempotently(
    rapp: App, clock: FakeClock, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [real] = await rapp.pipeline.ingest(cap_cn(), source="t")
    [drill] = await rapp.pipeline.ingest(
        cap_cn(identifier="50022841600000_20240712053001", status="Exercise"), source="t"
    )
    assert real.alert_id is not None and drill.alert_id is not None
    await rapp.dispatcher.drain()
    live = await rapp.reporter.report(drill.alert_id)
    assert live is not None and live["alert"]["drill"] is True and live["alert"]["status"] == "Exercise"
    assert await rapp.reporter.keep_ended() == []  # nothing ended yet
    clock.advance(13 * 3600)  # past <expires>
    assert set(await rapp.pipeline.expire()) >= {real.alert_id, drill.alert_id}
    kept = await rapp.reporter.keep_ended()
    assert sorted(kept) == sorted([real.alert_id, drill.alert_id])
    assert await rapp.reporter.keep_ended() == []  # idempotent
    async with rapp.store.read() as conn:
        rows = {r.root_id: r.drill for r in await conn.execute(select(alert_reports))}
        assert (await conn.execute(select(func.count()).select_from(alert_reports))).scalar() == 2
    assert rows == {real.alert_id: False, drill.alert_id: True}
    async with TestClient(TestServer(make_web_app(rapp), host="127.0.0.1", port=0), headers=AUTH) as client:
        listed = await (await client.get("/api/v1/reports")).json()
        assert [r["root_id"] for r in listed["reports"]] == [real.alert_id] and listed["drill"] is False
        drills = await (await client.get("/api/v1/reports", params={"drill": "1"})).json()
        assert [r["root_id"] for r in drills["reports"]] == [drill.alert_id]
        assert drills["reports"][0]["alert"]["drill"] is True
        one = await (await client.get(f"/api/v1/reports/{real.alert_id}")).json()
        assert one["report"]["active"] is False and one["report"]["alert"]["state"] == "expired"
        assert one["report"]["total"]["targeted"] >= 21 and isinstance(one["recommendations"], list)
        assert not any(v["flagged"] for v in one["report"]["villages"])
    capsys.readouterr()
    assert await asyncio.to_thread(_cli, config_dir, "report", "--list", "--format", "json") == 0
    import json

    assert [r["root_id"] for r in json.loads(capsys.readouterr().out)] == [real.alert_id]
    assert await asyncio.to_thread(_cli, config_dir, "report", "--list", "--drills", "--format", "json") == 0
    assert [r["root_id"] for r in json.loads(capsys.readouterr().out)] == [drill.alert_id]
    audit = [a for a in await rapp.store.audit_entries() if a["action"] == "report.kept"]
    assert {a["target"] for a in audit} == {str(real.alert_id), str(drill.alert_id)}


GALE = {
    "identifier": "gale-0531",
    "event_code": "11B06",
    "event": "大风",
    "sent": "2024-07-12 05:31:00+08:00",
}


async def _ended_chains(app: App, clock: FakeClock, *extra: dict[str, str]) -> list[int]:
    """The red rainstorm and ``extra`` warnings, sent, then all expired; their alert ids."""
    ids = []
    for kw in ({}, *extra):
        [result] = await app.pipeline.ingest(cap_cn(**kw), source="t")
        assert result.alert_id is not None
        ids.append(result.alert_id)
    await app.dispatcher.drain()
    clock.advance(13 * 3600)  # past <expires>
    assert set(await app.pipeline.expire()) >= set(ids)
    return ids


async def _set_message_data(app: App, alert_id: int, data: object) -> int:
    async with app.store.write() as conn:
        result = await conn.execute(
            update(messages).where(messages.c.alert_id == alert_id, messages.c.segments > 1).values(data=data)
        )
        return int(result.rowcount)


async def test_keep_ended_goes_past_a_failing_chain_and_retries_it(
    rapp: App, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rain, gale = await _ended_chains(rapp, clock, GALE)
    # the rainstorm's stored messages are unreadable for the recommendations (data is not an object)
    assert await _set_message_data(rapp, rain, [1]) > 0
    with caplog.at_level(logging.ERROR, logger="warnd.report"):
        assert await rapp.reporter.keep_ended() == [gale]  # not held up by the chain before it
    [failure] = [r for r in caplog.records if r.name == "warnd.report"]
    assert f"alert chain {rain}" in failure.getMessage() and failure.exc_info is not None
    assert await rapp.reporter.kept_one(rain) is None and await rapp.reporter.kept_one(gale) is not None
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="warnd.report"):
        assert await rapp.reporter.keep_ended() == []  # still failing: retried, logged again
    assert [r.name for r in caplog.records] == ["warnd.report"]
    await _set_message_data(rapp, rain, {})
    assert await rapp.reporter.keep_ended() == [rain]  # repaired: the next pass keeps it


async def test_keep_ended_reads_the_history_once_per_pass(rapp: App, clock: FakeClock) -> None:
    drill = {"identifier": "drill-0532", "status": "Exercise", "event_code": "11B06", "event": "大风"}
    chains = await _ended_chains(rapp, clock, GALE, drill)
    async with sql_log(rapp.store) as seen, postgres_refusals(rapp.store) as refused:
        assert sorted(await rapp.reporter.keep_ended()) == sorted(chains)
    assert refused == []
    window = [s for s in seen if "deliveries.created_at >=" in s]
    assert len(window) == 1, window  # the 30-day window, once for the three chains
    for root_id in chains:  # each kept with its recommendations about the chain, as the API computes them
        kept = await rapp.reporter.kept_one(root_id)
        live = await rapp.reporter.recommendations(since=rapp.reporter.default_since(), alert_id=root_id)
        assert kept is not None and live is not None and kept["recommendations"]
        # (low_coverage comes from kept reports: the live list has the chain's own, kept after it was computed)
        assert kept["recommendations"] == [r for r in live if r["kind"] != "low_coverage"]
