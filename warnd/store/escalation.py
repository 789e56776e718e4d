"""All SQL of the escalation ladder and the door-knock lists (敲门行动), docs/escalation.md.

A ladder is one person × one alert revision (``escalations``, unique on both); every rung and every end is an
``escalation_events`` row. Ladders are opened with ON CONFLICT DO NOTHING and claimed like the outbox (a lease
token set by one UPDATE, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and every result is fenced by that token, so
any number of nodes can run the sweep at once and a rung is climbed once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, false, func, insert, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.schema import (
    acknowledgements,
    alerts,
    audit_log,
    channel_preferences,
    deliveries,
    delivery_events,
    doorknocks,
    escalation_events,
    escalations,
    group_members,
    recipients,
)
from warnd.store import NOT_SENT, Store, covers, is_warning, reached

# what a door-knocker can record for a household
RESULTS = ("reached", "moved", "not_home")


@dataclass(frozen=True)
class DrillGroups:
    """Who takes part in drills: members of the groups marked ``drill: true`` — by role (``roles``) or by
    explicit membership (``group_members``). A drill's ladder bothers nobody else."""

    roles: tuple[str, ...]
    groups: tuple[str, ...]


def _in_drill(drill: DrillGroups | None, r: Any = recipients) -> Any:
    """The SQL condition "recipient ``r`` takes part in the drill" (true when there is no drill)."""
    if drill is None:
        return true()
    conds: list[Any] = []
    if drill.roles:
        conds.append(r.c.role.in_(list(drill.roles)))
    if drill.groups:
        conds.append(
            r.c.id.in_(
                select(group_members.c.recipient_id).where(group_members.c.group_name.in_(list(drill.groups)))
            )
        )
    return or_(*conds) if conds else false()


@dataclass(frozen=True)
class Opened:
    id: int
    alert_id: int
    recipient_id: int
    reason: str


@dataclass(frozen=True)
class Facts:
    """Where one ladder stands when its rung comes due."""

    alert: dict[str, Any]
    recipient: dict[str, Any]
    acknowledged: bool
    reached: bool
    owes_ack: bool  # a warning delivery of the revision asked the person for 叫应
    ack_deadline: datetime | None
    delivery: dict[str, Any] | None  # the person's most urgent warning delivery of the revision


def _carried(d: Any) -> Any:
    """A warning delivery that went, or is going, to its person (not a no-longer-applies note)."""
    return and_(covers(d), d.c.status.not_in(NOT_SENT))


