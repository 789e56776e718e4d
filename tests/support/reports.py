"""Helpers for the coverage-report and recommendation tests: an SMS gateway config, people by name, receipts,
and acknowledgement / door-knock rows written the way the 叫应 and escalation code writes them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from tests.conftest import edit_yaml
from warnd.app import App
from warnd.schema import acknowledgements, deliveries, doorknocks, recipients


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
