"""The dispatcher: claim due deliveries, send them through channel adapters, record what happened.

Per channel, a worker loops: claim a batch under a lease (one statement) → group identical content into
provider requests of up to ``max_batch`` recipients → send with bounded concurrency and a token-bucket rate
limit → record every result in one transaction, fenced by the lease token. Temporary failures come back later
with exponential backoff and jitter (or the provider's Retry-After); permanent ones are kept with the
provider's reason. Delivery is at-least-once; the idempotency key lets providers drop a repeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from channels.base import Address, Channel, Outcome, OutgoingMessage, Recipient, SendResult
from warnd.clock import Clock
from warnd.config import DispatchSettings
from warnd.hazards import COLOUR_RANK
from warnd.store import Claimed, Store

log = logging.getLogger("warnd.dispatch")


class TokenBucket:
    """``rate`` tokens per second, up to ``burst``; ``take`` waits (on the clock) until enough are there."""

    def __init__(self, rate: float, burst: float, clock: Clock):
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self.tokens = self.burst
        self.updated = clock.now()
        self._lock = asyncio.Lock()

    async def take(self, n: float) -> None:
        """Take ``n`` tokens, waiting as needed; a request larger than the burst is paid in burst-sized parts."""
        async with self._lock:
            remaining = n
            while remaining > 0:
                now = self.clock.now()
                self.tokens = min(self.burst, self.tokens + (now - self.updated).total_seconds() * self.rate)
                self.updated = now
                portion = min(remaining, self.burst)
                if self.tokens >= portion:
                    self.tokens -= portion
                    remaining -= portion
                else:
                    await self.clock.sleep((portion - self.tokens) / self.rate)


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random, capped."""
    step = min(maximum, initial * (2 ** max(0, attempt - 1)))
    return step / 2 + rng.uniform(0, step / 2)


