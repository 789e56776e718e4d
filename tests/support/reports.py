"""Helpers for the coverage-report and recommendation tests: an SMS gateway config, people by name, receipts,
acknowledgement / door-knock rows written the way the 叫应 and escalation code writes them, the learned channel
orders, and a watch on the SQL the store runs for what PostgreSQL refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, event, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql import visitors
from sqlalchemy.sql.selectable import Select

from tests.conftest import edit_yaml
from warnd import sms
from warnd.app import App
from warnd.schema import (
    acknowledgements,
    channel_preferences,
    deliveries,
    doorknocks,
    messages,
    recipients,
)
from warnd.store import Store


def use_sms_gateway(config_dir: Path, url: str) -> None:
    """``sms`` through the fake HTTP gateway (receipts decide delivered / failed)."""

    def change(data: dict[str, Any]) -> None:
        data["channels"]["sms"] = {
            "adapter": "sms_http",
            "url": url,
            "signature": "梁平区应急管理局",
            "max_recipients_per_request": 100,
            "max_attempts": 3,
            "backoff_initial": 2,
            "timeout": 5,
        }

    edit_yaml(config_dir / "channels.yaml", change)


async def people(app: App) -> dict[str, dict[str, Any]]:
    """Recipients by name (people and terminals)."""
    async with app.store.read() as conn:
        return {r.name: dict(r._mapping) for r in await conn.execute(select(recipients))}


async def rows_by_name(app: App, alert_id: int, channel: str) -> dict[str, dict[str, Any]]:
    """The alert's deliveries on ``channel`` by recipient name (with idempotency key and recipient id)."""
    query = (
        select(deliveries, recipients.c.name.label("recipient"))
        .join(recipients, recipients.c.id == deliveries.c.recipient_id)
        .where(deliveries.c.alert_id == alert_id, deliveries.c.channel == channel)
    )
    async with app.store.read() as conn:
        return {r.recipient: dict(r._mapping) for r in await conn.execute(query)}


async def receipt(app: App, row: dict[str, Any], state: str, kind: str = "sms") -> str:
    """A provider's report for the whole delivery (every part), at the app clock's now."""
    result = await app.store.record_feedback(
        row["channel"],
        row["idempotency_key"],
        state,
        {},
        app.clock.now(),
        kind=kind,
        provider_id=row["provider_message_id"],
    )
    return result.outcome


async def add_ack(
    app: App, *, alert_id: int, root_id: int, recipient_id: int, at: datetime, channel: str = "reply"
) -> None:
    async with app.store.write() as conn:
        await conn.execute(
            insert(acknowledgements).values(
                alert_id=alert_id,
                root_id=root_id,
                recipient_id=recipient_id,
                delivery_id=None,
                at=at,
                channel=channel,
                recorded_by="test",
                detail={},
            )
        )


async def add_doorknock(
    app: App,
    *,
    root_id: int,
    alert_id: int,
    person: dict[str, Any],
    result: str | None,
    at: datetime,
) -> None:
    async with app.store.write() as conn:
        await conn.execute(
            insert(doorknocks).values(
                root_id=root_id,
                alert_id=alert_id,
                recipient_id=person["id"],
                area_code=person["area_code"],
                household=person["household"] or f"h{person['id']}",
                reason="undelivered",
                added_at=at,
                result=result,
                result_at=at if result else None,
                result_by="网格员" if result else None,
            )
        )


async def add_notice(app: App, warning: dict[str, Any], body: str, *, purpose: str) -> int:
    """A notice about ``warning``'s alert to the same person on the same channel (``purpose`` ``notice:<id>``
    or ``doorknock:<village>:<n>``), sent now, with its own message ``body``, as the escalation code writes
    them; returns the delivery id."""
    now = app.clock.now()
    async with app.store.write() as conn:
        message_id = (
            await conn.execute(
                insert(messages)
                .values(
                    alert_id=warning["alert_id"],
                    channel=warning["channel"],
                    language="zh-CN",
                    recipient_id=warning["recipient_id"],
                    body=body,
                    data={},
                    segments=sms.segments(body),
                    truncated=False,
                )
                .returning(messages.c.id)
            )
        ).scalar_one()
        copy = {k: v for k, v in warning.items() if k in deliveries.c and k != "id"}
        copy.update(
            message_id=message_id,
            purpose=purpose,
            idempotency_key=f"{warning['idempotency_key']}:{purpose}",
            status="sent",
            sent_at=now,
            created_at=now,
            updated_at=now,
            ack_required=False,
            ack_deadline=None,
            segments=sms.segments(body),
        )
        return (await conn.execute(insert(deliveries).values(**copy).returning(deliveries.c.id))).scalar_one()


async def learned_orders(app: App) -> dict[int, list[str]]:
    """The channel orders the optimiser wrote (``channel_preferences``), by recipient id."""
    async with app.store.read() as conn:
        rows = await conn.execute(select(channel_preferences.c.recipient_id, channel_preferences.c.channels))
        return {r.recipient_id: list(r.channels) for r in rows}


def json_grouping(statement: Any) -> list[str]:
    """What PostgreSQL refuses in a statement and SQLite lets pass: GROUP BY, or SELECT DISTINCT, on a ``json``
    column ("could not identify an equality operator for type json"), in the statement or any subquery."""
    bad = []
    for element in visitors.iterate(statement):
        if not isinstance(element, Select):
            continue
        bad += [f"GROUP BY {c}" for c in element._group_by_clauses if isinstance(c.type, JSON)]
        if element._distinct:
            bad += [f"DISTINCT {c}" for c in element.selected_columns if isinstance(c.type, JSON)]
    return sorted(set(bad))


async def _engines(store: Store) -> list[Engine]:
    engines: dict[int, Engine] = {}
    async with store.read() as reader:
        engines[id(reader.sync_engine)] = reader.sync_engine
    async with store.write() as writer:
        engines[id(writer.sync_engine)] = writer.sync_engine
    return list(engines.values())


@asynccontextmanager
async def _listening(store: Store, name: str, listener: Any) -> AsyncIterator[None]:
    engines = await _engines(store)
    for engine in engines:
        event.listen(engine, name, listener)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, name, listener)


@asynccontextmanager
async def postgres_refusals(store: Store) -> AsyncIterator[list[str]]:
    """Every statement the store runs inside the block, checked by :func:`json_grouping`: the list it yields
    collects the refusals (empty when PostgreSQL would run them all)."""
    found: list[str] = []

    def check(conn: Any, statement: Any, *args: Any) -> None:
        found.extend(json_grouping(statement))

    async with _listening(store, "before_execute", check):
        yield found


@asynccontextmanager
async def sql_log(store: Store) -> AsyncIterator[list[str]]:
    """The SQL text of every statement the store runs inside the block, in order."""
    seen: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    async with _listening(store, "before_cursor_execute", log):
        yield seen
