"""All SQL of the live board, the alert timeline and the dashboard (docs/board.md).

The board and the dashboard pick their chains here and count them as coverage reports are counted, from the
rows :func:`warnd.store.report.chain_rows` reads for many chains at once. The timeline
reads what happened to one chain: its payloads, its deliveries summed per revision × channel × status, the
rungs of its escalation ladders, its acknowledgements, the door-knock results and the audit log (with the
entries of the broadcasts that became or revise its revisions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from warnd.cap.model import DRILL_STATUSES
from warnd.schema import (
    acknowledgements,
    alerts,
    audit_log,
    broadcasts,
    deliveries,
    doorknocks,
    escalation_events,
    escalations,
    payloads,
    recipients,
)
from warnd.store import Store, is_warning

# every column of ``alerts`` but the parsed message (large, and nothing here reads it)
_ALERT_COLUMNS = [c for c in alerts.c if c.name != "parsed"]


def _chains(rows: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Revision rows as chains (each oldest first), in the order their roots first appear."""
    chains: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        chains.setdefault(row["root_id"], []).append(row)
    return list(chains.values())


async def active_chains(store: Store, now: datetime) -> list[list[dict[str, Any]]]:
    """Every revision (oldest first) of each chain whose newest revision is active and has not expired by
    ``now`` (the expiry sweep may not have marked it yet)."""
    latest = (
        select(alerts.c.root_id, func.max(alerts.c.id).label("last_id"))
        .where(alerts.c.root_id.is_not(None))
        .group_by(alerts.c.root_id)
        .subquery()
    )
    live = (
        select(alerts.c.root_id)
        .join(latest, latest.c.last_id == alerts.c.id)
        .where(alerts.c.state == "active", or_(alerts.c.expires.is_(None), alerts.c.expires > now))
    )
    query = select(*_ALERT_COLUMNS).where(alerts.c.root_id.in_(live)).order_by(alerts.c.root_id, alerts.c.id)
    async with store.read() as conn:
        return _chains(dict(r._mapping) for r in await conn.execute(query))


async def window_chains(
    store: Store, since: datetime, until: datetime, *, drill: bool
) -> list[list[dict[str, Any]]]:
    """Every revision (oldest first) of each chain whose first revision was received in [since, until]: real
    alerts, or drills (status Exercise / Test) when ``drill``. Silent ones (Draft, System: never sent) are left
    out."""
    root = alerts.alias("root")
    is_drill = root.c.status.in_(DRILL_STATUSES)
    query = (
        select(*_ALERT_COLUMNS)
        .join(root, root.c.id == alerts.c.root_id)
        .where(
            root.c.received_at >= since,
            root.c.received_at <= until,
            root.c.state != "inactive",
            is_drill if drill else ~is_drill,
        )
        .order_by(alerts.c.root_id, alerts.c.id)
    )
    async with store.read() as conn:
        return _chains(dict(r._mapping) for r in await conn.execute(query))


# --- one chain's timeline ----------------------------------------------------------------------------------------


