"""The rendering stage: every hazard × colour × action, drills, languages, cache, check-config."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from warnd.render import Rendered, Renderer, RenderError, sample_context, style_for
from warnd.sms import segments

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SIGNATURE = "梁平区应急管理局"
ACTIONS = ("issue", "update", "upgrade", "downgrade", "cancel")
ORDER = ("blue", "yellow", "orange", "red")
COLOUR_ZH = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}
CHANNELS = (("sms", "sms"), ("loudspeaker", "spoken"), ("push", "push"))
ARABIC = re.compile(r"[0-9０-９]")
CJK = re.compile(r"[\u4e00-\u9fff【】]")

# the ladder each hazard must have (domain doc §1: not every hazard has four colours)
LADDERS = {
    "11B01": ("台风", "blue yellow orange red"),
    "11B03": ("暴雨", "blue yellow orange red"),
    "11B04": ("暴雪", "blue yellow orange red"),
    "11B05": ("寒潮", "blue yellow orange red"),
    "11B06": ("大风", "blue yellow orange red"),
    "11B07": ("沙尘暴", "yellow orange red"),
    "11B09": ("高温", "yellow orange red"),
    "11B22": ("干旱", "orange red"),
    "11B14": ("雷电", "yellow orange red"),
    "11B15": ("冰雹", "orange red"),
    "11B16": ("霜冻", "blue yellow orange"),
    "11B17": ("大雾", "yellow orange red"),
    "11B19": ("霾", "yellow orange red"),
    "11B21": ("道路结冰", "yellow orange red"),
    "11A01": ("洪水", "blue yellow orange red"),
    "11A51": ("山洪", "blue yellow orange red"),
}
CASES = [(code, colour) for code, (_, ladder) in LADDERS.items() for colour in ladder.split()]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def context(
    code: str | None = "11B03",
    colour: str | None = "red",
    action: str = "issue",
    *,
    name: str | None = None,
    drill: str | None = None,
    **alert: Any,
) -> dict[str, Any]:
    sent = datetime(2026, 7, 1, 9, 15, tzinfo=UTC)
    rank = ORDER.index(colour) if colour in ORDER else 2
    previous = None
    if action == "upgrade":
        previous = {"colour": ORDER[max(rank - 1, 0)], "level": None}
    elif action == "downgrade":
        previous = {"colour": ORDER[min(rank + 1, 3)], "level": None}
    elif action == "update":
        previous = {"colour": colour, "level": None}
    hazard_name = name or (LADDERS[code][0] if code in LADDERS else None)
    data: dict[str, Any] = {
        "id": 42,
        "identifier": "50022841600000_20260701171500",
        "sender": "梁平区气象台",
        "sender_code": "50022841600000",
        "sent": sent,
        "status": "Actual",
        "msg_type": {"issue": "Alert", "cancel": "Cancel"}.get(action, "Update"),
        "event": hazard_name,
        "hazard": {"code": code, "name": hazard_name},
        "colour": colour,
        "level": 4 - rank if colour in ORDER else None,
        "headline": f"梁平区气象台发布{hazard_name}预警",
        "description": "预计未来3小时内我区降雨量将达100毫米以上，风力7-8级，阵风9~10级，气温28-35℃。",
        "instruction": "咨询电话023-53222110，区划代码500228000000。",
        "area_desc": "梁平区",
        "web": "http://www.12379.cn",
        "note": "降雨减弱，17:15解除。" if action == "cancel" else None,
        "effective": sent,
        "onset": sent,
        "expires": sent + timedelta(hours=6),
        "channel_text": None,
    }
    data.update(alert)
    return {"alert": data, "action": action, "previous": previous, "drill": drill, "issuer": SIGNATURE}


def render_all(renderer: Renderer, ctx: dict[str, Any], language: str = "zh-CN") -> Iterator[Rendered]:
    for template, style in CHANNELS:
        yield renderer.render(template, language, ctx, style=style, signature=SIGNATURE)


def copy_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    return target


# --- the shipped wording --------------------------------------------------------------------------------


def test_hazards_yaml_has_each_hazard_with_exactly_its_colours() -> None:
    for language in ("zh-CN", "en"):
        hazards = yaml.safe_load((TEMPLATES / language / "hazards.yaml").read_text(encoding="utf-8"))
        assert "default" in hazards
        for code, (name, ladder) in LADDERS.items():
            entry = hazards[code]
            if language == "zh-CN":
                assert entry["name"] == name
                assert entry["risks"]
            assert set(entry["colours"]) == set(ladder.split()), (language, code)
            for colour, wording in entry["colours"].items():
                assert wording["advice"] and wording["actions"], (language, code, colour)


def test_rainstorm_advice_follows_the_defence_guide_ladder(renderer: Renderer) -> None:
    expected = {"blue": "准备工作", "yellow": "防暴雨工作", "orange": "应急工作", "red": "应急和抢险工作"}
    for colour, words in expected.items():
        ctx = renderer.context_for("zh-CN", context("11B03", colour))
        assert ctx["hazard_text"]["advice"].startswith("政府及相关部门按照职责做好防暴雨")
        assert words in ctx["hazard_text"]["advice"]
    red = renderer.context_for("zh-CN", context("11B03", "red"))["hazard_text"]
    assert "停课" in red["advice"] and "停业" in red["advice"]
    assert red["criteria"] == "3小时内降雨量将达100毫米以上，或者已达100毫米以上且降雨可能持续"


# --- every hazard × colour × action ----------------------------------------------------------------------


@pytest.mark.parametrize(("code", "colour"), CASES)
def test_every_hazard_colour_action_renders_in_zh_cn(renderer: Renderer, code: str, colour: str) -> None:
    name = LADDERS[code][0]
    for action in ACTIONS:
        sms, spoken, push = render_all(renderer, context(code, colour, action))
        for rendered in (sms, spoken, push):
            assert name in rendered.body, (action, rendered.body)
            assert "None" not in rendered.body
        assert push.title is not None and name in push.title
        for rendered in (sms, spoken):
            assert COLOUR_ZH[colour] in rendered.body
        assert sms.body.startswith(f"【{SIGNATURE}】")
        assert sms.body.count("【") == 1 and sms.body.count("】") == 1
        assert sms.segments == segments(sms.body)
        assert sms.data == {"signature": SIGNATURE, "content": sms.body.removeprefix(f"【{SIGNATURE}】")}
        assert spoken.data == {"text": spoken.body}
        assert len(spoken.body) <= 500 and len(sms.data["content"]) <= 500
        if action == "cancel":
            for rendered in (sms, spoken, push):
                assert "解除" in rendered.body
            assert push.title == f"{name}预警解除"
            assert COLOUR_ZH[colour] in push.body
        else:
            assert COLOUR_ZH[colour] in push.body + (push.title or "")
        if action in ("upgrade", "downgrade"):
            word = "升级" if action == "upgrade" else "降级"
            for rendered in (sms, spoken):
                assert word in rendered.body
            assert word in (push.title or "")
        if action == "update":
            assert "更新" in sms.body


@pytest.mark.parametrize(("code", "colour"), CASES)
def test_loudspeaker_scripts_hold_no_arabic_digits(renderer: Renderer, code: str, colour: str) -> None:
    for action in ACTIONS:
        for drill in (None, "exercise"):
            rendered = renderer.render(
                "loudspeaker", "zh-CN", context(code, colour, action, drill=drill), style="spoken"
            )
            assert not ARABIC.search(rendered.body), rendered.body
            assert "I级" not in rendered.body and "Ⅳ" not in rendered.body


def test_loudspeaker_script_shape(renderer: Renderer) -> None:
    script = renderer.render("loudspeaker", "zh-CN", context("11B03", "red"), style="spoken").body
    assert script.startswith("全体村民")
    assert "七月一日十七时十五分" in script  # 09:15 UTC is 17:15 in Asia/Shanghai
    assert "可能引发山洪、滑坡、泥石流" in script  # the hazard chain
    assert "河道边" in script  # who is at risk
    assert "立即转移" in script  # the concrete action
    assert script.endswith("确保人身安全！")
    assert "零二三，五三二二二幺幺零" in script  # phone read digit by digit
    assert "七到八级" in script


def test_sms_wording_follows_the_domain_patterns(renderer: Renderer) -> None:
    sms = renderer.render("sms", "zh-CN", context("11B06", "blue"), style="sms", signature=SIGNATURE)
    assert sms.data["content"].startswith("梁平区气象台7月1日17时15分发布大风蓝色预警信号：预计未来3小时")
    up = renderer.render("sms", "zh-CN", context("11B03", "red", "upgrade"), style="sms", signature=SIGNATURE)
    assert "将暴雨橙色预警信号升级为红色预警信号" in up.body
    down = renderer.render("sms", "zh-CN", context("11B03", "yellow", "downgrade"), style="sms")
    assert "将暴雨橙色预警信号降级为黄色预警信号" in down.body
    cancel = renderer.render("sms", "zh-CN", context("11B14", "yellow", "cancel"), style="sms")
    assert cancel.body.startswith("梁平区气象台7月1日17时15分解除梁平区雷电黄色预警信号。降雨减弱")
    assert cancel.data["signature"] is None


def test_self_contained_description_is_not_repeated(renderer: Renderer) -> None:
    description = "梁平区气象台2026年7月1日17时15分发布暴雨红色预警信号：预计未来3小时降雨量将达100毫米以上"
    ctx = context("11B03", "red", description=description)
    sms = renderer.render("sms", "zh-CN", ctx, style="sms", signature=SIGNATURE)
    assert sms.data["content"].startswith(description + "。政府及相关部门")
    assert sms.data["content"].count("梁平区气象台") == 1


# --- drills, channel text, missing fields -----------------------------------------------------------------


@pytest.mark.parametrize(("drill", "marker"), [("exercise", "演练"), ("test", "测试")])
def test_drill_marker_at_the_very_start_of_every_channel(renderer: Renderer, drill: str, marker: str) -> None:
    for action in ACTIONS:
        sms, spoken, push = render_all(renderer, context("11B03", "orange", action, drill=drill))
        # the issue asks for 【演练】/【测试】 on every channel; other 【】 in SMS content are made safe
        assert sms.data["content"].startswith(f"【{marker}】")
        assert sms.body.startswith(f"【{SIGNATURE}】【{marker}】")
        assert spoken.body.startswith(f"【{marker}】")
        assert push.title is not None and push.title.startswith(f"【{marker}】")
        assert push.body.startswith(f"【{marker}】")


def test_exercise_status_marks_the_text_even_without_drill(renderer: Renderer) -> None:
    ctx = context("11B03", "orange", status="Exercise")
    ctx["drill"] = None
    push = renderer.render("push", "zh-CN", ctx, style="push")
    assert push.title == "【演练】暴雨橙色预警"


def test_renderer_adds_a_forgotten_drill_marker(tmp_path: Path) -> None:
    (tmp_path / "zh-CN").mkdir()
    (tmp_path / "zh-CN" / "sms.j2").write_text("{{ hazard_name }}预警", encoding="utf-8")
    (tmp_path / "zh-CN" / "loudspeaker.j2").write_text("{{ hazard_name }}预警", encoding="utf-8")
    renderer = Renderer(tmp_path)
    sms = renderer.render("sms", "zh-CN", context(drill="exercise"), style="sms", signature="签名")
    assert sms.body == "【签名】【演练】暴雨预警"
    spoken = renderer.render("loudspeaker", "zh-CN", context(drill="test"), style="spoken")
    assert spoken.body == "【测试】暴雨预警"


def test_channel_text_is_preferred_for_sms(renderer: Renderer) -> None:
    own = "梁平区气象台发布暴雨红色预警信号：\n请立即转移。【注意】"
    sms = renderer.render("sms", "zh-CN", context(channel_text=own), style="sms", signature=SIGNATURE)
    assert sms.data["content"] == "梁平区气象台发布暴雨红色预警信号：请立即转移。〔注意〕"
    assert sms.body == f"【{SIGNATURE}】" + sms.data["content"]
    signed = renderer.render(
        "sms", "zh-CN", context(channel_text=f"【{SIGNATURE}】请立即转移。"), style="sms", signature=SIGNATURE
    )
    assert signed.body == f"【{SIGNATURE}】请立即转移。"
    drill = renderer.render(
        "sms", "zh-CN", context(channel_text="请立即转移。", drill="exercise"), style="sms"
    )
    assert drill.body == "【演练】请立即转移。"


def test_channel_text_is_used_by_loudspeaker_and_push(renderer: Renderer) -> None:
    own = "请沿河群众立即转移，水位已超过警戒水位2米"
    spoken = renderer.render("loudspeaker", "zh-CN", context(channel_text=own), style="spoken")
    assert "请沿河群众立即转移，水位已超过警戒水位二米。" in spoken.body
    assert spoken.body.startswith("全体村民") and spoken.body.endswith("确保人身安全！")
    push = renderer.render("push", "zh-CN", context(channel_text=own, drill="exercise"), style="push")
    assert push.body == "【演练】" + own
    assert push.title == "【演练】暴雨红色预警"


def test_missing_optional_fields_do_not_break_rendering(renderer: Renderer) -> None:
    empty = dict.fromkeys(
        ("headline", "description", "instruction", "area_desc", "web", "note", "sent", "onset", "expires"),
        None,
    )
    for action in ACTIONS:
        for code, colour in (("11B03", None), (None, None), (None, "red"), ("11B03", "red")):
            ctx = context(code, colour, action, **empty)
            ctx["alert"]["hazard"] = None if code is None else ctx["alert"]["hazard"]
            ctx["alert"]["event"] = None if code is None else ctx["alert"]["event"]
            ctx["previous"] = None
            for rendered in render_all(renderer, ctx):
                assert "None" not in rendered.body and rendered.body
    bare = renderer.render("sms", "zh-CN", {}, style="sms")
    assert "None" not in bare.body


def test_unknown_hazard_uses_default_wording_and_the_event_name(renderer: Renderer) -> None:
    ctx = context(None, "yellow", name="森林火险")
    sms, spoken, _ = render_all(renderer, ctx)
    assert "森林火险黄色预警信号" in sms.body
    assert "相关部门按照职责做好防范工作" in sms.body
    assert "森林火险可能对人身和财产安全造成影响" in spoken.body


def test_colour_outside_the_ladder_uses_the_nearest(renderer: Renderer) -> None:
    heat_blue = renderer.context_for("zh-CN", context("11B09", "blue"))["hazard_text"]
    assert heat_blue["colour"] == "yellow"
    frost_red = renderer.context_for("zh-CN", context("11B16", "red"))["hazard_text"]
    assert frost_red["colour"] == "orange"
    no_colour = renderer.context_for("zh-CN", context("11B03", None))["hazard_text"]
    assert no_colour["colour"] is None and no_colour["advice"]


def test_sender_that_is_not_a_name_falls_back_to_issuer(renderer: Renderer) -> None:
    for sender in ("w-nws.webmaster@noaa.gov", "50022841600000", "", None):
        sms = renderer.render("sms", "zh-CN", context(sender=sender), style="sms")
        assert sms.body.startswith(SIGNATURE), sender


def test_level_is_used_when_there_is_no_colour(renderer: Renderer) -> None:
    ctx = context("11A01", None, level=2)
    sms = renderer.render("sms", "zh-CN", ctx, style="sms")
    assert "洪水Ⅱ级预警信号" in sms.body
    spoken = renderer.render("loudspeaker", "zh-CN", ctx, style="spoken")
    assert "洪水二级预警信号" in spoken.body


def test_push_data_and_title(renderer: Renderer) -> None:
    push = renderer.render("push", "zh-CN", context("11B03", "red"), style="push")
    assert push.title == "暴雨红色预警"
    assert push.data == {
        "alert_id": 42,
        "colour": "red",
        "level": 1,
        "msg_type": "Alert",
        "url": "http://www.12379.cn",
    }
    assert "\n" not in push.body and push.segments == 1
    no_web = renderer.render("push", "zh-CN", context(web=None), style="push")
    assert "url" not in no_web.data


def test_sms_truncates_to_max_chars(renderer: Renderer) -> None:
    long = "预计未来3小时降雨量将达100毫米以上。" * 40
    sms = renderer.render("sms", "zh-CN", context(description=long), style="sms", signature=SIGNATURE)
    assert sms.truncated and len(sms.data["content"]) <= 500 and sms.data["content"].endswith("…")
    short = renderer.render("sms", "zh-CN", context(), style="sms", signature=SIGNATURE, max_chars=60)
    assert short.truncated and len(short.data["content"]) <= 60
    assert short.segments == segments(short.body)
    spoken = renderer.render("loudspeaker", "zh-CN", context(description=long), style="spoken", max_chars=120)
    assert spoken.truncated and len(spoken.body) <= 120


# --- filters ---------------------------------------------------------------------------------------------


def test_filters(tmp_path: Path) -> None:
    (tmp_path / "zh-CN").mkdir()
    (tmp_path / "zh-CN" / "labels.yaml").write_bytes((TEMPLATES / "zh-CN" / "labels.yaml").read_bytes())
    source = (
        "{{ 'red'|colour_name }}|{{ '橙'|colour_name }}|{{ 1|level_name }}|{{ 'IV'|level_name }}|",
        "{{ 'red'|signal_word }}|{{ 'orange'|signal_word }}|",
        "{{ 'yellow'|signal_word }}|{{ 'blue'|signal_word }}|",
        "{{ sent|local_time }}|{{ '3小时'|spoken }}|{{ spoken('100毫米') }}|",
        "{{ '句子'|sentence }}|{{ none|colour_name }}",
    )
    (tmp_path / "zh-CN" / "f.j2").write_text("".join(source), encoding="utf-8")
    rendered = Renderer(tmp_path).render(
        "f", "zh-CN", {"sent": datetime(2020, 2, 13, 9, 15, tzinfo=UTC)}, style="text"
    )
    assert (
        rendered.body == "红色|橙色|Ⅰ级|Ⅳ级|特别严重|严重|较重|一般|2月13日17时15分|三小时|一百毫米|句子。|"
    )


def test_local_time_respects_the_timezone(tmp_path: Path) -> None:
    (tmp_path / "zh-CN").mkdir()
    (tmp_path / "zh-CN" / "t.j2").write_text("{{ sent|local_time }}", encoding="utf-8")
    sent = datetime(2026, 7, 1, 9, 5, tzinfo=UTC)
    assert Renderer(tmp_path).render("t", "zh-CN", {"sent": sent}, style="text").body == "7月1日17时05分"
    urumqi = Renderer(tmp_path, timezone="Asia/Urumqi")
    assert urumqi.render("t", "zh-CN", {"sent": sent}, style="text").body == "7月1日15时05分"


def test_style_for() -> None:
    assert style_for("sms") == "sms"
    assert style_for("loudspeaker") == "spoken"
    assert style_for("push") == "push"
    assert style_for("webhook") == "text"
    assert style_for("sms.j2") == "sms"


# --- recipient, languages, cache --------------------------------------------------------------------------


def test_uses_recipient(tmp_path: Path, renderer: Renderer) -> None:
    for language in renderer.languages():
        for template, _ in CHANNELS:
            assert renderer.uses_recipient(template, language) is False
    lang = tmp_path / "zh-CN"
    lang.mkdir()
    (lang / "duty.j2").write_text("{{ recipient.name }}同志：{{ hazard_name }}预警", encoding="utf-8")
    (lang / "_greeting.j2").write_text("{% if recipient %}{{ recipient.role }}{% endif %}", encoding="utf-8")
    (lang / "wrapped.j2").write_text("{% include '_greeting.j2' %}预警", encoding="utf-8")
    (lang / "plain.j2").write_text("{% set recipient = 'x' %}{{ recipient }}预警", encoding="utf-8")
    (lang / "dynamic.j2").write_text("{% include name %}", encoding="utf-8")
    custom = Renderer(tmp_path)
    assert custom.uses_recipient("duty", "zh-CN") is True
    assert custom.uses_recipient("wrapped", "zh-CN") is True
    assert custom.uses_recipient("plain", "zh-CN") is False
    assert custom.uses_recipient("dynamic", "zh-CN") is True  # cannot tell: assume it does
    rendered = custom.render(
        "duty", "zh-CN", context(), style="text", recipient={"name": "张三", "role": "网格员"}
    )
    assert rendered.body == "张三同志：暴雨预警"


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("zh-CN", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-cn", "zh-CN"),
        ("zh_CN", "zh-CN"),
        ("zh-Hans", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("en", "en"),
        ("en-US", "en"),
        ("en_GB", "en"),
        ("EN", "en"),
        ("fr", "zh-CN"),
        ("ug-CN", "zh-CN"),
        ("", "zh-CN"),
        (None, "zh-CN"),
    ],
)
def test_resolve_language(renderer: Renderer, asked: str | None, expected: str) -> None:
    assert renderer.resolve_language(asked) == expected


def test_languages_and_default(renderer: Renderer) -> None:
    assert renderer.languages() == ["en", "zh-CN"]
    assert Renderer(TEMPLATES, default_language="en").resolve_language("fr") == "en"


def test_missing_template_falls_back_to_default_language(tmp_path: Path) -> None:
    (tmp_path / "zh-CN").mkdir()
    (tmp_path / "en").mkdir()
    (tmp_path / "zh-CN" / "webhook.j2").write_text("{{ hazard_name }}", encoding="utf-8")
    (tmp_path / "en" / "sms.j2").write_text("x", encoding="utf-8")
    renderer = Renderer(tmp_path)
    assert renderer.render("webhook", "en", context(), style="text").body == "暴雨"
    with pytest.raises(RenderError, match="nothere"):
        renderer.render("nothere", "en", context(), style="text")


@pytest.mark.parametrize(("code", "colour"), [("11B03", "red"), ("11B15", "orange"), ("11A51", "blue")])
def test_english_renders(renderer: Renderer, code: str, colour: str) -> None:
    hazards = yaml.safe_load((TEMPLATES / "en" / "hazards.yaml").read_text(encoding="utf-8"))
    name = hazards[code]["name"]
    for action in ACTIONS:
        ctx = context(
            code,
            colour,
            action,
            sender="Liangping Meteorological Office",
            description="Up to 100 mm of rain in 3 hours.",
            headline=None,
            instruction=None,
            area_desc="Liangping",
            note="Rain has eased." if action == "cancel" else None,
        )
        sms, spoken, push = render_all(renderer, ctx, "en-US")
        for rendered in (sms, spoken, push):
            assert name.lower() in rendered.body.lower()
            assert not CJK.search(rendered.body.removeprefix(f"【{SIGNATURE}】")), rendered.body
        assert push.title and not CJK.search(push.title)
        if action != "cancel":
            assert "100 mm" in spoken.body  # no Chinese number rewriting for English
        assert "17:15 on 1 Jul" in sms.body
        if action == "cancel":
            assert "lifted" in sms.body and push.title == f"{name} warning lifted"
        elif action == "upgrade":
            assert "upgraded" in sms.body
    drill = renderer.render("push", "en", context(code, colour, drill="exercise"), style="push")
    assert drill.title and drill.title.startswith("[EXERCISE]")


def test_templates_are_compiled_once(renderer: Renderer, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = Renderer(TEMPLATES)
    compiled: list[str | None] = []
    original = jinja2.Environment.compile

    def counting(
        self: jinja2.Environment, source: Any, name: str | None = None, *args: Any, **kw: Any
    ) -> Any:
        compiled.append(name)
        return original(self, source, name, *args, **kw)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    first = fresh.template("sms", "zh-CN")
    for _ in range(50):
        fresh.render("sms", "zh", context(), style="sms", signature=SIGNATURE)
    assert fresh.template("sms", "zh-CN") is first
    assert fresh.template("sms", "zh-Hans") is first
    assert compiled == ["sms.j2"]
    fresh.reload()
    assert fresh.template("sms", "zh-CN") is not first


# --- check-config ----------------------------------------------------------------------------------------


def test_check_passes_for_the_shipped_templates(renderer: Renderer) -> None:
    assert renderer.check() == []


def test_check_reports_a_syntax_error_with_file_and_line(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    sms = templates / "zh-CN" / "sms.j2"
    lines = sms.read_text(encoding="utf-8").splitlines()
    lines.insert(3, "{% if alert.colour %}未闭合的块")
    sms.write_text("\n".join(lines), encoding="utf-8")
    errors = Renderer(templates).check()
    assert len(errors) == 1
    assert re.search(r"zh-CN/sms\.j2:\d+: .*(endif|end of template)", errors[0]), errors
    (templates / "en" / "hazards.yaml").write_text("a: [\n", encoding="utf-8")
    broken = templates / "en" / "push.j2"
    broken.write_text("line one\nline two\n{{ alert.colour | }}\n", encoding="utf-8")
    errors = Renderer(templates).check()
    # a broken wording file does not hide template syntax errors
    assert any(re.search(r"en/hazards\.yaml:2: ", e) for e in errors), errors
    assert any(re.search(r"en/push\.j2:3: ", e) for e in errors), errors
    assert len(errors) == 3, errors


def test_check_reports_a_render_error_with_line(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    (templates / "zh-CN" / "webhook.j2").write_text(
        "first\nsecond\n{{ alert.sent.no_such_method() }}\n", encoding="utf-8"
    )
    errors = Renderer(templates).check()
    assert len(errors) == 1 and "zh-CN/webhook.j2:3: " in errors[0], errors


def test_check_reports_broken_yaml(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    (templates / "en" / "labels.yaml").write_text("colours: {red: Red\nlevels: [\n", encoding="utf-8")
    errors = Renderer(templates).check()
    assert len(errors) == 1 and "en/labels.yaml:" in errors[0], errors
    with (templates / "zh-CN" / "hazards.yaml").open("a", encoding="utf-8") as handle:
        handle.write("11X99: {name: 测试, colours: {purple: {advice: x}}}\n")
    errors = Renderer(templates).check()
    assert any("11X99: unknown colour 'purple'" in e for e in errors), errors


def test_render_error_for_a_broken_template(tmp_path: Path) -> None:
    (tmp_path / "zh-CN").mkdir()
    (tmp_path / "zh-CN" / "sms.j2").write_text("{% for %}", encoding="utf-8")
    with pytest.raises(RenderError, match=r"sms\.j2:1"):
        Renderer(tmp_path).render("sms", "zh-CN", context(), style="sms")


def test_sample_context_renders_everywhere(renderer: Renderer) -> None:
    for action in ACTIONS:
        for rendered in render_all(renderer, sample_context(action=action, drill="exercise")):
            assert "演练" in rendered.body
