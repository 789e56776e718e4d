"""All SQL of editing subscribers through the API (warnd/api_admin.py, docs/admin.md).

People from config (``source = 'config'``) are only read here: every change is a conditional statement
(``WHERE source <> 'config'``), audited in the same transaction. Removing someone never deletes the row: it is
marked inactive (``active = false``), which every audience query already requires, so their delivery history,
叫应 and door-knock rows keep pointing at them. (Deleting is not safe even for a person with no history yet:
fan-out reads recipients and inserts their deliveries in separate transactions, and a row deleted in between
would make the whole batch of deliveries fail its foreign key.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from warnd.config import area_prefix
from warnd.schema import group_members, recipients
from warnd.store import Store, _prefix_range, audit_in

PERSON = "person"
CONFIG = "config"
# the recipients columns a subscriber's edit may change (RowChecker's row minus key, kind and groups)
EDITABLE = (
    "name",
    "phone",
    "role",
    "area_code",
    "lat",
    "lon",
    "language",
    "address",
    "household",
    "vulnerable",
    "superior",
)


@dataclass(frozen=True)
class SubscriberFilters:
    """What ``GET /api/v1/subscribers`` narrows by (all optional, all together)."""

    name: str | None = None  # part of the name
    phone_suffix: str | None = None  # the last digits of the phone (with name: either matches)
    village: str | None = None  # an admin code (a township's covers its villages) or a digit prefix
    role: str | None = None
    group: str | None = None  # explicit members, and everyone with one of ``group_roles``
    group_roles: tuple[str, ...] = ()
    source: str | None = None  # config | import
    state: str = "active"  # active | removed | all


def _editable(recipient_id: int) -> ColumnElement[bool]:
    """The recipient ``recipient_id`` if an operator may change it: an active person not from config."""
    r = recipients
    return and_(r.c.id == recipient_id, r.c.kind == PERSON, r.c.source != CONFIG, r.c.active.is_(True))


class SubscriberStore:
    def __init__(self, store: Store):
        self.store = store

    async def page(self, filters: SubscriberFilters, *, after_id: int, limit: int) -> list[dict[str, Any]]:
        """A keyset page of people in id order (``after_id``: the last id of the previous page), with their
        explicit groups as ``a|b``."""
        r = recipients
        conds: list[Any] = [r.c.id > after_id]
        matches = []
        if filters.name:
            matches.append(r.c.name.contains(filters.name, autoescape=True))
        if filters.phone_suffix:
            matches.append(r.c.phone.endswith(filters.phone_suffix, autoescape=True))
        if matches:
            conds.append(or_(*matches))
        if filters.village:
            conds.append(_prefix_range(r.c.area_code, area_prefix(filters.village)))
        if filters.role:
            conds.append(r.c.role == filters.role)
        if filters.group:
            member = r.c.id.in_(
                select(group_members.c.recipient_id).where(group_members.c.group_name == filters.group)
            )
            conds.append(or_(member, r.c.role.in_(filters.group_roles)) if filters.group_roles else member)
        if filters.source:
            conds.append(r.c.source == filters.source)
        if filters.state != "all":
            conds.append(r.c.active.is_(filters.state == "active"))
        query = self.store.recipients_with_groups(PERSON).where(*conds).order_by(r.c.id).limit(limit)
        async with self.store.read() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def get(self, recipient_id: int) -> dict[str, Any] | None:
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    self.store.recipients_with_groups(PERSON).where(recipients.c.id == recipient_id)
                )
            ).first()
            return dict(row._mapping) if row else None

    async def by_keys(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """id, source and active of the recipients with these keys (a person's key is their phone)."""
        r = recipients
        query = select(r.c.id, r.c.key, r.c.source, r.c.active).where(r.c.key.in_(list(keys)))
        async with self.store.read() as conn:
            return {row.key: dict(row._mapping) for row in await conn.execute(query)}

    async def update(
        self,
        recipient_id: int,
        row: Mapping[str, Any],
        *,
        now: datetime,
        actor: str,
        remote: str | None,
        detail: Mapping[str, Any],
    ) -> bool:
        """Replace an active, non-config person's fields and explicit groups with ``row`` (RowChecker's row:
        key, the EDITABLE columns, groups ``a|b``); audited as ``subscribers.update``. False when no such
        person (or one from config, or removed)."""
        r = recipients
        async with self.store.write() as conn:
            changed = (
                await conn.execute(
                    update(r)
                    .where(_editable(recipient_id))
                    .values(key=row["key"], updated_at=now, **{c: row[c] for c in EDITABLE})
                )
            ).rowcount
            if not changed:
                return False
            await conn.execute(delete(group_members).where(group_members.c.recipient_id == recipient_id))
            groups = [g for g in (row["groups"] or "").split("|") if g]
            if groups:
                await conn.execute(
                    insert(group_members),
                    [{"group_name": g, "recipient_id": recipient_id} for g in groups],
                )
            await audit_in(
                conn, now, actor, "subscribers.update", f"recipient:{recipient_id}", detail, remote
            )
            return True

    async def remove(
        self, recipient_id: int, *, now: datetime, actor: str, remote: str | None, detail: Mapping[str, Any]
    ) -> bool:
        """Mark an active, non-config person inactive (out of every audience and export; history kept),
        audited as ``subscribers.remove``. False when there is no such active person."""
        r = recipients
        async with self.store.write() as conn:
            changed = (
                await conn.execute(
                    update(r).where(_editable(recipient_id)).values(active=False, updated_at=now)
                )
            ).rowcount
            if changed:
                await audit_in(
                    conn, now, actor, "subscribers.remove", f"recipient:{recipient_id}", detail, remote
                )
            return bool(changed)
