"""All SQL of 叫应 (acknowledgements): recording an acknowledgement, a person's open obligations, what a one-tap
link points at, and a chain's board (docs/acknowledgement.md).

An *obligation* is one person × one alert revision: a warning delivery of that revision to that person with
``ack_required`` (not the note that the warning no longer applies to them, not a Cancel's message, not a delivery
that never went out because it was suppressed, superseded or expired). An Update asks again: the obligation of a
chain is on the newest revision each person was sent. The first acknowledgement of (revision, person) counts;
a repeat returns it and is only written to the audit log (``ack.repeat``).

Drills and real warnings never answer for each other: a reply SMS acknowledges only obligations of the same kind
(drill = status Exercise or Test, or real) as the newest ack-asking message sent to that person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select

from warnd.cap.model import DRILL_STATUSES
from warnd.schema import acknowledgements, alerts, deliveries, recipients
from warnd.store import NOT_SENT, Store, audit_in, covers, is_warning

CHANNELS = ("reply", "link", "call")


@dataclass(frozen=True)
class Ack:
    id: int
    alert_id: int
    root_id: int
    recipient_id: int
    delivery_id: int | None
    at: datetime
    channel: str
    recorded_by: str
    detail: dict[str, Any]
    already: bool = False  # this was a repeat: the acknowledgement that counts is the earlier one (this row)
    name: str | None = None  # the person's (when read with their recipient row)
    phone: str | None = None  # raw: mask before showing

    @property
    def note(self) -> str | None:
        note = self.detail.get("note")
        return str(note) if note else None


@dataclass(frozen=True)
class Obligation:
    """One person must acknowledge one alert revision."""

    alert_id: int
    root_id: int
    recipient_id: int
    delivery_id: int
    deadline: datetime | None


@dataclass(frozen=True)
class LinkTarget:
    """What a 叫应 link (alert revision id, recipient id) points at."""

    alert: dict[str, Any]  # the revision the link was sent with
    latest: dict[str, Any]  # the newest revision of its chain (the same row when not updated)
    recipient: dict[str, Any]
    delivery_id: int | None  # the person's warning delivery of that revision
    ack: Ack | None  # their acknowledgement of that revision, if any


@dataclass(frozen=True)
class Sent:
    """One warning delivery of a chain to a person."""

    alert_id: int
    delivery_id: int
    created_at: datetime


@dataclass(frozen=True)
class ChainRecipient:
    """A person a chain's warning was sent to, with their warning deliveries of the chain in the order an
    operator's call acknowledges them: revisions that asked for 叫应 first, then newer revisions first."""

    recipient: dict[str, Any]
    sent: list[Sent]


def _ack(row: Mapping[str, Any], already: bool = False) -> Ack:
    return Ack(
        name=row.get("name"),
        phone=row.get("phone"),
        id=row["id"],
        alert_id=row["alert_id"],
        root_id=row["root_id"],
        recipient_id=row["recipient_id"],
        delivery_id=row["delivery_id"],
        at=row["at"],
        channel=row["channel"],
        recorded_by=row["recorded_by"],
        detail=dict(row["detail"] or {}),
        already=already,
    )


def _obliging(d: Any = deliveries, a: Any = alerts, r: Any = recipients) -> Any:
    """A delivery that asked its person to acknowledge the warning (see the module docstring)."""
    return and_(
        covers(d),
        d.c.ack_required.is_(True),
        d.c.status.not_in(NOT_SENT),
        a.c.msg_type != "Cancel",
        r.c.kind == "person",
    )


def _not_acknowledged() -> Any:
    return ~exists().where(
        acknowledgements.c.alert_id == deliveries.c.alert_id,
        acknowledgements.c.recipient_id == deliveries.c.recipient_id,
    )


