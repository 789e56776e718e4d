"""warnd on the local PostgreSQL server (cluster mode), in the default suite: the migrations from an empty
database, an ingest → fan-out → dispatch to a real HTTP gateway stub, and the claim protocol nodes share —
concurrent claims by two stores never overlap (``FOR UPDATE SKIP LOCKED``) and an expired lease is claimed
again while the old holder's late results are fenced off.

Skipped, with the reason, only when no PostgreSQL server answers (tests/support/postgres.py names it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import cap_cn
from support.gateway import FakeSmsGateway

from tests.support import postgres
from tests.support.cluster import cluster_config, crowd
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.migrations import alembic_config, current
from warnd.schema import metadata
from warnd.store import Store

pytestmark = postgres.requires_server()


@pytest.fixture
async def pg_app(
    tmp_path: Path, pg_url: str, gateway: FakeSmsGateway, clock: FakeClock
) -> AsyncIterator[App]:
    app = App(load_config(cluster_config(tmp_path, gateway.url, pg_url)), clock=clock)
    await app.start(channels=True)
    try:
        yield app
    finally:
        await app.close()


async def test_migrations_build_the_schema_from_an_empty_database() -> None:
    url = postgres.create_database(migrated=False)
    store = Store.open(url)
    try:
        assert not store.is_sqlite
        await store.upgrade()
        await store.upgrade()  # a second node starting: a no-op

        def check(conn):  # type: ignore[no-untyped-def]
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True, "target_metadata": metadata}
            )
            return current(conn), compare_metadata(context, metadata)

        async with store.read() as conn:
            revision, differences = await conn.run_sync(check)
        assert differences == []
        assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()
        # ids are 64-bit (MAX_ID of the API), sequences too
        rows = await postgres.fetch(
            url, "SELECT data_type FROM pg_sequences WHERE sequencename = 'deliveries_id_seq'"
        )
        assert [r["data_type"] for r in rows] == ["bigint"]
    finally:
        await store.close()
        postgres.drop_database(url)


async def test_ingest_fan_out_and_dispatch_to_a_real_gateway(pg_app: App, gateway: FakeSmsGateway) -> None:
    [result] = await pg_app.pipeline.ingest(cap_cn(), source="t")
    assert result.outcome == "created" and result.alert_id is not None
    alert = await pg_app.store.get_alert(result.alert_id)
    assert alert is not None and alert["fanout"] == "done" and alert["colour"] == "red"
    assert alert["sent"].tzinfo is not None and alert["parsed"]["identifier"] == alert["identifier"]
    await pg_app.dispatcher.drain()
    rows = await pg_app.store.deliveries_page({"alert_id": result.alert_id, "channel": "sms"}, limit=1000)
    assert len(rows) == 24 and {r["status"] for r in rows} == {"sent"}
    assert len(gateway.accepted_keys) == 24 and set(gateway.accepted_keys.values()) == {1}
    assert {r["provider_message_id"][:4] for r in rows} == {"msg-"}
    events = await pg_app.store.delivery_events(r["id"] for r in rows)
    assert all([e["kind"] for e in evs][-1] == "accepted" for evs in events.values())
    counts = await pg_app.store.delivery_counts([result.alert_id])
    assert counts[result.alert_id]["sent"] == 27  # and the 3 loudspeakers (file adapter)


async def test_two_stores_claiming_at_once_never_share_a_delivery(
    pg_app: App, pg_url: str, clock: FakeClock
) -> None:
    await pg_app.store.upsert_recipients(crowd(2000), source="import", now=clock.now())
    [result] = await pg_app.pipeline.ingest(cap_cn(), source="t")
    expected = {
        r["id"]
        for r in await pg_app.store.deliveries_page(
            {"alert_id": result.alert_id, "channel": "sms", "status": "queued"}, limit=10_000
        )
    }
    assert len(expected) == 2024
    other = Store.open(pg_url)
    claimed: dict[str, list[int]] = {}

    async def claim_until_empty(store: Store, name: str) -> None:
        while True:
            _, batch = await store.claim("sms", 37, clock.now(), 60)
            if not batch:
                return
            claimed.setdefault(name, []).extend(c.delivery["id"] for c in batch)

    try:
        stores = (("a", pg_app.store), ("b", other))
        await asyncio.gather(
            *(claim_until_empty(store, f"{label}{n}") for label, store in stores for n in range(4))
        )
    finally:
        await other.close()
    every = [i for ids in claimed.values() for i in ids]
    assert len(every) == len(set(every)), "a delivery was claimed twice"
    assert set(every) == expected
    assert any(k.startswith("a") for k in claimed) and any(k.startswith("b") for k in claimed)


async def test_an_expired_lease_is_claimed_again_and_the_late_result_is_fenced(
    pg_app: App, pg_url: str, clock: FakeClock
) -> None:
    await pg_app.pipeline.ingest(cap_cn(), source="t")
    first_token, first = await pg_app.store.claim("sms", 10, clock.now(), 30)
    ids = sorted(c.delivery["id"] for c in first)
    assert len(ids) == 10
    other = Store.open(pg_url)
    try:
        clock.advance(10)  # still leased: another node skips them
        _, during = await other.claim("sms", 100, clock.now(), 30)
        assert not set(ids) & {c.delivery["id"] for c in during}
        clock.advance(25)  # the first holder died: its lease ran out
        second_token, again = await other.claim("sms", 100, clock.now(), 30)
        assert set(ids) <= {c.delivery["id"] for c in again}
        assert second_token != first_token
        assert {c.delivery["attempts"] for c in again if c.delivery["id"] in ids} == {2}
        late = [
            {"delivery_id": i, "status": "sent", "event": "accepted", "provider_message_id": "late"}
            for i in ids
        ]
        assert await pg_app.store.record_results(first_token, late, clock.now()) == 0  # fenced off
        now_ok = [{**o, "provider_message_id": "on-time"} for o in late]
        assert await other.record_results(second_token, now_ok, clock.now()) == len(ids)
    finally:
        await other.close()
    rows = await pg_app.store.deliveries_page({"channel": "sms", "status": "sent"}, limit=100)
    assert sorted(r["id"] for r in rows) == ids and {r["provider_message_id"] for r in rows} == {"on-time"}
