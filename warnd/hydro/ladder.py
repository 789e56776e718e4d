"""The SL 758-2018 river-level ladder, with hysteresis so a wobbling gauge does not flap messages.

Going up, one reading is enough (a rising river must be announced at once):

    red     level ≥ historical maximum
    orange  level ≥ guaranteed stage (保证水位)
    yellow  level ≥ warning stage (警戒水位)
    blue    level ≥ warning stage − approaching margin, and rising

Coming down is slow on purpose. A colour is *supported* while the level stays within ``hysteresis`` metres
below its threshold (blue, once issued, is supported down to the bottom of the approaching band minus
hysteresis). Only when every reading for ``downgrade_after`` seconds supports a lower colour does the warning
step down, to the highest colour seen in that time; only when readings for ``lift_after`` seconds support no
colour at all is it lifted (解除). Blue means "approaching and rising", so a falling river is never
*downgraded* to blue: from yellow it goes straight to 解除 once it has been low for long enough.

Readings without a level (no data), and readings not newer than the last one used, change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from warnd.hydro.readings import Reading

LADDER = (None, "blue", "yellow", "orange", "red")  # index = severity


def severity(colour: str | None) -> int:
    return LADDER.index(colour)


@dataclass(frozen=True)
class Thresholds:
    warning: float  # 警戒水位, m
    guaranteed: float  # 保证水位, m
    historical_max: float  # 历史最高水位, m
    approaching: float = 0.5  # blue band below the warning stage, m
    hysteresis: float = 0.1  # m a level must fall below a threshold before it counts as below
    downgrade_after: float = 1800.0  # s below a colour before stepping down
    lift_after: float = 3600.0  # s below every colour before 解除


@dataclass
class LadderState:
    """What one station's warning is now; persisted between readings."""

    colour: str | None = None
    last_time: datetime | None = None
    last_level: float | None = None
    lower_since: datetime | None = None  # first reading of the current run below the colour
    lower_peak: str | None = None  # highest colour supported during that run


ChangeKind = Literal["issue", "upgrade", "downgrade", "lift"]


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    colour: str | None  # the new colour (None after a lift)
    previous: str | None
    reading: Reading


def rising_colour(t: Thresholds, level: float, rising: bool) -> str | None:
    """The colour a reading calls for on the way up."""
    if level >= t.historical_max:
        return "red"
    if level >= t.guaranteed:
        return "orange"
    if level >= t.warning:
        return "yellow"
    if rising and level >= t.warning - t.approaching:
        return "blue"
    return None


def supported_colour(t: Thresholds, level: float, current: str | None) -> str | None:
    """The highest colour a reading still supports, allowing for hysteresis."""
    h = t.hysteresis
    if level >= t.historical_max - h:
        return "red"
    if level >= t.guaranteed - h:
        return "orange"
    if level >= t.warning - h:
        return "yellow"
    if current == "blue" and level >= t.warning - t.approaching - h:
        return "blue"
    return None


def step(t: Thresholds, state: LadderState, reading: Reading) -> Change | None:
    """Apply one reading to ``state`` (mutated) and return the change it causes, if any."""
    level = reading.level
    if level is None or (state.last_time is not None and reading.time <= state.last_time):
        return None
    rising = state.last_level is not None and level > state.last_level
    state.last_time, state.last_level = reading.time, level
    current = state.colour

    up = rising_colour(t, level, rising)
    if severity(up) > severity(current):
        state.colour, state.lower_since, state.lower_peak = up, None, None
        return Change("issue" if current is None else "upgrade", up, current, reading)

    held = supported_colour(t, level, current)
    if current is None or severity(held) >= severity(current):
        state.lower_since, state.lower_peak = None, None
        return None
    if state.lower_since is None:
        state.lower_since, state.lower_peak = reading.time, held
    elif severity(held) > severity(state.lower_peak):
        state.lower_peak = held
    waited = (reading.time - state.lower_since).total_seconds()
    target = state.lower_peak
    if target is None and waited >= t.lift_after:
        state.colour, state.lower_since, state.lower_peak = None, None, None
        return Change("lift", None, current, reading)
    if target is not None and waited >= t.downgrade_after:
        state.colour, state.lower_since, state.lower_peak = target, None, None
        return Change("downgrade", target, current, reading)
    return None
