"""Three `warnd run` processes on one PostgreSQL database (cluster mode, docs/cluster.md), one killed with
SIGKILL in the middle of a fan-out while the nodes are sending it: every delivery is accepted by the gateway
stub exactly once by idempotency key, none is lost, the fan-out the dead node left is finished by another node,
and a number the stub was sent twice (the crash window: the dead node sent it, its result was never recorded)
was sent at most twice and is flagged ``lease_expired`` on its delivery. And a node that starts leaves the
leases of the nodes already running alone.

Size: ``WARND_CLUSTER_KILL_SIZE`` people in one village (default 2,000: about 25 s on this 2-core machine when
it is otherwise idle); the issue's 100k variant is ``WARND_CLUSTER_KILL_SIZE=100000 pytest
tests/e2e/test_cluster_kill.py -k killed`` (many minutes: on PostgreSQL recording results costs several
statements per delivery). Skipped only when no PostgreSQL server answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import AUTH, cap_cn, edit_yaml
from e2e.daemon import Daemon, cn_time, free_port
from support.gateway import FakeSmsGateway

from tests.support import postgres
from tests.support.cluster import cluster_config, crowd
from warnd.app import App
from warnd.clock import SystemClock
from warnd.config import load_config
from warnd.store import Store

SIZE = int(os.environ.get("WARND_CLUSTER_KILL_SIZE", "2000"))
SMALL = 300  # the start-up test's crowd
CONFIG_PEOPLE = 24  # the example's people who get the red rainstorm's SMS
_why_not = postgres.unavailable()
pytestmark = [
    pytest.mark.skipif(
        _why_not is not None, reason=f"no PostgreSQL server at {postgres.SERVER_URL}: {_why_not}"
    ),
    pytest.mark.timeout(max(300, SIZE // 40)),
]


class LateForTheVictim(FakeSmsGateway):
    """The stub, answering requests of the node to be killed (``X-Warnd-Node: node0``) only after a long while:
    it has accepted the numbers, the node never learns it (the crash window, every time)."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        answer = await super()._handle(request)
        if request.headers.get("X-Warnd-Node") == "node0":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 60)
        return answer


@pytest.fixture
async def gateway() -> AsyncIterator[FakeSmsGateway]:
    async with LateForTheVictim() as gw:
        gw.delay = 0.1  # a carrier's answer takes a moment
        yield gw


async def crowded_database(people: int) -> str:
    """A fresh database with ``people`` imported into one village."""
    url = postgres.create_database()
    store = Store.open(url)
    try:
        await store.upsert_recipients(crowd(people), source="import", now=SystemClock().now())
    finally:
        await store.close()
    return url


@pytest.fixture
async def database() -> AsyncIterator[str]:
    url = await crowded_database(SIZE)
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture
async def small_database() -> AsyncIterator[str]:
    url = await crowded_database(SMALL)
    try:
        yield url
    finally:
        postgres.drop_database(url)


def node_config(root: Path, gateway_url: str, url: str) -> Path:
    """A node's config: its SMS requests carry its name (``X-Warnd-Node``), so the stub knows who sent what."""
    config_dir = cluster_config(
        root, gateway_url, url, concurrency=2, timeout=10, headers={"X-Warnd-Node": root.name}
    )

    def dispatch(data: dict) -> None:
        data["dispatch"] = {
            "lease": "6s",  # a dead node's claimed batches are claimed again after this
            "batch_size": 100,
            "poll_interval": 0.2,
            "fanout_chunk": 250,
            "fanout_lease": "3s",  # its unfinished fan-out is taken over after this
        }

    edit_yaml(config_dir / "warnd.yaml", dispatch)
    return config_dir


async def count(url: str, sql: str, *args: object) -> int:
    return int((await postgres.fetch(url, sql, *args))[0][0])


