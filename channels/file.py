"""File channel: appends one JSON line per message to a file.

Useful as a demo or audit sink, and to hand messages to systems that read files (a loudspeaker controller's
spool directory, a push relay). A delivery is accepted only once its line is on disk: each batch is written
with one ``open(…, "a")``, flushed and ``fsync``ed, in a worker thread. Nothing is masked — the file is the
operator's own. An ``OSError`` (disk full, permissions) becomes RETRY for the whole batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from channels.base import Address, Channel, ChannelSettings, Outcome, OutgoingMessage, SendResult
from warnd.clock import Clock, SystemClock

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    """One lock per file, shared by every channel instance in the process, so batches never interleave."""
    key = str(path)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.Lock()
        return lock


class FileSettings(ChannelSettings):
    """Settings of the ``file`` adapter."""

    path: str | None = None
    """Output file. Default ``<data_dir>/outbox/<channel name>.jsonl``; relative paths are under data_dir."""

    address: Address = Address.ANY
    """Which recipient address this channel uses: ``any`` (default), ``terminal`` (a demo loudspeaker
    channel), ``push`` (a demo push channel) or ``phone``."""

    max_batch: int = Field(default=500, ge=1, le=100_000)
    """How many messages one write may carry."""


class FileChannel(Channel):
    """Append-only JSON Lines output, fsynced per batch."""

    Settings: ClassVar[type[ChannelSettings]] = FileSettings
    settings: FileSettings
    max_batch = 500

    def __init__(self, name: str, settings: ChannelSettings, *, data_dir: str):
        super().__init__(name, settings, data_dir=data_dir)
        self.address = self.settings.address
        self.max_batch = self.settings.max_batch
        self.clock: Clock = SystemClock()
        if self.settings.path is None:
            path = Path(data_dir) / "outbox" / f"{name}.jsonl"
        else:
            path = Path(self.settings.path).expanduser()
            if not path.is_absolute():
                path = Path(data_dir) / path
        self.path: Path = path.absolute()

    def line(self, message: OutgoingMessage, at: str) -> str:
        """The JSON line (with its newline) written for ``message``."""
        r = message.recipient
        document = {
            "at": at,
            "channel": self.name,
            "delivery_id": message.delivery_id,
            "idempotency_key": message.idempotency_key,
            "address": message.address,
            "recipient": {
                "key": r.key,
                "name": r.name,
                "kind": r.kind,
                "role": r.role,
                "area_code": r.area_code,
                "language": r.language,
                "phone": r.phone,
                "push_tokens": list(r.push_tokens),
                "terminal_id": r.terminal_id,
            },
            "title": message.title,
            "body": message.body,
            "data": dict(message.data or {}),
            "segments": message.segments,
            "repeat": message.repeat,
            "priority": message.priority,
            "alert": dict(message.alert or {}),
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _lock_for(self.path), open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not batch:
            return []
        at = self.clock.now().isoformat(timespec="milliseconds")
        text = "".join(self.line(m, at) for m in batch)
        try:
            await asyncio.to_thread(self._write, text)
        except OSError as exc:
            reason = f"cannot write {self.path}: {exc.strerror or exc}"
            return [SendResult(m.delivery_id, Outcome.RETRY, error=reason) for m in batch]
        return [
            SendResult(m.delivery_id, Outcome.ACCEPTED, provider_message_id=f"file:{m.idempotency_key}")
            for m in batch
        ]


Settings = FileSettings
