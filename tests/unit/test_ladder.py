"""Pure parts of the escalation ladder: channel order, household order, the notice template in both languages,
and the example config's ladders (docs/escalation.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warnd.config import county_code, is_village, load_config, township_code
from warnd.escalation import (
    household_informed,
    household_key,
    listed_for,
    member_informed,
    order_channels,
    valid_village,
    vulnerable_counts,
    waiting,
)
from warnd.render import Renderer, sample_context
from warnd.rules import Facts, RuleEngine

ROOT = Path(__file__).resolve().parents[2]


def renderer() -> Renderer:
    return Renderer(ROOT / "templates", default_language="zh-CN", timezone="Asia/Shanghai")


def red_alert() -> dict[str, Any]:
    alert = dict(sample_context()["alert"])
    alert.update(colour="red", level=1, sent=datetime(2024, 7, 11, 21, 30, tzinfo=UTC), sender="梁平区气象台")
    return alert


def test_admin_levels() -> None:
    assert township_code("500228101201") == "500228101000"
    assert county_code("500228101201") == "500228000000"
    assert is_village("500228101201") and not is_village("500228101000") and not is_village("500228000000")


def test_channel_order_learned_first_among_allowed() -> None:
    assert order_channels(["push", "loudspeaker"], None) == ["push", "loudspeaker"]
    assert order_channels(["push", "loudspeaker"], ["loudspeaker", "sms"]) == ["loudspeaker", "push"]
    assert order_channels(["push", "push"], []) == ["push"]


def test_households_vulnerable_first_then_address() -> None:
    households = [
        {"household": "a", "address": "一组1号", "vulnerable": []},
        {"household": "b", "address": "一组9号", "vulnerable": ["pregnant"]},
        {"household": "c", "address": "三组2号", "vulnerable": ["child", "elderly_alone"]},
        {"household": "d", "address": None, "vulnerable": ["disabled"]},
    ]
    assert [h["household"] for h in sorted(households, key=household_key)] == ["c", "d", "b", "a"]
    assert vulnerable_counts(households) == {"elderly_alone": 1, "disabled": 1, "child": 1, "pregnant": 1}


def test_superior_notice_zh_and_en() -> None:
    person = {
        "name": "李秀英",
        "phone": "13800230022",
        "role": "duty_person",
        "role_label": "村防汛责任人",
        "place": "万年村",
    }
    context = {
        "alert": red_alert(),
        "notice": {"kind": "superior", "reason": "unacknowledged", "person": person},
    }
    zh = renderer().render("notice", "zh-CN", context, style="sms", signature="梁平区应急管理局")
    assert zh.data["content"] == (
        "叫应提醒：万年村村防汛责任人李秀英（13800230022）未确认收到暴雨红色预警（梁平区气象台 7月12日5时30分发布），"
        "请立即电话联系并督促落实。"
    )
    assert zh.body.startswith("【梁平区应急管理局】")
    undelivered = {**context, "notice": {**context["notice"], "reason": "undelivered"}}
    assert (
        "李秀英（13800230022）未收到暴雨红色预警"
        in renderer().render("notice", "zh-CN", undelivered, style="sms").body
    )
    en = renderer().render("notice", "en", context, style="sms")
    assert en.body.startswith(
        "Call-back reminder: 李秀英 (duty person, 万年村, 13800230022) has not acknowledged"
    )


def test_doorknock_notice_with_and_without_link_and_in_drills() -> None:
    notice = {
        "kind": "doorknock",
        "reason": "undelivered",
        "village": {"code": "500228101201", "name": "万年村"},
        "households": 3,
        "vulnerable": {"elderly_alone": 1, "pregnant": 1},
        "url": "https://warn.example.cn/k/abc",
    }
    body = renderer().render("notice", "zh-CN", {"alert": red_alert(), "notice": notice}, style="sms").body
    assert body == (
        "敲门任务：暴雨红色预警，万年村有3户未收到或未确认（含独居老人1户、孕妇1户），请立即入户通知并登记："
        "https://warn.example.cn/k/abc"
    )
    drill = {**red_alert(), "status": "Exercise"}
    no_link = {**notice, "url": None, "vulnerable": {}}
    body = renderer().render("notice", "zh-CN", {"alert": drill, "notice": no_link}, style="sms").body
    assert (
        body
        == "【演练】敲门任务：暴雨红色预警，万年村有3户未收到或未确认，请立即入户通知并登记，完成后报告镇村。"
    )
    en = renderer().render("notice", "en", {"alert": red_alert(), "notice": notice}, style="sms").body
    assert "3 households in 万年村" in en and "1 elderly living alone, 1 pregnant" in en


def test_templates_still_check_clean() -> None:
    assert renderer().check() == []


def test_example_orange_and_red_rules_escalate() -> None:
    config = load_config(ROOT / "config")
    ladders = {rule.name: rule.escalation for rule in config.rules}
    for hazard in ("rainstorm", "gale", "heat", "flood", "flash-flood"):
        red, orange = ladders[f"{hazard}-red"], ladders[f"{hazard}-orange"]
        assert red is not None and (red.deliver_within, red.step_after) == (600.0, 300.0)
        assert orange is not None and (orange.deliver_within, orange.step_after) == (900.0, 600.0)
        assert red.resend == orange.resend == ["push", "loudspeaker"]
        assert red.steps == ["resend", "superior", "doorknock"]
    assert all(
        escalation is None for name, escalation in ladders.items() if name.endswith(("blue", "yellow"))
    )
    hazard = config.catalogue().find("暴雨")
    plan = RuleEngine(config).plan(
        Facts(
            hazard=hazard,
            event="暴雨",
            colour="red",
            status="Actual",
            msg_type="Alert",
            area_prefixes=("500228",),
            has_geometry=False,
        )
    )
    assert plan.escalation is not None and plan.escalation["rule"] == "rainstorm-red"
    assert {t.deliver_within for t in plan.targets} == {600.0}
    # the example's door-knock fields: an elderly woman alone and a household of two in 万年村三组
    people = {p.name: p for p in config.subscribers}
    assert people["陈玉兰"].vulnerable == ["elderly_alone"] and people["陈玉兰"].superior == "13800230022"
    assert people["刘大伟"].household == people["王春燕"].household == "wn-3-15"


def member(reason: str | None, *, reached: bool = False, acknowledged: bool = False) -> dict[str, Any]:
    text = "未确认收到预警（叫应期限已过）" if reason == "unacknowledged" else "未收到预警（送达期限已过）"
    return {"ladder_reason": reason, "reason": text, "reached": reached, "acknowledged": acknowledged}


def test_who_on_the_list_counts_as_informed() -> None:
    # undelivered: a message that arrived after all, or an acknowledgement
    assert member_informed(member("undelivered", reached=True))
    assert member_informed(member("undelivered", acknowledged=True))
    assert not member_informed(member("undelivered"))
    # unacknowledged: the message had arrived — that is why they are listed; only an acknowledgement counts
    assert not member_informed(member("unacknowledged", reached=True))
    assert member_informed(member("unacknowledged", reached=True, acknowledged=True))
    # the ladder gone (no join): the listing's own words say why
    assert listed_for(member(None)) == "undelivered" and not member_informed(member(None, reached=False))
    assert listed_for({**member(None), "reason": "未确认收到预警（叫应期限已过）"}) == "unacknowledged"


def test_household_informed() -> None:
    assert household_informed([member("undelivered"), member("undelivered", reached=True)])
    # someone owes 叫应: a household member's delivered message does not stand for it, an acknowledgement does
    assert not household_informed(
        [member("unacknowledged", reached=True), member("undelivered", reached=True)]
    )
    assert household_informed(
        [member("unacknowledged", reached=True), member("undelivered", acknowledged=True)]
    )
    assert not household_informed([member("undelivered")])


def test_waiting_people_are_no_door_knockers() -> None:
    households = [
        {"result": None, "members": [{"recipient_id": 1}, {"recipient_id": 2}]},
        {"result": "moved", "members": [{"recipient_id": 3}]},
        {"result": "reached_by_message", "members": [{"recipient_id": 4}]},
    ]
    assert waiting(households) == {1, 2}


def test_village_codes() -> None:
    assert valid_village("500228101201")
    for bad in (
        "",
        "50022810120",
        "5002281012011",
        "50022810120a",
        "<script>",
        "５００２２８１０１２０１",
        "500228101201\n",
    ):
        assert not valid_village(bad), bad
