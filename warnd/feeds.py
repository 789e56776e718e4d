"""Polling ATOM / RSS / CAP feeds with conditional GET.

Each poll sends If-None-Match / If-Modified-Since from the last answer; a 304 costs nothing. A fat feed's
embedded alerts go straight to ingest; a thin feed's entries are fetched once each (the entry key is claimed in
the database, so several nodes never fetch the same one twice). Failures back off exponentially, and the
feed's health (last success, last error, items, latency) is kept for the API and logs.

Health (:func:`feed_health`, shown by ``GET /api/v1/feeds`` and summarised by ``/healthz``) is computed from the
stored state and the clock, so every process answers the same: ``state`` is ``ok`` / ``failing`` (the last poll
failed; ``next_try`` is when the backoff ends) / ``stale`` / ``never polled`` / ``disabled``. A feed is *stale*
when it has had no successful poll for ``stale_after`` (default 3 × ``interval``) — counted from its last
success, or from the start of this process if that is later (a restart does not blame the publisher for the
time warnd was down). The poller logs one WARNING when a feed becomes stale and one INFO when it recovers, and
writes ``feed.stale`` / ``feed.recovered`` to the audit log (actor ``warnd``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from multidict import CIMultiDict

from warnd.cap import InvalidDocument, parse
from warnd.clock import Clock
from warnd.config import Feed
from warnd.hydro.readings import ReadingsError, parse_readings
from warnd.hydro.service import HydroService
from warnd.pipeline import Pipeline
from warnd.store import Store

log = logging.getLogger("warnd.feeds")
USER_AGENT = "warnd/0.1 (+early-warning dissemination)"
MAX_BACKOFF = 3600.0


def backoff_delay(feed: Feed, failures: int) -> float:
    """Seconds to wait after ``failures`` failed polls in a row: 2, 4, 8 … × interval, at most an hour."""
    return min(MAX_BACKOFF, feed.interval * (2 ** min(failures, 10)))


def feed_health(
    feed: Feed, state: Mapping[str, Any] | None, now: datetime, started_at: datetime
) -> dict[str, Any]:
    """What ``GET /api/v1/feeds`` shows for one feed (see the module docstring for the states)."""
    state = state or {}
    last_success: datetime | None = state.get("last_success")
    last_poll: datetime | None = state.get("last_poll")
    last_error_at: datetime | None = state.get("last_error_at")
    failures = state.get("consecutive_failures") or 0
    since = max(last_success, started_at) if last_success else started_at
    stale = feed.enabled and (now - since).total_seconds() > feed.stale_seconds
    backoff = backoff_delay(feed, failures) if failures else None
    next_try: datetime | None = None
    if feed.enabled:
        if backoff is not None and last_error_at is not None:
            next_try = last_error_at + timedelta(seconds=backoff)
        elif last_poll is not None:
            next_try = last_poll + timedelta(seconds=feed.interval)
    if not feed.enabled:
        label = "disabled"
    elif stale:
        label = "stale"
    elif failures:
        label = "failing"
    elif last_poll is None:
        label = "never polled"
    else:
        label = "ok"
    return {
        **{k: v for k, v in state.items() if k not in ("name", "url")},
        "name": feed.name,
        "url": feed.url,
        "enabled": feed.enabled,
        "interval_s": feed.interval,
        "stale_after_s": feed.stale_seconds,
        "state": label,
        "stale": stale,
        "stale_since": (since + timedelta(seconds=feed.stale_seconds)) if stale else None,
        "last_poll": last_poll,
        "last_success": last_success,
        "last_error": state.get("last_error"),
        "last_error_at": last_error_at,
        "consecutive_failures": failures,
        "items": state.get("items") or 0,
        "latency_ms": state.get("latency_ms"),
        "backoff_s": backoff,
        "next_try": next_try,
    }


class FeedPoller:
    def __init__(
        self,
        *,
        store: Store,
        pipeline: Pipeline,
        clock: Clock,
        started_at: datetime | None = None,
        hydro: HydroService | None = None,
    ):
        self.store = store
        self.pipeline = pipeline
        self.hydro = hydro  # takes the readings of ``kind: readings`` feeds (gauges)
        self.clock = clock
        self.started_at = started_at or clock.now()
        self._session: aiohttp.ClientSession | None = None
        self._skip_until: dict[str, float] = {}
        self._stale: set[str] = set()  # feeds whose stale alarm has been raised (logged once)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self._session

    async def _get(
        self, feed: Feed, url: str, headers: dict[str, str]
    ) -> tuple[int, bytes, CIMultiDict[str]]:
        timeout = aiohttp.ClientTimeout(total=feed.timeout)
        async with self._client().get(url, headers={**feed.headers, **headers}, timeout=timeout) as resp:
            if resp.status == 304:
                return 304, b"", CIMultiDict(resp.headers)
            if resp.content_length and resp.content_length > feed.max_bytes:
                raise ValueError(f"{url}: {resp.content_length} bytes, limit {feed.max_bytes}")
            body = await resp.content.read(feed.max_bytes + 1)
            if len(body) > feed.max_bytes:
                raise ValueError(f"{url}: more than {feed.max_bytes} bytes")
            if resp.status >= 400:
                raise ValueError(f"{url}: HTTP {resp.status}")
            return resp.status, body, CIMultiDict(resp.headers)

    async def poll(self, feed: Feed) -> dict[str, Any]:
        """One poll of one feed. Never raises: errors are recorded in the feed's state."""
        now = self.clock.now()
        if self._skip_until.get(feed.name, 0) > now.timestamp():
            await self.check_health([feed])
            return {"skipped": True}
        summary = await self._poll(feed, now)
        await self.check_health([feed])
        return summary

    async def check_health(self, feeds: Iterable[Feed]) -> list[dict[str, Any]]:
        """Each feed's health; a feed that has just become stale, or just recovered, is logged and audited once."""
        now = self.clock.now()
        out = []
        for feed in feeds:
            health = feed_health(feed, await self.store.feed_state(feed.name), now, self.started_at)
            out.append(health)
            if health["stale"] and feed.name not in self._stale:
                self._stale.add(feed.name)
                log.warning(
                    "feed %s is stale: no successful poll for %.0fs (stale_after %.0fs); last error: %s",
                    feed.name,
                    (now - max(health["last_success"] or self.started_at, self.started_at)).total_seconds(),
                    feed.stale_seconds,
                    health["last_error"] or "none",
                )
                await self._audit(now, "feed.stale", health)
            elif not health["stale"] and feed.name in self._stale:
                self._stale.discard(feed.name)
                log.info("feed %s recovered: polled successfully at %s", feed.name, health["last_success"])
                await self._audit(now, "feed.recovered", health)
        return out

    async def _audit(self, now: datetime, action: str, health: Mapping[str, Any]) -> None:
        detail = {
            k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in health.items()
            if k
            in ("url", "last_success", "last_error", "last_error_at", "consecutive_failures", "stale_after_s")
        }
        await self.store.audit(now, "warnd", action, target=health["name"], detail=detail)

    async def _poll(self, feed: Feed, now: datetime) -> dict[str, Any]:
        state = await self.store.feed_state(feed.name) or {}
        conditional = {}
        if state.get("etag"):
            conditional["If-None-Match"] = state["etag"]
        if state.get("last_modified"):
            conditional["If-Modified-Since"] = state["last_modified"]
        started = time.monotonic()
        summary: dict[str, Any] = {"created": 0, "duplicate": 0, "rejected": 0, "fetched": 0}
        try:
            status, body, headers = await self._get(feed, feed.url, conditional)
            if status != 304:
                await self._ingest_feed(feed, body, headers.get("Content-Type"), summary)
            latency = (time.monotonic() - started) * 1000
            await self.store.save_feed_state(
                feed.name,
                url=feed.url,
                etag=headers.get("ETag") or state.get("etag"),
                last_modified=headers.get("Last-Modified") or state.get("last_modified"),
                last_poll=now,
                last_success=now,
                consecutive_failures=0,
                items=(state.get("items") or 0) + summary["created"],
                latency_ms=latency,
            )
            self._skip_until.pop(feed.name, None)
            summary["status"] = status
        except Exception as exc:  # network, size, parse: recorded, retried with backoff
            failures = (state.get("consecutive_failures") or 0) + 1
            delay = backoff_delay(feed, failures)
            self._skip_until[feed.name] = now.timestamp() + delay
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "feed %s failed (%d in a row, next try in %.0fs): %s", feed.name, failures, delay, error
            )
            await self.store.save_feed_state(
                feed.name,
                url=feed.url,
                last_poll=now,
                last_error=error[:2000],
                last_error_at=now,
                consecutive_failures=failures,
            )
            summary["error"] = error
        return summary

    async def _ingest_readings(
        self, feed: Feed, body: bytes, content_type: str | None, summary: dict[str, Any]
    ) -> None:
        """A gauge feed: readings to the hydrology service; a body that does not parse is quarantined."""
        if self.hydro is None:
            raise ValueError("gauge readings feed, but no hydrology service is running")
        source = f"feed:{feed.name}"
        try:
            readings = parse_readings(body, content_type)
        except ReadingsError as exc:
            await self.store.save_payload(
                received_at=self.clock.now(),
                source=source,
                content_type=content_type,
                body=body,
                outcome="rejected",
                errors=[str(exc)],
            )
            raise ValueError(f"readings rejected: {exc}") from exc
        result = await self.hydro.ingest(readings, source=source)
        summary["created"] += result["new"]
        summary["warnings"] = result["warnings"]

    async def _ingest_feed(
        self, feed: Feed, body: bytes, content_type: str | None, summary: dict[str, Any]
    ) -> None:
        source = f"feed:{feed.name}"
        if feed.kind == "readings":
            await self._ingest_readings(feed, body, content_type, summary)
            return
        try:
            parsed = parse(body, max_bytes=feed.max_bytes)
        except InvalidDocument as exc:  # kept in quarantine, and the feed counts as failing
            await self.pipeline.ingest(body, source=source, content_type=content_type)
            raise ValueError(f"feed body rejected: {exc}") from exc
        if parsed.alerts or parsed.rejected:
            for result in await self.pipeline.ingest(body, source=source, content_type=content_type):
                summary[result.outcome] += 1
        for link in parsed.links:
            key = f"{link.entry_id or link.url}|{link.updated or ''}"
            if not await self.store.claim_feed_entry(feed.name, key, self.clock.now()):
                continue
            try:
                _status, cap, headers = await self._get(feed, link.url, {})
            except Exception as exc:  # try this entry again at the next poll
                log.warning("feed %s: entry %s could not be fetched: %s", feed.name, link.url, exc)
                await self.store.forget_feed_entry(feed.name, key)
                summary["fetch_failed"] = summary.get("fetch_failed", 0) + 1
                continue
            summary["fetched"] += 1
            for result in await self.pipeline.ingest(
                cap, source=f"{source}:{link.url}", content_type=headers.get("Content-Type")
            ):
                summary[result.outcome] += 1
