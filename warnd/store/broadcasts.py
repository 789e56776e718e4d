"""All SQL of manual broadcasts and their two-person approval (warnd/broadcasts.py).

Each decision is one conditional UPDATE (``WHERE status = 'pending'``), so two approvers clicking at once cannot
both send, and a decision is audited in the same transaction as the state it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from warnd.schema import broadcasts, users
from warnd.store import Store, audit_in

PENDING, SENDING, SENT, FAILED, REJECTED, WITHDRAWN = (
    "pending",
    "sending",
    "sent",
    "failed",
    "rejected",
    "withdrawn",
)
STATUSES = (PENDING, SENDING, SENT, FAILED, REJECTED, WITHDRAWN)


class BroadcastStore:
    def __init__(self, store: Store):
        self.store = store

    async def add(
        self, values: Mapping[str, Any], *, now: datetime, actor: str, remote: str | None
    ) -> dict[str, Any]:
        """A new broadcast (pending, or sending when it needs no approval), audited as submitted."""
        async with self.store.write() as conn:
            broadcast_id = int(
                (
                    await conn.execute(
                        insert(broadcasts)
                        .values(**values, submitted_by=actor[:100], submitted_at=now)
                        .returning(broadcasts.c.id)
                    )
                ).scalar_one()
            )
            await audit_in(
                conn,
                now,
                actor,
                "broadcast.submit",
                f"broadcast:{broadcast_id}",
                {
                    "status": values["status"],
                    "reasons": values.get("approval_reasons"),
                    "draft": values["draft"],
                },
                remote,
            )
            row = (await conn.execute(select(broadcasts).where(broadcasts.c.id == broadcast_id))).one()
            return dict(row._mapping)

    async def get(self, broadcast_id: int) -> dict[str, Any] | None:
        async with self.store.read() as conn:
            row = (await conn.execute(select(broadcasts).where(broadcasts.c.id == broadcast_id))).first()
            return dict(row._mapping) if row else None

    async def recent(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(broadcasts).order_by(broadcasts.c.id.desc()).limit(limit)
        if status:
            query = query.where(broadcasts.c.status == status)
        async with self.store.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def count(self, status: str) -> int:
        async with self.store.read() as conn:
            query = select(func.count()).where(broadcasts.c.status == status)
            return int((await conn.execute(query)).scalar_one())

    async def decide(
        self,
        broadcast_id: int,
        *,
        to: str,
        actor: str,
        now: datetime,
        note: str | None,
        action: str,
        remote: str | None,
    ) -> bool:
        """pending → ``to`` (sending for an approval; rejected; withdrawn), only if still pending. True when
        this call made the change."""
        where = (broadcasts.c.id == broadcast_id) & (broadcasts.c.status == PENDING)
        async with self.store.write() as conn:
            changed = (
                await conn.execute(
                    update(broadcasts)
                    .where(where)
                    .values(status=to, decided_by=actor[:100], decided_at=now, note=note)
                )
            ).rowcount
            if changed:
                target = f"broadcast:{broadcast_id}"
                await audit_in(conn, now, actor, action, target, {"note": note} if note else {}, remote)
            return bool(changed)

    async def finish(
        self, broadcast_id: int, *, now: datetime, alert_id: int | None, error: str | None, actor: str
    ) -> None:
        """sending → sent (with the alert) or failed (with the error), audited."""
        status = SENT if alert_id is not None and error is None else FAILED
        async with self.store.write() as conn:
            await conn.execute(
                update(broadcasts)
                .where(broadcasts.c.id == broadcast_id)
                .values(status=status, alert_id=alert_id, error=error[:1000] if error else None)
            )
            detail: dict[str, Any] = {"alert_id": alert_id} if alert_id is not None else {"error": error}
            await audit_in(conn, now, actor, f"broadcast.{status}", f"broadcast:{broadcast_id}", detail, None)

    async def sending(self) -> list[dict[str, Any]]:
        """Broadcasts claimed for sending but not finished (a crash between the claim and the alert)."""
        return await self.recent(SENDING, limit=1000)

    async def approver_phones(self, roles: tuple[str, ...]) -> list[tuple[str, str]]:
        """(name, phone) of every enabled account with one of ``roles`` and a phone on file."""
        query = (
            select(users.c.name, users.c.phone)
            .where(users.c.role.in_(roles), users.c.disabled.is_(False), users.c.phone.is_not(None))
            .order_by(users.c.name)
        )
        async with self.store.read() as conn:
            return [(r.name, r.phone) for r in await conn.execute(query)]
