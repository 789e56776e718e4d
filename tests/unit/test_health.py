"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import edit_yaml

from channels.base import BreakerSettings
from warnd.clock import FakeClock
from warnd.config import ConfigInvalid, load_config
from warnd.health import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, Health


def breaker(clock: FakeClock, **settings: float) -> CircuitBreaker:
    return CircuitBreaker("sms", BreakerSettings(**settings), clock)  # type: ignore[arg-type]


def test_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=3, min_attempts=100)
    b.failure("503")
    b.failure("503")
    b.success()
    b.failure("503")
    b.failure("503")
    assert b.state == CLOSED and b.allow()
    b.failure("HTTP 503: busy")
    assert b.state == OPEN and not b.allow()
    assert b.opened_at == clock.now() and b.last_error == "HTTP 503: busy"
    assert b.snapshot()["failures"] == 3 and b.snapshot()["times_opened"] == 1


def test_opens_on_the_error_rate_within_the_window() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=100, error_rate=0.5, window=60, min_attempts=6)
    for ok in (True, False, True, False, True):
        (b.success if ok else b.failure)()
        clock.advance(1)
    assert b.state == CLOSED  # 2 of 5: too few attempts to judge
    b.failure()
    assert b.state == OPEN  # 3 of 6 = 50 %


def test_old_attempts_leave_the_window() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=100, error_rate=0.5, window=60, min_attempts=4)
    for _ in range(3):
        b.failure()
    clock.advance(61)
    b.success()
    b.failure()
    assert b.state == CLOSED and b.error_rate() == 0.5  # only the last two are in the window


def test_half_open_probe_success_closes() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1, open_for=30, probes=1)
    b.failure("timeout")
    clock.advance(29)
    assert b.state == OPEN and b.retry_at is not None
    clock.advance(1)
    assert b.state == HALF_OPEN
    assert b.allow() and not b.allow()  # one probe at a time
    b.success()
    assert b.state == CLOSED and b.allow() and b.snapshot()["opened_at"] is None


def test_half_open_probe_failure_reopens_for_another_period() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1, open_for=30)
    b.failure()
    clock.advance(30)
    assert b.allow()
    b.failure("still down")
    assert b.state == OPEN and b.opened_at == clock.now() and b.snapshot()["times_opened"] == 2
    clock.advance(29)
    assert not b.allow()
    clock.advance(1)
    assert b.allow()


def test_a_released_probe_lets_another_through() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1, open_for=10)
    b.failure()
    clock.advance(10)
    assert b.allow() and not b.allow()
    b.release()  # the probe told nothing (only offline terminals)
    assert b.allow()


def test_health_keeps_target_breakers_apart() -> None:
    clock = FakeClock()
    health = Health(clock, {"loudspeaker": BreakerSettings(target_failures=1, open_for=60)})
    assert health.target("loudspeaker", "LS-1") is None
    t = health.target("loudspeaker", "LS-1", create=True)
    assert t is not None
    t.failure("terminal offline")
    assert health.open_breakers() == ["loudspeaker/LS-1"]
    assert health.available("loudspeaker")  # the channel itself is fine
    snap = health.snapshot("loudspeaker")
    assert snap["state"] == CLOSED and [x["target"] for x in snap["targets"]] == ["LS-1"]


def test_check_config_names_bad_failover_entries(config_dir: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        red = next(r for r in data["rules"] if r["name"] == "rainstorm-red")
        red["targets"][0]["failover"] = ["sms2", "sms"]
        red["targets"][3]["failover_groups"] = ["village_heads"]

    edit_yaml(config_dir / "rules.yaml", change)
    with pytest.raises(ConfigInvalid) as caught:
        load_config(config_dir)
    errors = {e.path: e.reason for e in caught.value.errors}
    red = next(i for i, r in enumerate(load_rules(config_dir)) if r["name"] == "rainstorm-red")
    assert errors[f"rules[{red}].targets[0].failover[0]"].startswith("unknown channel 'sms2'")
    assert "already one of the target's channels" in errors[f"rules[{red}].targets[0].failover[1]"]
    assert errors[f"rules[{red}].targets[3].failover_groups[0]"] == "unknown group 'village_heads'"


def load_rules(config_dir: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load((config_dir / "rules.yaml").read_text(encoding="utf-8"))["rules"])
