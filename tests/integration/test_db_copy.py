"""``warnd db copy``: a SQLite database made by the real pipeline (ingest, fan-out, dispatch to a gateway stub,
a 叫应 reply, an escalation sweep, a Cancel, an account) copied into an empty PostgreSQL database by the command
line; every table's row count and a sample of rows equal, the sequences continue after the copied ids, a
non-empty target refused unless --replace, a running daemon's SQLite file refused. Skipped only when no
PostgreSQL server answers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cap_cn, edit_yaml, file_loudspeaker, file_push, make_config_copy, use_postgres
from support.gateway import FakeSmsGateway

from tests.support import postgres
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.daemon import single_instance_lock
from warnd.store import Store
from warnd.store.copy import row_counts

ROOT = Path(__file__).resolve().parents[2]
pytestmark = postgres.requires_server()


@pytest.fixture
def empty_pg() -> Iterator[str]:
    url = postgres.create_database(migrated=False)  # `db copy` brings it to the newest schema itself
    try:
        yield url
    finally:
        postgres.drop_database(url)


def sqlite_config(root: Path, gateway_url: str) -> Path:
    config_dir = make_config_copy(root)
    file_loudspeaker(config_dir)
    file_push(config_dir)

    def sms(data: dict[str, Any]) -> None:
        data["channels"]["sms"] = {"adapter": "sms_http", "url": gateway_url, "signature": "梁平区应急管理局"}

    edit_yaml(config_dir / "channels.yaml", sms)
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.pop("database", None))  # SQLite in data_dir, always
    return config_dir


async def made_by_the_pipeline(config_dir: Path, clock: FakeClock) -> str:
    """A SQLite database with what a day of use leaves in it; returns its URL."""
    app = App(load_config(config_dir), clock=clock)
    assert app.store.is_sqlite
    await app.start(channels=True)
    try:
        await app.accounts.add_user("duty1", "a-long-passphrase-here", "operator", actor="test")
        [red] = await app.pipeline.ingest(cap_cn(), source="t")
        await app.dispatcher.drain()
        await app.acks.from_reply("13800230021", "收到")
        clock.advance(3600)
        await app.escalator.sweep()
        await app.dispatcher.drain()
        lifted = cap_cn(
            identifier="lifted", msg_type="Cancel", references=cap_cn.__kwdefaults__["identifier"]
        )
        await app.pipeline.ingest(lifted, source="t")
        await app.dispatcher.drain()
        await app.pipeline.ingest(b"<not-cap/>", source="t")  # quarantined
        assert red.alert_id is not None
        return app.store.url
    finally:
        await app.close()


def warnd_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warnd", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


async def everything(store: Store) -> dict[str, Any]:
    alerts = await store.list_alerts(limit=100)
    return {
        "alerts": [await store.get_alert(a["id"]) for a in alerts],
        "deliveries": await store.deliveries_page({}, limit=100_000),
        "payloads": [await store.payload(a["payload_id"]) for a in alerts],
        "audit": await store.audit_entries(limit=1000),
    }


async def test_a_sqlite_database_copied_to_postgresql(
    tmp_path: Path, gateway: FakeSmsGateway, clock: FakeClock, empty_pg: str
) -> None:
    config_dir = sqlite_config(tmp_path, gateway.url)
    source_url = await made_by_the_pipeline(config_dir, clock)
    source = Store.open(source_url)
    try:
        counts = await row_counts(source)
        before = await everything(source)
    finally:
        await source.close()
    assert counts["deliveries"] > 50 and counts["delivery_events"] > counts["deliveries"]
    assert counts["acknowledgements"] == 1 and counts["escalations"] > 0 and counts["users"] == 1

    done = warnd_cli("db", "copy", "-c", str(config_dir), "--to", empty_pg, "--chunk", "7")
    assert done.returncode == 0, done.stderr
    assert f"copied {sum(counts.values())} rows" in done.stdout
    assert "deliveries" in done.stdout and "postgres" in done.stdout

    target = Store.open(empty_pg)
    try:
        copied = await row_counts(target)
        after = await everything(target)
    finally:
        await target.close()
    assert copied == {**counts, "audit_log": counts["audit_log"] + 1}  # and the copy's own entry
    assert after["alerts"] == before["alerts"]  # JSON, timestamps (aware UTC), states
    assert after["deliveries"] == before["deliveries"]
    assert after["payloads"] == before["payloads"]  # the raw bytes as received
    assert after["audit"][1:] == before["audit"] and after["audit"][0]["action"] == "db.copy"

    # copying again into the now full database is refused, unless told to replace what is there
    again = warnd_cli("db", "copy", "-c", str(config_dir), "--to", empty_pg)
    assert again.returncode == 1 and "already holds rows" in again.stderr
    replaced = warnd_cli("db", "copy", "-c", str(config_dir), "--to", empty_pg, "--replace")
    assert replaced.returncode == 0, replaced.stderr

    # warnd runs on the copy: new rows get ids after the copied ones (the sequences were moved on)
    edit_yaml(config_dir / "warnd.yaml", use_postgres(empty_pg))
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    try:
        assert not app.store.is_sqlite
        [new] = await app.pipeline.ingest(cap_cn(identifier="after-the-move", event="大风"), source="t")
        assert new.outcome == "created" and new.alert_id == max(a["id"] for a in before["alerts"]) + 1
        await app.dispatcher.drain()
        rows = await app.store.deliveries_page({"alert_id": new.alert_id}, limit=1000)
        assert rows and min(r["id"] for r in rows) > max(r["id"] for r in before["deliveries"])
    finally:
        await app.close()


async def test_a_running_daemons_database_is_not_copied(tmp_path: Path, empty_pg: str) -> None:
    config_dir = make_config_copy(tmp_path)
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.pop("database", None))
    lock = single_instance_lock(load_config(config_dir).database_url)  # as `warnd run` holds it
    try:
        refused = warnd_cli("db", "copy", "-c", str(config_dir), "--to", empty_pg)
    finally:
        assert lock is not None
        lock.close()
    assert refused.returncode == 1 and "already running" in refused.stderr
