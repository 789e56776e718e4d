"""Coverage and timeliness per alert, village and channel; reports kept when an alert ends, drills apart
(docs/reports.md). SKELETON — filled in by the reporting work."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import Any

from warnd.clock import Clock
from warnd.config import Config
from warnd.store import Store

Command = Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]


class Reporter:
    def __init__(self, *, config: Config, store: Store, clock: Clock):
        self.config = config
        self.store = store
        self.clock = clock

    async def keep_ended(self) -> list[int]:
        """Compute and keep the report (and recommendations) of every alert chain that ended since the last
        pass; returns their root ids."""
        return []


def add_cli(sub: Any, common: argparse.ArgumentParser) -> dict[str, Command]:
    """Adds ``warnd report`` and ``warnd optimise``; returns their handlers by command name."""
    return {}
