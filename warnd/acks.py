"""叫应: acknowledgements by reply SMS, by signed one-tap link, or by an operator who took a phone call
(docs/acknowledgement.md). SKELETON — filled in by the acknowledgement work."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import Any

from warnd.clock import Clock
from warnd.config import Config
from warnd.links import LinkSigner
from warnd.store import Store

Command = Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]


class Acknowledgements:
    def __init__(self, *, config: Config, store: Store, clock: Clock, links: LinkSigner):
        self.config = config
        self.store = store
        self.clock = clock
        self.links = links


def add_cli(sub: Any, common: argparse.ArgumentParser) -> dict[str, Command]:
    """Adds ``warnd ack``; returns its handler by command name."""
    return {}
