"""Hazard catalogue, colours and levels: what a CAP info says -> the hazard and colour rules key on."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import edit_yaml

from warnd.cap.model import Info
from warnd.config import ConfigInvalid, load_config
from warnd.hazards import Catalogue, parse_colour, parse_level


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


@pytest.mark.parametrize(
    ("word", "colour"),
    [
        ("红", "red"),
        ("红色", "red"),
        ("Red", "red"),
        ("RED", "red"),
        ("red", "red"),
        (" red ", "red"),
        ("orange", "orange"),
        ("橙色", "orange"),
        ("黄", "yellow"),
        ("Yellow", "yellow"),
        ("蓝", "blue"),
        ("蓝色", "blue"),
    ],
)
def test_parse_colour(word: str, colour: str) -> None:
    assert parse_colour(word) == colour


@pytest.mark.parametrize("word", ["purple", "", "绿色", "红橙", "Severe", "r", 1])
def test_parse_colour_rejects(word: object) -> None:
    with pytest.raises(ValueError, match="unknown colour"):
        parse_colour(word)


@pytest.mark.parametrize(
    ("word", "level"),
    [
        ("Ⅰ", 1),
        ("I", 1),
        ("i", 1),
        (1, 1),
        ("1", 1),
        ("Ⅰ级", 1),
        ("一级", 1),
        ("一", 1),
        ("II", 2),
        ("Ⅱ", 2),
        ("二级", 2),
        ("III", 3),
        ("Ⅲ级", 3),
        (3, 3),
        ("IV", 4),
        ("iv", 4),
        ("Ⅳ", 4),
        ("四级", 4),
        (4, 4),
        (" Ⅳ 级 ", 4),
    ],
)
def test_parse_level(word: object, level: int) -> None:
    assert parse_level(word) == level


@pytest.mark.parametrize("word", ["V", "Ⅴ", 5, 0, "", "五级", "high", "11", "Ⅰ级级"])
def test_parse_level_rejects(word: object) -> None:
    with pytest.raises(ValueError, match="unknown response level"):
        parse_level(word)


@pytest.mark.parametrize("word", ["11B03", "11b03", "暴雨", "rainstorm", "Rainstorm", " 暴雨 "])
def test_find_by_code_name_or_alias(catalogue: Catalogue, word: str) -> None:
    hazard = catalogue.find(word)
    assert hazard is not None
    assert (hazard.code, hazard.name) == ("11B03", "暴雨")
    assert hazard.colours == ("blue", "yellow", "orange", "red")


def test_find_unknown_and_ladders(catalogue: Catalogue) -> None:
    assert catalogue.find("陨石") is None
    assert catalogue.find("") is None
    heat = catalogue.find("heat wave")
    assert heat is not None and heat.name == "高温"
    assert heat.colours == ("yellow", "orange", "red")  # no blue signal
    hail = catalogue.find("冰雹")
    assert hail is not None and hail.colours == ("orange", "red")
    flood = catalogue.find("山洪灾害")
    assert flood is not None and flood.code == "11A51"


def info(**fields: object) -> Info:
    values: dict[str, object] = {"language": "zh-CN", "event": "暴雨"}
    values.update(fields)
    return Info(**values)  # type: ignore[arg-type]


def test_classify_cap_cn_event_type_and_severity(catalogue: Catalogue) -> None:
    result = catalogue.classify(
        info(
            event="暴雨",
            event_codes=(("eventType", "11B03"),),
            severity="Red",
            headline="梁平区气象台发布暴雨红色预警",
        )
    )
    assert result.hazard is not None and result.hazard.name == "暴雨"
    assert result.colour == "red"
    assert result.event == "暴雨"


def test_classify_oasis_severity(catalogue: Catalogue) -> None:
    result = catalogue.classify(info(language="en-US", event="Rainstorm", severity="Severe"))
    assert result.hazard is not None and result.hazard.code == "11B03"
    assert result.colour == "orange"
    for severity, colour in (("Extreme", "red"), ("Moderate", "yellow"), ("Minor", "blue")):
        assert catalogue.classify(info(event="rainstorm", severity=severity)).colour == colour


def test_classify_from_the_headline(catalogue: Catalogue) -> None:
    result = catalogue.classify(
        info(event="气象预警", severity="Unknown", headline="梁平区气象台发布大风黄色预警信号")
    )
    assert result.hazard is not None and result.hazard.name == "大风"
    assert result.colour == "yellow"
    assert result.event == "大风"


def test_classify_weather_cn_typed_level_code(catalogue: Catalogue) -> None:
    result = catalogue.classify(
        info(event="预警", event_codes=(("weather.com.cn", "11B0304"),), severity="Unknown")
    )
    assert result.hazard is not None and result.hazard.name == "暴雨"
    assert result.colour == "red"
    gale = catalogue.classify(info(event="预警", event_codes=(("type", "11B0601"),)))
    assert gale.hazard is not None and gale.hazard.name == "大风"
    assert gale.colour == "blue"


def test_classify_longest_name_wins_in_free_text(catalogue: Catalogue) -> None:
    result = catalogue.classify(info(event="雷雨大风预警", severity="Orange"))
    assert result.hazard is not None and result.hazard.name == "雷雨大风"
    assert result.colour == "orange"
    exact = catalogue.classify(info(event="雷雨大风"))
    assert exact.hazard is not None and exact.hazard.code == "11B20"


def test_classify_unknown_hazard_keeps_the_event(catalogue: Catalogue) -> None:
    result = catalogue.classify(info(event="Volcano Warning", severity="Extreme"))
    assert result.hazard is None
    assert result.colour == "red"
    assert result.event == "Volcano Warning"
    nothing = catalogue.classify(info(event="Notice", severity="Unknown"))
    assert nothing.colour is None


def test_overrides_add_an_alias_code_and_change_a_ladder() -> None:
    catalogue = Catalogue.load(
        {
            "11B03": {"name": "暴雨", "aliases": ["p0002003", "rainstorm"]},
            "11B09": {"name": "高温", "colours": ["蓝", "黄", "橙", "红"]},
            "99X01": {"name": "森林草原火险", "colours": ["orange", "red"], "aliases": ["grassland fire"]},
        }
    )
    rain = catalogue.find("P0002003")
    assert rain is not None and rain.code == "11B03"
    assert rain.colours == ("blue", "yellow", "orange", "red")
    heat = catalogue.find("高温")
    assert heat is not None and heat.colours == ("blue", "yellow", "orange", "red")
    added = catalogue.find("grassland fire")
    assert added is not None and added.code == "99X01" and added.colours == ("orange", "red")
    # the alias code classifies too
    result = catalogue.classify(
        info(event="预警", event_codes=(("province", "p0002003"),), severity="Yellow")
    )
    assert result.hazard is not None and result.hazard.name == "暴雨"
    assert result.colour == "yellow"
    # the built-in catalogue is untouched
    assert Catalogue.load().find("p0002003") is None


def test_config_hazards_yaml_changes_a_ladder(config_dir: Path) -> None:
    (config_dir / "hazards.yaml").write_text(
        "hazards:\n  11B09: {name: 高温, colours: [blue, yellow, orange, red]}\n", encoding="utf-8"
    )
    rules = config_dir / "rules.yaml"
    edit_yaml(
        rules,
        lambda d: d["rules"].append(
            {
                "name": "heat-blue",
                "hazards": ["高温"],
                "colours": ["blue"],
                "level": "Ⅳ",
                "targets": [{"groups": ["duty_persons"], "channels": ["sms"]}],
            }
        ),
    )
    config = load_config(config_dir)
    heat = config.catalogue().find("11B09")
    assert heat is not None and heat.colours == ("blue", "yellow", "orange", "red")


def test_config_hazards_yaml_alias_keeps_the_built_in_ladder(config_dir: Path) -> None:
    """Adding an alias for 高温 in hazards.yaml must not give it a blue signal it does not have."""
    (config_dir / "hazards.yaml").write_text(
        "hazards:\n  11B03: {name: 暴雨, aliases: [p0002003]}\n  11B09: {name: 高温, aliases: [p0009003]}\n",
        encoding="utf-8",
    )
    catalogue = load_config(config_dir).catalogue()
    rain = catalogue.find("p0002003")
    assert rain is not None and rain.name == "暴雨"
    heat = catalogue.find("p0009003")
    assert heat is not None and heat.name == "高温"
    assert heat.colours == ("yellow", "orange", "red")
    # so a blue 高温 rule is still refused
    edit_yaml(
        config_dir / "rules.yaml",
        lambda d: d["rules"].append(
            {
                "name": "heat-blue",
                "hazards": ["高温"],
                "colours": ["blue"],
                "level": "Ⅳ",
                "targets": [{"groups": ["duty_persons"], "channels": ["sms"]}],
            }
        ),
    )
    with pytest.raises(ConfigInvalid, match="高温 has no blue signal"):
        load_config(config_dir)
