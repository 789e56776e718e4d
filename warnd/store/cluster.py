"""Cluster mode: what several ``warnd run`` processes (nodes) on one PostgreSQL database agree on through it
(docs/cluster.md). All of its SQL is here.

On SQLite one daemon owns the database (warnd/daemon.py's lock), so there is nothing to agree on: :class:`Solo`
grants every job run and every lease, and wakes nobody else. On PostgreSQL, :class:`PostgresCluster`:

- **scheduled jobs** (feed polls, the expiry / held / escalation / report sweeps, the fan-out check): a run is
  for one slot of the job's interval; the node whose ``job_runs`` row (job, slot) lands — ``INSERT … ON CONFLICT
  DO NOTHING`` — runs it, the others skip that slot;
- **fan-outs**: an alert's fan-out is one node's while it holds the lease ``fanout:<alert id>`` in
  ``cluster_leases`` (renewed while it works); a node that died leaves it to expire, and the fan-out check on
  another node finishes the fan-out (fan-out is idempotent: deliveries are unique per alert, recipient,
  channel and purpose);
- **deliveries** are claimed with ``FOR UPDATE SKIP LOCKED`` under a lease (``Store.claim``); a node never
  releases other nodes' leases, and a lease that ran out (its node died, or took longer than
  ``dispatch.lease``) is claimed again with a ``lease_expired`` event on the delivery: the node before may have
  sent it already (the crash window of docs/cluster.md);
- **wake-ups**: after deliveries are written (fan-out, failover, a re-queue) a node sends ``NOTIFY
  warnd_deliveries``; every node ``LISTEN``\\ s on a connection of its own and wakes its dispatcher (the
  dispatcher's poll stays the fallback, and the listener reconnects when its connection drops).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.clock import Clock
from warnd.schema import alerts, cluster_leases, delivery_events, job_runs

if TYPE_CHECKING:  # warnd.store imports this module (flag_expired_leases)
    from warnd.store import Store

log = logging.getLogger("warnd.cluster")

WAKE_CHANNEL = "warnd_deliveries"  # NOTIFY channel: new deliveries are due (payload: the sending node)
JOB_RUNS_KEPT = timedelta(days=1)  # job_runs rows older than this are pruned by the job's next run
LISTEN_KEEPALIVE = 15.0  # seconds between checks that the LISTEN connection is still there
RECONNECT_MAX = 30.0  # longest wait between attempts to connect the listener again


def node_name() -> str:
    """This process's name in ``job_runs`` and ``cluster_leases``: host, pid and a random part (a restarted
    process is a new node)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def slot_of(now: datetime, every: float) -> datetime:
    """The start of the ``every``-second slot (counted from the Unix epoch) that ``now`` falls in."""
    return datetime.fromtimestamp(math.floor(now.timestamp() / every) * every, UTC)


async def flag_expired_leases(
    conn: AsyncConnection, expired: Sequence[tuple[int, str]], now: datetime
) -> None:
    """Note on each delivery (id, previous lease token) claimed again after its lease ran out that the node
    before may have sent it: a ``lease_expired`` event, ``possible_duplicate`` (docs/cluster.md)."""
    if expired:
        await conn.execute(
            insert(delivery_events),
            [
                {
                    "delivery_id": delivery_id,
                    "at": now,
                    "kind": "lease_expired",
                    "detail": {"previous_lease": token, "possible_duplicate": True},
                }
                for delivery_id, token in expired
            ],
        )


