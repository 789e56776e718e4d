"""A subscriber CSV import streams: rows are read, checked and written one chunk (``warnd.subscribers.CHUNK``) at a
time, inside one transaction, so a bad row anywhere rolls back the chunks already written. These are the pieces
`warnd subscribers import` puts together (``open_csv`` → ``validated_chunks`` → ``Store.upsert_recipients``), on a
real SQLite file; tests/e2e/test_cli.py runs the command itself. How long a large import takes is measured by the
benchmark suite (bench/import_csv.py), not here."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pytest

from warnd.clock import FakeClock
from warnd.config import Config
from warnd.store import Store
from warnd.subscribers import CHUNK, ImportRejected, ImportReport, open_csv, validated_chunks

HEADER = ["name", "phone", "role", "area_code", "lat", "lon", "language", "groups"]
ROWS = CHUNK + CHUNK // 2  # a full chunk and a partial one
VILLAGE = "500228101201"


class CountingLines:
    """The lines of an open CSV file, counting how many have been read."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.read = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self.handle)
        self.read += 1
        return line


def write_people(path: Path, count: int, *, first: int, bad_last_row: bool = False) -> set[str]:
    """``count`` good rows (phones 139… from ``first`` on; every third also a grid worker, every fourth with
    coordinates), optionally followed by one row with a bad phone. Returns the good rows' phones."""
    phones = {f"139{i:08d}" for i in range(first, first + count)}
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(first, first + count):
            groups = "public|grid_workers" if i % 3 == 0 else "public"
            lat, lon = ("30.67", "107.8") if i % 4 == 0 else ("", "")
            writer.writerow([f"居民{i}", f"139{i:08d}", "public", VILLAGE, lat, lon, "zh-CN", groups])
        if bad_last_row:
            writer.writerow(["坏行", "139123", "public", VILLAGE, "", "", "zh-CN", "public"])
    return phones


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    opened = Store.open(config.database_url)
    await opened.upgrade()
    try:
        yield opened
    finally:
        await opened.close()


async def import_file(
    store: Store, config: Config, path: Path, now: datetime
) -> tuple[list[tuple[int, int]], ImportReport, dict[str, int] | ImportRejected]:
    """Import ``path`` as the CLI does. Returns, for each chunk handed to the store, (its rows, lines of the file
    read by then); the report; and the store's counts or the rejection."""
    handed: list[tuple[int, int]] = []
    report = ImportReport()
    with open_csv(path) as handle:
        lines = CountingLines(handle)

        def chunks() -> Iterator[list[dict[str, Any]]]:
            for chunk in validated_chunks(lines, report, groups=config.groups, roles=config.roles):
                handed.append((len(chunk), lines.read))
                yield chunk

        try:
            return handed, report, await store.upsert_recipients(chunks(), source="import", now=now)
        except ImportRejected as rejected:
            return handed, report, rejected


def imported(db: Path) -> dict[str, Any]:
    """The imported people's phones, group sizes and how many have coordinates."""
    with sqlite3.connect(db) as conn:
        phones = {p for (p,) in conn.execute("SELECT phone FROM recipients WHERE source = 'import'")}
        groups = dict(conn.execute("SELECT group_name, count(*) FROM group_members GROUP BY group_name"))
        located = conn.execute("SELECT count(*) FROM recipients WHERE source = 'import' AND lat IS NOT NULL")
        return {"phones": phones, "groups": groups, "located": located.fetchone()[0]}


async def test_import_streams_chunk_by_chunk_and_is_all_or_nothing(
    store: Store, config: Config, clock: FakeClock, tmp_path: Path
) -> None:
    db = config.data_dir / "warnd.db"
    first = tmp_path / "first.csv"
    phones = write_people(first, ROWS, first=0)

    handed, report, result = await import_file(store, config, first, clock.now())
    # each chunk goes to the database as soon as its last row is read (line 1 is the header): the import never
    # holds more than one chunk of rows, however long the file
    assert handed == [(CHUNK, 1 + CHUNK), (CHUNK // 2, 1 + ROWS)]
    assert report.errors == [] and report.rows == ROWS
    assert result == {"upserted": ROWS, "deactivated": 0}
    after_first = imported(db)
    assert after_first["phones"] == phones
    assert after_first["groups"] == {"public": ROWS, "grid_workers": len(range(0, ROWS, 3))}
    assert after_first["located"] == len(range(0, ROWS, 4))

    # a full chunk of new people and one more, then a bad row: the chunk was already written in the import's
    # transaction, and is rolled back with it
    second = tmp_path / "second.csv"
    write_people(second, CHUNK + 1, first=ROWS, bad_last_row=True)
    handed, report, result = await import_file(store, config, second, clock.now())
    assert handed == [(CHUNK, 1 + CHUNK)]
    assert isinstance(result, ImportRejected)
    assert report.errors == [
        f"line {CHUNK + 3}: phone: not a mobile number: '139123' (11-digit Chinese mobile or +E.164)"
    ]
    assert imported(db) == after_first  # nothing of the second file stayed
