"""Time, behind a small interface so tests never sleep.

Everything time-dependent (leases, backoff, expiry, feed polls) takes a :class:`Clock`. Production uses
:class:`SystemClock`; tests use :class:`FakeClock` and move time forward explicitly.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to. ``sleep`` advances time instead of waiting."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 7, 1, 1, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)
