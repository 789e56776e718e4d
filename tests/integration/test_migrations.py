"""Alembic migrations build exactly the schema warnd.schema defines; the store's SQLite connections use WAL
and enforce foreign keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from warnd.migrations import HERE, alembic_config, current
from warnd.schema import metadata
from warnd.store import Store


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "db" / "warnd.db"  # the store creates the missing directory


@pytest.fixture
async def store(db_file: Path) -> AsyncIterator[Store]:
    opened = Store.open(f"sqlite+aiosqlite:///{db_file}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def sync_engine(db_file: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{db_file}")
    try:
        yield engine
    finally:
        engine.dispose()


def is_file(path: Path) -> bool:
    return path.is_file()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def schema_snapshot(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").all()
    return {row.name: (row.type, row.tbl_name, row.sql) for row in rows}


async def test_upgrade_creates_every_table(store: Store, db_file: Path, sync_engine: Engine) -> None:
    assert not is_file(db_file)  # a fresh file
    await store.upgrade()
    assert is_file(db_file)
    tables = set(inspect(sync_engine).get_table_names())
    assert set(metadata.tables) <= tables
    assert tables - set(metadata.tables) == {"alembic_version"}
    with sync_engine.connect() as conn:
        assert current(conn) == head_revision()


async def test_upgrade_twice_is_a_no_op(store: Store, sync_engine: Engine) -> None:
    await store.upgrade()
    before = schema_snapshot(sync_engine)
    with sync_engine.begin() as conn:
        conn.execute(
            text("INSERT INTO feed_state (name, url, consecutive_failures, items) VALUES ('f', 'u', 0, 0)")
        )
    await store.upgrade()
    assert schema_snapshot(sync_engine) == before
    with sync_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM feed_state")).scalar_one() == 1  # data untouched
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        assert current(conn) == head_revision()


async def test_a_second_store_on_the_same_file_upgrades_as_a_no_op(
    store: Store, db_file: Path, sync_engine: Engine
) -> None:
    await store.upgrade()
    before = schema_snapshot(sync_engine)
    other = Store.open(f"sqlite+aiosqlite:///{db_file}")
    try:
        await other.upgrade()
    finally:
        await other.close()
    assert schema_snapshot(sync_engine) == before


async def test_migrated_schema_matches_the_metadata(store: Store, sync_engine: Engine) -> None:
    await store.upgrade()
    with sync_engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True, "target_metadata": metadata}
        )
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_the_metadata_check_notices_a_difference(db_file: Path, sync_engine: Engine) -> None:
    """compare_metadata really compares: an empty database differs from the metadata table by table."""
    db_file.parent.mkdir(parents=True)
    with sync_engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    added = {diff[1].name for diff in differences if isinstance(diff, tuple) and diff[0] == "add_table"}
    assert added == set(metadata.tables)


def test_migration_scripts_form_a_single_line() -> None:
    script = ScriptDirectory(str(HERE))
    assert len(script.get_heads()) == 1
    assert [rev.down_revision for rev in script.walk_revisions()][-1] is None


async def test_store_connections_use_wal_and_foreign_keys(store: Store) -> None:
    await store.upgrade()
    async with store.read() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one().lower() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1
    async with store.write() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one().lower() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1


async def test_foreign_keys_are_enforced(store: Store) -> None:
    from sqlalchemy.exc import IntegrityError

    await store.upgrade()
    with pytest.raises(IntegrityError):
        async with store.write() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO group_members (group_name, recipient_id) VALUES ('public', 424242)"
            )
    async with store.read() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM group_members")).scalar_one() == 0