async def wait_for(predicate, timeout: float, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError("condition not reached in time")


async def test_three_nodes_one_killed_mid_fan_out_lose_nothing_and_send_once(
    tmp_path: Path, gateway: FakeSmsGateway, database: str
) -> None:
    nodes = [Daemon(node_config(tmp_path / f"node{i}", gateway.url, database), free_port()) for i in range(3)]
    t0 = asyncio.get_running_loop().time()
    await asyncio.gather(*(node.start(timeout=60) for node in nodes))
    started = asyncio.get_running_loop().time() - t0
    victim, survivors = nodes[0], nodes[1:]
    expected = SIZE + CONFIG_PEOPLE
    try:
        alert = cap_cn(identifier="cluster-kill", sent=cn_time(), expires=cn_time(timedelta(hours=6)))

        async def post() -> None:  # answered only after the fan-out: the victim dies before that
            async with aiohttp.ClientSession(headers=AUTH) as http:
                with contextlib.suppress(aiohttp.ClientError):
                    await http.post(f"{victim.url}/api/v1/alerts", data=alert)

        posting = asyncio.create_task(post())
        sms = "SELECT count(*) FROM deliveries WHERE channel = 'sms'"

        def victim_sending() -> bool:
            return any(r.header("X-Warnd-Node") == "node0" and r.json for r in gateway.requests)

        async def mid_fan_out() -> bool:
            return await count(database, sms) >= expected // 4 and victim_sending()

        await wait_for(mid_fan_out, timeout=120, interval=0.02)
        victim.kill()  # SIGKILL: fan-out part done, its requests accepted and not answered
        killed = asyncio.get_running_loop().time() - t0
        await posting
        at_kill = await count(database, sms)
        [state] = await postgres.fetch(database, "SELECT id, fanout FROM alerts")
        assert state["fanout"] == "pending" and at_kill < expected, "not killed mid fan-out"
        in_flight = await count(
            database, "SELECT count(*) FROM deliveries WHERE status = 'queued' AND lease_token IS NOT NULL"
        )

        async def all_done() -> bool:
            return (
                await count(database, "SELECT count(*) FROM alerts WHERE fanout = 'done'") == 1
                and await count(database, sms + " AND status = 'queued'") == 0
            )

        await wait_for(all_done, timeout=max(180, SIZE / 50), interval=0.25)
        done = asyncio.get_running_loop().time() - t0
    finally:
        for node in survivors:
            with contextlib.suppress(Exception):
                node.terminate()
        for node in nodes:
            node.stop_quietly()

    rows = await postgres.fetch(
        database, "SELECT id, idempotency_key, status, attempts FROM deliveries WHERE channel = 'sms'"
    )
    assert len(rows) == expected  # the fan-out the victim left was finished: nobody lost
    assert Counter(r["status"] for r in rows) == {"sent": expected}
    keys = {r["idempotency_key"] for r in rows}
    assert set(gateway.accepted_keys) == keys
    assert set(gateway.accepted_keys.values()) == {1}  # accepted exactly once per idempotency key
    requested = Counter(m["key"] for r in gateway.requests if r.json for m in r.json.get("messages", []))
    again = {key for key, n in requested.items() if n > 1}
    thrice = {key: n for key, n in requested.items() if n > 2}
    assert again and not thrice, (len(again), thrice)  # the crash window: at most twice …
    flagged = {
        r["idempotency_key"]
        for r in await postgres.fetch(
            database,
            "SELECT DISTINCT d.idempotency_key FROM delivery_events e JOIN deliveries d ON d.id = e.delivery_id "
            "WHERE e.kind = 'lease_expired'",
        )
    }
    assert again <= flagged  # … and then flagged on the delivery
    # the fan-out check runs every second on every node, and once per second across them (job_runs)
    runs = await postgres.fetch(database, "SELECT slot, node FROM job_runs WHERE job = 'fanouts'")
    assert 1 <= len(runs) <= done + 2
    logs = "".join(node.log.read_text() for node in survivors)
    assert "another node left" in logs  # a survivor finished the victim's fan-out
    print(
        f"{expected} SMS; 3 nodes up in {started:.1f}s; one killed at {killed:.1f}s with {at_kill} persisted and "
        f"{in_flight} claimed by the nodes; all accepted at {done:.1f}s; {len(flagged)} re-claimed after the "
        f"lease ran out, {len(again)} of them sent twice (deduplicated by the stub by idempotency key)"
    )


LEASE = 40  # seconds the "other node" holds its 50 rows


async def test_a_starting_node_leaves_other_nodes_leases_alone(
    tmp_path: Path, gateway: FakeSmsGateway, small_database: str
) -> None:
    """On SQLite a starting daemon releases every lease (its dead predecessor's); on PostgreSQL another node may
    be sending those rows right now: a starting node leaves them until their lease runs out, then sends them
    (flagged ``lease_expired``)."""
    other = App(load_config(node_config(tmp_path / "other", gateway.url, small_database)))  # "another node"
    await other.start()
    try:
        alert = cap_cn(identifier="leases", sent=cn_time(), expires=cn_time(timedelta(hours=6)))
        [result] = await other.pipeline.ingest(alert, source="t")
        token, held = await other.store.claim("sms", 50, other.clock.now(), LEASE)
    finally:
        await other.close()
    held_ids = sorted(c.delivery["id"] for c in held)
    assert result.alert_id and len(held_ids) == 50
    total = SMALL + CONFIG_PEOPLE
    sms_sent = "SELECT count(*) FROM deliveries WHERE channel = 'sms' AND status = 'sent'"
    node = Daemon(node_config(tmp_path / "node", gateway.url, small_database), free_port())
    await node.start(timeout=60)
    try:

        async def sent(n: int) -> bool:
            return await count(small_database, sms_sent) == n

        async def sending() -> bool:
            return await count(small_database, sms_sent) >= 100

        # the node is sending (within the lease: a loaded machine may take long to start a daemon) ...
        await wait_for(sending, timeout=LEASE, interval=0.1)
        still = await postgres.fetch(
            small_database, "SELECT id FROM deliveries WHERE lease_token = $1 AND status = 'queued'", token
        )
        assert sorted(r["id"] for r in still) == held_ids  # ... and has not touched the other node's rows
        await wait_for(lambda: sent(total), timeout=LEASE + 180, interval=0.25)  # lease over: taken over
    finally:
        node.terminate()
        node.stop_quietly()
    flagged = await postgres.fetch(
        small_database, "SELECT delivery_id FROM delivery_events WHERE kind = 'lease_expired'"
    )
    assert sorted(r["delivery_id"] for r in flagged) == held_ids
