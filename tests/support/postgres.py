"""Throw-away PostgreSQL databases on the local server, for tests that run warnd in cluster mode.

``WARND_TEST_POSTGRES_URL`` names the server (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``:
the machine's PostgreSQL 15 with trust auth). Each test gets ``CREATE DATABASE … TEMPLATE`` of a template that
already has every migration applied (built once per set of migration files, named after their hash), and the
database is dropped again at teardown.

With ``WARND_TEST_POSTGRES=1`` the ``config_dir`` fixture of ``tests/conftest.py`` points every integration
test at such a database instead of a SQLite file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
SERVER_URL = os.environ.get(
    "WARND_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
T = TypeVar("T")


def postgres_wanted() -> bool:
    """The suite's switch: run the integration tests on PostgreSQL instead of SQLite files."""
    return os.environ.get("WARND_TEST_POSTGRES", "") not in ("", "0")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a loop of its own (in a thread: callers may be inside a loop)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def database_url(name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the test server."""
    return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


def _dsn(name: str | None = None) -> str:
    url = make_url(SERVER_URL)
    if name is not None:
        url = url.set(database=name)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _connect(name: str | None = None) -> asyncpg.Connection:
    return await asyncpg.connect(_dsn(name), timeout=5)


async def _ping() -> str | None:
    try:
        conn = await _connect()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def unavailable() -> str | None:
    """Why the test server cannot be used (None when it answers)."""
    return _run(_ping())


def _migrations_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "warnd" / "migrations").rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update((ROOT / "warnd" / "schema.py").read_bytes())
    return digest.hexdigest()[:12]


def template_name() -> str:
    return f"warnd_test_tpl_{_migrations_digest()}"


async def _exists(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


async def _ensure_template() -> str:
    """The template database with every migration applied; built under a temporary name, then renamed, so a
    concurrent test run never copies a half-built one."""
    from warnd.store import Store

    name = template_name()
    conn = await _connect()
    try:
        if await _exists(conn, name):
            return name
        building = f"warnd_test_build_{uuid.uuid4().hex[:12]}"
        await conn.execute(f'CREATE DATABASE "{building}"')
    finally:
        await conn.close()
    store = Store.open(database_url(building))
    try:
        await store.upgrade()
    finally:
        await store.close()
    conn = await _connect()
    try:
        try:
            await conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        except asyncpg.DuplicateDatabaseError:  # another run built it meanwhile
            await conn.execute(f'DROP DATABASE "{building}"')
    finally:
        await conn.close()
    return name


async def _create(prefix: str, migrated: bool) -> str:
    template = await _ensure_template() if migrated else "template0"
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    conn = await _connect()
    try:
        for attempt in range(20):  # the template may be busy for a moment (another CREATE … TEMPLATE)
            try:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except asyncpg.ObjectInUseError:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
    finally:
        await conn.close()
    return name


async def _drop(name: str) -> None:
    conn = await _connect()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def create_database(prefix: str = "warnd_test", *, migrated: bool = True) -> str:
    """A new database (a copy of the migrated template, or empty); returns its SQLAlchemy URL."""
    return database_url(_run(_create(prefix, migrated)))


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database` (connections still open to it are ended)."""
    name = make_url(url).database
    assert name and name.startswith("warnd_test"), name
    _run(_drop(name))


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of one query on a test database (checks from outside warnd)."""
    conn = await _connect(make_url(url).database)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def requires_server() -> pytest.MarkDecorator:
    """Skip a test module when no PostgreSQL server answers at SERVER_URL (saying why)."""
    why = unavailable()
    return pytest.mark.skipif(why is not None, reason=f"no PostgreSQL server at {SERVER_URL}: {why}")