async def one_at_a_time(conn: AsyncConnection, what: str) -> None:
    """PostgreSQL: wait until no other node's transaction does ``what`` (schema migrations at start-up, the
    config sync of recipients), then hold it until this transaction ends (a transaction-level advisory lock)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:what))"), {"what": what})


class Solo:
    """One process owns the database (SQLite): every job run and lease is granted, nobody else to wake."""

    shared = False

    def __init__(self, node: str | None = None):
        self.node = node or node_name()

    async def run_once(self, job: str, every: float, now: datetime) -> bool:
        """Whether this node runs ``job`` for the slot ``now`` falls in (always, alone)."""
        return True

    @asynccontextmanager
    async def hold(self, name: str, seconds: float) -> AsyncIterator[bool]:
        """Hold the lease ``name`` while the block runs; yields whether this node got it (always, alone)."""
        yield True

    async def stale_fanouts(self, received_before: datetime) -> list[int]:
        """Alerts whose fan-out is pending although they arrived before ``received_before`` (a crash)."""
        return []

    def wake_others(self) -> None:
        """New deliveries are due: tell the other nodes (nobody else here)."""

    async def listen(self, on_wake: Callable[[], None], stopping: asyncio.Event) -> None:
        """Call ``on_wake`` whenever another node wrote deliveries, until ``stopping`` (never, alone)."""

    async def close(self) -> None:
        """Send what is still to be sent (wake-ups)."""


class PostgresCluster(Solo):
    """Several nodes on one PostgreSQL database (see the module docstring)."""

    shared = True

    def __init__(self, store: Store, clock: Clock, node: str | None = None):
        super().__init__(node)
        self.store = store
        self.clock = clock
        self._notifying: asyncio.Task[None] | None = None
        self._notify_again = False
        self.listening = asyncio.Event()  # set while the LISTEN connection is up (tests, health)
        self.connections = 0  # LISTEN connections made so far (a reconnect makes one more)

    # --- scheduled jobs --------------------------------------------------------------------------------------

    async def run_once(self, job: str, every: float, now: datetime) -> bool:
        slot = slot_of(now, every)
        statement = (
            postgresql.insert(job_runs)
            .values(job=job[:100], slot=slot, node=self.node[:100], started_at=now)
            .on_conflict_do_nothing(index_elements=["job", "slot"])
            .returning(job_runs.c.job)
        )
        async with self.store.write() as conn:
            won = (await conn.execute(statement)).first() is not None
            if won:
                await conn.execute(
                    delete(job_runs).where(job_runs.c.job == job[:100], job_runs.c.slot < now - JOB_RUNS_KEPT)
                )
        return won

    # --- leases of work (fan-outs) ----------------------------------------------------------------------------

    async def _acquire(self, name: str, seconds: float) -> bool:
        now = self.clock.now()
        statement = postgresql.insert(cluster_leases).values(
            name=name, holder=self.node[:100], acquired_at=now, expires_at=now + timedelta(seconds=seconds)
        )
        taken = statement.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "holder": statement.excluded.holder,
                "acquired_at": statement.excluded.acquired_at,
                "expires_at": statement.excluded.expires_at,
            },
            where=(cluster_leases.c.expires_at <= now) | (cluster_leases.c.holder == self.node[:100]),
        ).returning(cluster_leases.c.name)
        async with self.store.write() as conn:
            return (await conn.execute(taken)).first() is not None

    async def _renew(self, name: str, seconds: float) -> bool:
        async with self.store.write() as conn:
            result = await conn.execute(
                update(cluster_leases)
                .where(cluster_leases.c.name == name, cluster_leases.c.holder == self.node[:100])
                .values(expires_at=self.clock.now() + timedelta(seconds=seconds))
            )
            return bool(result.rowcount)

    async def _release(self, name: str) -> None:
        async with self.store.write() as conn:
            await conn.execute(
                delete(cluster_leases).where(
                    cluster_leases.c.name == name, cluster_leases.c.holder == self.node[:100]
                )
            )

    @asynccontextmanager
    async def hold(self, name: str, seconds: float) -> AsyncIterator[bool]:
        """The lease is renewed every third of ``seconds`` (wall time: it proves this process is alive) while
        the block runs, and released after it."""
        if not await self._acquire(name, seconds):
            yield False
            return

        async def keep() -> None:
            while True:
                await asyncio.sleep(seconds / 3)
                try:
                    if not await self._renew(name, seconds):
                        log.warning("lease %s was taken over by another node (this one was too slow)", name)
                        return
                except Exception:
                    log.exception("could not renew lease %s; retrying", name)

        keeper = asyncio.create_task(keep())
        try:
            yield True
        finally:
            keeper.cancel()
            with suppress(asyncio.CancelledError):
                await keeper
            await asyncio.shield(self._release(name))

    async def stale_fanouts(self, received_before: datetime) -> list[int]:
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(alerts.c.id)
                .where(alerts.c.fanout == "pending", alerts.c.received_at <= received_before)
                .order_by(alerts.c.id)
            )
            return [r[0] for r in rows]

    # --- wake-ups: NOTIFY / LISTEN -------------------------------------------------------------------------------

    def wake_others(self) -> None:
        """Send one NOTIFY soon (a burst of calls sends one or two, never one per call)."""
        if self._notifying is not None and not self._notifying.done():
            self._notify_again = True
            return
        self._notifying = asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        while True:
            self._notify_again = False
            try:
                async with self.store.write() as conn:
                    await conn.execute(
                        text("SELECT pg_notify(:channel, :node)"),
                        {"channel": WAKE_CHANNEL, "node": self.node},
                    )
            except Exception as exc:  # the other nodes' poll finds the deliveries anyway
                log.warning("could not notify the other nodes: %s", exc)
            if not self._notify_again:
                return

    async def close(self) -> None:
        if self._notifying is not None:
            with suppress(Exception):
                await self._notifying

    def listen_arguments(self) -> dict[str, Any]:
        """``asyncpg.connect`` arguments of the store's database, from its SQLAlchemy URL (the host may be a
        socket directory in ``?host=``; ``?ssl=`` is asyncpg's own, as SQLAlchemy passes it)."""
        url = make_url(self.store.url)
        arguments: dict[str, Any] = {
            "host": url.host or url.query.get("host"),
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "database": url.database,
        }
        if url.query.get("ssl"):
            arguments["ssl"] = url.query["ssl"]
        return {k: v for k, v in arguments.items() if v is not None}

    async def listen(self, on_wake: Callable[[], None], stopping: asyncio.Event) -> None:
        """LISTEN on a dedicated connection; on every NOTIFY from another node call ``on_wake``. The connection
        is checked every ``LISTEN_KEEPALIVE`` seconds and made again (with backoff) when it drops; each new
        connection wakes once, for what was written while nobody listened."""
        import asyncpg  # the PostgreSQL driver; only cluster mode needs it here

        backoff = 0.5
        while not stopping.is_set():
            try:
                conn = await asyncpg.connect(**self.listen_arguments(), timeout=10)
            except Exception as exc:
                log.warning("LISTEN connection failed (%s); again in %.1fs", exc, backoff)
                await _wait(stopping, backoff)
                backoff = min(backoff * 2, RECONNECT_MAX)
                continue
            try:
                await self._listen_on(conn, on_wake, stopping)
                backoff = 0.5
            except Exception as exc:
                log.warning("LISTEN connection failed (%s); reconnecting", exc)
                await _wait(stopping, backoff)
            finally:
                self.listening.clear()
                with suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)
            if not stopping.is_set():
                log.warning("LISTEN connection lost; reconnecting")

    async def _listen_on(self, conn: Any, on_wake: Callable[[], None], stopping: asyncio.Event) -> None:
        """Listen on one connection until ``stopping`` or until the connection is gone."""
        lost = asyncio.Event()

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            if payload != self.node:  # this node woke its own dispatcher already
                on_wake()

        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(WAKE_CHANNEL, notified)
        self.connections += 1
        self.listening.set()
        on_wake()  # whatever was written while nobody listened
        while not stopping.is_set() and not lost.is_set():
            await _wait_any(stopping, lost, LISTEN_KEEPALIVE)
            if not stopping.is_set() and not lost.is_set():
                try:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), 10)
                except Exception:
                    return


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def _wait_any(a: asyncio.Event, b: asyncio.Event, seconds: float) -> None:
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waits:
        waiter.cancel()


def open_cluster(store: Store, clock: Clock) -> Solo:
    """The coordination the store's database calls for: :class:`Solo` on SQLite, else :class:`PostgresCluster`."""
    return Solo() if store.is_sqlite else PostgresCluster(store, clock)
