"""The counting of coverage reports and the recommendation rules, on hand-made rows (docs/reports.md)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from warnd import sms
from warnd.config import parse_when
from warnd.optimise import (
    channel_orders,
    extra_segments,
    low_coverage,
    percentile,
    reach_seconds,
    segment_capacity,
    slow_providers,
    terminal_maintenance,
    wrong_numbers,
)
from warnd.report import CSV_COLUMNS, build_report, percent, report_csv, report_table, timing

T0 = datetime(2024, 7, 11, 21, 31, tzinfo=UTC)
AREAS = {"500228101201": "万年村", "500228101202": "红光村", "500228101000": "屏锦镇"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


_ids = iter(range(1, 10_000))


def row(
    rid: int,
    status: str,
    *,
    channel: str = "sms",
    area: str = "500228101201",
    kind: str = "person",
    sent: float | None = 0,
    delivered: float | None = None,
    reached: bool | None = None,
    ack_required: bool = False,
    root: int = 1,
    created: float = 0,
    name: str | None = None,
) -> dict[str, Any]:
    if reached is None:
        reached = status == "delivered"
    return {
        "id": next(_ids),
        "alert_id": root,
        "root_id": root,
        "recipient_id": rid,
        "channel": channel,
        "status": status,
        "ack_required": ack_required,
        "created_at": at(created),
        "sent_at": None if sent is None else at(sent),
        "delivered_at": None if delivered is None else at(delivered),
        "message_id": 1,
        "error": "invalid number" if status == "failed" else None,
        "reached": reached,
        "received_at": at(created),
        "kind": kind,
        "name": name or f"p{rid}",
        "phone": f"138002300{rid:02d}" if kind == "person" else None,
        "role": "public",
        "area_code": area,
        "terminal_id": f"LS-{rid}" if kind == "terminal" else None,
    }


CHAIN = [
    {
        "id": 1,
        "root_id": 1,
        "identifier": "x",
        "event": "暴雨",
        "headline": "暴雨红色预警",
        "colour": "red",
        "level": 1,
        "status": "Actual",
        "msg_type": "Alert",
        "state": "active",
        "area_desc": "梁平区",
        "received_at": T0,
    }
]


def build(
    rows: list[dict[str, Any]],
    acks: Sequence[dict[str, Any]] = (),
    knocks: Sequence[dict[str, Any]] = (),
    **kw: Any,
) -> dict[str, Any]:
    return build_report(
        chain=kw.get("chain", CHAIN),
        deliveries=rows,
        acks=acks,
        doorknocks=knocks,
        target=0.9,
        channel_order=["sms", "push"],
        area_name=AREAS.get,
        tz=ZoneInfo("Asia/Shanghai"),
        computed_at=at(3600),
    )


def test_percentile_is_nearest_rank() -> None:
    values = [30.0, 45, 60, 90, 120, 150, 200, 240, 300, 400, 500, 600, 700, 900]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (200, 700, 900)
    assert percentile([5.0], 99) == 5 and percentile([], 50) is None
    assert timing([]) == {"count": 0, "p50": None, "p90": None, "p99": None}
    assert timing([1.0, 2.0, 3.0, 4.0])["p50"] == 2.0


def test_person_counts_and_coverage() -> None:
    rows = [
        row(1, "delivered", delivered=60, ack_required=True),
        row(2, "sent", ack_required=True),  # no receipt: not delivered, but acknowledged below
        row(3, "failed", sent=None),  # refused at send: not sent, failed
        row(4, "failed", sent=0),  # sent, failure receipt
        row(4, "delivered", channel="push", delivered=30),  # ... but push reached them
        row(5, "sent", channel="push", reached=True),  # push: sent is enough
        row(6, "suppressed", sent=None),  # covered by another alert
        row(7, "sent", area="500228101202"),  # door-knocked, reached
        row(8, "sent", area="500228101202"),  # door-knocked, not home
        row(9, "superseded", sent=None, area="500228101202"),
    ]
    acks = [{"recipient_id": 2, "alert_id": 1, "at": at(300), "channel": "reply", "received_at": T0}]
    knocks = [{"recipient_id": 7, "result": "reached"}, {"recipient_id": 8, "result": "not_home"}]
    report = build(rows, acks, knocks)
    total = report["total"]
    assert total["targeted"] == 8 and total["covered_elsewhere"] == 1
    assert total["sent"] == 5 + 1  # 1, 2, 4, 5, 7, 8
    assert (total["delivered"], total["failed"], total["acknowledged"], total["ack_required"]) == (3, 1, 1, 2)
    assert (total["doorknocked"], total["reached_by_doorknock"]) == (2, 1)
    assert total["reached"] == 5  # 1, 4, 5 delivered; 2 acknowledged; 7 door-knocked
    assert total["coverage"] == round(5 / 8, 4) and total["below_target"] and total["flagged"]
    villages = {v["area_code"]: v for v in report["villages"]}
    assert villages["500228101201"]["targeted"] == 5 and villages["500228101201"]["name"] == "万年村"
    assert villages["500228101202"]["targeted"] == 3 and villages["500228101202"]["reached"] == 1
    assert villages["500228101202"]["township"] == "500228101000"
    [township] = report["townships"]
    assert township["name"] == "屏锦镇" and township["targeted"] == 8
    channels = {c["channel"]: c for c in report["channels"]}
    assert [c["channel"] for c in report["channels"]] == ["sms", "push"]
    assert (
        channels["sms"]["targeted"] == 7
        and channels["sms"]["delivered"] == 1
        and channels["sms"]["failed"] == 2
    )
    assert channels["push"]["targeted"] == 2 and channels["push"]["coverage"] == 1.0
    timeliness = report["timeliness"]
    assert timeliness["delivered"]["total"]["count"] == 3  # 1 (60 s), 4 (30 s via push), 5 (0 s)
    assert (
        timeliness["delivered"]["total"]["p99"] == 60
        and timeliness["delivered"]["channels"]["push"]["count"] == 2
    )
    assert timeliness["acknowledged"]["total"] == {"count": 1, "p50": 300, "p90": 300, "p99": 300}


def test_nobody_targeted_gives_null_coverage_and_ended_chain_flags_nothing() -> None:
    report = build([row(1, "suppressed", sent=None)])
    assert report["total"]["coverage"] is None and report["total"]["below_target"] is False
    ended = [{**CHAIN[0], "state": "expired", "status": "Exercise"}]
    report = build([row(1, "failed", sent=None)], chain=ended)
    assert report["active"] is False and report["alert"]["drill"] is True
    assert report["villages"][0]["below_target"] and not report["villages"][0]["flagged"]


def test_terminals_counted_apart() -> None:
    rows = [
        row(1, "delivered", delivered=5),
        row(50, "sent", channel="loudspeaker", kind="terminal", reached=True),
        row(51, "failed", channel="loudspeaker", kind="terminal"),
        row(52, "failed_over", channel="loudspeaker", kind="terminal", sent=None, area="500228101202"),
    ]
    report = build(rows)
    assert report["total"]["targeted"] == 1
    terminals = {t["area_code"]: t for t in report["terminals"]}
    assert (terminals["500228101201"]["targeted"], terminals["500228101201"]["delivered"]) == (2, 1)
    assert terminals["500228101201"]["not_delivered"] == ["LS-51"]
    assert terminals["500228101202"]["failed_over"] == 1 and terminals["500228101202"]["sent"] == 0


def test_csv_and_table() -> None:
    report = build([row(1, "delivered", delivered=5), row(2, "sent", area="500228101202")])
    table = list(csv.reader(io.StringIO(report_csv(report))))
    assert tuple(table[0]) == CSV_COLUMNS
    assert [r[0] for r in table[1:]] == ["500228101201", "500228101202", "total"]
    assert (
        table[2][CSV_COLUMNS.index("coverage")] == "0.0"
        and table[2][CSV_COLUMNS.index("below_target")] == "true"
    )
    rows = report_table(report, AREAS.get)
    assert rows[0][0] == "万年村 500228101201" and rows[0][-1] == "100.0%"
    assert rows[1][-1] == "0.0% ⚠" and rows[-1][0] == "合计 Total" and rows[-1][-1] == "50.0% ⚠"
    assert percent(None) == "-"


def test_reach_seconds() -> None:
    assert reach_seconds(row(1, "delivered", sent=5, delivered=65)) == 65
    assert reach_seconds(row(1, "sent", sent=7, reached=True)) == 7  # sent is enough on this channel
    assert reach_seconds(row(1, "sent", sent=7)) is None


def test_wrong_number_rule() -> None:
    rows = [
        row(1, "failed", root=1, created=0),
        row(1, "failed", root=2, created=100),  # two chains, nothing since: recommended
        row(2, "failed", root=1, created=0),
        row(2, "failed", root=1, created=5, channel="sms_backup"),  # one chain only
        row(3, "failed", root=1, created=0),
        row(3, "failed", root=2, created=100),
        row(3, "delivered", root=3, created=200, delivered=210),  # reached since: not recommended
        row(4, "failed", root=1, created=0, channel="push"),
        row(4, "failed", root=2, created=100, channel="push"),  # not SMS
    ]
    [rec] = wrong_numbers(rows, ["sms", "sms_backup"])
    assert rec["evidence"]["recipient_id"] == 1 and rec["evidence"]["alerts"] == [1, 2]
    assert rec["evidence"]["phone"] == "138****0001"


def test_terminal_rule() -> None:
    rows = [
        row(50, "failed", kind="terminal", channel="loudspeaker"),
        row(50, "failed_over", kind="terminal", channel="loudspeaker", root=2),
        row(51, "failed", kind="terminal", channel="loudspeaker"),
        row(51, "delivered", kind="terminal", channel="loudspeaker", root=2),
    ]
    [rec] = terminal_maintenance(rows)
    assert rec["evidence"]["terminal_id"] == "LS-50"
    assert (rec["evidence"]["failed"], rec["evidence"]["failed_over"]) == (1, 1)


def test_slow_provider_rule() -> None:
    fast = [row(i, "delivered", delivered=10 + i, area="500228102201") for i in range(1, 41)]
    slow = [row(100 + i, "delivered", delivered=20, area="500228101201") for i in range(4)]
    slow.append(row(200, "delivered", delivered=900, area="500228101201"))
    [rec] = slow_providers(fast + slow, {"500228101000": "屏锦镇"}.get)
    assert rec["evidence"]["township"] == "500228101000" and rec["evidence"]["samples"] == 5
    assert rec["evidence"]["p90"] == 900 and rec["subject"] == "sms @ 屏锦镇"
    assert slow_providers(fast + slow[:4]) == []  # 4 samples are too few
    slow[-1]["delivered_at"] = at(250)  # > 2 × the channel p90 but < 300 s
    assert slow_providers(fast + slow) == []


def test_extra_segment_arithmetic_counts_the_signature() -> None:
    assert (segment_capacity(1), segment_capacity(2), segment_capacity(3)) == (70, 134, 201)
    content = "预" * 65  # 65 + 【梁平区应急管理局】 (10) = 75: 2 segments, 5 too many
    signed = sms.sign("梁平区应急管理局", content)
    messages = [
        {
            "id": 1,
            "alert_id": 1,
            "root_id": 1,
            "channel": "sms",
            "language": "zh-CN",
            "body": signed,
            "data": {},
            "segments": 2,
            "sent": 40,
        },
        # the body without its signature (another alert): the channel's signature still counts
        {
            "id": 2,
            "alert_id": 2,
            "root_id": 2,
            "channel": "sms",
            "language": "zh-CN",
            "body": content,
            "data": {},
            "segments": 2,
            "sent": 3,
        },
        {
            "id": 3,
            "alert_id": 1,
            "root_id": 1,
            "channel": "sms",
            "language": "zh-CN",
            "body": "预" * 110,
            "data": {},
            "segments": 2,
            "sent": 3,
        },
        {
            "id": 4,
            "alert_id": 1,
            "root_id": 1,
            "channel": "sms",
            "language": "zh-CN",
            "body": "预" * 130,
            "data": {},
            "segments": 3,
            "sent": 2,
        },
    ]
    recs = extra_segments(messages, {"sms": "梁平区应急管理局"})
    assert [r["evidence"]["message_id"] for r in recs] == [1, 2, 4]
    assert (recs[0]["evidence"]["length"], recs[0]["evidence"]["cut"], recs[0]["evidence"]["sms_saved"]) == (
        75,
        5,
        40,
    )
    assert recs[1]["evidence"]["length"] == 75
    # 130 characters signed to 140: 3 segments; 134 fit in 2, so 6 too many. 110 → 120: 50 too many, not shown
    assert (recs[2]["evidence"]["segments"], recs[2]["evidence"]["cut"]) == (3, 6)


def _message(
    mid: int, body: str, *, alert: int = 1, root: int = 1, language: str = "zh-CN"
) -> dict[str, Any]:
    return {
        "id": mid,
        "alert_id": alert,
        "root_id": root,
        "channel": "sms",
        "language": language,
        "body": body,
        "data": {},
        "segments": sms.segments(sms.sign("梁平区应急管理局", body)),
        "sent": 1,
    }


def test_extra_segment_once_per_chain_channel_language_and_length() -> None:
    """Personal copies of one text (each duty person's own 叫应 link) and the chain's revisions are one
    template to shorten: one recommendation per (chain, channel, language, length)."""
    text = "预" * 58 + "链接{:05d}"  # 65 characters + the signature: 75, 5 over one segment
    messages = [
        *(_message(i, text.format(i)) for i in range(1, 9)),  # 8 copies in revision 1
        _message(9, text.format(9), alert=3),  # the chain's Update (revision 3 of root 1)
        _message(10, text.format(10), language="en"),  # another language
        _message(11, text.format(11) + "。"),  # one character longer: another length
        _message(12, text.format(12), alert=2, root=2),  # another chain
    ]
    recs = extra_segments(messages, {"sms": "梁平区应急管理局"})
    assert [r["evidence"]["message_ids"] for r in recs] == [[*range(1, 10)], [10], [11], [12]]
    first = recs[0]["evidence"]
    assert (first["message_id"], first["alert_ids"], first["root_id"]) == (1, [1, 3], 1)
    assert (first["length"], first["cut"], first["deliveries"], first["sms_saved"]) == (75, 5, 9, 9)
    assert recs[0]["subject"] == "sms 消息 #1 等 9 条（预警 1）" and "按 9 次发送" in recs[0]["message"]
    assert (recs[1]["evidence"]["language"], recs[2]["evidence"]["length"]) == ("en", 76)
    assert recs[3]["subject"] == "sms 消息 #12（预警 2）"


def test_parse_since_reads_a_naive_time_in_the_configured_zone() -> None:
    now = at(0)
    cst = ZoneInfo("Asia/Shanghai")
    assert parse_when("2024-07-12T05:30:00", now, cst) == datetime(2024, 7, 11, 21, 30, tzinfo=UTC)
    assert parse_when("2024-07-12T05:30:00+00:00", now, cst) == datetime(2024, 7, 12, 5, 30, tzinfo=UTC)
    assert parse_when("12h", now, cst) == now - timedelta(hours=12)
    assert parse_when(None, now, cst) is None


def test_low_coverage_rule_skips_drills() -> None:
    village = {
        "area_code": "500228101201",
        "name": "万年村",
        "below_target": True,
        "coverage": 0.5,
        "targeted": 2,
        "reached": 1,
    }
    kept = [
        {"root_id": 1, "drill": False, "report": {"target": 0.9, "villages": [village]}},
        {"root_id": 2, "drill": True, "report": {"target": 0.9, "villages": [village]}},
        {
            "root_id": 3,
            "drill": False,
            "report": {"target": 0.9, "villages": [{**village, "coverage": 0.25}]},
        },
    ]
    [rec] = low_coverage(kept)
    assert [a["root_id"] for a in rec["evidence"]["alerts"]] == [1, 3] and rec["evidence"]["worst"] == 0.25
    assert "90%" in rec["message"] and "25%" in rec["message"]


def test_channel_order_rule() -> None:
    rows = [
        row(1, "delivered", channel="sms", delivered=120),
        row(1, "sent", channel="push", reached=True, sent=2),
        row(2, "failed", channel="sms"),
        row(2, "delivered", channel="sms", delivered=5, root=2),
        row(2, "sent", channel="push", reached=True, sent=50),  # push: 1.0 success beats sms 0.5
        row(3, "delivered", channel="sms", delivered=10),
        row(3, "sent", channel="push", reached=True, sent=60),  # same success, sms faster: configured order
        row(4, "sent", channel="sms"),  # no outcome yet: not history
        row(4, "sent", channel="push", reached=True),
    ]
    recs, learned = channel_orders(rows, ["sms", "push"])
    assert {p["recipient_id"]: p["channels"] for p in learned} == {
        1: ["push", "sms"],
        2: ["push", "sms"],
        3: ["sms", "push"],
    }
    assert [r["evidence"]["recipient_id"] for r in recs] == [1, 2]
    assert recs[1]["evidence"]["channels"]["sms"]["success_rate"] == 0.5