async def chain_payloads(store: Store, payload_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The payloads the chain's revisions were stored from (without their bodies)."""
    if not payload_ids:
        return []
    query = select(
        payloads.c.id,
        payloads.c.received_at,
        payloads.c.source,
        payloads.c.content_type,
        payloads.c.outcome,
        payloads.c.errors,
        payloads.c.alert_id,
    ).where(payloads.c.id.in_(list(payload_ids)))
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def delivery_summary(store: Store, root_id: int) -> list[dict[str, Any]]:
    """The chain's warning deliveries (``purpose = 'warning'``, a Cancel's 解除 included) per revision × channel
    × status: how many, the first and last ``sent_at``, the last ``delivered_at``, and the last ``updated_at`` of
    those never sent."""
    query = (
        select(
            deliveries.c.alert_id,
            deliveries.c.channel,
            deliveries.c.status,
            func.count().label("count"),
            func.min(deliveries.c.sent_at).label("first_sent"),
            func.max(deliveries.c.sent_at).label("last_sent"),
            func.max(deliveries.c.delivered_at).label("last_delivered"),
            # when the last delivery that never went out gave up (failed, failed over, suppressed …)
            func.max(case((deliveries.c.sent_at.is_(None), deliveries.c.updated_at))).label("last_unsent"),
        )
        .join(alerts, alerts.c.id == deliveries.c.alert_id)
        .where(alerts.c.root_id == root_id, is_warning(deliveries))
        .group_by(deliveries.c.alert_id, deliveries.c.channel, deliveries.c.status)
        .order_by(deliveries.c.alert_id, deliveries.c.channel, deliveries.c.status)
    )
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def escalation_steps(store: Store, root_id: int, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` rungs climbed on the chain's ladders, by time, with the person's name."""
    query = (
        select(
            escalation_events.c.id,
            escalation_events.c.at,
            escalation_events.c.step,
            escalation_events.c.reason,
            escalation_events.c.detail,
            escalations.c.id.label("escalation_id"),
            escalations.c.alert_id,
            escalations.c.reason.label("why"),
            recipients.c.name,
            recipients.c.role,
            recipients.c.area_code,
        )
        .join(escalations, escalations.c.id == escalation_events.c.escalation_id)
        .join(recipients, recipients.c.id == escalations.c.recipient_id)
        .where(escalations.c.root_id == root_id)
        .order_by(escalation_events.c.at, escalation_events.c.id)
        .limit(limit)
    )
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def chain_ack_events(store: Store, root_id: int, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` acknowledgements of the chain, by time, with the person's name and (raw) phone."""
    query = (
        select(
            acknowledgements.c.id,
            acknowledgements.c.alert_id,
            acknowledgements.c.recipient_id,
            acknowledgements.c.at,
            acknowledgements.c.channel,
            acknowledgements.c.recorded_by,
            acknowledgements.c.detail,
            recipients.c.name,
            recipients.c.phone,
            recipients.c.role,
            recipients.c.area_code,
        )
        .join(recipients, recipients.c.id == acknowledgements.c.recipient_id)
        .where(acknowledgements.c.root_id == root_id)
        .order_by(acknowledgements.c.at, acknowledgements.c.id)
        .limit(limit)
    )
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def doorknock_results(store: Store, root_id: int, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` door-knock check-offs of the chain, one per household and result, by time."""
    query = (
        select(
            doorknocks.c.area_code,
            doorknocks.c.household,
            doorknocks.c.result,
            doorknocks.c.result_at,
            doorknocks.c.result_by,
            func.max(doorknocks.c.note).label("note"),
            func.count().label("people"),
        )
        .where(doorknocks.c.root_id == root_id, doorknocks.c.result.is_not(None))
        .group_by(
            doorknocks.c.area_code,
            doorknocks.c.household,
            doorknocks.c.result,
            doorknocks.c.result_at,
            doorknocks.c.result_by,
        )
        .order_by(doorknocks.c.result_at, doorknocks.c.area_code, doorknocks.c.household)
        .limit(limit)
    )
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def chain_broadcasts(store: Store, alert_ids: Sequence[int]) -> dict[int, int]:
    """The broadcasts (manual broadcasts, operator Updates and Cancels) that became one of ``alert_ids`` or
    revise one of them: broadcast id → that revision's id."""
    query = select(broadcasts.c.id, func.coalesce(broadcasts.c.alert_id, broadcasts.c.update_of)).where(
        or_(broadcasts.c.alert_id.in_(list(alert_ids)), broadcasts.c.update_of.in_(list(alert_ids)))
    )
    async with store.read() as conn:
        return {int(b): int(a) for b, a in await conn.execute(query)}


async def chain_audit(
    store: Store,
    alert_ids: Sequence[int],
    root_id: int,
    *,
    broadcast_ids: Sequence[int] = (),
    skip: Sequence[str],
    limit: int,
) -> list[dict[str, Any]]:
    """The first ``limit`` audit-log entries about the chain, by time: target ``<id>`` or ``alert:<id>`` (or
    ``alert:<id>/…``) of one of its revisions, ``alert-chain:<root>/…``, or ``broadcast:<id>`` of one of
    ``broadcast_ids``; not the actions in ``skip``."""
    targets = [t for i in alert_ids for t in (str(i), f"alert:{i}")] + [
        f"broadcast:{b}" for b in broadcast_ids
    ]
    about = or_(
        audit_log.c.target.in_(targets),
        *(audit_log.c.target.like(f"alert:{i}/%") for i in alert_ids),
        audit_log.c.target.like(f"alert-chain:{root_id}/%"),
    )
    query = (
        select(
            audit_log.c.id,
            audit_log.c.at,
            audit_log.c.actor,
            audit_log.c.action,
            audit_log.c.target,
            audit_log.c.detail,
        )
        .where(and_(about, audit_log.c.action.not_in(list(skip))))
        .order_by(audit_log.c.at, audit_log.c.id)
        .limit(limit)
    )
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


__all__ = [
    "active_chains",
    "chain_ack_events",
    "chain_audit",
    "chain_broadcasts",
    "chain_payloads",
    "delivery_summary",
    "doorknock_results",
    "escalation_steps",
    "window_chains",
]
