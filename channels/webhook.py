"""Signed JSON webhook: one POST per message.

Every request carries ``Idempotency-Key``, ``X-Warnd-Timestamp`` (unix seconds) and ``X-Warnd-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``f"{timestamp}."`` followed by the exact body bytes under the shared
secret.
Receivers check it with :func:`verify_signature` (constant-time compare, replay window).

Outcomes: 2xx → ACCEPTED (provider id from the answer's JSON ``id`` if present); 429 and 5xx → RETRY
honouring ``Retry-After``; timeouts and connection errors → RETRY; other statuses → FAILED with the status and
an excerpt of the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from typing import ClassVar

import aiohttp
from pydantic import Field

from channels.base import Address, ChannelSettings, Outcome, OutgoingMessage, SendResult
from channels.http import HttpChannel, HttpUrl
from channels.sms_http import scalar_text
from warnd.clock import Clock, SystemClock

log = logging.getLogger(__name__)

SIGNATURE_PREFIX = "sha256="


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Warnd-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds, as text)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature_header: str, *, now: float, tolerance: float = 300
) -> bool:
    """True if ``signature_header`` (``sha256=<hex>``) signs ``timestamp`` + ``body`` under ``secret`` and the
    timestamp is within ``tolerance`` seconds of ``now`` (either side, so replays and forged future stamps
    fail)."""
    if not secret or not timestamp or not signature_header:
        return False
    timestamp = timestamp.strip()
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    given = signature_header.strip()
    if not given.startswith(SIGNATURE_PREFIX):
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("ascii", errors="replace"))


class WebhookSettings(ChannelSettings):
    """Settings of the ``webhook`` adapter."""

    url: HttpUrl
    """Receiver endpoint (``https://…``)."""

    secret: str = Field(min_length=16)
    """HMAC-SHA256 key shared with the receiver; write it in config as ``${WARND_WEBHOOK_SECRET}``."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers. The adapter's own (content type, idempotency, timestamp, signature) win."""


class WebhookChannel(HttpChannel):
    """One signed JSON POST per message."""

    Settings: ClassVar[type[ChannelSettings]] = WebhookSettings
    settings: WebhookSettings
    address = Address.ANY
    max_batch = 1

    def __init__(self, name: str, settings: ChannelSettings, *, data_dir: str):
        super().__init__(name, settings, data_dir=data_dir)
        self.clock: Clock = SystemClock()
        self._session: aiohttp.ClientSession | None = None

    def payload(self, message: OutgoingMessage) -> bytes:
        """The exact body bytes sent for ``message``."""
        r = message.recipient
        document = {
            "delivery_id": message.delivery_id,
            "idempotency_key": message.idempotency_key,
            "channel": self.name,
            "recipient": {
                "key": r.key,
                "name": r.name,
                "role": r.role,
                "area_code": r.area_code,
                "kind": r.kind,
            },
            "title": message.title,
            "body": message.body,
            "data": dict(message.data or {}),
            "segments": message.segments,
            "repeat": message.repeat,
            "priority": message.priority,
            "alert": dict(message.alert or {}),
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not batch:
            return []
        if self._session is None or self._session.closed:
            await self.start()
        return list(await asyncio.gather(*(self._send_one(m) for m in batch)))

    async def _send_one(self, message: OutgoingMessage) -> SendResult:
        body = self.payload(message)
        timestamp = str(int(self.clock.now().timestamp()))
        headers = dict(self.settings.headers)
        for own in ("content-type", "idempotency-key", "x-warnd-timestamp", "x-warnd-signature"):
            for name in [h for h in headers if h.lower() == own]:
                del headers[name]
        headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Idempotency-Key"] = message.idempotency_key
        headers["X-Warnd-Timestamp"] = timestamp
        headers["X-Warnd-Signature"] = sign(self.settings.secret, timestamp, body)

        answer = await self.exchange(
            "POST", self.settings.url, data=body, headers=headers, seconds=self.settings.timeout
        )
        if answer.outcome is not None:
            log.warning("channel %s: delivery %s: %s", self.name, message.delivery_id, answer.error)
            return answer.result(message.delivery_id)
        provider_id: str | None = None
        try:
            parsed = json.loads(answer.text) if answer.text.strip() else None
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, Mapping) and parsed.get("id") is not None:
            provider_id = scalar_text(parsed["id"]) or None
        return SendResult(
            message.delivery_id, Outcome.ACCEPTED, provider_message_id=provider_id, response=answer.response
        )


Settings = WebhookSettings