class EscalationStore:
    def __init__(self, store: Store):
        self.store = store

    # --- opening ------------------------------------------------------------------------------------------------

    async def active_plans(self) -> list[dict[str, Any]]:
        """Active alert revisions (not Cancels) with their plans: the caller keeps those with an escalation."""
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(alerts.c.id, alerts.c.root_id, alerts.c.rules).where(
                    alerts.c.state == "active", alerts.c.msg_type != "Cancel"
                )
            )
            return [dict(r._mapping) for r in rows]

    async def open_due(
        self, alert_ids: Sequence[int], now: datetime, sent_is_enough: Sequence[str]
    ) -> list[Opened]:
        """Open a ladder (first rung due now) for every person of these revisions whose acknowledgement deadline
        passed without an acknowledgement (``unacknowledged``), or whose delivery deadline passed with none of
        their warning deliveries reached (``undelivered``). A ladder that exists (any node's) is left alone, and
        so is a deactivated person.

        Not yet: a person with a warning delivery of the revision still ``queued`` (waiting in the outbox:
        throttled, backing off, being sent) and none reached — the dispatcher is still on it; their ladder opens
        at a later sweep if the delivery ends unreached. (Someone already reached who owes 叫应 is not held up by
        a second channel still queued.)"""
        if not alert_ids:
            return []
        d = deliveries
        acked = exists().where(
            acknowledgements.c.alert_id == d.c.alert_id, acknowledgements.c.recipient_id == d.c.recipient_id
        )
        laddered = exists().where(
            escalations.c.alert_id == d.c.alert_id, escalations.c.recipient_id == d.c.recipient_id
        )
        ack_due = and_(d.c.ack_required.is_(True), d.c.ack_deadline.is_not(None), d.c.ack_deadline <= now)
        deliver_due = and_(d.c.deliver_deadline.is_not(None), d.c.deliver_deadline <= now)
        query = (
            select(
                d.c.alert_id,
                d.c.recipient_id,
                alerts.c.root_id,
                func.max(case((ack_due, 1), else_=0)).label("ack_due"),
                func.max(case((deliver_due, 1), else_=0)).label("deliver_due"),
            )
            .join(recipients, recipients.c.id == d.c.recipient_id)
            .join(alerts, alerts.c.id == d.c.alert_id)
            .where(
                d.c.alert_id.in_(list(alert_ids)),
                _carried(d),
                recipients.c.kind == "person",
                recipients.c.active.is_(True),
                or_(ack_due, deliver_due),
                ~acked,
                ~laddered,
            )
            .group_by(d.c.alert_id, d.c.recipient_id, alerts.c.root_id)
        )
        async with self.store.read() as conn:
            candidates = [dict(r._mapping) for r in await conn.execute(query)]
            if not candidates:
                return []
            found = await conn.execute(
                select(
                    d.c.alert_id,
                    d.c.recipient_id,
                    func.max(case((reached(d, sent_is_enough), 1), else_=0)).label("got"),
                    func.max(case((d.c.status == "queued", 1), else_=0)).label("queued"),
                )
                .where(
                    d.c.alert_id.in_({c["alert_id"] for c in candidates}),
                    d.c.recipient_id.in_({c["recipient_id"] for c in candidates}),
                    _carried(d),
                )
                .group_by(d.c.alert_id, d.c.recipient_id)
            )
            state = {(r.alert_id, r.recipient_id): (bool(r.got), bool(r.queued)) for r in found}
        rows = []
        for c in candidates:
            got, queued = state.get((c["alert_id"], c["recipient_id"]), (False, False))
            if queued and not got:
                continue  # still in the outbox: the dispatcher is on it
            if c["ack_due"]:
                reason = "unacknowledged"  # only an acknowledgement ends it (being reached is not enough)
            elif c["deliver_due"] and not got:
                reason = "undelivered"
            else:
                continue
            rows.append({**c, "reason": reason})
        opened: list[Opened] = []
        async with self.store.write() as conn:
            for c in rows:
                stmt = (
                    self.store._insert(escalations)
                    .values(
                        alert_id=c["alert_id"],
                        root_id=c["root_id"],
                        recipient_id=c["recipient_id"],
                        reason=c["reason"],
                        step=0,
                        state="open",
                        due_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(escalations.c.id)
                )
                new_id = (await conn.execute(stmt)).scalar_one_or_none()
                if new_id is None:
                    continue  # another node opened it first
                why = (
                    "叫应期限已过，仍未确认 (acknowledgement deadline passed without an acknowledgement)"
                    if c["reason"] == "unacknowledged"
                    else "送达期限已过，仍未确认送达 (delivery deadline passed, no delivery confirmed)"
                )
                await conn.execute(
                    insert(escalation_events).values(
                        escalation_id=new_id,
                        at=now,
                        step="opened",
                        reason=why,
                        detail={"reason": c["reason"]},
                    )
                )
                opened.append(Opened(new_id, c["alert_id"], c["recipient_id"], c["reason"]))
        return opened

    # --- claiming -----------------------------------------------------------------------------------------------

    async def claim(
        self, now: datetime, lease_seconds: float, limit: int
    ) -> tuple[str, list[dict[str, Any]]]:
        """Lease up to ``limit`` due open ladders under a new token (one UPDATE … RETURNING)."""
        token = str(uuid.uuid4())
        due = (
            select(escalations.c.id)
            .where(
                escalations.c.state == "open",
                escalations.c.due_at <= now,
                or_(escalations.c.lease_token.is_(None), escalations.c.leased_until <= now),
            )
            .order_by(escalations.c.due_at, escalations.c.id)
            .limit(limit)
        )
        if not self.store.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        async with self.store.write() as conn:
            rows = await conn.execute(
                update(escalations)
                .where(escalations.c.id.in_(due.scalar_subquery()))
                .values(lease_token=token, leased_until=now + timedelta(seconds=lease_seconds))
                .returning(*escalations.c)
            )
            claimed = [dict(r._mapping) for r in rows]
        claimed.sort(key=lambda r: (r["due_at"], r["id"]))
        return token, claimed

    async def facts(self, ladder: Mapping[str, Any], sent_is_enough: Sequence[str]) -> Facts | None:
        alert_id, rid = ladder["alert_id"], ladder["recipient_id"]
        d = deliveries
        async with self.store.read() as conn:
            alert = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).one_or_none()
            person = (await conn.execute(select(recipients).where(recipients.c.id == rid))).one_or_none()
            if alert is None or person is None:
                return None
            acked = (
                await conn.execute(
                    select(acknowledgements.c.id).where(
                        acknowledgements.c.alert_id == alert_id, acknowledgements.c.recipient_id == rid
                    )
                )
            ).first() is not None
            got = (
                await conn.execute(
                    select(d.c.id).where(
                        d.c.alert_id == alert_id,
                        d.c.recipient_id == rid,
                        is_warning(d),
                        reached(d, sent_is_enough),
                    )
                )
            ).first() is not None
            own = [
                dict(r._mapping)
                for r in await conn.execute(
                    select(d)
                    .where(d.c.alert_id == alert_id, d.c.recipient_id == rid, _carried(d))
                    .order_by(d.c.priority, d.c.id)
                )
            ]
        asking = [r for r in own if r["ack_required"]]
        deadlines = [r["ack_deadline"] for r in asking if r["ack_deadline"] is not None]
        return Facts(
            alert=dict(alert._mapping),
            recipient=dict(person._mapping),
            acknowledged=acked,
            reached=got,
            owes_ack=bool(asking),
            ack_deadline=min(deadlines) if deadlines else None,
            delivery=own[0] if own else None,
        )

    # --- results (fenced by the lease token) ---------------------------------------------------------------------

    async def _fence(self, conn: AsyncConnection, ladder_id: int, token: str, **values: Any) -> bool:
        result = await conn.execute(
            update(escalations)
            .where(escalations.c.id == ladder_id, escalations.c.lease_token == token)
            .values(**values)
        )
        return bool(result.rowcount)

    async def advance(
        self,
        ladder_id: int,
        token: str,
        now: datetime,
        *,
        state: str,
        step: int,
        due_at: datetime,
        events: Sequence[tuple[str, str, Mapping[str, Any] | None]],
        outbox: Sequence[Mapping[str, Any]] = (),
        reason: str | None = None,
        resolution: str | None = None,
    ) -> list[int] | None:
        """Land a climb: the ladder's new step / state / due time, its events and the outbox rows of the rung
        (resent warnings, notices; a row already there is left alone), in one transaction, only while the lease
        token still holds the ladder. None when it no longer does; else the ids of the rows created."""
        values: dict[str, Any] = {
            "state": state,
            "step": step,
            "due_at": due_at,
            "lease_token": None,
            "leased_until": None,
            "updated_at": now,
        }
        if reason is not None:
            values["reason"] = reason
        if resolution is not None:
            values["resolution"] = resolution
        created: list[int] = []
        async with self.store.write() as conn:
            if not await self._fence(conn, ladder_id, token, **values):
                return None
            for row in outbox:
                stmt = self.store._insert(deliveries).values(**row).on_conflict_do_nothing()
                new_id = (await conn.execute(stmt.returning(deliveries.c.id))).scalar_one_or_none()
                if new_id is not None:
                    created.append(new_id)
                    await conn.execute(
                        insert(delivery_events).values(
                            delivery_id=new_id,
                            at=now,
                            kind="escalation",
                            detail={"escalation_id": ladder_id, "reason": row.get("reason")},
                        )
                    )
            for step_name, why, detail in events:
                await conn.execute(
                    insert(escalation_events).values(
                        escalation_id=ladder_id, at=now, step=step_name, reason=why, detail=dict(detail or {})
                    )
                )
        return created

    async def fail(
        self,
        ladder_id: int,
        token: str,
        now: datetime,
        *,
        error: str,
        retry_at: datetime,
        max_failures: int,
        exhausted_reason: str,
    ) -> tuple[int, bool] | None:
        """A climb failed (an exception): record an ``error`` event with its text and give the ladder back, due
        again at ``retry_at``; the ``max_failures``-th failure ends it ``exhausted`` (``exhausted_reason``).
        Failures are counted by the ladder's ``error`` events. Returns (failures so far, exhausted), or None when
        the lease no longer holds the ladder."""
        async with self.store.write() as conn:
            before = (
                await conn.execute(
                    select(func.count())
                    .select_from(escalation_events)
                    .where(
                        escalation_events.c.escalation_id == ladder_id, escalation_events.c.step == "error"
                    )
                )
            ).scalar_one()
            failures = int(before) + 1
            exhausted = failures >= max_failures
            values: dict[str, Any] = {
                "lease_token": None,
                "leased_until": None,
                "due_at": now if exhausted else retry_at,
                "updated_at": now,
            }
            if exhausted:
                values.update(state="exhausted", resolution=exhausted_reason.split(" (")[0][:500])
            if not await self._fence(conn, ladder_id, token, **values):
                return None
            await conn.execute(
                insert(escalation_events).values(
                    escalation_id=ladder_id,
                    at=now,
                    step="error",
                    reason=f"升级步骤出错（第{failures}次）：{error[:1000]} (climb failed, attempt {failures})",
                    detail={
                        "error": error[:1000],
                        "failures": failures,
                        "retry_at": None if exhausted else retry_at.isoformat(),
                    },
                )
            )
            if exhausted:
                await conn.execute(
                    insert(escalation_events).values(
                        escalation_id=ladder_id,
                        at=now,
                        step="exhausted",
                        reason=exhausted_reason,
                        detail={"failures": failures},
                    )
                )
            return failures, exhausted

    # --- what the rungs look up -----------------------------------------------------------------------------------

    async def people(
        self, area_codes: Sequence[str], roles: Sequence[str], *, drill: DrillGroups | None = None
    ) -> list[dict[str, Any]]:
        """Active people with one of ``roles`` whose area is exactly one of ``area_codes`` (taking part in the
        drill, for a drill)."""
        if not area_codes or not roles:
            return []
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(recipients)
                .where(
                    recipients.c.active.is_(True),
                    recipients.c.kind == "person",
                    recipients.c.area_code.in_(list(area_codes)),
                    recipients.c.role.in_(list(roles)),
                    _in_drill(drill),
                )
                .order_by(recipients.c.id)
            )
            return [dict(r._mapping) for r in rows]

    async def person_by_phone(self, phone: str, *, drill: DrillGroups | None = None) -> dict[str, Any] | None:
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    select(recipients)
                    .where(
                        recipients.c.phone == phone,
                        recipients.c.active.is_(True),
                        recipients.c.kind == "person",
                        _in_drill(drill),
                    )
                    .order_by(recipients.c.id)
                )
            ).first()
            return dict(row._mapping) if row else None

    async def recipient(self, recipient_id: int) -> dict[str, Any] | None:
        async with self.store.read() as conn:
            row = (
                await conn.execute(select(recipients).where(recipients.c.id == recipient_id))
            ).one_or_none()
            return dict(row._mapping) if row else None

    async def terminals(self, area_code: str, *, drill: DrillGroups | None = None) -> list[dict[str, Any]]:
        """The active terminals (loudspeakers) of exactly this area (taking part in the drill, for a drill)."""
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(recipients)
                .where(
                    recipients.c.active.is_(True),
                    recipients.c.kind == "terminal",
                    recipients.c.area_code == area_code,
                    _in_drill(drill),
                )
                .order_by(recipients.c.id)
            )
            return [dict(r._mapping) for r in rows]

    async def had(self, alert_id: int, recipient_ids: Sequence[int]) -> set[tuple[int, str]]:
        """(recipient, channel) pairs that already have a warning delivery of this revision, whatever its fate."""
        if not recipient_ids:
            return set()
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(deliveries.c.recipient_id, deliveries.c.channel)
                .where(
                    deliveries.c.alert_id == alert_id,
                    deliveries.c.recipient_id.in_(list(recipient_ids)),
                    is_warning(deliveries),
                )
                .distinct()
            )
            return {(r.recipient_id, r.channel) for r in rows}

    async def channel_order(self, recipient_id: int) -> list[str] | None:
        async with self.store.read() as conn:
            value = (
                await conn.execute(
                    select(channel_preferences.c.channels).where(
                        channel_preferences.c.recipient_id == recipient_id
                    )
                )
            ).scalar_one_or_none()
            return [str(c) for c in value] if isinstance(value, list) else None

    # --- door-knock lists -------------------------------------------------------------------------------------------

    def _reached(self, root_id: int, sent_is_enough: Sequence[str], r: Any = recipients) -> Any:
        """The person was reached by a warning of the chain."""
        d = deliveries.alias("dk_d")
        chain = select(alerts.c.id).where(alerts.c.root_id == root_id).scalar_subquery()
        return exists().where(
            d.c.recipient_id == r.c.id, d.c.alert_id.in_(chain), is_warning(d), reached(d, sent_is_enough)
        )

    def _acknowledged(self, root_id: int, r: Any = recipients) -> Any:
        """The person acknowledged one of the chain's revisions."""
        return exists().where(
            acknowledgements.c.recipient_id == r.c.id, acknowledgements.c.root_id == root_id
        )

    async def household_informed(
        self,
        root_id: int,
        household: str,
        recipient_id: int,
        sent_is_enough: Sequence[str],
        *,
        ack_only: bool = False,
    ) -> dict[str, Any] | None:
        """Another member of the household who acknowledged for the chain — or, unless ``ack_only`` (the
        person's ladder is ``unacknowledged``: only an acknowledgement counts), was reached by it — if any."""
        informed = (
            self._acknowledged(root_id)
            if ack_only
            else or_(self._reached(root_id, sent_is_enough), self._acknowledged(root_id))
        )
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    select(recipients.c.id, recipients.c.name)
                    .where(
                        recipients.c.household == household,
                        recipients.c.id != recipient_id,
                        informed,
                    )
                    .order_by(recipients.c.id)
                )
            ).first()
            return dict(row._mapping) if row else None

    async def add_doorknock(self, row: Mapping[str, Any], token: str, ladder_id: int) -> bool | None:
        """Put a person on the chain's list (a person already there stays as they are). None: the lease is lost."""
        async with self.store.write() as conn:
            if not await self._fence(conn, ladder_id, token, updated_at=row["added_at"]):
                return None
            stmt = self.store._insert(doorknocks).values(**row).on_conflict_do_nothing()
            return (await conn.execute(stmt.returning(doorknocks.c.id))).scalar_one_or_none() is not None

    async def doorknock_rows(
        self, root_id: int, sent_is_enough: Sequence[str], village: str | None = None
    ) -> list[dict[str, Any]]:
        """Everyone on the chain's door-knock list (of one village), with who they are, whether a warning of the
        chain reached them (``reached``), whether they acknowledged it (``acknowledged``) and why their ladder
        put them there (``ladder_reason``: undelivered | unacknowledged, from the ladder of the revision that
        listed them). Whether that makes them informed is the caller's rule (warnd.escalation)."""
        query = (
            select(
                doorknocks,
                recipients.c.name,
                recipients.c.phone,
                recipients.c.role,
                recipients.c.address,
                recipients.c.vulnerable,
                self._reached(root_id, sent_is_enough).label("reached"),
                self._acknowledged(root_id).label("acknowledged"),
                escalations.c.reason.label("ladder_reason"),
            )
            .join(recipients, recipients.c.id == doorknocks.c.recipient_id)
            .outerjoin(
                escalations,
                and_(
                    escalations.c.alert_id == doorknocks.c.alert_id,
                    escalations.c.recipient_id == doorknocks.c.recipient_id,
                ),
            )
            .where(doorknocks.c.root_id == root_id)
            .order_by(doorknocks.c.area_code, doorknocks.c.household, doorknocks.c.id)
        )
        if village is not None:
            query = query.where(doorknocks.c.area_code == village)
        async with self.store.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def record_result(
        self,
        root_id: int,
        household: str,
        *,
        result: str,
        note: str | None,
        by: str,
        now: datetime,
        actor: str,
        village: str | None = None,
        remote: str | None = None,
    ) -> int:
        """Check a household off (every row of it in the chain, of ``village`` when given), audited in the same
        transaction. Returns how many people's rows changed (0: no such household on the list)."""
        if result not in RESULTS:
            raise ValueError(f"result must be one of {', '.join(RESULTS)}")
        where = [doorknocks.c.root_id == root_id, doorknocks.c.household == household]
        if village is not None:
            where.append(doorknocks.c.area_code == village)
        async with self.store.write() as conn:
            changed = (
                await conn.execute(
                    update(doorknocks)
                    .where(*where)
                    .values(result=result, result_at=now, result_by=by[:100], note=(note or None))
                )
            ).rowcount or 0
            if changed:
                await conn.execute(
                    insert(audit_log).values(
                        at=now,
                        actor=actor[:100],
                        action="doorknock.result",
                        target=f"alert-chain:{root_id}/household:{household}"[:200],
                        detail={
                            "result": result,
                            "note": note,
                            "by": by,
                            "village": village,
                            "people": changed,
                        },
                        remote=remote,
                    )
                )
            return changed

    # --- reading the ladders -------------------------------------------------------------------------------------------

    async def ladders(self, root_id: int) -> list[dict[str, Any]]:
        """Every ladder of the chain, oldest first, with its person and its events."""
        async with self.store.read() as conn:
            rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    select(
                        escalations,
                        recipients.c.name,
                        recipients.c.phone,
                        recipients.c.role,
                        recipients.c.area_code,
                    )
                    .join(recipients, recipients.c.id == escalations.c.recipient_id)
                    .where(escalations.c.root_id == root_id)
                    .order_by(escalations.c.id)
                )
            ]
            if not rows:
                return []
            events: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
            for e in await conn.execute(
                select(escalation_events)
                .where(escalation_events.c.escalation_id.in_(list(events)))
                .order_by(escalation_events.c.id)
            ):
                events[e.escalation_id].append(
                    {"at": e.at, "step": e.step, "reason": e.reason, "detail": e.detail or {}}
                )
        for r in rows:
            r["events"] = events[r["id"]]
        return rows
