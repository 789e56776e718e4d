"""The SL 758 river ladder and the flash-flood rainfall windows, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from warnd.hydro.ladder import LadderState, Thresholds, rising_colour, step, supported_colour
from warnd.hydro.rainfall import WindowThreshold, ZoneState, accumulate, assess, step_zone
from warnd.hydro.readings import Reading

T0 = datetime(2024, 7, 12, tzinfo=UTC)
LONGXI = Thresholds(warning=100.0, guaranteed=102.0, historical_max=103.5, approaching=0.5)


def run(
    levels: list[float | None], every: float = 900, t: Thresholds = LONGXI
) -> list[tuple[str, str | None]]:
    state = LadderState()
    changes = []
    for i, level in enumerate(levels):
        change = step(t, state, Reading("g", T0 + timedelta(seconds=every * i), level=level))
        if change:
            changes.append((change.kind, change.colour))
    return changes


@pytest.mark.parametrize(
    ("level", "rising", "colour"),
    [
        (99.49, True, None),
        (99.5, True, "blue"),
        (99.9, False, None),  # approaching but not rising: no blue
        (100.0, False, "yellow"),
        (102.0, False, "orange"),
        (103.5, False, "red"),
    ],
)
def test_rising_colour_follows_sl_758(level: float, rising: bool, colour: str | None) -> None:
    assert rising_colour(LONGXI, level, rising) == colour


def test_supported_colour_allows_hysteresis() -> None:
    assert supported_colour(LONGXI, 99.91, "yellow") == "yellow"
    assert supported_colour(LONGXI, 99.89, "yellow") is None  # blue is not a step down
    assert supported_colour(LONGXI, 99.41, "blue") == "blue"
    assert supported_colour(LONGXI, 101.95, "orange") == "orange"


def test_one_reading_is_enough_going_up_even_skipping_colours() -> None:
    assert run([98.0, 102.4]) == [("issue", "orange")]


def test_downgrade_waits_for_downgrade_after_and_takes_the_highest_colour_seen() -> None:
    # orange, then below 101.9 for 15, 30 min: the downgrade comes at 30 min
    assert run([98.0, 102.4, 101.5, 100.5, 100.4]) == [("issue", "orange"), ("downgrade", "yellow")]
    # a single return above the threshold restarts the wait
    assert run([98.0, 102.4, 101.5, 102.1, 101.5, 101.5]) == [("issue", "orange")]


def test_lift_needs_lift_after_below_every_colour() -> None:
    changes = run([99.6, 99.8, 99.3, 99.2, 99.1, 99.0])  # blue, then below 99.4 for 45 min
    assert changes == [("issue", "blue")]
    assert run([99.6, 99.8, 99.3, 99.2, 99.1, 99.0, 98.9]) == [("issue", "blue"), ("lift", None)]


def test_no_data_and_old_readings_change_nothing() -> None:
    state = LadderState()
    assert step(LONGXI, state, Reading("g", T0, level=None, problem="no data (-999999)")) is None
    assert step(LONGXI, state, Reading("g", T0 + timedelta(hours=1), level=100.5)) is not None
    assert step(LONGXI, state, Reading("g", T0, level=103.9)) is None  # older than the last one used
    assert state.colour == "yellow"


def test_rain_accumulates_over_half_open_windows() -> None:
    rain = [(T0 + timedelta(minutes=10 * i), 5.0) for i in range(12)]  # 5 mm every 10 min for 2 h
    end = rain[-1][0]
    assert accumulate(rain, end, 3600) == 30.0  # 6 readings in (end − 1 h, end]
    assert accumulate(rain, end, 3 * 3600) == 60.0


def test_assess_takes_the_most_severe_window() -> None:
    windows = (WindowThreshold(3600, 30, 45), WindowThreshold(3 * 3600, 50, 70))
    assert assess(windows, {3600: 20.0, 3 * 3600: 72.0}) == ("evacuate", 3 * 3600, 72.0)
    assert assess(windows, {3600: 31.0, 3 * 3600: 40.0}) == ("prepare", 3600, 31.0)
    assert assess(windows, {3600: 1.0, 3 * 3600: 2.0}) == (None, None, None)


def test_zone_steps_up_never_down_and_lifts_when_quiet() -> None:
    windows = (WindowThreshold(3600, 30, 45),)
    state = ZoneState()
    rain: list[tuple[datetime, float]] = []
    kinds = []
    for i, mm in enumerate([20, 15, 15, 0, 0, 0, 0, 0, 0, 0, 0]):
        at = T0 + timedelta(minutes=30 * i)
        rain.append((at, float(mm)))
        change = step_zone(windows, state, at, rain, lift_after=3 * 3600)
        if change:
            kinds.append((change.kind, change.step))
    # 35 mm in the 2nd hour → prepare; 30 mm then → still prepare (no repeat); quiet from 2 h → lift at 5 h
    assert kinds == [("issue", "prepare"), ("lift", None)]
