"""Item e: the storage limit. ``sqlite3.executemany`` of N rows shaped like warnd's deliveries into the real
schema (``Store.upgrade``: same columns, unique keys and indexes), one transaction, WAL + synchronous=NORMAL
as warnd opens SQLite. Foreign-key checks are off (the rows point at no real alert or recipients)."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from warnd.store import Store

COLUMNS = (
    "alert_id, recipient_id, channel, message_id, status, priority, visible_at, attempts, idempotency_key, "
    "segments, repeat, level, ack_required, rules, area_code, created_at, updated_at, purpose"
)


async def _schema(path: Path) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        await store.upgrade()
    finally:
        await store.close()


def rows(n: int) -> Iterator[tuple[object, ...]]:
    now = datetime.now(UTC).isoformat(sep=" ")
    for i in range(1, n + 1):
        yield (
            1,
            i,
            "sms",
            1,
            "queued",
            1,
            now,
            0,
            f"1:{i}:sms",
            2,
            1,
            1,
            0,
            "rainstorm-red",
            "500228101201",
            now,
            now,
            "warning",
        )


def insert_seconds(n: int) -> float:
    """Seconds to insert ``n`` delivery rows raw, in a fresh database with warnd's schema."""
    with tempfile.TemporaryDirectory(prefix="warnd-baseline-") as tmp:
        path = Path(tmp) / "baseline.db"
        asyncio.run(_schema(path))
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            placeholders = ", ".join("?" * len(COLUMNS.split(",")))
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO deliveries ({COLUMNS}) VALUES ({placeholders})", rows(n))
            conn.execute("COMMIT")
            return time.perf_counter() - started
        finally:
            conn.close()
