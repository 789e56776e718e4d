"""Graded response rules: which warnings go to whom, on which channels, at which response level.

How several matching rules combine (also in docs/rules.md):

* Every enabled rule whose conditions all hold applies; their targets are united.
* One delivery exists per recipient × channel × alert revision, however many rules reach it. When several
  rules reach the same recipient on the same channel, the strictest settings win: acknowledgement required if
  any requires it, the earliest acknowledgement deadline, the most repeats, the highest level.
* The alert's response level is the highest level (Ⅰ beats Ⅱ) among the matching rules.
* Across warnings: active warnings of one hazard family (暴雨, 山洪, 洪水… are one event) from different chains
  are one event per recipient: the highest level is sent once; a later one at the same or a lower level, and
  the unsent deliveries of lower ones, are suppressed (recorded with the reason naming the covering alert),
  unless a matching rule sets ``inhibit: false``.
* ``Test`` and ``Exercise`` alerts reach only groups marked ``drill: true`` (with a 【测试】/【演练】 marker);
  ``Draft`` and ``System`` messages are recorded and reach nobody.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from warnd.cap.model import DRILL_STATUSES
from warnd.config import Config
from warnd.hazards import Hazard

SILENT_STATUSES = ("Draft", "System")


@dataclass(frozen=True)
class Facts:
    """What rules can key on, taken from one alert revision."""

    hazard: Hazard | None
    event: str
    colour: str | None
    status: str
    msg_type: str
    area_prefixes: tuple[str, ...]  # admin-code prefixes from the alert's geocodes
    has_geometry: bool  # polygons or circles: rule areas are then checked per recipient


@dataclass(frozen=True)
class PlannedTarget:
    rule: str
    groups: tuple[str, ...] | None  # None: everyone in the area (manual broadcast)
    channel: str
    level: int | None
    ack_required: bool = False
    ack_within: float | None = None
    repeat: int = 1
    rule_prefixes: tuple[str, ...] = ()
    failover: tuple[str, ...] = ()  # alternate channels, in order (docs/failover.md)
    failover_groups: tuple[str, ...] = ()  # a terminal down: these groups in its village ...
    failover_channels: tuple[str, ...] = ()  # ... on these channels
    deliver_within: float | None = None  # a person not confirmed reached by then enters the escalation ladder


@dataclass
class Plan:
    rules: list[str] = field(default_factory=list)
    level: int | None = None
    targets: list[PlannedTarget] = field(default_factory=list)
    inhibit: bool = True
    manual: bool = False  # a manual broadcast: targets chosen by an operator, area may be "everywhere"
    everywhere: bool = False
    escalation: dict[str, Any] | None = None  # the ladder of the highest-level matching rule that has one

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            "level": self.level,
            "inhibit": self.inhibit,
            "manual": self.manual,
            "everywhere": self.everywhere,
            "escalation": self.escalation,
            "targets": [asdict(t) for t in self.targets],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        targets = []
        for t in data.get("targets", []):
            t = dict(t)
            t["groups"] = tuple(t["groups"]) if t.get("groups") is not None else None
            for key in ("rule_prefixes", "failover", "failover_groups", "failover_channels"):
                t[key] = tuple(t.get(key, ()))
            targets.append(PlannedTarget(**t))
        return cls(
            rules=list(data.get("rules", [])),
            level=data.get("level"),
            targets=targets,
            inhibit=data.get("inhibit", True),
            manual=data.get("manual", False),
            everywhere=data.get("everywhere", False),
            escalation=data.get("escalation"),
        )


def _areas_overlap(alert_prefixes: tuple[str, ...], rule_prefixes: list[str]) -> bool:
    return any(a.startswith(r) or r.startswith(a) for a in alert_prefixes for r in rule_prefixes)


class RuleEngine:
    def __init__(self, config: Config):
        self.config = config
        catalogue = config.catalogue()
        self._rule_hazards = {
            rule.name: {h.code for word in rule.hazards if (h := catalogue.find(word))}
            for rule in config.rules
        }
        self._drill_groups = {name for name, group in config.groups.items() if group.drill}

    def matches(self, rule_name: str, facts: Facts) -> bool:
        rule = next(r for r in self.config.rules if r.name == rule_name)
        if not rule.enabled or facts.status not in rule.statuses or facts.msg_type not in rule.msg_types:
            return False
        if rule.hazards and (facts.hazard is None or facts.hazard.code not in self._rule_hazards[rule.name]):
            return False
        if rule.colours and facts.colour not in rule.colours:
            return False
        if rule.areas and not facts.has_geometry and not _areas_overlap(facts.area_prefixes, rule.areas):
            return False
        return True

    def plan(self, facts: Facts) -> Plan:
        plan = Plan()
        if facts.status in SILENT_STATUSES:
            return plan
        drill = facts.status in DRILL_STATUSES
        for rule in self.config.rules:
            if not self.matches(rule.name, facts):
                continue
            plan.rules.append(rule.name)
            plan.level = rule.level if plan.level is None else min(plan.level, rule.level)
            plan.inhibit = plan.inhibit and rule.inhibit
            if rule.escalation is not None and (
                plan.escalation is None or rule.level < plan.escalation["level"]
            ):
                plan.escalation = {"rule": rule.name, "level": rule.level, **rule.escalation.model_dump()}
            for target in rule.targets:
                groups = tuple(g for g in target.groups if not drill or g in self._drill_groups)
                if not groups:
                    continue
                for channel in target.channels:
                    plan.targets.append(
                        PlannedTarget(
                            rule=rule.name,
                            groups=groups,
                            channel=channel,
                            level=rule.level,
                            ack_required=target.ack_required,
                            ack_within=target.ack_within,
                            repeat=target.repeat,
                            rule_prefixes=tuple(rule.areas),
                            failover=tuple(target.failover),
                            failover_groups=tuple(target.failover_groups),
                            failover_channels=tuple(target.failover_channels),
                            deliver_within=rule.escalation.deliver_within if rule.escalation else None,
                        )
                    )
        return plan
