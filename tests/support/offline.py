"""A loudspeaker adapter for tests: terminals listed in ``offline`` fail as unreachable, the rest are accepted.

Registered in ``channels.REGISTRY`` by the tests that use it (``adapter: offline_terminals``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from channels.base import Address, Channel, ChannelSettings, Outcome, OutgoingMessage, SendResult


class OfflineTerminals(Channel):
    Settings: ClassVar[type[ChannelSettings]] = ChannelSettings
    address = Address.TERMINAL
    max_batch = 1

    def __init__(self, name: str, settings: ChannelSettings, *, data_dir: str):
        super().__init__(name, settings, data_dir=data_dir)
        self.offline: set[str] = set()
        self.calls: list[str] = []  # terminal ids, in the order they were sent to

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        out = []
        for m in batch:
            self.calls.append(m.address)
            if m.address in self.offline:
                out.append(
                    SendResult(
                        m.delivery_id, Outcome.FAILED, error="terminal offline (test)", unreachable=True
                    )
                )
            else:
                out.append(SendResult(m.delivery_id, Outcome.ACCEPTED, provider_message_id=m.idempotency_key))
        return out
