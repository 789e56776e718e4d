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
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from channels.base import Address, Channel, Outcome, OutgoingMessage, Recipient, SendResult
from warnd.clock import Clock
from warnd.config import DispatchSettings
from warnd.hazards import COLOUR_RANK
from warnd.health import OPEN, CircuitBreaker, Health
from warnd.store import Claimed, Store

log = logging.getLogger("warnd.dispatch")

# colours that fail over as soon as the channel's breaker opens, without waiting for their own retries
URGENT_COLOURS = ("red", "orange")


class FailoverHandler(Protocol):
    """Creates a delivery's alternates (:meth:`warnd.pipeline.Pipeline.fail_over`); None if none could."""

    def __call__(
        self, item: Claimed, why: str, *, available: Callable[[str], bool], channels: Collection[str]
    ) -> Awaitable[Any]: ...


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
        failover: FailoverHandler | None = None,
    ):
        self.store = store
        self.channels = dict(channels)
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = {name: asyncio.Event() for name in self.channels}
        # two token buckets per channel: messages per second, and provider requests per second (carriers and
        # gateways limit both; a batch of 100 numbers is 100 messages but one request)
        self._buckets = {
            name: TokenBucket(ch.settings.rate_per_second, ch.settings.rate_per_second, clock)
            for name, ch in self.channels.items()
            if ch.settings.rate_per_second
        }
        self._request_buckets = {
            name: TokenBucket(ch.settings.requests_per_second, ch.settings.requests_per_second, clock)
            for name, ch in self.channels.items()
            if ch.settings.requests_per_second
        }
        self.health = Health(clock, {name: ch.settings.breaker for name, ch in self.channels.items()})
        self.failover = failover  # set by the app: the pipeline renders and writes alternate deliveries

    def wake(self) -> None:
        """New deliveries are waiting (called by the pipeline after a fan-out)."""
        for event in self._wake.values():
            event.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Run every channel's workers until ``stopping`` is set; the batches in hand are finished first."""
        await asyncio.gather(
            *(
                self._worker(name, stopping)
                for name in self.channels
                for _ in range(self.settings.workers_per_channel)
            )
        )

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
        breaker = self.health.channel(name)
        now = self.clock.now()
        outcomes: list[dict[str, Any]] = []
        by_id: dict[int, Claimed] = {}
        addresses: dict[int, str] = {}
        blocked: list[tuple[Claimed, CircuitBreaker]] = []  # not sent: its terminal's breaker is open
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
            target = self.health.target(name, address)
            if target is not None and not target.allow():
                blocked.append((item, target))
                continue
            by_id[d["id"]] = item
            addresses[d["id"]] = address
            groups.setdefault(d["message_id"], []).append(_outgoing(item, address))
        chunks = [
            msgs[i : i + max(1, channel.max_batch)]
            for msgs in groups.values()
            for i in range(0, len(msgs), max(1, channel.max_batch))
        ]
        semaphore = asyncio.Semaphore(max(1, settings.concurrency))
        bucket = self._buckets.get(name)
        request_bucket = self._request_buckets.get(name)

        latency_ms: dict[int, float] = {}
        not_sent: set[int] = set()  # the channel's breaker did not let their request through

        async def send(chunk: list[OutgoingMessage]) -> list[SendResult]:
            async with semaphore:
                if not breaker.allow():
                    not_sent.update(m.delivery_id for m in chunk)
                    return [SendResult(m.delivery_id, Outcome.RETRY, error="circuit open") for m in chunk]
                if request_bucket:
                    await request_bucket.take(1)
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
                _count(breaker, results)
                return results

        gathered = await asyncio.gather(*(send(c) for c in chunks))
        for item, target in blocked:
            outcomes.append(await self._held_back(item, target, name))
        disabled: dict[int, set[str]] = {}  # recipient id → push tokens the provider says are gone
        for results in gathered:
            for result in results:
                sent_item = by_id.get(result.delivery_id)
                if sent_item is None:
                    continue
                if result.delivery_id in not_sent:
                    outcomes.append(await self._held_back(sent_item, breaker, name))
                    continue
                self._count_target(name, addresses[result.delivery_id], result)
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
                outcome = await self._after_failure(outcome, result, sent_item, breaker)
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

    # --- health and failover (docs/failover.md) ------------------------------------------------------------------

    def _count_target(self, name: str, address: str, result: SendResult) -> None:
        """A terminal that the adapter says is unreachable gets (or feeds) a breaker of its own."""
        if result.outcome is Outcome.FAILED and result.unreachable:
            target = self.health.target(name, address, create=True)
            assert target is not None
            target.failure(result.error)
            return
        target = self.health.target(name, address)
        if target is None:
            return
        if result.outcome is Outcome.ACCEPTED:
            target.success()
        else:
            target.release()

    async def _held_back(self, item: Claimed, breaker: CircuitBreaker, name: str) -> dict[str, Any]:
        """Not sent because a breaker is open: fail over now if the delivery has alternates, else wait in the
        queue until the breaker lets a probe through (this claim does not count as an attempt)."""
        d = item.delivery
        since = breaker.opened_at.isoformat() if breaker.opened_at else "?"
        why = f"circuit open since {since}" + (
            f"; last error: {breaker.last_error}" if breaker.last_error else ""
        )
        if breaker.name != name:
            why = f"{breaker.name}: {why}"
        now = self.clock.now()
        if breaker.state != OPEN:  # it was half-open, a probe was out: decide after its answer (at once)
            why = f"{breaker.name}: circuit half-open, waited for the probe"
        else:
            failed_over = await self._fail_over(item, why)
            if failed_over is not None:
                return failed_over
        retry_at = max(breaker.retry_at or now, now)
        expires = item.alert["expires"]
        if expires and datetime.fromisoformat(expires) <= retry_at:
            return _outcome(
                d["id"], "expired", "expired", error=f"alert expires before the circuit closes; {why}"
            )
        return _outcome(
            d["id"],
            "queued",
            "deferred",
            error=why,
            visible_at=retry_at,
            attempts=max(0, d["attempts"] - 1),
            detail={"reason": why, "breaker": breaker.name, "retry_at": retry_at.isoformat()},
        )

    async def _after_failure(
        self, outcome: dict[str, Any], result: SendResult, item: Claimed, breaker: CircuitBreaker
    ) -> dict[str, Any]:
        """Fail over a delivery whose target is down, whose retries ran out, or (red and orange) whose
        channel's breaker is now open; otherwise keep the outcome."""
        if result.outcome is Outcome.ACCEPTED or outcome["status"] not in ("failed", "queued"):
            return outcome
        why: str | None = None
        if outcome["status"] == "failed" and (result.unreachable or result.outcome is Outcome.RETRY):
            why = outcome["error"]
        elif (
            outcome["status"] == "queued"
            and breaker.is_open
            and (item.alert["colour"] or "") in URGENT_COLOURS
        ):
            since = breaker.opened_at.isoformat() if breaker.opened_at else "?"
            why = f"circuit open since {since}; last error: {result.error}"
        if why is None:
            return outcome
        failed_over = await self._fail_over(item, why, detail=outcome.get("detail"))
        return failed_over or outcome

    async def _fail_over(
        self, item: Claimed, why: str, *, detail: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        if self.failover is None:
            return None
        try:
            done = await self.failover(
                item, why, available=self.health.available, channels=tuple(self.channels)
            )
        except Exception:  # a failover bug must not lose the original: handle it as if there were none
            log.exception("failover of delivery %s failed", item.delivery["id"])
            return None
        if done is None:
            return None
        for channel in {a["channel"] for a in done.alternates}:
            if channel in self._wake:
                self._wake[channel].set()
        log.warning("delivery %s failed over: %s", item.delivery["id"], done.reason)
        return _outcome(
            item.delivery["id"],
            "failed_over",
            "failed_over",
            error=why,
            reason=done.reason,
            detail={
                **dict(detail or {}),
                "reason": done.reason,
                "alternates": [
                    {k: a[k] for k in ("id", "channel", "recipient_id", "status", "created")}
                    for a in done.alternates
                ],
            },
        )

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
                d["id"],
                "sent",
                "accepted",
                provider_message_id=result.provider_message_id,
                parts=list(result.part_ids),
                detail=detail,
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


def _count(breaker: CircuitBreaker, results: Sequence[SendResult]) -> None:
    """One provider request for the channel's breaker: a failure if every message came back RETRY (timeout,
    5xx, 429, connection error); a success if the provider answered for any (accepted, or refused a number);
    neither if every message failed only because its terminal is unreachable."""
    if results and all(r.outcome is Outcome.RETRY for r in results):
        breaker.failure(next((r.error for r in results if r.error), None))
    elif any(
        r.outcome is Outcome.ACCEPTED or (r.outcome is Outcome.FAILED and not r.unreachable) for r in results
    ):
        breaker.success()
    else:
        breaker.release()


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
