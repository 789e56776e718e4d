"""The live alert board, the shared poller that keeps it current, and the dashboard (docs/board.md).

The board lists the active alert chains, most severe first, each with its delivery progress, 叫应 and door-knock
progress per village. Its numbers are a coverage report's (:func:`warnd.report.build_report`, the same rows
and definitions as ``GET /api/v1/alerts/{id}/report``), plus ``queued`` (:func:`queued_people`).

:class:`LiveBoard` (one per :class:`warnd.app.App`) computes the board at most once per ``api.live_every``
seconds however many people watch it, and wakes the event streams (``GET /api/v1/events``) when it changed.
It reads the database, so it sees what every node sharing the database did.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from warnd.api_common import alert_json, feeds_health, json_text
from warnd.clock import Clock
from warnd.config import Config
from warnd.escalation import Escalator
from warnd.hazards import COLOUR_RANK, COLOURS
from warnd.optimise import reach_seconds
from warnd.receipts import sent_is_enough
from warnd.report import chain_report, timing
from warnd.store import NOT_SENT, Store
from warnd.store import board as queries
from warnd.store.broadcasts import PENDING, BroadcastStore
from warnd.store.report import chain_rows

if TYPE_CHECKING:
    from warnd.app import App

log = logging.getLogger("warnd.board")

# what a board alert shows of its newest revision (GET /api/v1/alerts/{id} has the rest)
ALERT_FIELDS = (
    "id",
    "root_id",
    "identifier",
    "headline",
    "event",
    "hazard_code",
    "colour",
    "colour_label",
    "level",
    "level_label",
    "msg_type",
    "status",
    "state",
    "area_desc",
    "effective",
    "expires",
    "received_at",
    "rules",
)
# time-to-delivery buckets of the dashboard: at most this many seconds (the last bucket: more than the last)
BUCKETS = (10, 30, 60, 120, 300, 600)
MAX_DAYS = 90


# --- counting (pure) -------------------------------------------------------------------------------------------


def queued_people(rows: Iterable[Mapping[str, Any]]) -> int:
    """People (not terminals) whose warning is still waiting to go out: a delivery of theirs is queued and
    none has been sent yet (deliveries suppressed by another warning do not count, as in the report)."""
    people: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["kind"] == "person" and row["status"] != "suppressed":
            people[row["recipient_id"]].append(row)
    return sum(
        1
        for own in people.values()
        if any(r["status"] == "queued" for r in own) and all(r["sent_at"] is None for r in own)
    )


def board_alert(
    chain: Sequence[Mapping[str, Any]],
    report: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    doorknock: Mapping[str, Any] | None,
    config: Config,
) -> dict[str, Any]:
    """One chain on the board: its newest revision, with the chain's progress from its ``report``
    (:func:`warnd.report.build_report` of ``rows``) and its door-knock list (``Escalator.doorknock_list``)."""
    head = alert_json(chain[-1])
    total = report["total"]
    knocks = {v["area_code"]: v for v in (doorknock or {}).get("villages", [])}
    villages = []
    for v in report["villages"]:
        knock = knocks.get(v["area_code"])
        villages.append(
            {
                "code": v["area_code"],
                "name": v["name"],
                "township_code": v["township"],
                "township_name": config.area_name(v["township"]),
                **{k: v[k] for k in ("targeted", "sent", "delivered", "failed", "reached", "coverage")},
                "ack_required": v["ack_required"],
                "acknowledged": v["acknowledged"],
                "doorknock_households": len(knock["households"]) if knock else 0,
                "doorknock_done": knock["done"] if knock else 0,
                "below_target": v["below_target"],
            }
        )
    terminals = report["terminals"]
    return {
        **{k: head[k] for k in ALERT_FIELDS},
        "first_received_at": chain[0]["received_at"],
        "revisions": [r["id"] for r in chain],
        "drill": report["alert"]["drill"],
        "progress": {
            "targeted": total["targeted"],
            "queued": queued_people(rows),
            "sent": total["sent"],
            "delivered": total["delivered"],
            "failed": total["failed"],
            "reached": total["reached"],
            "coverage": total["coverage"],
            "below_target": total["below_target"],
        },
        "acks": {"required": total["ack_required"], "acknowledged": total["acknowledged"]},
        "doorknock": {
            "households": sum(len(v["households"]) for v in knocks.values()),
            "done": sum(v["done"] for v in knocks.values()),
        },
        "terminals": {
            k: sum(t[k] for t in terminals)
            for k in ("targeted", "sent", "delivered", "failed", "failed_over")
        },
        "villages": villages,
    }


def colour_rank(colour: str | None) -> int:
    """red 1 … blue 4; no colour (or an unknown one) after them."""
    return COLOUR_RANK.get(colour or "", len(COLOURS) + 1)


def board_order(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Red first, then orange, yellow, blue, the rest; the newest revision first within a colour."""
    newest_first = sorted(items, key=lambda a: (a["received_at"], a["id"]), reverse=True)
    return sorted(newest_first, key=lambda a: colour_rank(a["colour"]))


