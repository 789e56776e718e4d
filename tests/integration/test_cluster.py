"""Cluster coordination on the local PostgreSQL server (warnd/store/cluster.py): scheduled jobs claimed once per
slot, fan-out leases (a fan-out a dead node left is finished by another, without a second delivery), a
re-claimed delivery flagged as a possible duplicate, and NOTIFY waking another node's dispatcher — also after its
LISTEN connection was cut. Two Apps (nodes) in this process share one fresh database and one test clock.

Skipped, with the reason, only when no PostgreSQL server answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cap_cn, edit_yaml
from support.gateway import FakeSmsGateway

from tests.support import postgres
from tests.support.cluster import cluster_config
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.store.cluster import PostgresCluster, Solo, slot_of

pytestmark = postgres.requires_server()


@pytest.fixture
async def nodes(
    tmp_path: Path, pg_url: str, gateway: FakeSmsGateway, clock: FakeClock
) -> AsyncIterator[tuple[App, App]]:
    """Two nodes on one database; their dispatchers poll only once a minute (so only a wake-up is fast)."""
    apps = []
    for name in ("a", "b"):
        config_dir = cluster_config(tmp_path / name, gateway.url, pg_url)
        edit_yaml(config_dir / "warnd.yaml", lambda d: d.setdefault("dispatch", {}).update(poll_interval=60))
        app = App(load_config(config_dir), clock=clock)
        await app.start(channels=True)
        apps.append(app)
    try:
        yield apps[0], apps[1]
    finally:
        for app in apps:
            await app.close()


def cluster(app: App) -> PostgresCluster:
    assert isinstance(app.cluster, PostgresCluster)
    return app.cluster


async def test_a_scheduled_job_runs_once_per_slot_across_nodes(
    nodes: tuple[App, App], clock: FakeClock
) -> None:
    a, b = cluster(nodes[0]), cluster(nodes[1])
    assert a.node != b.node and a.shared
    now = clock.now()
    for _ in range(3):  # every slot: both nodes try at once, exactly one runs it
        won = await asyncio.gather(*(c.run_once("expire", 30, now) for c in (a, b, a, b)))
        assert won.count(True) == 1
        clock.advance(30)
        now = clock.now()
    # another job has slots of its own; a node that missed a slot never runs it late twice
    assert await b.run_once("held", 30, now) and not await a.run_once("held", 30, now)
    rows = await postgres.fetch(nodes[0].store.url, "SELECT job, slot, node FROM job_runs ORDER BY slot, job")
    assert [r["job"] for r in rows] == ["expire", "expire", "expire", "held"]
    assert rows[0]["slot"] == slot_of(clock.now(), 30).replace(tzinfo=None) - 3 * (
        rows[1]["slot"] - rows[0]["slot"]
    )
    # SQLite: one daemon owns the database, every run is granted
    assert await Solo().run_once("expire", 30, now)


async def test_a_fan_out_lease_keeps_other_nodes_off_until_it_expires(
    nodes: tuple[App, App], clock: FakeClock
) -> None:
    a, b = cluster(nodes[0]), cluster(nodes[1])
    async with a.hold("fanout:1", 30) as mine:
        assert mine
        async with b.hold("fanout:1", 30) as theirs:
            assert not theirs
    async with b.hold("fanout:1", 30) as theirs:  # released after the block
        assert theirs
    assert await a._acquire("fanout:2", 30)  # a node that then dies: nobody releases it
    clock.advance(29)
    assert not await b._acquire("fanout:2", 30)
    clock.advance(2)
    assert await b._acquire("fanout:2", 30)


async def test_a_fan_out_a_dead_node_left_is_finished_by_another_once(
    nodes: tuple[App, App], gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    a, b = nodes
    [result] = await a.pipeline.ingest(cap_cn(), source="t")
    alert_id = result.alert_id
    assert alert_id is not None
    before = await a.store.delivery_counts([alert_id])
    # as if node a had died mid fan-out: the alert still pending, a's lease on it not yet run out
    await a.store.set_alert(alert_id, fanout="pending")
    assert await cluster(a)._acquire(f"fanout:{alert_id}", 30)
    stale = await cluster(b).stale_fanouts(clock.now())
    assert stale == [alert_id]
    assert await b.pipeline.resume(stale) == []  # a's lease still holds
    clock.advance(31)
    assert await b.pipeline.resume(stale) == [alert_id]
    row = await b.store.get_alert(alert_id)
    assert row is not None and row["fanout"] == "done"
    assert await b.store.delivery_counts([alert_id]) == before  # the same deliveries, none twice
    await b.dispatcher.drain()
    assert len(gateway.accepted_keys) == 24 and set(gateway.accepted_keys.values()) == {1}


async def test_a_delivery_claimed_after_its_lease_ran_out_is_flagged(
    nodes: tuple[App, App], clock: FakeClock
) -> None:
    a, b = nodes
    await a.pipeline.ingest(cap_cn(), source="t")
    _, first = await a.store.claim("sms", 5, clock.now(), 30)
    ids = {c.delivery["id"] for c in first}
    clock.advance(31)  # node a died with them
    _, again = await b.store.claim("sms", 100, clock.now(), 30)
    assert ids <= {c.delivery["id"] for c in again}
    events = await b.store.delivery_events(c.delivery["id"] for c in again)
    flagged = {i for i, evs in events.items() if any(e["kind"] == "lease_expired" for e in evs)}
    assert flagged == ids
    detail = next(e["detail"] for e in events[min(ids)] if e["kind"] == "lease_expired")
    assert detail["possible_duplicate"] is True and detail["previous_lease"]


async def _wait_for(predicate: Any, timeout: float) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not predicate():
        if loop.time() - started > timeout:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.02)
    return loop.time() - started


async def test_notify_wakes_another_nodes_dispatcher_and_survives_a_dropped_connection(
    nodes: tuple[App, App], gateway: FakeSmsGateway
) -> None:
    a, b = nodes  # a ingests and never dispatches; b dispatches, polling only once a minute
    stopping = asyncio.Event()
    dispatching = asyncio.create_task(b.dispatcher.run(stopping))
    listening = asyncio.create_task(cluster(b).listen(b.dispatcher.wake, stopping))
    try:
        await asyncio.wait_for(cluster(b).listening.wait(), 10)
        assert cluster(b).connections == 1
        await asyncio.sleep(0.3)  # b's dispatcher has looked once and is waiting now
        [result] = await a.pipeline.ingest(cap_cn(), source="t")
        assert result.outcome == "created"
        waited = await _wait_for(lambda: len(gateway.accepted_keys) == 24, 10)
        assert waited < 10

        # the LISTEN connection is cut (a PostgreSQL restart, a proxy): b reconnects and is woken again
        name = b.store.url.rsplit("/", 1)[-1]
        cut = await postgres.fetch(
            b.store.url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
            name,
        )
        assert [r[0] for r in cut] == [True]
        await _wait_for(lambda: cluster(b).connections == 2, 10)
        await asyncio.sleep(0.3)
        lifted = cap_cn(
            identifier="lifted",
            msg_type="Cancel",
            references="50022841600000_20240712053000",
            note="雨势减弱",
        )
        [cancel] = await a.pipeline.ingest(lifted, source="t")
        assert cancel.outcome == "created"
        waited = await _wait_for(lambda: len(gateway.accepted_keys) > 24, 10)
        assert waited < 10
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(dispatching, listening), 30)


async def test_nodes_starting_together_on_an_empty_database(tmp_path: Path, gateway: FakeSmsGateway) -> None:
    """Three nodes start at once on a database with no schema: one migrates and syncs the config's recipients
    while the others wait, then find both done (an advisory lock each)."""
    url = postgres.create_database(migrated=False)
    apps = [
        App(load_config(cluster_config(tmp_path / f"n{i}", gateway.url, url)), clock=FakeClock())
        for i in range(3)
    ]
    try:
        await asyncio.gather(*(app.start() for app in apps))
        assert await apps[0].store.recipient_count() == 27  # the example's 24 people and 3 terminals, once
        versions = await postgres.fetch(url, "SELECT version_num FROM alembic_version")
        assert len(versions) == 1
    finally:
        for app in apps:
            await app.close()
        postgres.drop_database(url)
