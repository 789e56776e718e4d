"""Pure parts of the lifecycle: hazard families, the revision's action, and the wording of the two notes the
lifecycle adds (no longer applies, expired) in every channel template and language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import edit_yaml

from warnd.config import load_config
from warnd.hazards import Catalogue
from warnd.pipeline import EXPIRY_SOURCE, _action
from warnd.render import ACTIONS, Renderer, sample_context, style_for

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
ARABIC = re.compile(r"[0-9０-９]")


# --- hazard families ---------------------------------------------------------------------------------------


def test_rain_flood_family_groups_the_rainstorm_and_what_it_causes() -> None:
    catalogue = Catalogue.load()
    family = set(catalogue.family_codes("11B03"))
    assert family == {"11B03", "11A51", "11A01", "11A02", "11B37", "11D01", "11D02"}
    assert set(catalogue.family_codes("11A51")) == family  # symmetric
    assert set(catalogue.family_codes("11B20")) == {"11B01", "11B06", "11B20"}
    assert catalogue.family_codes("11B09") == ("11B09",)  # no family: its own
    assert catalogue.family_codes("99X99") == ("99X99",)  # unknown to the catalogue
    assert catalogue.find("暴雨").family == "rain-flood"
    assert catalogue.find("高温").family_name == "11B09"


def test_config_hazards_can_set_or_change_a_family(config_dir: Path) -> None:
    def change(data: dict) -> None:
        data.setdefault("hazards", {})
        data["hazards"] = data["hazards"] or {}
        data["hazards"]["11B09"] = {"name": "高温", "colours": ["yellow", "orange", "red"], "family": "heat"}
        data["hazards"]["11B18"] = {"name": "干热风", "family": "heat"}
        data["hazards"]["11D01"] = {"name": "滑坡", "family": "geology"}

    path = config_dir / "hazards.yaml"
    if not path.exists():
        path.write_text("hazards: {}\n", encoding="utf-8")
    edit_yaml(path, change)
    catalogue = load_config(config_dir).catalogue()
    assert catalogue.family_codes("11B09") == ("11B09", "11B18")
    assert "11D01" not in catalogue.family_codes("11B03")
    assert catalogue.find("暴雨").aliases == ("rainstorm",)  # the rest of an entry is kept


# --- the revision's action -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_type", "colour", "previous", "source", "action"),
    [
        ("Alert", "red", None, "t", "issue"),
        ("Update", "red", "orange", "t", "upgrade"),
        ("Update", "blue", "red", "t", "downgrade"),
        ("Update", "red", "red", "t", "update"),
        ("Update", "red", None, "t", "issue"),  # treated as new
        ("Cancel", "red", "red", "t", "cancel"),
        ("Cancel", "red", "red", EXPIRY_SOURCE, "expire"),
    ],
)
def test_action(msg_type: str, colour: str, previous: str | None, source: str, action: str) -> None:
    alert = {"msg_type": msg_type, "colour": colour, "source": source}
    assert _action(alert, {"colour": previous} if previous else None) == action


# --- wording of the lifecycle notes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def test_every_template_renders_every_action(renderer: Renderer) -> None:
    assert {"expire", "no_longer_applies"} <= set(ACTIONS)
    assert renderer.check() == []


@pytest.mark.parametrize("template", ["sms", "loudspeaker", "push"])
def test_no_longer_applies_note(renderer: Renderer, template: str) -> None:
    ctx = sample_context(action="no_longer_applies")
    zh = renderer.render(template, "zh-CN", ctx, style=style_for(template), signature="梁平区应急管理局")
    en = renderer.render(template, "en", ctx, style=style_for(template), signature="梁平区应急管理局")
    assert "万年村不再在预警范围内" in zh.body, zh.body
    assert "万年村 is no longer in the warning area" in en.body, en.body
    for rendered in (zh, en):
        assert "升级" not in rendered.body and "预计未来" not in rendered.body  # short: not the warning again
    if template == "sms":
        assert zh.segments == 1
    if template == "loudspeaker":
        assert not ARABIC.search(zh.body)
    if template == "push":
        assert zh.title == "暴雨预警范围调整" and en.title == "Rainstorm warning no longer applies to you"


@pytest.mark.parametrize("template", ["sms", "loudspeaker", "push"])
def test_expiry_note(renderer: Renderer, template: str) -> None:
    ctx = sample_context(action="expire")
    zh = renderer.render(template, "zh-CN", ctx, style=style_for(template), signature="梁平区应急管理局")
    en = renderer.render(template, "en", ctx, style=style_for(template), signature="梁平区应急管理局")
    assert "暴雨橙色预警信号已" in zh.body and "到期" in zh.body and "解除" in zh.body, zh.body
    assert "expired" in en.body, en.body
    if template == "loudspeaker":
        assert not ARABIC.search(zh.body)


@pytest.mark.parametrize("action", ["expire", "no_longer_applies"])
def test_lifecycle_notes_of_drills_keep_the_marker(renderer: Renderer, action: str) -> None:
    ctx = sample_context(action=action, drill="exercise")
    for template in ("sms", "loudspeaker", "push"):
        body = renderer.render(template, "zh-CN", ctx, style=style_for(template)).body
        assert body.startswith("【演练】"), body
