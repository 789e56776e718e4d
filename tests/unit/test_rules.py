"""Graded response rules over the example config: matching, drills, silent statuses, levels, Plan JSON."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import edit_yaml

from warnd.config import Config, load_config
from warnd.hazards import Catalogue, Hazard
from warnd.rules import Facts, Plan, PlannedTarget, RuleEngine

ALL_GROUPS = {"public", "grid_workers", "duty_persons", "township_leaders", "county_leaders", "loudspeakers"}
DRILL_GROUPS = ALL_GROUPS - {"public"}


CATALOGUE = Catalogue.load()  # no test here overrides hazards.yaml


def hazard(config: Config, word: str) -> Hazard:
    assert not config.hazards
    found = CATALOGUE.find(word)
    assert found is not None, word
    return found


def facts(
    config: Config,
    *,
    hazard_word: str = "暴雨",
    colour: str | None = "red",
    status: str = "Actual",
    msg_type: str = "Alert",
    prefixes: tuple[str, ...] = ("500228",),
    geometry: bool = False,
) -> Facts:
    found = hazard(config, hazard_word)
    return Facts(
        hazard=found,
        event=found.name,
        colour=colour,
        status=status,
        msg_type=msg_type,
        area_prefixes=prefixes,
        has_geometry=geometry,
    )


def pairs(plan: Plan) -> set[tuple[str, str]]:
    return {(group, target.channel) for target in plan.targets for group in target.groups or ()}


def edit_rules(config_dir: Path, change: Any) -> Config:
    """Edit rules.yaml (each rule gets its own copy of the anchored targets first) and reload."""

    def apply(data: dict[str, Any]) -> None:
        data["rules"] = [copy.deepcopy(rule) for rule in data["rules"]]
        change(data["rules"])

    edit_yaml(config_dir / "rules.yaml", apply)
    return load_config(config_dir)


def by_name(rules: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(rule for rule in rules if rule["name"] == name)


@pytest.fixture(scope="module")
def example() -> Config:
    return load_config(Path(__file__).resolve().parents[2] / "config")


@pytest.fixture(scope="module")
def engine(example: Config) -> RuleEngine:
    return RuleEngine(example)


def test_red_rainstorm_for_the_district(example: Config, engine: RuleEngine) -> None:
    plan = engine.plan(facts(example))
    assert plan.rules == ["rainstorm-red"]
    assert plan.level == 1
    assert plan.inhibit is True
    assert plan.manual is False
    assert {t.rule for t in plan.targets} == {"rainstorm-red"}
    assert {g for t in plan.targets for g in t.groups or ()} == ALL_GROUPS
    assert {t.channel for t in plan.targets} == {"sms", "push", "loudspeaker"}
    expected = {(g, c) for g in ALL_GROUPS - {"loudspeakers"} for c in ("sms", "push")}
    expected.add(("loudspeakers", "loudspeaker"))
    assert pairs(plan) == expected
    leaders = next(t for t in plan.targets if "county_leaders" in (t.groups or ()) and t.channel == "sms")
    assert leaders.ack_required is True
    assert leaders.ack_within == 300.0
    assert leaders.level == 1
    assert leaders.rule_prefixes == ("500228",)
    loudspeaker = next(t for t in plan.targets if t.channel == "loudspeaker")
    assert loudspeaker.repeat == 3
    assert loudspeaker.ack_required is False


def test_each_colour_has_its_level(example: Config, engine: RuleEngine) -> None:
    for colour, level in (("blue", 4), ("yellow", 3), ("orange", 2), ("red", 1)):
        plan = engine.plan(facts(example, colour=colour))
        assert plan.rules == [f"rainstorm-{colour}"]
        assert plan.level == level
    blue = engine.plan(facts(example, colour="blue"))
    assert pairs(blue) == {("township_leaders", "sms"), ("duty_persons", "sms"), ("grid_workers", "sms")}


def test_hazard_given_by_code(example: Config, engine: RuleEngine) -> None:
    plan = engine.plan(facts(example, hazard_word="11B06", colour="orange"))
    assert plan.rules == ["gale-orange"]
    assert plan.level == 2


def test_rule_that_names_a_hazard_by_code(config_dir: Path) -> None:
    config = edit_rules(config_dir, lambda rules: by_name(rules, "heat-orange").update(hazards=["11B09"]))
    plan = RuleEngine(config).plan(facts(config, hazard_word="高温", colour="orange"))
    assert plan.rules == ["heat-orange"]
    alias = RuleEngine(config).plan(facts(config, hazard_word="heat wave", colour="orange"))
    assert alias.rules == ["heat-orange"]


def test_other_hazard_or_colour_does_not_match(example: Config, engine: RuleEngine) -> None:
    assert engine.plan(facts(example, hazard_word="台风")).rules == []
    assert engine.plan(facts(example, colour=None)).rules == []
    no_hazard = replace(facts(example), hazard=None, event="Volcano")
    plan = engine.plan(no_hazard)
    assert plan.rules == [] and plan.targets == [] and plan.level is None


def test_alert_for_another_district(example: Config, engine: RuleEngine) -> None:
    plan = engine.plan(facts(example, prefixes=("500101",)))
    assert plan.rules == []
    assert plan.targets == []
    assert plan.level is None


@pytest.mark.parametrize("prefixes", [("500228101",), ("500228101201",), ("5002",), ("500101", "500228103")])
def test_areas_overlap_by_prefix(example: Config, engine: RuleEngine, prefixes: tuple[str, ...]) -> None:
    assert engine.plan(facts(example, prefixes=prefixes)).rules == ["rainstorm-red"]


def test_geometry_only_alert_still_matches_area_rules(example: Config, engine: RuleEngine) -> None:
    plan = engine.plan(facts(example, prefixes=(), geometry=True))
    assert plan.rules == ["rainstorm-red"]
    assert {t.rule_prefixes for t in plan.targets} == {("500228",)}  # recipients are checked against these
    assert engine.plan(facts(example, prefixes=(), geometry=False)).rules == []


@pytest.mark.parametrize("status", ["Exercise", "Test"])
def test_drills_reach_only_drill_groups(example: Config, engine: RuleEngine, status: str) -> None:
    plan = engine.plan(facts(example, status=status))
    assert plan.rules == ["rainstorm-red"]
    assert plan.level == 1
    groups = {g for t in plan.targets for g in t.groups or ()}
    assert groups == DRILL_GROUPS
    assert "public" not in groups
    # the public-only target is dropped whole, the others keep their channels
    assert pairs(plan) == {(g, c) for g, c in pairs(engine.plan(facts(example))) if g != "public"}


@pytest.mark.parametrize("status", ["Draft", "System"])
def test_draft_and_system_reach_nobody(example: Config, engine: RuleEngine, status: str) -> None:
    plan = engine.plan(facts(example, status=status))
    assert plan == Plan()
    assert plan.rules == [] and plan.targets == [] and plan.level is None


def test_cancel_and_update_match_by_default(example: Config, engine: RuleEngine) -> None:
    assert engine.plan(facts(example, msg_type="Update")).rules == ["rainstorm-red"]
    assert engine.plan(facts(example, msg_type="Cancel")).rules == ["rainstorm-red"]


def test_msg_types_and_statuses_filter(config_dir: Path) -> None:
    def change(rules: list[dict[str, Any]]) -> None:
        by_name(rules, "rainstorm-red").update(msg_types=["Alert"])
        by_name(rules, "gale-red").update(statuses=["Actual"])

    config = edit_rules(config_dir, change)
    engine = RuleEngine(config)
    assert engine.plan(facts(config)).rules == ["rainstorm-red"]
    assert engine.plan(facts(config, msg_type="Update")).rules == []
    assert engine.plan(facts(config, msg_type="Cancel")).rules == []
    assert engine.plan(facts(config, hazard_word="大风")).rules == ["gale-red"]
    assert engine.plan(facts(config, hazard_word="大风", status="Exercise")).rules == []
    assert engine.plan(facts(config, hazard_word="大风", status="Test")).rules == []


def test_two_rules_level_is_the_highest(config_dir: Path) -> None:
    def change(rules: list[dict[str, Any]]) -> None:
        # a county-wide "any rainstorm" rule at level Ⅱ, before and a village rule at Ⅲ after the red one
        rules.insert(
            0,
            {
                "name": "rainstorm-any",
                "hazards": ["暴雨"],
                "level": "Ⅱ",
                "inhibit": False,
                "targets": [{"groups": ["county_leaders"], "channels": ["sms"], "repeat": 5}],
            },
        )
        rules.append(
            {
                "name": "pingjin-rain",
                "hazards": ["rainstorm"],
                "colours": ["红"],
                "areas": ["500228101000"],
                "level": 3,
                "targets": [{"groups": ["public"], "channels": ["loudspeaker"]}],
            }
        )

    config = edit_rules(config_dir, change)
    engine = RuleEngine(config)
    plan = engine.plan(facts(config))
    # the district-wide alert overlaps the 屏锦镇 rule too (the township lies inside the district)
    assert plan.rules == ["rainstorm-any", "rainstorm-red", "pingjin-rain"]
    assert plan.level == 1
    assert plan.inhibit is False  # one matching rule says inhibit: false
    by_rule = {t.rule: t for t in plan.targets if t.channel == "sms" and "county_leaders" in (t.groups or ())}
    assert by_rule["rainstorm-any"].level == 2 and by_rule["rainstorm-any"].repeat == 5
    assert by_rule["rainstorm-red"].level == 1
    assert by_rule["rainstorm-any"].rule_prefixes == ()
    # an alert for 礼让镇 does not reach the 屏锦镇 rule
    township = engine.plan(facts(config, prefixes=("500228102",)))
    assert township.rules == ["rainstorm-any", "rainstorm-red"]
    assert township.level == 1
    # an orange alert matches only the level Ⅱ rule
    orange = engine.plan(facts(config, colour="orange"))
    assert orange.rules == ["rainstorm-any", "rainstorm-orange"]
    assert orange.level == 2


def test_disabled_rule_is_ignored(config_dir: Path) -> None:
    config = edit_rules(config_dir, lambda rules: by_name(rules, "rainstorm-red").update(enabled=False))
    engine = RuleEngine(config)
    plan = engine.plan(facts(config))
    assert plan.rules == []
    assert plan.targets == []
    assert engine.matches("rainstorm-red", facts(config)) is False
    assert engine.plan(facts(config, colour="orange")).rules == ["rainstorm-orange"]


def test_plan_json_round_trip(example: Config, engine: RuleEngine) -> None:
    plan = engine.plan(facts(example, status="Exercise"))
    plan.targets.append(PlannedTarget(rule="manual", groups=None, channel="sms", level=None))
    plan.manual = True
    data = json.loads(json.dumps(plan.to_json(), ensure_ascii=False))
    restored = Plan.from_json(data)
    assert restored == plan
    assert restored.targets[-1].groups is None
    assert isinstance(restored.targets[0].groups, tuple)
    assert isinstance(restored.targets[0].rule_prefixes, tuple)
    assert Plan.from_json(Plan().to_json()) == Plan()
