"""``warnd db copy``: every table of one warnd database into another (SQLite → PostgreSQL when a deployment
grows into cluster mode, docs/cluster.md; or back).

Both databases are brought to the newest schema first. Tables go in dependency order, each read in primary-key
order in chunks (bounded memory) and written in one transaction on the target, so a failed copy leaves the
target as it was. PostgreSQL sequences are then set past the copied ids. A target that already holds rows is
refused unless ``replace`` (its rows are deleted first, in the same transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, func, insert, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.schema import metadata
from warnd.store import Store


class TargetNotEmpty(RuntimeError):
    pass


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)  # table → rows copied
    target_rows: dict[str, int] = field(default_factory=dict)  # table → rows in the target afterwards
    sequences: dict[str, int] = field(default_factory=dict)  # PostgreSQL sequence → its next value's base

    @property
    def matches(self) -> bool:
        return self.rows == self.target_rows


async def row_counts(store: Store) -> dict[str, int]:
    """Rows per table of warnd's schema."""
    counts = {}
    async with store.read() as conn:
        for table in metadata.sorted_tables:
            counts[table.name] = int(
                (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            )
    return counts


async def copy_database(
    source: Store,
    target: Store,
    *,
    chunk: int = 5000,
    replace: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every table of ``source`` into ``target`` (see the module docstring). ``progress(table, rows)`` is
    called after each chunk."""
    await source.upgrade()
    await target.upgrade()
    report = CopyReport()
    async with target.write() as out:
        filled = [t.name for t in metadata.sorted_tables if await _has_rows(out, t)]
        if filled and not replace:
            raise TargetNotEmpty(
                f"the target database already holds rows ({', '.join(filled)}); copy into an empty database, "
                "or pass --replace to delete them first"
            )
        for table in reversed(metadata.sorted_tables):
            await out.execute(delete(table))
        for table in metadata.sorted_tables:
            report.rows[table.name] = await _copy_table(source, out, table, chunk, progress)
        if not target.is_sqlite:
            report.sequences = await _reset_sequences(out)
        for table in metadata.sorted_tables:
            report.target_rows[table.name] = int(
                (await out.execute(select(func.count()).select_from(table))).scalar_one()
            )
    return report


async def _has_rows(conn: AsyncConnection, table: Table) -> bool:
    return (await conn.execute(select(1).select_from(table).limit(1))).first() is not None


async def _copy_table(
    source: Store,
    out: AsyncConnection,
    table: Table,
    chunk: int,
    progress: Callable[[str, int], None] | None,
) -> int:
    key = list(table.primary_key.columns)
    query = select(table).order_by(*key).limit(chunk)
    copied = 0
    last: tuple[Any, ...] | None = None
    while True:
        page = query
        if last is not None:
            page = page.where(key[0] > last[0] if len(key) == 1 else tuple_(*key) > tuple_(*last))
        async with source.read() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(page)]
        if not rows:
            return copied
        await out.execute(insert(table), rows)
        copied += len(rows)
        last = tuple(rows[-1][c.name] for c in key)
        if progress is not None:
            progress(table.name, copied)


async def _reset_sequences(out: AsyncConnection) -> dict[str, int]:
    """Every serial's sequence continues after the largest id copied (PostgreSQL)."""
    done = {}
    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            sequence = (
                await out.execute(
                    text("SELECT pg_get_serial_sequence(:table, :column)"),
                    {"table": table.name, "column": column.name},
                )
            ).scalar()
            if not sequence:
                continue
            top = (await out.execute(select(func.max(column)))).scalar()
            await out.execute(
                text("SELECT setval(:sequence, :value, :called)"),
                {"sequence": sequence, "value": top or 1, "called": top is not None},
            )
            done[sequence] = int(top or 0)
    return done
