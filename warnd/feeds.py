"""Polling ATOM / RSS / CAP feeds with conditional GET.

Each poll sends If-None-Match / If-Modified-Since from the last answer; a 304 costs nothing. A fat feed's
embedded alerts go straight to ingest; a thin feed's entries are fetched once each (the entry key is claimed in
the database, so several nodes never fetch the same one twice). Failures back off exponentially, and the
feed's health (last success, last error, items, latency) is kept for the API and logs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
from multidict import CIMultiDict

from warnd.cap import InvalidDocument, parse
from warnd.clock import Clock
from warnd.config import Feed
from warnd.pipeline import Pipeline
from warnd.store import Store

log = logging.getLogger("warnd.feeds")
USER_AGENT = "warnd/0.1 (+early-warning dissemination)"


class FeedPoller:
    def __init__(self, *, store: Store, pipeline: Pipeline, clock: Clock):
        self.store = store
        self.pipeline = pipeline
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._skip_until: dict[str, float] = {}

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
            return {"skipped": True}
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
            delay = min(3600.0, feed.interval * (2 ** min(failures, 10)))
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

    async def _ingest_feed(
        self, feed: Feed, body: bytes, content_type: str | None, summary: dict[str, Any]
    ) -> None:
        source = f"feed:{feed.name}"
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
