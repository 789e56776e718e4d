"""Channel health: a circuit breaker per channel (provider), and per target (terminal) that reports itself down.

A breaker is **closed** while things work. It **opens** after ``failures`` consecutive failed requests, or when
at least ``min_attempts`` requests in the last ``window`` seconds failed at a rate of ``error_rate`` or more.
While open nothing is sent through it (the dispatcher fails deliveries over to their alternates, or keeps them
queued until it half-opens; docs/failover.md). After ``open_for`` seconds it is **half-open**: ``probes``
requests go through; a success closes it, a failure opens it again for another ``open_for``.

Only provider / transport failures count (requests whose every message came back RETRY). Per-target breakers
(key: the terminal id) count results the adapter flags ``unreachable`` ("terminal offline") and open after
``target_failures`` of them in a row.

State lives in memory, per process: a restart starts every breaker closed (the first requests find out again).
Time comes from the injected :class:`~warnd.clock.Clock`, so tests move it instead of sleeping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from channels.base import BreakerSettings
from warnd.clock import Clock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, name: str, settings: BreakerSettings, clock: Clock, *, threshold: int | None = None):
        self.name = name
        self.settings = settings
        self.clock = clock
        self.threshold = threshold or settings.failures  # consecutive failures that open it
        self._state = CLOSED
        self.consecutive = 0  # failures in a row
        self.opened_at: datetime | None = None
        self.opened_count = 0  # how many times it opened (since the process started)
        self.last_error: str | None = None
        self.last_failure_at: datetime | None = None
        self.last_success_at: datetime | None = None
        self._recent: deque[tuple[datetime, bool]] = deque()  # (time, ok) within the window
        self._probes = 0  # half-open requests in flight

    # --- state ----------------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """closed / open / half_open (an open breaker becomes half-open once ``open_for`` has passed)."""
        if self._state == OPEN and self.opened_at is not None and self.clock.now() >= self.retry_at_or_now():
            self._state = HALF_OPEN
            self._probes = 0
        return self._state

    def retry_at_or_now(self) -> datetime:
        if self.opened_at is None:
            return self.clock.now()
        return self.opened_at + timedelta(seconds=self.settings.open_for)

    @property
    def retry_at(self) -> datetime | None:
        """When an open breaker lets the first probe through (None unless open)."""
        return self.retry_at_or_now() if self.state == OPEN else None

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    def allow(self) -> bool:
        """May a request go through now? Half-open: up to ``probes`` requests until one of them answers."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and self._probes < self.settings.probes:
            self._probes += 1
            return True
        return False

    # --- results ----------------------------------------------------------------------------------------------

    def success(self) -> None:
        now = self.clock.now()
        self.last_success_at = now
        self._remember(now, True)
        self.consecutive = 0
        if self.state != CLOSED:
            self._state = CLOSED
            self.opened_at = None
            self._probes = 0

    def release(self) -> None:
        """A request that told nothing about the provider (e.g. only offline terminals): free its probe slot."""
        if self._state == HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def failure(self, error: str | None = None) -> None:
        now = self.clock.now()
        self.last_failure_at = now
        self.last_error = error
        self._remember(now, False)
        self.consecutive += 1
        state = self.state
        if state == HALF_OPEN:
            self._open(now)  # the probe failed
        elif state == CLOSED and (self.consecutive >= self.threshold or self._rate_exceeded()):
            self._open(now)

    def _open(self, now: datetime) -> None:
        self._state = OPEN
        self.opened_at = now
        self.opened_count += 1
        self._probes = 0

    def _remember(self, now: datetime, ok: bool) -> None:
        self._recent.append((now, ok))
        self._trim(now)

    def _trim(self, now: datetime) -> None:
        horizon = now - timedelta(seconds=self.settings.window)
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()

    def _rate_exceeded(self) -> bool:
        if len(self._recent) < self.settings.min_attempts:
            return False
        failed = sum(1 for _, ok in self._recent if not ok)
        return failed / len(self._recent) >= self.settings.error_rate

    def error_rate(self) -> float | None:
        self._trim(self.clock.now())
        if not self._recent:
            return None
        return round(sum(1 for _, ok in self._recent if not ok) / len(self._recent), 3)

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        return {
            "state": state,
            "failures": self.consecutive,
            "error_rate": self.error_rate(),
            "requests_in_window": len(self._recent),
            "opened_at": self.opened_at if state != CLOSED else None,
            "retry_at": self.retry_at,
            "times_opened": self.opened_count,
            "last_error": self.last_error,
            "last_failure_at": self.last_failure_at,
            "last_success_at": self.last_success_at,
        }


class Health:
    """Every breaker of one process: one per channel, and one per target a channel reported unreachable."""

    def __init__(self, clock: Clock, settings: Mapping[str, BreakerSettings]):
        self.clock = clock
        self.settings = dict(settings)
        self.channels = {name: CircuitBreaker(name, s, clock) for name, s in self.settings.items()}
        self.targets: dict[tuple[str, str], CircuitBreaker] = {}

    def channel(self, name: str) -> CircuitBreaker:
        if name not in self.channels:
            self.channels[name] = CircuitBreaker(name, BreakerSettings(), self.clock)
        return self.channels[name]

    def target(self, channel: str, key: str, *, create: bool = False) -> CircuitBreaker | None:
        breaker = self.targets.get((channel, key))
        if breaker is None and create:
            settings = self.settings.get(channel, BreakerSettings())
            breaker = CircuitBreaker(
                f"{channel}/{key}", settings, self.clock, threshold=settings.target_failures
            )
            self.targets[(channel, key)] = breaker
        return breaker

    def available(self, channel: str) -> bool:
        """Worth queueing work on (closed or half-open): used to pick a failover channel."""
        return self.channel(channel).state != OPEN

    def open_breakers(self) -> list[str]:
        """Names of open breakers: ``sms``, ``loudspeaker/LS-500228101201-01``."""
        names = [name for name, b in self.channels.items() if b.state == OPEN]
        names += [b.name for b in self.targets.values() if b.state == OPEN]
        return sorted(names)

    def snapshot(self, channel: str) -> dict[str, Any]:
        out = self.channel(channel).snapshot()
        out["targets"] = [
            {"target": key, **b.snapshot()}
            for (ch, key), b in sorted(self.targets.items())
            if ch == channel and b.state != CLOSED
        ]
        return out