def delivery_buckets(seconds: Iterable[float]) -> list[dict[str, Any]]:
    """How many of ``seconds`` fall in each of :data:`BUCKETS` (at most that many seconds, and more than the
    bucket before), and above the last (``le_seconds`` None)."""
    counts = [0] * (len(BUCKETS) + 1)
    for value in seconds:
        counts[bisect_left(BUCKETS, value)] += 1
    out = [
        {"le_seconds": le, "label": f"≤{_words(le)}", "count": n}
        for le, n in zip(BUCKETS, counts, strict=False)
    ]
    out.append({"le_seconds": None, "label": f">{_words(BUCKETS[-1])}", "count": counts[-1]})
    return out


def _words(seconds: int) -> str:
    return f"{seconds // 60}分钟" if seconds >= 60 and seconds % 60 == 0 else f"{seconds}秒"


def channel_rates(rows: Iterable[Mapping[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """Per channel, over warning deliveries (people and terminals): ``sent`` (the provider accepted it),
    ``delivered`` (reached, as the report defines it), ``failed`` (failed, or failed over to another channel),
    ``attempted`` (everything but what is still queued or never had to go: suppressed, superseded, expired) and
    ``success_rate`` = delivered / attempted (None when nothing was attempted)."""
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: {"sent": 0, "delivered": 0, "failed": 0, "attempted": 0}
    )
    for row in rows:
        c = counts[row["channel"]]
        c["sent"] += row["sent_at"] is not None
        c["delivered"] += bool(row["reached"])
        c["failed"] += row["status"] in ("failed", "failed_over")
        c["attempted"] += row["status"] not in (*NOT_SENT, "queued")
    rank = {name: i for i, name in enumerate(order)}
    out = []
    for name in sorted(counts, key=lambda c: (rank.get(c, len(rank)), c)):
        c = counts[name]
        rate = round(c["delivered"] / c["attempted"], 4) if c["attempted"] else None
        out.append({"channel": name, **c, "success_rate": rate})
    return out


def village_coverage(reports: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Targeted and reached people per village summed over the reports (a person warned twice counts twice),
    by village code."""
    sums: dict[str, dict[str, Any]] = {}
    for report in reports:
        for v in report["villages"]:
            row = sums.setdefault(
                v["area_code"], {"code": v["area_code"], "name": v["name"], "targeted": 0, "reached": 0}
            )
            row["targeted"] += v["targeted"]
            row["reached"] += v["reached"]
    out = []
    for code in sorted(sums):
        row = sums[code]
        row["coverage"] = round(row["reached"] / row["targeted"], 4) if row["targeted"] else None
        out.append(row)
    return out


def colour_counts(chains: Iterable[Sequence[Mapping[str, Any]]]) -> dict[str, int]:
    """Alert chains by the most severe colour any of their warning revisions (not a Cancel) had; ``none``
    counts chains without a colour."""
    out = dict.fromkeys((*COLOURS, "none"), 0)
    for chain in chains:
        colours = [r["colour"] for r in chain if r["msg_type"] != "Cancel" and r["colour"] in COLOUR_RANK]
        out[min(colours, key=colour_rank) if colours else "none"] += 1
    return out


# --- reading ---------------------------------------------------------------------------------------------------


async def dashboard(app: App, days: int) -> dict[str, Any]:
    """The dashboard over the real alerts (not drills) received in the last ``days`` days (docs/board.md)."""
    config, store = app.config, app.store
    until = app.clock.now()
    since = until - timedelta(days=days)
    chains = await queries.window_chains(store, since, until, drill=False)
    rows = await chain_rows(store, [c[0]["root_id"] for c in chains], sent_is_enough(config.channels))
    reports = [chain_report(config, app.tz, chain, rows, until) for chain in chains]
    warnings = [r for own in rows.deliveries.values() for r in own]
    seconds = [s for s in (reach_seconds(r) for r in warnings) if s is not None]
    return {
        "since": since,
        "until": until,
        "days": days,
        "alerts": len(chains),
        "alerts_by_colour": colour_counts(chains),
        "coverage_by_village": village_coverage(reports),
        "time_to_delivery": {"buckets": delivery_buckets(seconds), **timing(seconds)},
        "channels": channel_rates(warnings, list(config.channels)),
        "feeds": await feeds_health(app),
    }


# --- the live board --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The board as computed once: ``version`` changes only when something on it changed (not its
    ``generated_at``); ``text`` is its JSON, made once for every watcher."""

    version: int
    data: dict[str, Any]
    text: str


class LiveBoard:
    """The board of one App, shared by every request and event stream (see the module docstring)."""

    def __init__(self, *, config: Config, store: Store, clock: Clock, escalator: Escalator):
        self.config = config
        self.store = store
        self.clock = clock
        self.escalator = escalator
        self.tz = ZoneInfo(config.timezone)
        self.every = config.api.live_every
        self.sent_is_enough = sent_is_enough(config.channels)
        self.computations = 0  # how many times the board was computed (tests, and the curious)
        self.closed = False
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()  # set (and replaced) whenever a new version is made
        self._snapshot: Snapshot | None = None
        self._content: dict[str, Any] | None = None
        self._computed = 0.0  # loop time the last computation finished
        self._watchers = 0
        self._poller: asyncio.Task[None] | None = None

    @property
    def watchers(self) -> int:
        """Event streams open on this board now."""
        return self._watchers

    @property
    def polling(self) -> bool:
        return self._poller is not None and not self._poller.done()

    async def build(self) -> dict[str, Any]:
        """The board now (docs/board.md), without the snapshot bookkeeping."""
        now = self.clock.now()
        chains = await queries.active_chains(self.store, now)
        rows = await chain_rows(self.store, [c[0]["root_id"] for c in chains], self.sent_is_enough)
        items = []
        for chain in chains:
            root_id = chain[0]["root_id"]
            report = chain_report(self.config, self.tz, chain, rows, now)
            listing = (
                await self.escalator.doorknock_list(chain[-1]["id"]) if rows.doorknocks[root_id] else None
            )
            items.append(board_alert(chain, report, rows.deliveries[root_id], listing, self.config))
        pending = await BroadcastStore(self.store).count(PENDING)  # drafts waiting for a second person
        return {"generated_at": now, "pending_broadcasts": pending, "alerts": board_order(items)}

    async def current(self) -> Snapshot:
        """The board, computed again only when the last computation finished ``every`` seconds ago or more;
        callers arriving during a computation share it."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            if self._snapshot is None or loop.time() - self._computed >= self.every:
                await self._refresh()
            assert self._snapshot is not None
            return self._snapshot

    async def _refresh(self) -> None:
        data = await self.build()
        self.computations += 1
        self._computed = asyncio.get_running_loop().time()
        content = {k: v for k, v in data.items() if k != "generated_at"}
        old = self._snapshot
        changed = old is None or content != self._content
        version = (old.version if old else 0) + int(changed)
        self._snapshot = Snapshot(version, data, json_text(data, self.tz))
        self._content = content
        if changed:
            self._changed.set()
            self._changed = asyncio.Event()

    async def changed(self, version: int) -> Snapshot | None:
        """The board once its version is not ``version`` (at once if it already is not); None when the board
        closes. Callers bound the wait with ``asyncio.timeout``."""
        event = self._changed
        snapshot = self._snapshot
        if snapshot is not None and snapshot.version != version:
            return snapshot
        if not self.closed:
            await event.wait()
        return None if self.closed else self._snapshot

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[None]:
        """While someone watches (an event stream is open) the poller runs; it stops with the last watcher."""
        self._watchers += 1
        if not self.closed and (self._poller is None or self._poller.done()):
            self._poller = asyncio.create_task(self._poll(), name="warnd-live-board")
        try:
            yield
        finally:
            self._watchers -= 1
            if self._watchers == 0:
                await self._stop_poller()

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            try:
                await self.current()
                wake = self._computed + self.every
            except Exception:
                log.exception("live board: computing the board failed; trying again in %.1f s", self.every)
                wake = loop.time() + self.every
            await asyncio.sleep(max(0.0, wake - loop.time()))

    async def _stop_poller(self) -> None:
        task, self._poller = self._poller, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def close(self) -> None:
        """Stop the poller and end every event stream (the web app is shutting down)."""
        self.closed = True
        self._changed.set()
        await self._stop_poller()
