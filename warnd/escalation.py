"""The escalation ladder (resend on the next channel → tell the superior → door-knock list) and the door-knock
list itself (docs/escalation.md). SKELETON — filled in by the escalation work."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from warnd.clock import Clock
from warnd.config import Config
from warnd.links import LinkSigner
from warnd.store import Store

if TYPE_CHECKING:
    from warnd.pipeline import Pipeline

Command = Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]


class Escalator:
    def __init__(self, *, config: Config, store: Store, pipeline: Pipeline, clock: Clock, links: LinkSigner):
        self.config = config
        self.store = store
        self.pipeline = pipeline
        self.clock = clock
        self.links = links

    async def sweep(self) -> dict[str, int]:
        """One pass: open ladders whose deadline passed, climb the rungs that are due. Safe on every node."""
        return {}


def add_cli(sub: Any, common: argparse.ArgumentParser) -> dict[str, Command]:
    """Adds ``warnd doorknock``; returns its handler by command name."""
    return {}
