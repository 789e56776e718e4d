"""``warnd run``: the HTTP API, the scheduler (feed polls, expiry sweep) and the dispatcher in one process.

On SIGTERM/SIGINT it stops claiming new work, lets the batch in hand finish (up to ``dispatch.shutdown_grace``)
and hands back anything unfinished, so a restart resumes exactly where this process stopped.

On PostgreSQL any number of these processes share one database (docs/cluster.md): each scheduled job runs once
per slot of its interval across them, a fan-out a dead node left is finished by another, and their dispatchers
wake each other with NOTIFY (warnd/store/cluster.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from warnd.api import make_web_app
from warnd.app import App
from warnd.feeds import FeedPoller

log = logging.getLogger("warnd")
EXPIRY_SWEEP_SECONDS = 30
FANOUT_CHECK_SECONDS = 10  # cluster mode: how often a node looks for fan-outs a dead node left (at most)


class AlreadyRunning(RuntimeError):
    pass


def single_instance_lock(database_url: str) -> IO[str] | None:
    """On SQLite only one daemon may own a database (PostgreSQL cluster mode has no such limit). Holding the
    lock also makes it safe to release every lease left by a crashed predecessor at start-up."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    path = Path(url.database + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(f"another warnd is already running on {url.database} (lock {path})") from None
    return handle


async def run_daemon(app: App, host: str, port: int) -> None:
    lock = single_instance_lock(app.store.url)
    try:
        await _serve(app, host, port)
    finally:
        if lock is not None:
            lock.close()


async def _serve(app: App, host: str, port: int) -> None:
    await app.start(channels=True)
    if app.store.is_sqlite:
        released = await app.store.release_leases(app.clock.now())
        if released:
            log.info("released %d delivery lease(s) left by the previous run", released)
    # cluster mode: only fan-outs older than a lease (a node that just stored an alert is about to fan it out)
    resumed = await app.pipeline.resume(
        None if not app.cluster.shared else await app.cluster.stale_fanouts(_fanout_cutoff(app))
    )
    if resumed:
        log.info("finished %d interrupted fan-out(s)", len(resumed))
    approved = await app.broadcasts.resume()
    if approved:
        log.info("finished sending %d approved broadcast(s) a crash interrupted", len(approved))
    accounts = app.accounts
    if not accounts.config_tokens and not (
        any(not u["disabled"] for u in await accounts.db.users())
        or any(not t["revoked"] for t in await accounts.db.tokens())
    ):
        log.warning(
            "no accounts or API tokens yet: nobody can use the API. Create the first admin with "
            "`warnd users add NAME --role admin --password-stdin` or `warnd tokens add NAME --role admin`"
        )

    # each poll also checks the feed's health: one WARNING when it goes stale, one INFO when it recovers
    poller = FeedPoller(
        store=app.store, pipeline=app.pipeline, clock=app.clock, started_at=app.started_at, hydro=app.hydro
    )
    scheduler = AsyncIOScheduler(timezone=UTC)

    def add_job(job: Callable[..., Awaitable[Any]], job_id: str, every: float, **options: Any) -> None:
        """Every ``every`` seconds; in cluster mode once per slot across the nodes (the first to claim it),
        the nodes' schedules aligned on the slots."""

        async def once_per_slot(*args: Any) -> None:
            if await app.cluster.run_once(job_id, every, app.clock.now()):
                await job(*args)

        if app.cluster.shared:
            options.setdefault("start_date", _aligned(app.clock.now(), every))
        scheduler.add_job(
            once_per_slot if app.cluster.shared else job,
            "interval",
            seconds=every,
            id=job_id,
            max_instances=1,
            coalesce=True,
            **options,
        )

    for feed in app.config.feeds:
        if feed.enabled:
            add_job(
                poller.poll, f"feed:{feed.name}", feed.interval, args=[feed], next_run_time=app.clock.now()
            )

    async def sweep_expired() -> None:
        expired = await app.pipeline.expire()  # and 解除 notes for rules with notify_on_expiry
        if expired:
            log.info("alert(s) %s expired", ", ".join(map(str, expired)))

    add_job(sweep_expired, "expire", EXPIRY_SWEEP_SECONDS)

    async def sweep_held() -> None:  # Updates/Cancels whose original never came: treated as new
        released = await app.pipeline.release_held()
        if released:
            log.info("released %d held Update/Cancel message(s) as new warnings", len(released))

    add_job(sweep_held, "held", EXPIRY_SWEEP_SECONDS)

    async def sweep_escalations() -> None:  # the 叫应 / reach ladder (docs/escalation.md)
        climbed = await app.escalator.sweep()
        if any(climbed.values()):
            log.info("escalation sweep: %s", ", ".join(f"{k} {v}" for k, v in sorted(climbed.items()) if v))

    async def keep_reports() -> None:  # reports (and recommendations) of alerts that ended (docs/reports.md)
        kept = await app.reporter.keep_ended()
        if kept:
            log.info("kept the coverage report of alert(s) %s", ", ".join(map(str, kept)))

    # separate jobs: a failing report never holds up the escalation ladder
    for job, job_id in ((sweep_escalations, "escalate"), (keep_reports, "reports")):
        add_job(job, job_id, app.config.feedback.sweep_every)

    if app.cluster.shared:

        async def finish_fanouts() -> None:  # a node died mid fan-out: its lease ran out, finish it here
            finished = await app.pipeline.resume(await app.cluster.stale_fanouts(_fanout_cutoff(app)))
            if finished:
                log.warning("finished %d fan-out(s) another node left: alert(s) %s", len(finished), finished)

        add_job(
            finish_fanouts,
            "fanouts",
            max(1.0, min(FANOUT_CHECK_SECONDS, app.config.dispatch.fanout_lease / 3)),
        )

    runner = web.AppRunner(make_web_app(app), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    scheduler.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    dispatching = asyncio.create_task(app.dispatcher.run(stopping))
    listening = asyncio.create_task(app.cluster.listen(app.dispatcher.wake, stopping))  # cluster wake-ups
    log.info(
        "warnd listening on http://%s:%d (channels: %s; database: %s)",
        host,
        port,
        ", ".join(sorted(app.channels)) or "none",
        make_url(app.store.url).render_as_string(hide_password=True),
    )
    print(f"warnd listening on http://{host}:{port}", flush=True)
    await stopping.wait()

    log.info(
        "stopping: no new claims; finishing the batch in hand (up to %.0fs)",
        app.config.dispatch.shutdown_grace,
    )
    scheduler.shutdown(wait=False)
    await runner.cleanup()
    try:
        await asyncio.wait_for(dispatching, timeout=app.config.dispatch.shutdown_grace)
    except TimeoutError:
        log.warning("in-flight sends did not finish in time; their deliveries are released for the next run")
        dispatching.cancel()
        with suppress(asyncio.CancelledError):
            await dispatching
    listening.cancel()
    with suppress(asyncio.CancelledError):
        await listening
    await poller.close()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    await app.close()
    log.info("stopped")


def _fanout_cutoff(app: App) -> datetime:
    """Pending fan-outs of alerts stored before this are left over (the node that stored one fans it out at
    once, under a lease)."""
    return app.clock.now() - timedelta(seconds=app.config.dispatch.fanout_lease)


def _aligned(now: datetime, every: float) -> datetime:
    """Where a job's schedule starts in cluster mode: just after a slot boundary, so every node fires at the
    start of each slot and runs are a whole interval apart."""
    from warnd.store.cluster import slot_of

    return slot_of(now, every) + timedelta(seconds=min(1.0, every / 20))
