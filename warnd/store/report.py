"""All SQL of coverage reports and recommendations (docs/reports.md): the rows one alert chain's report is
counted from, the chains that ended without a kept report, kept reports (drills apart), and the delivery
history the recommendations are computed from. The counting itself is plain Python in :mod:`warnd.report`
and :mod:`warnd.optimise`.

A chain's *warning deliveries* are its revisions' deliveries with ``purpose = 'warning'``, except the note to
someone an Update no longer covers (``NO_LONGER_APPLIES``) and a Cancel's 解除 message (a Cancel tells people
the warning is over; it does not warn them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select

from warnd.schema import (
    acknowledgements,
    alert_reports,
    alerts,
    channel_preferences,
    deliveries,
    doorknocks,
    messages,
    recipients,
)
from warnd.store import Store, covers, is_warning, reached

ENDED = ("cancelled", "expired")
CHUNK = 500  # root ids per IN (...) list


def _counted(d: Any = deliveries, a: Any = alerts) -> Any:
    """A chain's warning deliveries as the report counts them (module docstring)."""
    return and_(covers(d), a.c.msg_type != "Cancel")


def _warning_deliveries(sent_is_enough: Sequence[str]) -> Any:
    """The warning deliveries (of every chain; callers narrow it) with their recipient, their revision's
    ``root_id`` and ``received_at``, and ``reached`` per :func:`warnd.store.reached`; by id."""
    return (
        select(
            deliveries.c.id,
            deliveries.c.alert_id,
            alerts.c.root_id,
            deliveries.c.recipient_id,
            deliveries.c.channel,
            deliveries.c.status,
            deliveries.c.ack_required,
            deliveries.c.created_at,
            deliveries.c.sent_at,
            deliveries.c.delivered_at,
            deliveries.c.message_id,
            deliveries.c.error,
            case((reached(deliveries, sent_is_enough), True), else_=False).label("reached"),
            alerts.c.received_at,
            recipients.c.kind,
            recipients.c.name,
            recipients.c.phone,
            recipients.c.role,
            recipients.c.area_code,
            recipients.c.terminal_id,
        )
        .join(alerts, alerts.c.id == deliveries.c.alert_id)
        .join(recipients, recipients.c.id == deliveries.c.recipient_id)
        .where(_counted())
        .order_by(deliveries.c.id)
    )


async def resolve_chain(store: Store, alert_id: int) -> list[dict[str, Any]] | None:
    """Every revision of the chain ``alert_id`` (any revision) belongs to, oldest first; None if unknown."""
    async with store.read() as conn:
        root = (await conn.execute(select(alerts.c.root_id).where(alerts.c.id == alert_id))).scalar()
        if root is None:
            return None
        rows = await conn.execute(select(alerts).where(alerts.c.root_id == root).order_by(alerts.c.id))
        return [dict(r._mapping) for r in rows]


@dataclass
class ChainRows:
    """What the reports of some chains are counted from, by root id: their warning deliveries, their
    acknowledgements (with the acknowledged revision's ``received_at``) and their door-knock rows."""

    deliveries: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    acks: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    doorknocks: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


async def chain_rows(store: Store, root_ids: Sequence[int], sent_is_enough: Sequence[str]) -> ChainRows:
    """The rows :func:`warnd.report.build_report` counts, for every chain of ``root_ids`` (one query of each
    kind per :data:`CHUNK` chains)."""
    out = ChainRows()
    async with store.read() as conn:
        for start in range(0, len(root_ids), CHUNK):
            ids = list(root_ids[start : start + CHUNK])
            for row in await conn.execute(
                _warning_deliveries(sent_is_enough).where(alerts.c.root_id.in_(ids))
            ):
                out.deliveries[row.root_id].append(dict(row._mapping))
            for row in await conn.execute(
                select(
                    acknowledgements.c.root_id,
                    acknowledgements.c.recipient_id,
                    acknowledgements.c.alert_id,
                    acknowledgements.c.at,
                    acknowledgements.c.channel,
                    alerts.c.received_at,
                )
                .join(alerts, alerts.c.id == acknowledgements.c.alert_id)
                .where(acknowledgements.c.root_id.in_(ids))
                .order_by(acknowledgements.c.at)
            ):
                out.acks[row.root_id].append(dict(row._mapping))
            for row in await conn.execute(
                select(
                    doorknocks.c.root_id,
                    doorknocks.c.recipient_id,
                    doorknocks.c.area_code,
                    doorknocks.c.result,
                    doorknocks.c.result_at,
                ).where(doorknocks.c.root_id.in_(ids))
            ):
                out.doorknocks[row.root_id].append(dict(row._mapping))
    return out