class AckStore:
    def __init__(self, store: Store):
        self.store = store

    # --- writing ------------------------------------------------------------------------------------------------

    async def record(
        self,
        *,
        alert_id: int,
        recipient_id: int,
        at: datetime,
        channel: str,
        recorded_by: str,
        delivery_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
        audit_action: str | None = None,
        remote: str | None = None,
    ) -> Ack:
        """Record that the person acknowledged this revision. The first acknowledgement counts: a repeat returns
        the existing one (``already=True``) and is written to the audit log as ``ack.repeat``. ``audit_action``
        (e.g. ``ack.record`` for an operator's call) also audits the first one, in the same transaction."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown acknowledgement channel {channel!r}")
        detail = dict(detail or {})
        async with self.store.write() as conn:
            root_id = (
                await conn.execute(select(alerts.c.root_id).where(alerts.c.id == alert_id))
            ).scalar_one_or_none()
            if root_id is None:
                raise LookupError(f"no alert {alert_id}")
            stmt = (
                self.store._insert(acknowledgements)
                .values(
                    alert_id=alert_id,
                    root_id=root_id,
                    recipient_id=recipient_id,
                    delivery_id=delivery_id,
                    at=at,
                    channel=channel,
                    recorded_by=recorded_by[:100],
                    detail=detail,
                )
                .on_conflict_do_nothing(index_elements=["alert_id", "recipient_id"])
                .returning(acknowledgements.c.id)
            )
            new_id = (await conn.execute(stmt)).scalar_one_or_none()
            row = (
                await conn.execute(
                    select(acknowledgements, recipients.c.name, recipients.c.phone)
                    .join(recipients, recipients.c.id == acknowledgements.c.recipient_id)
                    .where(
                        acknowledgements.c.alert_id == alert_id,
                        acknowledgements.c.recipient_id == recipient_id,
                    )
                )
            ).one()
            ack = _ack(dict(row._mapping), already=new_id is None)
            target = f"alert:{alert_id}/recipient:{recipient_id}"
            if ack.already:
                await audit_in(
                    conn,
                    at,
                    recorded_by,
                    "ack.repeat",
                    target,
                    {
                        "channel": channel,
                        **detail,
                        "first": {"at": ack.at.isoformat(), "channel": ack.channel, "by": ack.recorded_by},
                    },
                    remote,
                )
            elif audit_action:
                await audit_in(
                    conn, at, recorded_by, audit_action, target, {"channel": channel, **detail}, remote
                )
            return ack

    async def audit(
        self,
        at: datetime,
        actor: str,
        action: str,
        target: str | None,
        detail: Mapping[str, Any],
        remote: str | None = None,
    ) -> None:
        await self.store.audit(at, actor, action, target=target, detail=detail, remote=remote)

    # --- reading ------------------------------------------------------------------------------------------------

    async def people_by_phone(self, phone: str) -> list[dict[str, Any]]:
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(recipients).where(recipients.c.phone == phone, recipients.c.kind == "person")
            )
            return [dict(r._mapping) for r in rows]

    async def newest_asking_is_drill(self, recipient_ids: Sequence[int]) -> bool | None:
        """Whether the newest ack-asking message sent to these people (newest ``sent_at``; one not sent yet only
        when none was) was of a drill (status Exercise or Test); None when nothing ever asked them."""
        if not recipient_ids:
            return None
        query = (
            select(alerts.c.status)
            .select_from(deliveries)
            .join(alerts, alerts.c.id == deliveries.c.alert_id)
            .join(recipients, recipients.c.id == deliveries.c.recipient_id)
            .where(deliveries.c.recipient_id.in_(list(recipient_ids)), _obliging())
            .order_by(deliveries.c.sent_at.is_(None), deliveries.c.sent_at.desc(), deliveries.c.id.desc())
            .limit(1)
        )
        async with self.store.read() as conn:
            status = (await conn.execute(query)).scalar_one_or_none()
        return None if status is None else status in DRILL_STATUSES

    async def open_obligations(
        self, recipient_ids: Sequence[int], at: datetime, *, drill: bool | None = None
    ) -> list[Obligation]:
        """These people's obligations on alerts that are active (and not past ``expires``) and that they have
        not acknowledged yet, latest revision first; only drills' (``drill`` True) or only real alerts'
        (False) when ``drill`` is given."""
        if not recipient_ids:
            return []
        kind = []
        if drill is not None:
            kind = [alerts.c.status.in_(DRILL_STATUSES) if drill else alerts.c.status.not_in(DRILL_STATUSES)]
        query = (
            select(
                deliveries.c.alert_id,
                alerts.c.root_id,
                deliveries.c.recipient_id,
                func.max(deliveries.c.id).label("delivery_id"),
                func.min(deliveries.c.ack_deadline).label("deadline"),
            )
            .join(alerts, alerts.c.id == deliveries.c.alert_id)
            .join(recipients, recipients.c.id == deliveries.c.recipient_id)
            .where(
                deliveries.c.recipient_id.in_(list(recipient_ids)),
                _obliging(),
                alerts.c.state == "active",
                or_(alerts.c.expires.is_(None), alerts.c.expires > at),
                _not_acknowledged(),
                *kind,
            )
            .group_by(deliveries.c.alert_id, alerts.c.root_id, deliveries.c.recipient_id)
            .order_by(deliveries.c.alert_id.desc(), deliveries.c.recipient_id)
        )
        async with self.store.read() as conn:
            return [
                Obligation(r.alert_id, r.root_id, r.recipient_id, r.delivery_id, _aware(r.deadline))
                for r in await conn.execute(query)
            ]

    async def link_target(self, alert_id: int, recipient_id: int) -> LinkTarget | None:
        async with self.store.read() as conn:
            alert = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).first()
            person = (await conn.execute(select(recipients).where(recipients.c.id == recipient_id))).first()
            if alert is None or person is None:
                return None
            latest = await self.store.latest_in_chain(alert._mapping["root_id"])
            delivery_id = (
                await conn.execute(
                    select(func.max(deliveries.c.id)).where(
                        deliveries.c.alert_id == alert_id,
                        deliveries.c.recipient_id == recipient_id,
                        is_warning(deliveries),
                    )
                )
            ).scalar_one_or_none()
            ack = (
                await conn.execute(
                    select(acknowledgements).where(
                        acknowledgements.c.alert_id == alert_id,
                        acknowledgements.c.recipient_id == recipient_id,
                    )
                )
            ).first()
        return LinkTarget(
            alert=dict(alert._mapping),
            latest=latest or dict(alert._mapping),
            recipient=dict(person._mapping),
            delivery_id=delivery_id,
            ack=_ack(dict(ack._mapping)) if ack else None,
        )

    async def chain_recipient(self, root_id: int, recipient: str) -> ChainRecipient | None:
        """A person the chain's warning was sent to, by phone number or recipient id (a phone number wins over
        an equal id), with their warning deliveries of the chain: those that asked them to acknowledge first,
        then the newest revision. None if not a recipient."""
        by = recipients.c.phone == recipient
        if recipient.isascii() and recipient.isdigit() and len(recipient) <= 10:  # not "²": int() refuses it
            by = or_(by, recipients.c.id == int(recipient))
        query = (
            select(
                recipients,
                deliveries.c.alert_id.label("_alert_id"),
                deliveries.c.id.label("_delivery_id"),
                deliveries.c.created_at.label("_created_at"),
            )
            .join(deliveries, deliveries.c.recipient_id == recipients.c.id)
            .join(alerts, alerts.c.id == deliveries.c.alert_id)
            .where(
                alerts.c.root_id == root_id,
                covers(deliveries),
                alerts.c.msg_type != "Cancel",
                recipients.c.kind == "person",
                by,
            )
            .order_by(
                (recipients.c.phone == recipient).desc(),
                recipients.c.id,
                deliveries.c.ack_required.desc(),
                deliveries.c.alert_id.desc(),
                deliveries.c.id.desc(),
            )
        )
        async with self.store.read() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(query)]
        if not rows:
            return None
        person = rows[0]["id"]
        sent = [
            Sent(r.pop("_alert_id"), r.pop("_delivery_id"), r.pop("_created_at"))
            for r in rows
            if r["id"] == person
        ]
        return ChainRecipient(recipient=rows[0], sent=sent)

    async def board(self, root_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The chain's obligations (one per person: the newest revision they were asked on, with its deadline
        and acknowledgement if any) and every acknowledgement of the chain (also of superseded revisions)."""
        person = [
            recipients.c.id.label("recipient_id"),
            recipients.c.name,
            recipients.c.role,
            recipients.c.phone,
            recipients.c.area_code,
        ]
        obligations = (
            select(
                *person,
                deliveries.c.alert_id,
                func.min(deliveries.c.ack_deadline).label("deadline"),
            )
            .join(deliveries, deliveries.c.recipient_id == recipients.c.id)
            .join(alerts, alerts.c.id == deliveries.c.alert_id)
            .where(alerts.c.root_id == root_id, _obliging())
            .group_by(*person, deliveries.c.alert_id)
            .order_by(deliveries.c.alert_id)
        )
        acks = (
            select(acknowledgements, *person[1:])
            .join(recipients, recipients.c.id == acknowledgements.c.recipient_id)
            .where(acknowledgements.c.root_id == root_id)
            .order_by(acknowledgements.c.at, acknowledgements.c.id)
        )
        async with self.store.read() as conn:
            newest: dict[int, dict[str, Any]] = {}
            for r in await conn.execute(obligations):  # oldest revision first: the newest one stays
                newest[r.recipient_id] = {**r._mapping, "deadline": _aware(r.deadline)}
            ack_rows = [dict(r._mapping) for r in await conn.execute(acks)]
        by_key = {(a["alert_id"], a["recipient_id"]): a for a in ack_rows}
        out = []
        for item in newest.values():
            item["ack"] = by_key.get((item["alert_id"], item["recipient_id"]))
            out.append(item)
        return out, ack_rows


def _aware(value: Any) -> datetime | None:
    """Aggregates (min/max) bypass the column type on SQLite: bring them back as aware UTC datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a datetime: {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
