"""Flash-flood (山洪) rainfall thresholds for one danger zone (危险区).

A zone has, per accumulation window (1 h / 3 h / 6 h …), a 准备转移 (prepare to evacuate) and a 立即转移
(evacuate now) threshold in millimetres. Rain gauge readings give the millimetres fallen in the interval ending
at each reading; a window's accumulation is the sum of readings with time in (t − window, t].

Steps only go up while it rains: 准备转移 → 立即转移. People who have been told to leave are not told "prepare"
again, so there is no automatic step down; when no window has reached the 准备转移 threshold for ``lift_after``
seconds the warning is lifted (解除).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Step = Literal["prepare", "evacuate"]
STEPS: tuple[None, Step, Step] = (None, "prepare", "evacuate")
STEP_LABELS = {"prepare": "准备转移", "evacuate": "立即转移"}


@dataclass(frozen=True)
class WindowThreshold:
    seconds: float
    prepare: float  # mm
    evacuate: float  # mm


@dataclass
class ZoneState:
    step: Step | None = None
    last_time: datetime | None = None
    quiet_since: datetime | None = None  # first reading of the current run below every 准备转移 threshold


@dataclass(frozen=True)
class ZoneChange:
    kind: Literal["issue", "upgrade", "lift"]
    step: Step | None
    previous: Step | None
    time: datetime
    window: float | None  # seconds of the window that crossed (None for a lift)
    rainfall: float | None  # mm accumulated in that window


def accumulate(rain: Iterable[tuple[datetime, float]], end: datetime, seconds: float) -> float:
    """Millimetres in (end − seconds, end]."""
    start = end - timedelta(seconds=seconds)
    return round(sum(mm for at, mm in rain if start < at <= end), 3)


def assess(
    windows: Iterable[WindowThreshold], totals: Mapping[float, float]
) -> tuple[Step | None, float | None, float | None]:
    """The step the accumulations call for, with the window (s) and total (mm) that decided it."""
    found: tuple[Step | None, float | None, float | None] = (None, None, None)
    for w in windows:
        total = totals[w.seconds]
        step: Step | None = "evacuate" if total >= w.evacuate else "prepare" if total >= w.prepare else None
        if STEPS.index(step) > STEPS.index(found[0]):
            found = (step, w.seconds, total)
    return found


def step_zone(
    windows: tuple[WindowThreshold, ...],
    state: ZoneState,
    at: datetime,
    rain: Iterable[tuple[datetime, float]],
    lift_after: float,
) -> ZoneChange | None:
    """Apply the gauge's rain up to ``at`` (the newest reading's time) to ``state`` (mutated)."""
    if state.last_time is not None and at <= state.last_time:
        return None
    state.last_time = at
    history = list(rain)
    totals = {w.seconds: accumulate(history, at, w.seconds) for w in windows}
    called, window, total = assess(windows, totals)
    current = state.step
    if STEPS.index(called) > STEPS.index(current):
        state.step, state.quiet_since = called, None
        return ZoneChange("issue" if current is None else "upgrade", called, current, at, window, total)
    if current is None or called is not None:
        state.quiet_since = None
        return None
    if state.quiet_since is None:
        state.quiet_since = at
    if (at - state.quiet_since).total_seconds() >= lift_after:
        state.step, state.quiet_since = None, None
        return ZoneChange("lift", None, current, at, None, None)
    return None