async def ended_without_report(
    store: Store, *, after: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest revision of each chain that is cancelled or expired and has no kept report, oldest chain
    first; only chains whose root id is above ``after`` (a cursor: a chain that fails does not hold up the
    ones after it)."""
    latest = (
        select(alerts.c.root_id, func.max(alerts.c.id).label("last_id"))
        .where(alerts.c.root_id.is_not(None))
        .group_by(alerts.c.root_id)
        .subquery()
    )
    query = (
        select(alerts)
        .join(latest, latest.c.last_id == alerts.c.id)
        .where(
            alerts.c.state.in_(ENDED),
            ~exists().where(alert_reports.c.root_id == alerts.c.root_id),
            *([] if after is None else [alerts.c.root_id > after]),
        )
        .order_by(alerts.c.root_id)
        .limit(limit)
    )
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def keep_report(
    store: Store,
    root_id: int,
    *,
    drill: bool,
    computed_at: datetime,
    report: Mapping[str, Any],
    recommendations: Sequence[Mapping[str, Any]],
) -> bool:
    """Keep a chain's report once (a second writer's insert does nothing); True if this one was kept."""
    statement = (
        store._insert(alert_reports)
        .values(
            root_id=root_id,
            drill=drill,
            computed_at=computed_at,
            report=dict(report),
            recommendations=list(recommendations),
        )
        .on_conflict_do_nothing(index_elements=["root_id"])
    )
    async with store.write() as conn:
        result = await conn.execute(statement)
        return bool(result.rowcount)


async def kept_reports(
    store: Store, *, drill: bool, limit: int = 50, before_root: int | None = None
) -> list[dict[str, Any]]:
    """Kept reports of real alerts (``drill`` False) or of drills, newest chain first."""
    query = (
        select(alert_reports)
        .where(alert_reports.c.drill == drill)
        .order_by(alert_reports.c.root_id.desc())
        .limit(limit)
    )
    if before_root is not None:
        query = query.where(alert_reports.c.root_id < before_root)
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def kept_report(store: Store, alert_id: int) -> dict[str, Any] | None:
    """The kept report of the chain ``alert_id`` (its root or any revision) belongs to."""
    async with store.read() as conn:
        root = (await conn.execute(select(alerts.c.root_id).where(alerts.c.id == alert_id))).scalar()
        row = (
            await conn.execute(select(alert_reports).where(alert_reports.c.root_id == (root or alert_id)))
        ).first()
        return dict(row._mapping) if row else None


async def kept_reports_since(
    store: Store, since: datetime | None, root_id: int | None
) -> list[dict[str, Any]]:
    """Kept reports of real alerts computed since ``since`` (or that chain's, when ``root_id``)."""
    query = select(alert_reports).where(alert_reports.c.drill.is_(False)).order_by(alert_reports.c.root_id)
    if root_id is not None:
        query = query.where(alert_reports.c.root_id == root_id)
    elif since is not None:
        query = query.where(alert_reports.c.computed_at >= since)
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


# --- the history recommendations are computed from -----------------------------------------------------------


async def history(
    store: Store, since: datetime | None, root_id: int | None, sent_is_enough: Sequence[str]
) -> list[dict[str, Any]]:
    """Warning deliveries created since ``since`` (all when None), and every delivery of chain ``root_id``."""
    window = [] if since is None else [deliveries.c.created_at >= since]
    if root_id is not None and window:
        window = [or_(window[0], alerts.c.root_id == root_id)]
    query = _warning_deliveries(sent_is_enough).where(*window)
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def multipart_messages(
    store: Store, channels: Sequence[str], since: datetime | None, root_id: int | None
) -> list[dict[str, Any]]:
    """Rendered messages of ``channels`` with more than one segment that warning deliveries (``purpose =
    'warning'``: not notices to superiors or grid workers) used since ``since`` (or in chain ``root_id``), with
    how many of those deliveries went out (``sent_at`` set).

    Counted per message id in a subquery and joined to the message afterwards: PostgreSQL cannot group by the
    ``json`` column ``data``."""
    if not channels:
        return []
    used = [] if since is None else [deliveries.c.created_at >= since]
    if root_id is not None:
        used = [alerts.c.root_id == root_id]
    names = list(channels)
    sent = (
        select(deliveries.c.message_id, func.count(deliveries.c.sent_at).label("sent"))
        .join(alerts, alerts.c.id == deliveries.c.alert_id)
        .join(messages, messages.c.id == deliveries.c.message_id)
        .where(
            is_warning(deliveries),
            deliveries.c.channel.in_(names),
            messages.c.channel.in_(names),
            messages.c.segments > 1,
            *used,
        )
        .group_by(deliveries.c.message_id)
        .subquery()
    )
    query = (
        select(
            messages.c.id,
            messages.c.alert_id,
            messages.c.channel,
            messages.c.language,
            messages.c.body,
            messages.c.data,
            messages.c.segments,
            alerts.c.root_id,
            sent.c.sent,
        )
        .join(sent, sent.c.message_id == messages.c.id)
        .join(alerts, alerts.c.id == messages.c.alert_id)
        .order_by(messages.c.id)
    )
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def save_channel_preferences(store: Store, rows: Sequence[Mapping[str, Any]], now: datetime) -> int:
    """Write learned channel orders (``recipient_id``, ``channels``, ``evidence``), replacing earlier ones."""
    if not rows:
        return 0
    async with store.write() as conn:
        for row in rows:
            statement = store._insert(channel_preferences).values(
                recipient_id=row["recipient_id"],
                channels=list(row["channels"]),
                evidence=dict(row.get("evidence") or {}),
                computed_at=now,
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["recipient_id"],
                    set_={
                        "channels": statement.excluded.channels,
                        "evidence": statement.excluded.evidence,
                        "computed_at": statement.excluded.computed_at,
                    },
                )
            )
    return len(rows)


__all__ = [
    "CHUNK",
    "ENDED",
    "ChainRows",
    "chain_rows",
    "ended_without_report",
    "history",
    "keep_report",
    "kept_report",
    "kept_reports",
    "kept_reports_since",
    "multipart_messages",
    "resolve_chain",
    "save_channel_preferences",
]