def pick_address(kind: Address, recipient: Mapping[str, Any]) -> str | None:
    if kind is Address.PHONE:
        return recipient["phone"]
    if kind is Address.TERMINAL:
        return recipient["terminal_id"]
    if kind is Address.PUSH:
        tokens = recipient["push_tokens"] or []
        return tokens[0] if tokens else None
    return str(recipient["key"])


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        channels: Mapping[str, Channel],
        settings: DispatchSettings,
        clock: Clock,
        rng: random.Random | None = None,
    ):
        self.store = store
        self.channels = dict(channels)
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = {name: asyncio.Event() for name in self.channels}
        self._buckets = {
            name: TokenBucket(ch.settings.rate_per_second, ch.settings.rate_per_second, clock)
            for name, ch in self.channels.items()
            if ch.settings.rate_per_second
        }

    def wake(self) -> None:
        """New deliveries are waiting (called by the pipeline after a fan-out)."""
        for event in self._wake.values():
            event.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Run every channel's worker until ``stopping`` is set; the batch in hand is finished first."""
        await asyncio.gather(*(self._worker(name, stopping) for name in self.channels))

    async def drain(self) -> int:
        """Send everything due now on every channel (tests and one-shot CLI use)."""
        total = 0
        while True:
            done = sum([await self.dispatch_once(name) for name in self.channels])
            total += done
            if not done:
                return total

    async def _worker(self, name: str, stopping: asyncio.Event) -> None:
        wake = self._wake[name]
        while not stopping.is_set():
            try:
                done = await self.dispatch_once(name)
            except Exception:
                log.exception("dispatcher for %s failed; retrying shortly", name)
                done = 0
            if done:
                continue
            wake.clear()
            waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())]
            await asyncio.wait(
                waits, timeout=self.settings.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waits:
                waiter.cancel()

    async def dispatch_once(self, name: str) -> int:
        """Claim one batch of ``name``'s due deliveries and send it. Returns how many were claimed."""
        now = self.clock.now()
        token, claimed = await self.store.claim(name, self.settings.batch_size, now, self.settings.lease)
        if not claimed:
            return 0
        try:
            outcomes = await self._send_batch(name, claimed)
        except asyncio.CancelledError:  # shutting down past the grace period: hand the rows back
            await asyncio.shield(self.store.release_leases(self.clock.now(), token))
            raise
        await self.store.record_results(token, outcomes, self.clock.now())
        return len(claimed)

    async def _send_batch(self, name: str, claimed: Sequence[Claimed]) -> list[dict[str, Any]]:
        channel = self.channels[name]
        settings = channel.settings
        now = self.clock.now()
        outcomes: list[dict[str, Any]] = []
        by_id: dict[int, Claimed] = {}
        groups: dict[int, list[OutgoingMessage]] = {}
        for item in claimed:
            d = item.delivery
            expires = item.alert["expires"]
            if expires and datetime.fromisoformat(expires) <= now:
                outcomes.append(
                    _outcome(d["id"], "expired", "expired", error="预警已过期，未发送 (alert expired)")
                )
                continue
            address = pick_address(channel.address, item.recipient)
            if not address:
                outcomes.append(
                    _outcome(
                        d["id"], "failed", "failed", error=f"recipient has no {channel.address.value} address"
                    )
                )
                continue
            by_id[d["id"]] = item
            groups.setdefault(d["message_id"], []).append(_outgoing(item, address))
        chunks = [
            msgs[i : i + max(1, channel.max_batch)]
            for msgs in groups.values()
            for i in range(0, len(msgs), max(1, channel.max_batch))
        ]
        semaphore = asyncio.Semaphore(max(1, settings.concurrency))
        bucket = self._buckets.get(name)

        latency_ms: dict[int, float] = {}

        async def send(chunk: list[OutgoingMessage]) -> list[SendResult]:
            async with semaphore:
                if bucket:
                    await bucket.take(len(chunk))
                started = time.monotonic()
                try:
                    results = await channel.send(chunk)
                except Exception as exc:  # an adapter bug or an unexpected error: try again later
                    log.exception("channel %s raised while sending %d message(s)", name, len(chunk))
                    results = [
                        SendResult(m.delivery_id, Outcome.RETRY, error=f"{type(exc).__name__}: {exc}")
                        for m in chunk
                    ]
                elapsed_ms = round((time.monotonic() - started) * 1000, 1)
                answered = {r.delivery_id for r in results}
                results += [
                    SendResult(m.delivery_id, Outcome.RETRY, error="adapter returned no result")
                    for m in chunk
                    if m.delivery_id not in answered
                ]
                latency_ms.update((m.delivery_id, elapsed_ms) for m in chunk)
                return results

        disabled: dict[int, set[str]] = {}  # recipient id → push tokens the provider says are gone
        for results in await asyncio.gather(*(send(c) for c in chunks)):
            for result in results:
                sent_item = by_id.get(result.delivery_id)
                if sent_item is not None:
                    if result.disable_tokens:
                        disabled.setdefault(sent_item.delivery["recipient_id"], set()).update(
                            result.disable_tokens
                        )
                    outcome = self._outcome_for(
                        result,
                        sent_item,
                        settings.max_attempts,
                        settings.backoff_initial,
                        settings.backoff_max,
                    )
                    outcome["detail"]["latency_ms"] = latency_ms.get(result.delivery_id)
                    outcomes.append(outcome)
        if disabled:
            removed = await self.store.remove_push_tokens(disabled, self.clock.now())
            log.warning(
                "%s: disabled %d expired push token(s) of %d recipient(s)", name, removed, len(disabled)
            )
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o["event"]] = counts.get(o["event"], 0) + 1
        log.info(
            "%s: %d claimed, %s", name, len(claimed), ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        )
        return outcomes

    def _outcome_for(
        self, result: SendResult, item: Claimed, max_attempts: int, initial: float, maximum: float
    ) -> dict[str, Any]:
        d = item.delivery
        detail = {
            "attempt": d["attempts"],
            "error": result.error,
            "provider_message_id": result.provider_message_id,
            **dict(result.response or {}),
        }
        if result.outcome is Outcome.ACCEPTED:
            return _outcome(
                d["id"], "sent", "accepted", provider_message_id=result.provider_message_id, detail=detail
            )
        if result.outcome is Outcome.FAILED:
            return _outcome(
                d["id"], "failed", "failed", error=result.error or "provider refused", detail=detail
            )
        if d["attempts"] >= max_attempts:
            return _outcome(
                d["id"],
                "failed",
                "failed",
                detail=detail,
                error=f"gave up after {d['attempts']} attempts; last error: {result.error}",
            )
        delay = (
            result.retry_after
            if result.retry_after is not None
            else backoff_delay(d["attempts"], initial, maximum, self.rng)
        )
        retry_at = self.clock.now() + timedelta(seconds=delay)
        expires = item.alert["expires"]
        if expires and datetime.fromisoformat(expires) <= retry_at:
            return _outcome(
                d["id"],
                "expired",
                "expired",
                detail=detail,
                error=f"alert expires before the next attempt; last error: {result.error}",
            )
        detail["retry_in_s"] = round(delay, 3)
        return _outcome(d["id"], "queued", "retry", error=result.error, visible_at=retry_at, detail=detail)


def _outcome(delivery_id: int, status: str, event: str, **extra: Any) -> dict[str, Any]:
    return {"delivery_id": delivery_id, "status": status, "event": event, **extra}


def _outgoing(item: Claimed, address: str) -> OutgoingMessage:
    d, r, m, a = item.delivery, item.recipient, item.message, item.alert
    recipient = Recipient(
        key=r["key"],
        name=r["name"],
        kind=r["kind"],
        role=r["role"],
        area_code=r["area_code"],
        language=r["language"],
        phone=r["phone"],
        push_tokens=tuple(r["push_tokens"] or ()),
        terminal_id=r["terminal_id"],
    )
    colour_rank = COLOUR_RANK.get(a["colour"] or "", 4)
    return OutgoingMessage(
        delivery_id=d["id"],
        idempotency_key=d["idempotency_key"],
        recipient=recipient,
        address=address,
        body=m["body"],
        content_key=str(d["message_id"]),
        title=m["title"],
        data=m["data"] or {},
        segments=d["segments"],
        repeat=d["repeat"],
        priority=9 if a["status"] in ("Exercise", "Test") else colour_rank,
        alert=a,
        references=item.references,
    )
