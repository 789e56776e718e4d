"""Hazards, colours and levels: turning what a CAP message says into what the rules key on.

The catalogue maps GB/T 35561 event codes (and any alias a feed uses) to a hazard and its signal ladder.
The ladder is data: not every hazard has four colours, and provinces differ (``early-warning-cn.md`` §1).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from warnd.cap.model import Info

COLOURS = ("red", "orange", "yellow", "blue")  # most to least severe
COLOUR_RANK = {c: i + 1 for i, c in enumerate(COLOURS)}  # red 1 … blue 4, the same order as levels Ⅰ…Ⅳ

_COLOUR_WORDS = {
    "red": ("red", "红", "红色"),
    "orange": ("orange", "橙", "橙色"),
    "yellow": ("yellow", "黄", "黄色"),
    "blue": ("blue", "蓝", "蓝色"),
}
_OASIS_SEVERITY = {"extreme": "red", "severe": "orange", "moderate": "yellow", "minor": "blue"}
OASIS_SEVERITY = {colour: word.capitalize() for word, colour in _OASIS_SEVERITY.items()}  # red -> Extreme
COLOUR_LABELS = {colour: words[2] for colour, words in _COLOUR_WORDS.items()}  # red -> 红色
_LEVEL_WORDS = {
    1: ("1", "i", "Ⅰ", "一", "一级", "i级", "Ⅰ级"),
    2: ("2", "ii", "Ⅱ", "二", "二级", "ii级", "Ⅱ级"),
    3: ("3", "iii", "Ⅲ", "三", "三级", "iii级", "Ⅲ级"),
    4: ("4", "iv", "Ⅳ", "四", "四级", "iv级", "Ⅳ级"),
}
LEVEL_LABELS = {1: "Ⅰ", 2: "Ⅱ", 3: "Ⅲ", 4: "Ⅳ"}
# 中国天气网-style codes: 5-character type + 01 blue … 04 red (e.g. 11B0304 = rainstorm red)
_TYPED_LEVEL_CODE = re.compile(r"^(\d\d[A-Z]\d\d)(0[1-4])$")
_CODE_LEVEL_COLOUR = {"01": "blue", "02": "yellow", "03": "orange", "04": "red"}


def parse_colour(value: object) -> str:
    """'红色' / '红' / 'Red' / 'red' -> 'red'. Raises ValueError for anything else."""
    text = str(value).strip().lower()
    for colour, words in _COLOUR_WORDS.items():
        if text in words:
            return colour
    raise ValueError(f"unknown colour {value!r} (use red/orange/yellow/blue or 红/橙/黄/蓝)")


def parse_level(value: object) -> int:
    """'Ⅰ' / 'I' / 1 / 'Ⅰ级' / '一级' -> 1 (Ⅰ is the highest response level). Raises ValueError."""
    text = str(value).strip().lower().replace(" ", "")
    for level, words in _LEVEL_WORDS.items():
        if text in (w.lower() for w in words):
            return level
    raise ValueError(f"unknown response level {value!r} (use Ⅰ–Ⅳ, I–IV or 1–4)")


@dataclass(frozen=True)
class Hazard:
    code: str
    name: str
    colours: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    family: str = ""  # hazards of one family are one event per recipient (inhibition); "" = its own code

    @property
    def family_name(self) -> str:
        return self.family or self.code


@dataclass(frozen=True)
class Classification:
    hazard: Hazard | None
    colour: str | None
    event: str  # what the message called it, for display when the hazard is unknown


class Catalogue:
    def __init__(self, hazards: dict[str, Hazard]):
        self.hazards = hazards
        self._by_word: dict[str, Hazard] = {}
        for hazard in hazards.values():
            for word in (hazard.code, hazard.name, *hazard.aliases):
                self._by_word[word.strip().lower()] = hazard
        # longest names first so 雷雨大风 is found before 大风 in free text
        self._names = sorted(
            ((h.name, h) for h in hazards.values()), key=lambda pair: len(pair[0]), reverse=True
        )

    @classmethod
    def load(cls, overrides: dict[str, dict[str, Any]] | None = None) -> Catalogue:
        """The built-in catalogue, with config entries (keyed by code) replacing or adding hazards."""
        entries = {code: dict(entry) for code, entry in _built_in().items()}
        for code, entry in (overrides or {}).items():
            entries[code] = {**entries.get(code, {}), **entry}
        return cls(
            {
                code: Hazard(
                    code=code,
                    name=str(e["name"]),
                    colours=tuple(parse_colour(c) for c in e.get("colours", COLOURS)),
                    aliases=tuple(str(a) for a in e.get("aliases", ())),
                    family=str(e.get("family") or code),
                )
                for code, e in entries.items()
            }
        )

    def family_codes(self, code: str) -> tuple[str, ...]:
        """The codes of every hazard in ``code``'s family (itself included), sorted; just ``code`` when the
        catalogue does not know it."""
        hazard = self.hazards.get(code)
        if hazard is None:
            return (code,)
        family = hazard.family_name
        return tuple(sorted(c for c, h in self.hazards.items() if h.family_name == family))

    def find(self, word: str) -> Hazard | None:
        """A hazard by code, name or alias (case-insensitive)."""
        return self._by_word.get(word.strip().lower())

    def classify(self, info: Info) -> Classification:
        hazard: Hazard | None = None
        colour: str | None = None
        for _name, value in info.event_codes:
            match = _TYPED_LEVEL_CODE.match(value.strip())
            if match and self.find(match.group(1)):
                hazard, colour = self.find(match.group(1)), _CODE_LEVEL_COLOUR[match.group(2)]
                break
            hazard = hazard or self.find(value)
        hazard = hazard or self.find(info.event) or self._search_text(info.event, info.headline)
        colour = colour or _severity_colour(info.severity) or _text_colour(info.headline, info.event)
        return Classification(hazard=hazard, colour=colour, event=hazard.name if hazard else info.event)

    def _search_text(self, *texts: str | None) -> Hazard | None:
        for text in texts:
            if text:
                for name, hazard in self._names:
                    if name in text:
                        return hazard
        return None


@functools.cache
def _built_in() -> dict[str, dict[str, Any]]:
    text = resources.files("warnd").joinpath("data/hazards.yaml").read_text(encoding="utf-8")
    entries: dict[str, dict[str, Any]] = yaml.safe_load(text)
    return entries


def _severity_colour(severity: str) -> str | None:
    text = severity.strip().lower()
    if text in _OASIS_SEVERITY:
        return _OASIS_SEVERITY[text]
    try:
        return parse_colour(text)
    except ValueError:
        return None


def _text_colour(*texts: str | None) -> str | None:
    for text in texts:
        if text:
            for colour, (_en, short, _long) in _COLOUR_WORDS.items():
                if f"{short}色" in text:
                    return colour
    return None
