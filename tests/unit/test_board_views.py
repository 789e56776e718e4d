"""The pure parts of the live board, the dashboard and the alert timeline (warnd/board.py, warnd/timeline.py):
counting, ordering, buckets, titles, masking, and the ``api.live_every`` setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import edit_yaml

from warnd.board import (
    board_order,
    channel_rates,
    colour_counts,
    delivery_buckets,
    queued_people,
    village_coverage,
)
from warnd.config import ConfigInvalid, load_config
from warnd.timeline import (
    ack_events,
    audit_events,
    capped,
    channel_label,
    delivery_events,
    doorknock_events,
    escalation_events,
    in_order,
    masked,
    revision_events,
)

T0 = datetime(2024, 7, 11, 21, 31, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def delivery(
    recipient: int, status: str, *, kind: str = "person", sent: float | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "recipient_id": recipient,
        "kind": kind,
        "status": status,
        "sent_at": None if sent is None else at(sent),
        "channel": extra.pop("channel", "sms"),
        "reached": extra.pop("reached", status == "delivered"),
        **extra,
    }


# --- the board -------------------------------------------------------------------------------------------------


def test_queued_people_are_those_nothing_has_gone_out_to_yet() -> None:
    rows = [
        delivery(1, "queued"),  # waiting
        delivery(2, "queued"),
        delivery(2, "sent", sent=3, channel="push"),  # one channel went out: not waiting
        delivery(3, "failed"),  # given up, not waiting
        delivery(4, "suppressed"),  # another warning covers them
        delivery(5, "queued", kind="terminal"),  # loudspeakers are counted apart
        delivery(6, "queued"),
        delivery(6, "suppressed", channel="push"),
    ]
    assert queued_people(rows) == 2  # 1 and 6


def item(id_: int, colour: str | None, received: float) -> dict[str, Any]:
    return {"id": id_, "colour": colour, "received_at": at(received)}


def test_board_order_is_red_first_then_newest_first() -> None:
    items = [
        item(1, "blue", 0),
        item(2, "yellow", 10),
        item(3, None, 50),
        item(4, "red", 5),
        item(5, "yellow", 30),
        item(6, "orange", 1),
        item(7, "red", 40),
        item(8, "purple", 60),  # an unknown colour goes with no colour
        item(9, "yellow", 30),  # same moment as 5: the newer revision first
    ]
    assert [i["id"] for i in board_order(items)] == [7, 4, 6, 9, 5, 2, 1, 8, 3]


# --- the dashboard ---------------------------------------------------------------------------------------------


def test_delivery_buckets_include_their_upper_bound() -> None:
    buckets = delivery_buckets([0, 10, 10.001, 30, 59.9, 60, 120, 121, 300, 600, 600.5, 3600])
    assert [(b["le_seconds"], b["count"]) for b in buckets] == [
        (10, 2),
        (30, 2),
        (60, 2),
        (120, 1),
        (300, 2),
        (600, 1),
        (None, 2),
    ]
    assert [b["label"] for b in buckets] == [
        "≤10秒",
        "≤30秒",
        "≤1分钟",
        "≤2分钟",
        "≤5分钟",
        "≤10分钟",
        ">10分钟",
    ]
    assert sum(b["count"] for b in delivery_buckets([])) == 0


def test_channel_rates_count_what_was_attempted() -> None:
    rows = [
        delivery(1, "delivered", sent=1),
        delivery(2, "sent", sent=1),  # no receipt yet: attempted, not delivered
        delivery(3, "failed"),  # refused at send
        delivery(4, "failed", sent=1),  # a failure receipt
        delivery(5, "queued"),  # not attempted yet
        delivery(6, "superseded"),  # never had to go
        delivery(7, "sent", sent=1, channel="loudspeaker", reached=True),  # sent is enough there
        delivery(8, "failed_over", channel="loudspeaker"),
        delivery(9, "expired", channel="loudspeaker"),
        delivery(10, "suppressed", channel="webhook"),
    ]
    rates = channel_rates(rows, ["loudspeaker", "sms"])
    assert rates == [
        {
            "channel": "loudspeaker",
            "sent": 1,
            "delivered": 1,
            "failed": 1,
            "attempted": 2,
            "success_rate": 0.5,
        },
        {"channel": "sms", "sent": 3, "delivered": 1, "failed": 2, "attempted": 4, "success_rate": 0.25},
        {"channel": "webhook", "sent": 0, "delivered": 0, "failed": 0, "attempted": 0, "success_rate": None},
    ]


def test_village_coverage_sums_the_reports() -> None:
    def report(*villages: tuple[str, int, int]) -> dict[str, Any]:
        return {
            "villages": [
                {"area_code": c, "name": f"村{c[-1]}", "targeted": t, "reached": r} for c, t, r in villages
            ]
        }

    rows = village_coverage(
        [report(("500228101202", 4, 3), ("500228101201", 2, 2)), report(("500228101201", 3, 0))]
    )
    assert rows == [
        {"code": "500228101201", "name": "村1", "targeted": 5, "reached": 2, "coverage": 0.4},
        {"code": "500228101202", "name": "村2", "targeted": 4, "reached": 3, "coverage": 0.75},
    ]
    assert village_coverage([report(("500228101201", 0, 0))])[0]["coverage"] is None


def test_colour_counts_take_each_chains_most_severe_warning() -> None:
    def rev(colour: str | None, msg_type: str = "Alert") -> dict[str, Any]:
        return {"colour": colour, "msg_type": msg_type}

    chains = [
        [rev("yellow"), rev("red", "Update"), rev("red", "Cancel")],
        [rev("orange"), rev("blue", "Update")],
        [rev(None)],
        [rev("blue")],
        [rev(None, "Cancel")],
    ]
    assert colour_counts(chains) == {"red": 1, "orange": 1, "yellow": 0, "blue": 1, "none": 2}


# --- the timeline ----------------------------------------------------------------------------------------------


def test_channel_labels() -> None:
    assert channel_label("sms", {"adapter": "file"}) == "短信"
    assert channel_label("sms_backup", {"adapter": "file", "template": "sms"}) == "短信（sms_backup）"
    assert (
        channel_label("loudspeaker", {"adapter": "mqtt_loudspeaker", "template": "loudspeaker"}) == "大喇叭"
    )
    assert channel_label("push", {"adapter": "webpush"}) == "推送"
    assert channel_label("wechat", {"adapter": "webhook", "style": "push"}) == "推送（wechat）"
    assert channel_label("hook", {"adapter": "webhook"}) == "hook"


def revision(id_: int, msg_type: str = "Alert", **values: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "identifier": f"id-{id_}",
        "sender": "梁平区气象台",
        "msg_type": msg_type,
        "status": "Actual",
        "colour": "red",
        "level": 1,
        "headline": "暴雨红色预警",
        "source": "http:token:feed",
        "payload_id": id_ * 10,
        "received_at": at(id_ * 60),
        "rules": {"rules": ["rainstorm-red", "rainstorm-red-public"]},
        "state": "active",
        "fanout_stats": None,
        **values,
    }


def test_revision_events_titles() -> None:
    chain = [
        revision(1),
        revision(2, "Update", rules={"rules": []}),
        revision(3, "Update", state="expired", fanout_stats={"not_sent": "expired on arrival"}),
        revision(4, "Cancel"),
    ]
    payloads = {10: {"received_at": at(59), "source": "feed:cq", "errors": ["info/web: not a URL"]}}
    events = revision_events(chain, payloads)
    assert [(e["kind"], e["title"]) for e in events] == [
        ("received", "收到预警"),
        ("validated", "校验通过（1 条提示）"),
        ("matched", "规则匹配：rainstorm-red、rainstorm-red-public"),
        ("revision", "收到更新（第2版）"),
        ("validated", "校验通过"),
        ("matched", "没有匹配的规则，不发送"),
        ("revision", "收到更新（第3版）"),
        ("validated", "校验通过"),
        ("matched", "规则匹配：rainstorm-red、rainstorm-red-public（到达时已过期，不发送）"),
        ("revision", "收到解除"),
        ("validated", "校验通过"),
        ("matched", "解除通知发给此前收到预警的人"),
    ]
    assert events[0]["at"] == at(59) and events[0]["detail"]["source"] == "feed:cq"
    assert events[1]["detail"]["warnings"] == ["info/web: not a URL"]
    assert events[3]["at"] == at(120) and events[3]["alert_id"] == 2
    silent = revision_events([revision(1, state="inactive")], {})
    assert silent[2]["title"].endswith("（草稿或系统消息，不发送）")


def summary(alert_id: int, channel: str, status: str, count: int, **times: float | None) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "channel": channel,
        "status": status,
        "count": count,
        **{k: None if v is None else at(v) for k, v in times.items()},
    }


def test_delivery_events_started_done_and_last_receipt() -> None:
    chain = [revision(1), revision(2, "Cancel")]
    rows = [
        summary(1, "sms", "delivered", 3, first_sent=1, last_sent=4, last_delivered=90, last_unsent=None),
        summary(1, "sms", "failed", 1, first_sent=None, last_sent=None, last_delivered=None, last_unsent=7),
        summary(
            1, "loudspeaker", "sent", 1, first_sent=2, last_sent=2, last_delivered=None, last_unsent=None
        ),
        summary(
            1, "loudspeaker", "queued", 2, first_sent=None, last_sent=None, last_delivered=None, last_unsent=0
        ),
        summary(2, "sms", "sent", 4, first_sent=200, last_sent=201, last_delivered=None, last_unsent=None),
    ]
    events = delivery_events(chain, rows, {"sms": "短信", "loudspeaker": "大喇叭"})
    titles = {(e["alert_id"], e["title"]): e for e in events}
    assert set(titles) == {
        (1, "短信开始发送"),
        (1, "短信发送完毕：已送达 3，失败 1"),
        (1, "短信最近一条送达回执（已送达 3）"),
        (1, "大喇叭开始发送"),  # two still queued: not done
        (2, "解除·短信开始发送"),
        (2, "解除·短信发送完毕：已发送 4"),
    }
    assert titles[(1, "短信开始发送")]["at"] == at(1)
    assert titles[(1, "短信发送完毕：已送达 3，失败 1")]["at"] == at(7)  # the failure came last
    assert titles[(1, "短信最近一条送达回执（已送达 3）")]["at"] == at(90)
    assert titles[(1, "大喇叭开始发送")]["detail"]["counts"] == {"sent": 1, "queued": 2}
    assert titles[(2, "解除·短信发送完毕：已发送 4")]["at"] == at(201)


def test_people_events_are_masked() -> None:
    acks = ack_events(
        [
            {
                "at": at(5),
                "alert_id": 1,
                "channel": "reply",
                "recorded_by": "13800230021",
                "name": "王大山",
                "phone": "13800230021",
                "role": "duty_person",
                "area_code": "500228001201",
                "detail": {"text": "收到 13800230021"},
            },
            {
                "at": at(6),
                "alert_id": 1,
                "channel": "call",
                "recorded_by": "user:张三",
                "name": "李秀英",
                "phone": "+8613800230022",
                "role": "duty_person",
                "area_code": "500228101201",
                "detail": {},
            },
        ]
    )
    assert [e["title"] for e in acks] == [
        "王大山 已确认收到（回复短信）",
        "李秀英 已确认收到（电话确认，user:张三 记录）",
    ]
    assert acks[0]["detail"]["phone"] == "138****0021" and acks[1]["detail"]["phone"] == "+86138****0022"
    assert acks[0]["detail"]["info"] == {"text": "收到 138****0021"}
    steps = escalation_events(
        [
            {
                "at": at(300),
                "step": "superior",
                "reason": "已告知乡镇责任人陈晓红 13800230012：李秀英未确认收到预警 (superior told)",
                "detail": {"phones": ["13800230012"]},
                "escalation_id": 4,
                "alert_id": 1,
                "why": "unacknowledged",
                "name": "李秀英",
                "role": "duty_person",
                "area_code": "500228101201",
            }
        ]
    )
    assert steps[0]["title"] == "升级·李秀英：已告知乡镇责任人陈晓红 138****0012：李秀英未确认收到预警"
    assert steps[0]["detail"]["info"] == {"phones": ["138****0012"]}
    knocks = doorknock_events(
        [
            {
                "area_code": "500228101201",
                "household": "wn-2",
                "result": "moved",
                "result_at": at(900),
                "result_by": "吴强",
                "note": "已转移到 13800230032 家",
                "people": 2,
            }
        ],
        {"500228101201": "万年村"}.get,
    )
    assert knocks[0]["title"] == "敲门：万年村 wn-2 已转移（吴强）"
    assert knocks[0]["detail"]["note"] == "已转移到 138****0032 家"
    assert masked({"a": ["13800230012", 3, None], "b": "x"}) == {"a": ["138****0012", 3, None], "b": "x"}


def test_audit_events_kind_title_and_revision() -> None:
    def entry(action: str, target: str | None, actor: str = "user:张三") -> dict[str, Any]:
        return {"at": at(1), "action": action, "actor": actor, "target": target, "detail": {}}

    events = audit_events(
        [
            entry("alert.post", "5", actor="token:gauge-feed"),
            entry("broadcast.submit", "broadcast:3"),
            entry("broadcast.approve", "broadcast:3", actor="user:李四"),
            entry("broadcast.withdraw", "broadcast:4"),
            entry("doorknock.export", "alert:5/recipient:3"),
            entry("doorknock.print", "alert-chain:5/household:wn-2"),
            entry("something.new", None),
        ],
        {3: 6},
    )
    assert [(e["kind"], e["title"], e["alert_id"]) for e in events] == [
        ("action", "通过接口提交预警（gauge-feed）", 5),
        ("broadcast", "提交广播（张三）", 6),
        ("broadcast", "广播已批准（李四）", 6),
        ("broadcast", "广播已撤回（张三）", None),
        ("action", "导出敲门名单（张三）", 5),
        ("action", "打印敲门名单（张三）", None),
        ("action", "操作：something.new（张三）", None),
    ]


def test_order_and_caps() -> None:
    events = [
        {"at": at(5), "kind": "ack"},
        {"at": at(0), "kind": "deliveries"},
        {"at": at(0), "kind": "matched"},
        {"at": at(0), "kind": "received"},
        {"at": at(5), "kind": "ack"},
        {"at": at(0), "kind": "validated"},
        {"at": at(7), "kind": "ack"},
        {"at": at(1), "kind": "escalation"},
    ]
    ordered = in_order(events)
    assert [(e["kind"], (e["at"] - T0).seconds) for e in ordered] == [
        ("received", 0),
        ("validated", 0),
        ("matched", 0),
        ("deliveries", 0),
        ("escalation", 1),
        ("ack", 5),
        ("ack", 5),
        ("ack", 7),
    ]
    kept, truncated = capped(ordered, 2)
    assert [e["kind"] for e in kept].count("ack") == 2 and truncated
    assert capped(ordered, 3) == (ordered, False)


# --- the setting -----------------------------------------------------------------------------------------------


def test_live_every_defaults_to_two_seconds_and_must_be_positive(config_dir: Path) -> None:
    assert load_config(config_dir).api.live_every == 2.0
    edit_yaml(config_dir / "warnd.yaml", lambda data: data.setdefault("api", {}).update(live_every="500ms"))
    assert load_config(config_dir).api.live_every == 0.5
    edit_yaml(config_dir / "warnd.yaml", lambda data: data["api"].update(live_every="5s"))
    assert load_config(config_dir).api.live_every == 5.0
    edit_yaml(config_dir / "warnd.yaml", lambda data: data["api"].update(live_every=0))
    with pytest.raises(ConfigInvalid) as caught:
        load_config(config_dir)
    assert any(e.path.endswith("live_every") for e in caught.value.errors), caught.value
