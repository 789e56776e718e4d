"""All SQL lives here. The pipeline, dispatcher, API and CLI call these methods and never build queries.

SQLite (the embedded default) runs in WAL mode with one writer connection per process and write transactions
begun IMMEDIATE (``principles.md``: concurrent aiosqlite writers hit "database is locked"); reads use their own
pool. PostgreSQL uses one pool and ``FOR UPDATE SKIP LOCKED`` claims.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Select,
    and_,
    bindparam,
    case,
    delete,
    event,
    false,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from warnd.config import area_prefix
from warnd.hazards import COLOUR_LABELS
from warnd.receipts import PART_RANK, Verdict, classify, delivery_status, part_state
from warnd.schema import (
    UTCDateTime,
    acknowledgements,
    alerts,
    audit_log,
    deliveries,
    delivery_events,
    delivery_parts,
    doorknocks,
    feed_entries,
    feed_state,
    gauge_readings,
    group_members,
    hydro_state,
    messages,
    metadata,
    naive_utc,
    payloads,
    recipients,
)
from warnd.store.cluster import flag_expired_leases, one_at_a_time

# delivery statuses that mean the recipient was reached: sent (the provider / broker accepted it; no receipt
# says otherwise yet) and delivered (every part's receipt said so). A receipt's failed is not among them.
RECEIVED = ("sent", "delivered")
# statuses a receipt can move (docs/feedback.md): sent → delivered | failed, delivered → failed (a failed part)
RECEIPT_STATUSES = ("sent", "delivered", "failed")
# ``deliveries.rules`` of an Update's short note to someone no longer inside its area: it covers nobody
NO_LONGER_APPLIES = "no-longer-applies"
# why a suppressed delivery goes out after all (:meth:`Store.release_suppressed`), by what ended the cover
RELEASED_BECAUSE = {
    "cancelled": ("已解除", "was cancelled"),
    "expired": ("已到期", "expired"),
    "updated": (
        "已降级或调整范围，不再覆盖该接收人",
        "was downgraded or moved and no longer covers this recipient",
    ),
}
# failed_over: not sent on its channel (circuit open, terminal offline, retries exhausted); alternate deliveries
# (another channel, or the village's grid workers) carry the warning instead (docs/failover.md)
# never left warnd for this recipient: another warning covered them, a later revision replaced it, or it expired
NOT_SENT = ("suppressed", "superseded", "expired")
FINAL = ("sent", "delivered", "failed", "failed_over", "suppressed", "superseded", "expired")


@dataclass(frozen=True)
class AudienceQuery:
    """Who one rule target (or a manual broadcast) reaches, in SQL-checkable terms.

    The alert's own area (geocodes, polygons) is applied in Python by the audience stage; this narrows the rows
    it has to look at: ``area_prefixes`` (admin-code prefixes, any of), ``bbox`` (lat/lon box of the alert's
    geometry) and the rule's own ``rule_prefixes``.
    """

    groups: tuple[str, ...] | None  # None = everyone (manual broadcast to areas)
    roles: tuple[str, ...] = ()  # group roles: members by role
    address: str = "any"  # phone | push | terminal | any
    area_prefixes: tuple[str, ...] = ()
    area_ancestors: tuple[str, ...] = ()  # 12-digit codes above the alert's geocodes (responsible offices)
    bbox: tuple[float, float, float, float] | None = None  # min_lat, min_lon, max_lat, max_lon
    rule_prefixes: tuple[str, ...] = ()
    everywhere: bool = False  # no area restriction from the alert (manual broadcast to groups)


@dataclass(frozen=True)
class Feedback:
    """What became of one report (:meth:`Store.record_feedback`).

    outcome: ``matched`` (applied to its delivery's parts), ``duplicate`` (the same state for the same part(s)
    again: recorded, counted once), ``recorded`` (kept on the delivery, changes nothing: not sent yet, or never
    sent, or no such part), ``unknown`` (no delivery: kept in the audit log), ``ambiguous`` (a provider id shared
    by several deliveries and nothing to tell them apart: audit log)."""

    outcome: str
    delivery_id: int | None = None
    status: str | None = None
    late: bool = False


@dataclass(frozen=True)
class Claimed:
    delivery: Mapping[str, Any]
    recipient: Mapping[str, Any]
    message: Mapping[str, Any]
    alert: Mapping[str, Any]
    references: tuple[str, ...] = ()  # earlier sent deliveries' idempotency keys (Update/Cancel; see claim)


def covers(d: Any) -> Any:
    """A delivery of an active warning covers its recipient, unless it is the note that it no longer does (and
    unless it is a notice about the warning, not the warning)."""
    return and_(is_warning(d), or_(d.c.rules.is_(None), d.c.rules != NO_LONGER_APPLIES))


def reached(d: Any, sent_is_enough: Sequence[str]) -> Any:
    """A delivery (table or alias ``d``) that reached its recipient: delivered, or sent on a channel whose
    provider never reports delivery (``warnd.receipts.sent_is_enough``). The one definition escalation and
    coverage share."""
    return or_(
        d.c.status == "delivered",
        and_(d.c.status == "sent", d.c.channel.in_(list(sent_is_enough))) if sent_is_enough else false(),
    )


def is_warning(d: Any) -> Any:
    """The alert itself, not a notice about it (a superior's 叫应 reminder, a grid worker's door-knock task)."""
    return d.c.purpose == "warning"


def _prefix_range(column: Any, prefix: str) -> Any:
    """``column LIKE 'prefix%'`` as an index-friendly range."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(column >= prefix, column < upper)


# ids per ``IN (…)`` list: well under SQLite's and asyncpg's bound-parameter limits
_IN_CHUNK = 5000


def _b(name: str, column: Any) -> Any:
    """A bound parameter typed like ``column`` (so timestamps go through UTCDateTime)."""
    return bindparam(name, type_=column.type)


# Driver-level conversions, by column type, for statements run past SQLAlchemy's type processing
# (Store._executemany); other types pass as they are
_DRIVER_VALUE: dict[type, Callable[[Any], Any]] = {UTCDateTime: naive_utc, JSON: json.dumps}


# What fan-out and failover need of a recipient (rendering, area checks, addressing), no more: read per
# recipient of every fan-out
_AUDIENCE_COLUMNS = tuple(
    recipients.c[name]
    for name in (
        "id",
        "key",
        "kind",
        "name",
        "phone",
        "role",
        "area_code",
        "lat",
        "lon",
        "language",
        "push_tokens",
        "terminal_id",
    )
)


# What sending needs of a claimed delivery's recipient (Store.claim), besides the area code
_CLAIM_RECIPIENT = ("key", "kind", "name", "phone", "role", "language", "push_tokens", "terminal_id")


# One send outcome (see Store.record_results), run as executemany over a batch. Columns an outcome does not
# set keep their value: the provider id and sent time change only when it was sent, the visible time only when
# it goes back to the queue, the reason and attempts only when given.
_d = deliveries.c
_was_sent = bindparam("b_sent", type_=Boolean())
_RECORD_RESULT = (
    update(deliveries)
    .where(_d.id == _b("b_id", _d.id), _d.lease_token == _b("b_token", _d.lease_token))
    .values(
        status=_b("b_status", _d.status),
        lease_token=null(),
        updated_at=_b("b_now", _d.updated_at),
        error=_b("b_error", _d.error),
        provider_message_id=case(
            (_was_sent, _b("b_provider_id", _d.provider_message_id)),
            else_=_d.provider_message_id,
        ),
        sent_at=case((_was_sent, _b("b_sent_at", _d.sent_at)), else_=_d.sent_at),
        visible_at=func.coalesce(_b("b_visible_at", _d.visible_at), _d.visible_at),
        reason=func.coalesce(_b("b_reason", _d.reason), _d.reason),
        attempts=func.coalesce(_b("b_attempts", _d.attempts), _d.attempts),
    )
)


def _result_params(outcome: Mapping[str, Any], token: str, now: datetime) -> dict[str, Any]:
    sent = outcome["status"] == "sent"
    return {
        "b_id": outcome["delivery_id"],
        "b_token": token,
        "b_status": outcome["status"],
        "b_now": now,
        "b_error": outcome.get("error"),
        "b_sent": sent,
        "b_sent_at": now,
        "b_provider_id": (outcome.get("provider_message_id") or "")[:128] or None if sent else None,
        "b_visible_at": outcome["visible_at"] if outcome["status"] == "queued" else None,
        "b_reason": outcome.get("reason"),
        "b_attempts": outcome.get("attempts"),  # a claim that sent nothing does not count
    }


async def audit_in(
    conn: AsyncConnection,
    at: datetime,
    actor: str,
    action: str,
    target: str | None,
    detail: Mapping[str, Any],
    remote: str | None,
) -> None:
    """An audit-log entry written in the caller's transaction, so it lands exactly when the change it records."""
    await conn.execute(
        insert(audit_log).values(
            at=at, actor=actor[:100], action=action, target=target, detail=dict(detail), remote=remote
        )
    )


class Store:
    def __init__(self, url: str, *, writer: AsyncEngine, reader: AsyncEngine):
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        self._writer = writer
        self._reader = reader
        # statements run by _executemany, compiled: (name, keys) → (SQL, parameter order, converters)
        self._compiled: dict[
            tuple[str, tuple[str, ...]], tuple[str, list[str], dict[int, Any], dict[str, Any]]
        ] = {}

    # --- lifecycle ---------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> Store:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            writer = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
            reader = create_async_engine(url, pool_size=4, max_overflow=4)
            _sqlite_pragmas(writer, immediate=True)
            _sqlite_pragmas(reader, immediate=False)
            return cls(url, writer=writer, reader=reader)
        engine = create_async_engine(url, pool_size=10, max_overflow=10)
        return cls(url, writer=engine, reader=engine)

    async def close(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    async def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision (run at every start; a no-op when current)."""
        from warnd.migrations import upgrade

        async with self._writer.connect() as conn:
            if not self.is_sqlite:  # nodes starting together: one migrates, the others then find it done
                await one_at_a_time(conn, "warnd:migrations")
            await conn.run_sync(upgrade)
            await conn.commit()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as conn:
            yield conn

    def _insert(self, table: Any) -> Any:
        return (sqlite if self.is_sqlite else postgresql).insert(table)

    # --- audit ------------------------------------------------------------------------------------------------

    async def audit(
        self,
        at: datetime,
        actor: str,
        action: str,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
        remote: str | None = None,
    ) -> None:
        async with self.write() as conn:
            await audit_in(conn, at, actor, action, target, detail or {}, remote)

    async def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = await conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    # --- recipients --------------------------------------------------------------------------------------------

    async def upsert_recipients(
        self,
        chunks: Iterable[Sequence[Mapping[str, Any]]],
        *,
        source: str,
        now: datetime,
        replace_source: bool = False,
    ) -> dict[str, int]:
        """Upsert recipients by key, in one transaction, and replace their explicit group memberships.

        Each row carries the recipients columns plus ``groups`` ("a|b"). ``chunks`` is consumed inside the
        transaction, so an exception raised while producing it (a bad CSV row) rolls everything back. With
        ``replace_source``, this source's recipients absent from ``chunks`` are deactivated (config sync).
        """
        imported = select(text("key")).select_from(text("_import"))
        count = 0
        group_names: set[str] = set()
        async with self.write() as conn:
            if not self.is_sqlite:  # nodes starting together sync the same config: one after the other
                await one_at_a_time(conn, "warnd:recipients")
            await conn.execute(
                text(
                    "CREATE TEMPORARY TABLE IF NOT EXISTS _import (key VARCHAR(64) PRIMARY KEY, groups TEXT)"
                )
            )
            await conn.execute(text("DELETE FROM _import"))
            for chunk in chunks:
                await self._write_recipient_chunk(conn, chunk, source, now)
                for row in chunk:
                    if row["groups"]:
                        group_names.update(row["groups"].split("|"))
                count += len(chunk)
            await conn.execute(
                delete(group_members).where(
                    group_members.c.recipient_id.in_(
                        select(recipients.c.id).where(recipients.c.key.in_(imported))
                    )
                )
            )
            for group in sorted(group_names):
                await conn.execute(
                    text(
                        "INSERT INTO group_members (group_name, recipient_id) SELECT :group, r.id FROM _import i "
                        "JOIN recipients r ON r.key = i.key WHERE '|' || i.groups || '|' LIKE :pattern"
                    ),
                    {"group": group, "pattern": f"%|{group}|%"},
                )
            deactivated = 0
            if replace_source:
                result = await conn.execute(
                    update(recipients)
                    .where(
                        recipients.c.source == source,
                        recipients.c.active.is_(True),
                        recipients.c.key.not_in(imported),
                    )
                    .values(active=False, updated_at=now)
                )
                deactivated = result.rowcount or 0
            await conn.execute(text("DELETE FROM _import"))
        return {"upserted": count, "deactivated": deactivated}

    async def _write_recipient_chunk(
        self, conn: AsyncConnection, chunk: Sequence[Mapping[str, Any]], source: str, now: datetime
    ) -> None:
        """Upsert one chunk of recipients and stage their keys and groups in ``_import``."""
        if self.is_sqlite:  # driver-level executemany of tuples: ~3x faster than Core with dicts
            stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            await conn.exec_driver_sql(
                _SQLITE_UPSERT_RECIPIENT,
                [
                    (
                        r["key"],
                        r["kind"],
                        r["name"],
                        r["phone"],
                        r["role"],
                        r["area_code"],
                        r["lat"],
                        r["lon"],
                        r["language"],
                        json.dumps(r["push_tokens"]) if r["push_tokens"] else None,
                        r["terminal_id"],
                        r.get("address"),
                        r.get("household"),
                        json.dumps(r["vulnerable"]) if r.get("vulnerable") else None,
                        r.get("superior"),
                        source,
                        stamp,
                    )
                    for r in chunk
                ],
            )
            await conn.exec_driver_sql(
                "INSERT INTO _import (key, groups) VALUES (?, ?)", [(r["key"], r["groups"]) for r in chunk]
            )
            return
        stmt = self._insert(recipients)
        stmt = stmt.on_conflict_do_update(
            index_elements=[recipients.c.key], set_={c: stmt.excluded[c] for c in _RECIPIENT_UPSERT_COLUMNS}
        )
        await conn.execute(
            stmt,
            [
                {
                    **{k: v for k, v in row.items() if k != "groups"},
                    "source": source,
                    "active": True,
                    "updated_at": now,
                }
                for row in chunk
            ],
        )
        await conn.execute(
            text("INSERT INTO _import (key, groups) VALUES (:key, :groups)"),
            [{"key": row["key"], "groups": row["groups"]} for row in chunk],
        )

    def recipients_with_groups(self, kind: str) -> Select[Any]:
        """Recipients of a kind, each row with its explicit groups as ``groups`` (``a|b``, None if none)."""
        if self.is_sqlite:
            groups = func.group_concat(group_members.c.group_name, "|")
        else:
            groups = func.string_agg(group_members.c.group_name, "|")
        return (
            select(recipients, groups.label("groups"))
            .outerjoin(group_members, group_members.c.recipient_id == recipients.c.id)
            .where(recipients.c.kind == kind)
            .group_by(recipients.c.id)
        )

    async def export_recipients(
        self, kind: str = "person", source: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Active recipients of a kind (and of one source: config | import) with their groups, in id order,
        streamed."""
        where: list[Any] = [recipients.c.active.is_(True)]
        if source is not None:
            where.append(recipients.c.source == source)
        last = 0
        while True:
            async with self.read() as conn:
                result = await conn.execute(
                    self.recipients_with_groups(kind)
                    .where(*where, recipients.c.id > last)
                    .order_by(recipients.c.id)
                    .limit(10_000)
                )
                rows = [dict(r._mapping) for r in result]
            if not rows:
                return
            for row in rows:
                yield row
            last = rows[-1]["id"]

    async def recipient_count(self) -> int:
        async with self.read() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).select_from(recipients).where(recipients.c.active.is_(True))
                    )
                ).scalar_one()
            )

    # --- ingest -----------------------------------------------------------------------------------------------

    async def save_payload(
        self,
        *,
        received_at: datetime,
        source: str,
        content_type: str | None,
        body: bytes,
        outcome: str,
        errors: list[str] | None = None,
        alert_id: int | None = None,
    ) -> int:
        async with self.write() as conn:
            return await _insert_payload(
                conn,
                received_at=received_at,
                source=source,
                content_type=content_type,
                body=body,
                outcome=outcome,
                errors=errors,
                alert_id=alert_id,
            )

    async def quarantine(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(
                    payloads.c.id,
                    payloads.c.received_at,
                    payloads.c.source,
                    payloads.c.content_type,
                    payloads.c.sha256,
                    payloads.c.errors,
                    func.length(payloads.c.body).label("bytes"),
                )
                .where(payloads.c.outcome == "rejected")
                .order_by(payloads.c.id.desc())
                .limit(limit)
            )
            return [dict(r._mapping) for r in rows]

    async def payload(self, payload_id: int) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(payloads).where(payloads.c.id == payload_id))).first()
            return dict(row._mapping) if row else None

    async def find_alert(self, sender: str, identifier: str, sent: datetime) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (
                await conn.execute(
                    select(alerts).where(
                        alerts.c.sender == sender, alerts.c.identifier == identifier, alerts.c.sent == sent
                    )
                )
            ).first()
            return dict(row._mapping) if row else None

    async def find_referenced(
        self, identifier: str, sender: str | None, sent: datetime | None
    ) -> dict[str, Any] | None:
        """The alert a reference points at. CAP-CN references carry only the identifier."""
        conds = [alerts.c.identifier == identifier]
        if sender:
            conds.append(alerts.c.sender == sender)
        if sent:
            conds.append(alerts.c.sent == sent)
        async with self.read() as conn:
            row = (
                await conn.execute(select(alerts).where(*conds).order_by(alerts.c.id.desc()).limit(1))
            ).first()
            return dict(row._mapping) if row else None

    async def latest_in_chain(self, root_id: int) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (
                await conn.execute(
                    select(alerts).where(alerts.c.root_id == root_id).order_by(alerts.c.id.desc()).limit(1)
                )
            ).first()
            return dict(row._mapping) if row else None

    async def insert_alert(self, values: Mapping[str, Any], *, payload: Mapping[str, Any]) -> int | None:
        """Store the raw payload and the alert revision together. Returns None if (sender, identifier, sent)
        already exists (the caller then reports the existing alert)."""
        async with self.write() as conn:
            exists = (
                await conn.execute(
                    select(alerts.c.id).where(
                        alerts.c.sender == values["sender"],
                        alerts.c.identifier == values["identifier"],
                        alerts.c.sent == values["sent"],
                    )
                )
            ).first()
            if exists:
                return None
            payload_id = (
                await conn.execute(
                    insert(payloads)
                    .values(
                        **payload,
                        sha256=hashlib.sha256(payload["body"]).hexdigest(),
                        outcome="accepted",
                    )
                    .returning(payloads.c.id)
                )
            ).scalar_one()
            alert_id = int(
                (
                    await conn.execute(
                        insert(alerts).values(**values, payload_id=payload_id).returning(alerts.c.id)
                    )
                ).scalar_one()
            )
            if values.get("root_id") is None:
                await conn.execute(update(alerts).where(alerts.c.id == alert_id).values(root_id=alert_id))
            await conn.execute(update(payloads).where(payloads.c.id == payload_id).values(alert_id=alert_id))
            if values.get("previous_id"):  # the chain's earlier revisions are updated, or all cancelled
                cancel = values["msg_type"] == "Cancel"
                await conn.execute(
                    update(alerts)
                    .where(
                        alerts.c.root_id == values["root_id"],
                        alerts.c.id != alert_id,
                        alerts.c.state.in_(("active", "updated") if cancel else ("active",)),
                    )
                    .values(state="cancelled" if cancel else "updated")
                )
            return alert_id

    async def set_alert(self, alert_id: int, **values: Any) -> None:
        async with self.write() as conn:
            await conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))

    async def get_alert(self, alert_id: int) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).first()
            return dict(row._mapping) if row else None

    async def pending_fanouts(self) -> list[int]:
        async with self.read() as conn:
            rows = await conn.execute(
                select(alerts.c.id).where(alerts.c.fanout == "pending").order_by(alerts.c.id)
            )
            return [r[0] for r in rows]

    async def list_alerts(
        self, *, state: str | None = None, limit: int = 50, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
        if state:
            query = query.where(alerts.c.state == state)
        if before_id:
            query = query.where(alerts.c.id < before_id)
        async with self.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def delivery_counts(self, alert_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        if not alert_ids:
            return {}
        async with self.read() as conn:
            rows = await conn.execute(
                select(deliveries.c.alert_id, deliveries.c.status, func.count())
                .where(deliveries.c.alert_id.in_(alert_ids))
                .group_by(deliveries.c.alert_id, deliveries.c.status)
            )
            counts: dict[int, dict[str, int]] = {i: {} for i in alert_ids}
            for alert_id, status, n in rows:
                counts[alert_id][status] = n
            return counts

    async def expire_alerts(self, now: datetime) -> list[int]:
        """Alerts past ``expires`` stop being active; their unsent deliveries end as expired."""
        async with self.write() as conn:
            ids = [
                r[0]
                for r in await conn.execute(
                    select(alerts.c.id).where(
                        alerts.c.state == "active", alerts.c.expires.is_not(None), alerts.c.expires <= now
                    )
                )
            ]
            if not ids:
                return []
            await conn.execute(update(alerts).where(alerts.c.id.in_(ids)).values(state="expired"))
            await self._end_queued(
                conn,
                deliveries.c.alert_id.in_(ids),
                "expired",
                "预警已过期，未发送 (alert expired before it was sent)",
                now,
            )
            return ids

    # --- fan-out ---------------------------------------------------------------------------------------------

    async def audience_chunk(self, q: AudienceQuery, after_id: int, limit: int) -> list[dict[str, Any]]:
        """The next ``limit`` candidate recipients with id > after_id (keyset pagination: bounded memory)."""
        r = recipients
        conds: list[Any] = [r.c.active.is_(True), r.c.id > after_id]
        if q.groups is not None:
            member = r.c.id.in_(
                select(group_members.c.recipient_id).where(group_members.c.group_name.in_(q.groups))
            )
            conds.append(or_(member, r.c.role.in_(q.roles)) if q.roles else member)
        if q.address == "phone":
            conds.append(r.c.phone.is_not(None))
        elif q.address == "terminal":
            conds.append(r.c.terminal_id.is_not(None))
        elif q.address == "push":
            conds.append(r.c.push_tokens.is_not(None))
        if q.rule_prefixes:
            conds.append(or_(*(_prefix_range(r.c.area_code, p) for p in q.rule_prefixes)))
        if not q.everywhere:
            area: list[Any] = [_prefix_range(r.c.area_code, p) for p in q.area_prefixes]
            if q.area_ancestors:
                area.append(r.c.area_code.in_(q.area_ancestors))
            if q.bbox:
                min_lat, min_lon, max_lat, max_lon = q.bbox
                area.append(and_(r.c.lat.between(min_lat, max_lat), r.c.lon.between(min_lon, max_lon)))
            if not area:
                return []
            conds.append(or_(*area))
        query: Select[Any] = select(*_AUDIENCE_COLUMNS).where(*conds).order_by(r.c.id).limit(limit)
        async with self.read() as conn:
            result = await conn.execute(query)
            names = list(result.keys())
            return [dict(zip(names, row, strict=True)) for row in result]

    async def previous_recipients_chunk(
        self, chain_ids: Sequence[int], after_id: int, limit: int, now: datetime
    ) -> list[dict[str, Any]]:
        """Recipients (with the channel and repeat they had) who received, or are receiving right now, an
        earlier revision of this alert chain. Ordered by recipient id then channel."""
        d = deliveries
        reached = or_(
            d.c.status.in_(RECEIVED),
            and_(d.c.status == "queued", d.c.lease_token.is_not(None), d.c.visible_at > now),
        )
        query = (
            select(
                recipients,
                d.c.channel.label("channel"),
                func.max(d.c.repeat).label("repeat"),
                func.min(d.c.priority).label("priority"),
            )
            .join(d, d.c.recipient_id == recipients.c.id)
            .where(d.c.alert_id.in_(chain_ids), reached, is_warning(d), recipients.c.id > after_id)
            .group_by(recipients.c.id, d.c.channel)
            .order_by(recipients.c.id, d.c.channel)
        )
        async with self.read() as conn:
            rows = [dict(row._mapping) for row in await conn.execute(query.limit(limit * 4))]
        if len(rows) >= limit * 4:  # cut at a recipient boundary so no recipient's channels are split
            last = rows[-1]["id"]
            rows = [row for row in rows if row["id"] != last]
        return rows

    async def known_among(self, chain_ids: Sequence[int], recipient_ids: Sequence[int]) -> set[int]:
        """Which of ``recipient_ids`` were in the audience of an alert of ``chain_ids`` (have a delivery of it,
        whatever became of it)."""
        if not chain_ids or not recipient_ids:
            return set()
        d = deliveries
        query = (
            select(d.c.recipient_id)
            .where(
                d.c.alert_id.in_(list(chain_ids)), d.c.recipient_id.in_(list(recipient_ids)), is_warning(d)
            )
            .distinct()
        )
        async with self.read() as conn:
            return {r[0] for r in await conn.execute(query)}

    # --- held Updates/Cancels (their original has not arrived yet) ---------------------------------------------

    async def hold_payload(
        self, *, received_at: datetime, source: str, content_type: str | None, body: bytes, errors: list[str]
    ) -> int:
        """Keep an Update/Cancel whose referenced alert is unknown as a payload with outcome ``held``; the
        same bytes already held are not kept twice (their payload id is returned)."""
        digest = hashlib.sha256(body).hexdigest()
        async with self.write() as conn:
            existing = (
                await conn.execute(
                    select(payloads.c.id).where(payloads.c.outcome == "held", payloads.c.sha256 == digest)
                )
            ).first()
            if existing:
                return int(existing[0])
            return await _insert_payload(
                conn,
                received_at=received_at,
                source=source,
                content_type=content_type,
                body=body,
                outcome="held",
                errors=errors,
            )

    async def held_payloads(self, received_before: datetime | None = None) -> list[dict[str, Any]]:
        """Held payloads (oldest first), all or those received before a time."""
        query = select(payloads).where(payloads.c.outcome == "held").order_by(payloads.c.id)
        if received_before is not None:
            query = query.where(payloads.c.received_at <= received_before)
        async with self.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def take_held(self, payload_id: int, outcome: str) -> bool:
        """Claim a held payload for processing (``applied``: its original arrived; ``released``: it waited
        too long). False when it is no longer held (someone else took it)."""
        async with self.write() as conn:
            result = await conn.execute(
                update(payloads)
                .where(payloads.c.id == payload_id, payloads.c.outcome == "held")
                .values(outcome=outcome)
            )
            return bool(result.rowcount)

    async def chain(self, root_id: int) -> list[dict[str, Any]]:
        """Every revision of an alert chain, oldest first."""
        async with self.read() as conn:
            rows = await conn.execute(select(alerts).where(alerts.c.root_id == root_id).order_by(alerts.c.id))
            return [dict(r._mapping) for r in rows]

    async def chain_ids(self, root_id: int) -> list[int]:
        async with self.read() as conn:
            return [r[0] for r in await conn.execute(select(alerts.c.id).where(alerts.c.root_id == root_id))]

    async def insert_message(self, values: Mapping[str, Any]) -> int:
        async with self.write() as conn:
            return int(
                (await conn.execute(insert(messages).values(**values).returning(messages.c.id))).scalar_one()
            )

    async def insert_deliveries(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert outbox rows (all with the same keys); a (alert, recipient, channel) already present is merged,
        never duplicated: acknowledgement required if any rule requires it, the earliest deadline, the most
        repeats, the highest level, the lowest (most urgent) priority."""
        if not rows:
            return
        async with self.write() as conn:
            await self._executemany(conn, "delivery_upsert", self._delivery_upsert, rows)

    def _delivery_upsert(self) -> Any:
        stmt = self._insert(deliveries)
        ex = stmt.excluded
        least, greatest = (func.min, func.max) if self.is_sqlite else (func.least, func.greatest)
        return stmt.on_conflict_do_update(
            index_elements=[
                deliveries.c.alert_id,
                deliveries.c.recipient_id,
                deliveries.c.channel,
                deliveries.c.purpose,
            ],
            set_={
                # the text asking for 叫应 wins over the plain one
                "message_id": case(
                    (and_(ex.ack_required, deliveries.c.ack_required.is_(False)), ex.message_id),
                    else_=deliveries.c.message_id,
                ),
                "segments": case(
                    (and_(ex.ack_required, deliveries.c.ack_required.is_(False)), ex.segments),
                    else_=deliveries.c.segments,
                ),
                "ack_required": or_(deliveries.c.ack_required, ex.ack_required),
                "ack_deadline": func.coalesce(
                    least(deliveries.c.ack_deadline, ex.ack_deadline),
                    deliveries.c.ack_deadline,
                    ex.ack_deadline,
                ),
                "deliver_deadline": func.coalesce(
                    least(deliveries.c.deliver_deadline, ex.deliver_deadline),
                    deliveries.c.deliver_deadline,
                    ex.deliver_deadline,
                ),
                "repeat": greatest(deliveries.c.repeat, ex.repeat),
                "level": func.coalesce(least(deliveries.c.level, ex.level), deliveries.c.level, ex.level),
                "priority": least(deliveries.c.priority, ex.priority),
                "rules": deliveries.c.rules,
            },
            where=deliveries.c.status == literal_column("'queued'"),  # no bound parameter but the rows'
        )

    async def _executemany(
        self,
        conn: AsyncConnection,
        name: str,
        statement: Callable[[], Any],
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        """Run a statement once per row (all rows with the same keys) as one executemany of plain tuples.

        For the hot paths (fan-out rows, send results): SQLAlchemy's per-row parameter processing cost more
        than SQLite's own work there (docs/performance.md). The statement is compiled once per engine and set
        of keys; timestamps and JSON are converted here as their column types would."""
        columns = tuple(rows[0])
        compiled = self._compiled.get((name, columns))
        if compiled is None:
            done = statement().compile(dialect=conn.dialect, column_keys=list(columns))
            assert done.positiontup is not None, "a positional driver (sqlite3, asyncpg)"
            order = list(done.positiontup)
            converters = {
                i: convert
                for i, key in enumerate(order)
                if (convert := _DRIVER_VALUE.get(type(done.binds[key].type))) is not None
            }
            # values written into the statement itself (``.values(x=None)``) are the same for every row
            fixed = {key: done.params[key] for key in order if key not in columns}
            compiled = self._compiled[(name, columns)] = (done.string, order, converters, fixed)
        sql, order, converters, fixed = compiled
        pick = itemgetter(*order) if len(order) > 1 else (lambda row: (row[order[0]],))
        values_of = (lambda row: pick({**fixed, **row})) if fixed else pick
        converted: dict[tuple[int, Any], Any] = {}  # rows share a few timestamps: convert each once
        params: list[tuple[Any, ...]] = []
        for row in rows:
            values = values_of(row)
            if converters:
                values = list(values)
                for i, convert in converters.items():
                    if (value := values[i]) is not None:
                        try:
                            values[i] = converted[(i, value)]
                        except (KeyError, TypeError):  # TypeError: a dict (JSON) is not hashable
                            values[i] = convert(value)
                            if not isinstance(value, dict | list):
                                converted[(i, value)] = values[i]
            params.append(tuple(values))
        await conn.exec_driver_sql(sql, params)

    async def insert_failover_deliveries(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> dict[tuple[int, str], dict[str, Any]]:
        """Insert alternate deliveries (failover) unless the recipient already has this alert on that channel
        (or the idempotency key exists: a failover done before a crash). Returns, per (recipient id, channel),
        the row that now carries the warning: ``id``, ``status``, ``idempotency_key``, ``created``."""
        if not rows:
            return {}
        async with self.write() as conn:
            created: set[int] = set()
            for row in rows:
                stmt = self._insert(deliveries).values(**row).on_conflict_do_nothing()
                new_id = (await conn.execute(stmt.returning(deliveries.c.id))).scalar_one_or_none()
                if new_id is not None:
                    created.add(new_id)
                    await conn.execute(
                        insert(delivery_events).values(
                            delivery_id=new_id,
                            at=row["created_at"],
                            kind="failover",
                            detail={"reason": row["reason"]},
                        )
                    )
            alert_ids = {row["alert_id"] for row in rows}
            found = await conn.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.recipient_id,
                    deliveries.c.channel,
                    deliveries.c.status,
                    deliveries.c.idempotency_key,
                ).where(
                    deliveries.c.alert_id.in_(alert_ids),
                    deliveries.c.recipient_id.in_({row["recipient_id"] for row in rows}),
                    deliveries.c.channel.in_({row["channel"] for row in rows}),
                )
            )
            wanted = {(row["recipient_id"], row["channel"]) for row in rows}
            return {
                (r.recipient_id, r.channel): {
                    "id": r.id,
                    "status": r.status,
                    "idempotency_key": r.idempotency_key,
                    "created": r.id in created,
                }
                for r in found
                if (r.recipient_id, r.channel) in wanted
            }

    async def family_active_elsewhere(self, hazard_codes: Sequence[str], root_id: int) -> bool:
        """Whether another chain of this hazard family is active: only then can :meth:`inhibit` suppress
        deliveries of a fan-out in progress (see Pipeline.fanout)."""
        async with self.read() as conn:
            found = await conn.execute(
                select(alerts.c.id)
                .where(
                    alerts.c.hazard_code.in_(list(hazard_codes)),
                    alerts.c.state == "active",
                    alerts.c.root_id != root_id,
                    alerts.c.rank.is_not(None),
                )
                .limit(1)
            )
            return found.first() is not None

    async def release_fanout(self, alert_id: int, now: datetime) -> int:
        """Make an alert's deliveries that its fan-out held back (queued, unclaimed, visible later) due now."""
        async with self.write() as conn:
            result = await conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.alert_id == alert_id,
                    deliveries.c.status == "queued",
                    deliveries.c.lease_token.is_(None),
                    deliveries.c.visible_at > now,
                )
                .values(visible_at=now)
            )
            return result.rowcount or 0

    async def supersede_queued(self, chain_ids: Sequence[int], by_alert: int, now: datetime) -> int:
        """Unsent deliveries of earlier revisions are superseded by the new one (never those in flight)."""
        async with self.write() as conn:
            return await self._end_queued(
                conn,
                and_(
                    deliveries.c.alert_id.in_(chain_ids),
                    deliveries.c.alert_id != by_alert,
                    or_(deliveries.c.lease_token.is_(None), deliveries.c.visible_at <= now),
                ),
                "superseded",
                f"被预警 #{by_alert} 取代 (superseded by alert {by_alert})",
                now,
            )

    async def _end_queued(
        self,
        conn: AsyncConnection,
        where: Any,
        status: str,
        reason: str,
        now: datetime,
        *,
        suppressed_by: int | None = None,
    ) -> int:
        """End queued deliveries (``suppressed_by``: the root of the alert chain that covers the recipient)."""
        values: dict[str, Any] = {"status": status, "reason": reason, "lease_token": None, "updated_at": now}
        if suppressed_by is not None:
            values["suppressed_by"] = suppressed_by
        ids = [
            r[0]
            for r in await conn.execute(select(deliveries.c.id).where(where, deliveries.c.status == "queued"))
        ]
        for start in range(0, len(ids), 5000):
            part = ids[start : start + 5000]
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(part), deliveries.c.status == "queued")
                .values(**values)
            )
            await conn.execute(
                insert(delivery_events),
                [{"delivery_id": i, "at": now, "kind": status, "detail": {"reason": reason}} for i in part],
            )
        return len(ids)

    async def inhibit(
        self,
        alert_id: int,
        hazard_codes: Sequence[str],
        rank: int,
        root_id: int,
        now: datetime,
        *,
        earlier: Sequence[int] = (),
    ) -> dict[str, int]:
        """One event per recipient among active warnings of one hazard family (``hazard_codes``), from other
        chains: this alert's queued deliveries to people who already have (or are about to get) a warning of
        the same or a higher level are suppressed, naming the covering alert; queued deliveries of lower ones
        to people this alert reaches are suppressed. People who received an earlier revision of this alert's
        own chain (``earlier``) always get its update. A suppressed delivery records the root of the covering
        chain (``suppressed_by``): :meth:`release_suppressed` sends it after all when that chain stops covering."""
        a_other = alerts.alias("other")
        d_other = deliveries.alias("d_other")
        mine = deliveries
        codes = list(hazard_codes)
        active_other = and_(
            a_other.c.hazard_code.in_(codes),
            a_other.c.state == "active",
            a_other.c.root_id != root_id,
            a_other.c.rank.is_not(None),
        )
        conds: list[Any] = [mine.c.alert_id == alert_id, mine.c.status == "queued", is_warning(mine)]
        if earlier:
            d_earlier = deliveries.alias("d_earlier")
            conds.append(
                mine.c.recipient_id.not_in(
                    select(d_earlier.c.recipient_id).where(
                        d_earlier.c.alert_id.in_(list(earlier)),
                        d_earlier.c.status.in_(("queued", *RECEIVED)),  # earlier queued = in flight
                    )
                )
            )
        # the covering candidates, best first: each claims the still-queued deliveries of the people it reaches
        # (alerts whose rules opted out with ``inhibit: false`` neither suppress nor are suppressed)
        others = select(
            a_other.c.id,
            a_other.c.rank,
            a_other.c.sender,
            a_other.c.event,
            a_other.c.colour,
            a_other.c.rules,
            a_other.c.root_id,
        ).where(active_other)
        async with self.write() as conn:
            rows = [r for r in (await conn.execute(others)).all() if (r.rules or {}).get("inhibit", True)]
            suppressed_here = 0
            covering = sorted((r for r in rows if r.rank <= rank), key=lambda r: (r.rank, r.id))
            for other_id, other_rank, sender, event_name, colour, _rules, other_root in covering:
                what = f"{sender} {event_name}{COLOUR_LABELS.get(colour or '', '')}"
                if other_rank < rank:
                    reason = (
                        f"已有同类更高级别预警 #{other_id}（{what}）覆盖该接收人 "
                        f"(a higher-level active warning of the same hazard family, alert {other_id}, "
                        "already covers this recipient)"
                    )
                else:
                    reason = (
                        f"已有同类同级别预警 #{other_id}（{what}）覆盖该接收人，不重复发送 "
                        f"(an active warning of the same level and hazard family, alert {other_id}, "
                        "already covers this recipient)"
                    )
                has_it = select(d_other.c.recipient_id).where(
                    d_other.c.alert_id == other_id,
                    d_other.c.status.in_(("queued", *RECEIVED)),
                    covers(d_other),
                )
                suppressed_here += await self._end_queued(
                    conn,
                    and_(*conds, mine.c.recipient_id.in_(has_it)),
                    "suppressed",
                    reason,
                    now,
                    suppressed_by=other_root,
                )
            lower_alerts = [r.id for r in rows if r.rank > rank]
            reached_here = select(mine.c.recipient_id).where(
                mine.c.alert_id == alert_id, mine.c.status == "queued"
            )
            suppressed_lower = await self._end_queued(
                conn,
                and_(
                    deliveries.c.alert_id.in_(lower_alerts),
                    is_warning(deliveries),
                    deliveries.c.recipient_id.in_(reached_here),
                    deliveries.c.lease_token.is_(None),
                ),
                "suppressed",
                f"被更高级别预警 #{alert_id} 覆盖 (a higher-level warning {alert_id} covers this recipient)",
                now,
                suppressed_by=root_id,
            )
        return {"suppressed": suppressed_here, "suppressed_lower": suppressed_lower}

    async def release_suppressed(
        self, root_id: int, hazard_codes: Sequence[str], now: datetime, *, because: str
    ) -> dict[str, int]:
        """The alert chain ``root_id`` stopped covering some people (``because``: cancelled, expired, or
        updated — downgraded or moved). Deliveries it suppressed of warnings that are still active, unexpired
        and the latest revision of their chain go out after all (re-queued, visible now) to the people no
        active warning of the family (``hazard_codes``) from another chain covers at the same or a higher
        level; for people another chain still covers, that chain is recorded as the cover instead. Warnings
        are taken best first, so that of two warnings both covered by the ended one only the higher goes out."""
        a, d = alerts, deliveries
        newer = alerts.alias("newer")
        d_cover = deliveries.alias("d_cover")
        live = and_(
            a.c.state == "active",
            a.c.rank.is_not(None),
            or_(a.c.expires.is_(None), a.c.expires > now),
            ~select(newer.c.id).where(newer.c.root_id == a.c.root_id, newer.c.id > a.c.id).exists(),
        )
        waiting = (
            select(a.c.id, a.c.root_id, a.c.rank)
            .where(
                live,
                a.c.id.in_(
                    select(d.c.alert_id).where(d.c.status == "suppressed", d.c.suppressed_by == root_id)
                ),
            )
            .order_by(a.c.rank, a.c.id)
        )
        family = (
            select(a.c.id, a.c.root_id, a.c.rank, a.c.rules)
            .where(live, a.c.hazard_code.in_(list(hazard_codes)))
            .order_by(a.c.rank, a.c.id)
        )
        word, words = RELEASED_BECAUSE[because]
        reason = (
            f"原覆盖预警 #{root_id} {word}，补发 (the covering warning, alert {root_id}, {words}: sent now)"
        )
        released = recovered = 0
        async with self.write() as conn:
            held = (await conn.execute(waiting)).all()
            if not held:
                return {}
            coverers = [r for r in (await conn.execute(family)).all() if (r.rules or {}).get("inhibit", True)]

            def has_it(ids: Sequence[int]) -> Any:  # recipients a warning of ``ids`` covers
                return select(d_cover.c.recipient_id).where(
                    d_cover.c.alert_id.in_(list(ids)),
                    d_cover.c.status.in_(("queued", *RECEIVED)),
                    covers(d_cover),
                )

            for alert_id, alert_root, rank in held:
                mine = and_(
                    d.c.alert_id == alert_id, d.c.status == "suppressed", d.c.suppressed_by == root_id
                )
                eligible = [c for c in coverers if c.root_id != alert_root and c.rank <= rank]
                for c in eligible:  # still covered by another chain: that one is the cover now
                    if c.root_id != root_id:
                        result = await conn.execute(
                            update(d)
                            .where(mine, d.c.recipient_id.in_(has_it([c.id])))
                            .values(suppressed_by=c.root_id, updated_at=now)
                        )
                        recovered += result.rowcount or 0
                free = select(d.c.id, d.c.ack_deadline, d.c.created_at).where(mine)
                if eligible:
                    free = free.where(d.c.recipient_id.not_in(has_it([c.id for c in eligible])))
                rows = (await conn.execute(free)).all()
                released += await self._requeue(conn, rows, reason, root_id, now)
        return {"released": released, "still_covered": recovered}

    async def _requeue(
        self, conn: AsyncConnection, rows: Sequence[Any], reason: str, covering: int, now: datetime
    ) -> int:
        """Suppressed deliveries go out now (an acknowledgement deadline counts from now)."""
        for start in range(0, len(rows), 5000):
            part = rows[start : start + 5000]
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_([r.id for r in part]), deliveries.c.status == "suppressed")
                .values(status="queued", reason=reason, visible_at=now, lease_token=None, updated_at=now)
            )
            deadlines = [
                {"b_id": r.id, "b_deadline": now + (r.ack_deadline - r.created_at)}
                for r in part
                if r.ack_deadline is not None
            ]
            if deadlines:
                await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == bindparam("b_id"))
                    .values(ack_deadline=bindparam("b_deadline", type_=deliveries.c.ack_deadline.type)),
                    deadlines,
                )
            await conn.execute(
                insert(delivery_events),
                [
                    {
                        "delivery_id": r.id,
                        "at": now,
                        "kind": "requeued",
                        "detail": {"reason": reason, "covering": covering},
                    }
                    for r in part
                ],
            )
        return len(rows)

    # --- hydrology -------------------------------------------------------------------------------------------

    async def save_readings(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Keep gauge readings (one per gauge and time; a repeat is ignored). Returns how many were new."""
        if not rows:
            return 0
        stmt = self._insert(gauge_readings).on_conflict_do_nothing(index_elements=["gauge", "time"])
        async with self.write() as conn:
            if not self.is_sqlite:  # asyncpg's executemany reports no row count: count the rows returned
                return len((await conn.execute(stmt.returning(gauge_readings.c.gauge), list(rows))).all())
            result = await conn.execute(stmt, list(rows))
            return max(result.rowcount or 0, 0)

    async def rain_since(self, gauge: str, since: datetime, until: datetime) -> list[tuple[datetime, float]]:
        """(time, mm) of a rain gauge's readings in (since, until]."""
        async with self.read() as conn:
            rows = await conn.execute(
                select(gauge_readings.c.time, gauge_readings.c.rainfall)
                .where(
                    gauge_readings.c.gauge == gauge,
                    gauge_readings.c.time > since,
                    gauge_readings.c.time <= until,
                    gauge_readings.c.rainfall.is_not(None),
                )
                .order_by(gauge_readings.c.time)
            )
            return [(r.time, r.rainfall) for r in rows]

    async def gauge_summary(
        self, gauges: Sequence[str], since: datetime, until: datetime
    ) -> dict[str, dict[str, Any]]:
        """Per gauge: the latest reading up to ``until``, the latest usable one (with a value), and counts of
        readings and of readings with a problem in (since, until]."""
        g = gauge_readings
        out: dict[str, dict[str, Any]] = {}
        async with self.read() as conn:
            for gauge in gauges:
                latest = (
                    await conn.execute(
                        select(g)
                        .where(g.c.gauge == gauge, g.c.time <= until)
                        .order_by(g.c.time.desc())
                        .limit(1)
                    )
                ).first()
                usable = (
                    await conn.execute(
                        select(g)
                        .where(
                            g.c.gauge == gauge,
                            g.c.time <= until,
                            or_(g.c.level.is_not(None), g.c.rainfall.is_not(None)),
                        )
                        .order_by(g.c.time.desc())
                        .limit(1)
                    )
                ).first()
                counts = (
                    await conn.execute(
                        select(func.count(), func.count(g.c.problem)).where(
                            g.c.gauge == gauge, g.c.time > since
                        )
                    )
                ).one()
                out[gauge] = {
                    "latest": dict(latest._mapping) if latest else None,
                    "latest_usable": dict(usable._mapping) if usable else None,
                    "readings": counts[0],
                    "with_problems": counts[1],
                }
        return out

    async def load_hydro_state(self, key: str) -> tuple[dict[str, Any], str | None] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(hydro_state).where(hydro_state.c.key == key))).first()
            return (dict(row.state), row.alert_ref) if row else None

    async def save_hydro_state(
        self, key: str, state: Mapping[str, Any], alert_ref: str | None, now: datetime
    ) -> None:
        stmt = self._insert(hydro_state).values(
            key=key, state=dict(state), alert_ref=alert_ref, updated_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"state": stmt.excluded.state, "alert_ref": stmt.excluded.alert_ref, "updated_at": now},
        )
        async with self.write() as conn:
            await conn.execute(stmt)

    async def hydro_states(self) -> list[dict[str, Any]]:
        async with self.read() as conn:
            return [
                dict(r._mapping) for r in await conn.execute(select(hydro_state).order_by(hydro_state.c.key))
            ]

    # --- dispatch --------------------------------------------------------------------------------------------

    async def release_leases(self, now: datetime, token: str | None = None) -> int:
        """Make claimed-but-unfinished deliveries claimable now: all of them (single-process start-up) or one
        claim's (shutdown)."""
        where = [deliveries.c.status == "queued", deliveries.c.lease_token.is_not(None)]
        if token:
            where.append(deliveries.c.lease_token == token)
        async with self.write() as conn:
            result = await conn.execute(
                update(deliveries).where(*where).values(lease_token=None, visible_at=now)
            )
            return result.rowcount or 0

    async def claim(
        self, channel: str, limit: int, now: datetime, lease_seconds: float
    ) -> tuple[str, list[Claimed]]:
        """Claim up to ``limit`` due deliveries of a channel under a new lease token, most urgent first."""
        token = str(uuid.uuid4())
        due = (
            select(deliveries.c.id)
            .where(
                deliveries.c.status == "queued",
                deliveries.c.channel == channel,
                deliveries.c.visible_at <= now,
            )
            .order_by(deliveries.c.priority, deliveries.c.visible_at)
            .limit(limit)
        )
        async with self.read() as conn:  # most polls find nothing: find that out without taking the writer
            if (await conn.execute(due.with_only_columns(deliveries.c.id).limit(1))).first() is None:
                return token, []
        expired: list[tuple[int, str]] = []
        async with self.write() as conn:
            picked: Any = due.scalar_subquery()
            # cluster mode: lock the due rows, noting the leases that ran out (warnd/store/cluster.py)
            if not self.is_sqlite:
                locked = (
                    await conn.execute(
                        due.add_columns(deliveries.c.lease_token).with_for_update(skip_locked=True)
                    )
                ).all()
                picked = [r.id for r in locked]
                expired = [(r.id, r.lease_token) for r in locked if r.lease_token]
            ids = [
                r[0]
                for r in await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_(picked))
                    .values(
                        lease_token=token,
                        visible_at=now + timedelta(seconds=lease_seconds),
                        attempts=deliveries.c.attempts + 1,
                        updated_at=now,
                    )
                    .returning(deliveries.c.id)
                )
            ]
            if ids:
                await flag_expired_leases(conn, expired, now)
        if not ids:
            return token, []
        # the rows are this claim's now (the lease): read what sending needs without holding the writer, each
        # message and alert once (a batch of 500 usually shares one of each)
        async with self.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        deliveries,
                        *(recipients.c[name] for name in _CLAIM_RECIPIENT),
                        recipients.c.area_code.label("recipient_area"),
                    )
                    .join(recipients, recipients.c.id == deliveries.c.recipient_id)
                    .where(deliveries.c.id.in_(ids))
                    .order_by(deliveries.c.priority, deliveries.c.id)
                )
            ).all()
            texts = {
                m.id: {"body": m.body, "title": m.title, "data": m.data, "language": m.language}
                for m in await conn.execute(
                    select(
                        messages.c.id, messages.c.body, messages.c.title, messages.c.data, messages.c.language
                    ).where(messages.c.id.in_({row.message_id for row in rows}))
                )
            }
            root_alert = alerts.alias("root_alert")
            about = {
                a.id: {
                    "id": a.id,
                    "identifier": a.identifier,
                    "colour": a.colour,
                    "msg_type": a.msg_type,
                    "status": a.status,
                    "expires": a.expires.isoformat() if a.expires else None,
                    "event": a.event,
                    "hazard_code": a.hazard_code,
                    "root_id": a.root_id,
                    "root_identifier": a.root_identifier,  # push collapse key (issue 4)
                    "effective": a.effective.isoformat() if a.effective else None,
                }
                for a in await conn.execute(
                    select(
                        alerts.c.id,
                        alerts.c.identifier,
                        alerts.c.colour,
                        alerts.c.msg_type,
                        alerts.c.status,
                        alerts.c.expires,
                        alerts.c.event,
                        alerts.c.hazard_code,
                        alerts.c.root_id,
                        root_alert.c.identifier.label("root_identifier"),
                        alerts.c.effective,
                    )
                    .outerjoin(root_alert, root_alert.c.id == alerts.c.root_id)
                    .where(alerts.c.id.in_({row.alert_id for row in rows}))
                )
            }
            delivery_columns = deliveries.c.keys()
            claimed = []
            for row in rows:
                m = row._mapping
                delivery = {k: m[k] for k in delivery_columns}
                claimed.append(
                    Claimed(
                        delivery=delivery,
                        recipient={
                            **{name: m[name] for name in _CLAIM_RECIPIENT},
                            "area_code": m["recipient_area"],
                        },
                        message=texts[delivery["message_id"]],
                        alert={**about[delivery["alert_id"]], "level": delivery["level"]},
                    )
                )
            return token, await self._with_references(conn, channel, claimed)

    async def record_results(self, token: str, outcomes: Sequence[Mapping[str, Any]], now: datetime) -> int:
        """Apply send outcomes, fenced by the lease token: a result lands only if the claim still holds the row.

        Each outcome: delivery_id, status (sent | failed | queued), visible_at (for queued), provider_message_id,
        error, event (kind + detail), parts (provider id per part, when the provider numbers parts; for sent).
        A sent delivery gets its ``delivery_parts`` rows in the same transaction. Returns how many rows were
        updated.

        One statement per kind of row for the whole batch (executemany), not one round trip per delivery:
        recording was the dispatcher's bottleneck (docs/performance.md)."""
        if not outcomes:
            return 0
        async with self.write() as conn:
            held: dict[int, Any] = {}  # the rows this claim still holds (the fence), with what the parts need
            ids = [o["delivery_id"] for o in outcomes]
            for i in range(0, len(ids), _IN_CHUNK):
                query = select(deliveries.c.id, deliveries.c.channel, deliveries.c.segments).where(
                    deliveries.c.id.in_(ids[i : i + _IN_CHUNK]), deliveries.c.lease_token == token
                )
                if not self.is_sqlite:
                    query = query.with_for_update()
                held.update((row.id, row) for row in await conn.execute(query))
            mine = [o for o in outcomes if o["delivery_id"] in held]
            if not mine:
                return 0
            await self._executemany(
                conn, "record_result", lambda: _RECORD_RESULT, [_result_params(o, token, now) for o in mine]
            )
            await self._executemany(
                conn,
                "delivery_event",
                lambda: insert(delivery_events),
                [
                    {
                        "delivery_id": o["delivery_id"],
                        "at": now,
                        "kind": o["event"],
                        "detail": o.get("detail"),
                    }
                    for o in mine
                ],
            )
            sent = [o for o in mine if o["status"] == "sent"]
            if sent:
                await self._add_parts(conn, sent, held, now)
        return len(mine)

    async def _add_parts(
        self, conn: AsyncConnection, sent: Sequence[Mapping[str, Any]], held: Mapping[int, Any], now: datetime
    ) -> None:
        """The parts of deliveries just marked sent (same transaction), then any receipt that arrived before."""
        sent_ids = [o["delivery_id"] for o in sent]
        parts: list[dict[str, Any]] = []
        for outcome in sent:
            row = held[outcome["delivery_id"]]
            part_ids: list[str | None] = list(outcome.get("parts") or ())
            if not part_ids:
                part_ids = [outcome.get("provider_message_id")] * max(1, int(row.segments or 1))
            parts += [
                {
                    "delivery_id": row.id,
                    "part": i,
                    "channel": row.channel,
                    "provider_id": (pid or "")[:128] or None,
                    "state": "sent",
                    "updated_at": now,
                }
                for i, pid in enumerate(part_ids)
            ]
        early: list[Any] = []
        for i in range(0, len(sent_ids), _IN_CHUNK):
            chunk = sent_ids[i : i + _IN_CHUNK]
            # a resend after a lost answer: the new ids count
            await conn.execute(delete(delivery_parts).where(delivery_parts.c.delivery_id.in_(chunk)))
            early += await conn.execute(
                select(delivery_events.c.id, delivery_events.c.delivery_id, delivery_events.c.detail)
                .where(delivery_events.c.delivery_id.in_(chunk), delivery_events.c.kind == "feedback")
                .order_by(delivery_events.c.id)
            )
        await self._executemany(conn, "delivery_part", lambda: insert(delivery_parts), parts)
        for event_id, delivery_id, detail in early:  # receipts that came before the send was recorded
            if not (isinstance(detail, dict) and detail.get("pending")):
                continue
            delivery = await self._feedback_delivery(conn, deliveries.c.id == delivery_id)
            assert delivery is not None
            applied = await self._apply_report(
                conn,
                delivery,
                detail.get("provider_id"),
                detail.get("segment"),
                str(detail.get("state")),
                Verdict(detail.get("verdict", "info")),
                detail.get("error"),
                now,
            )
            await conn.execute(
                update(delivery_events)
                .where(delivery_events.c.id == event_id)
                .values(detail={**detail, "pending": False, **applied})
            )

    # --- channel feedback: terminal play states, earlier deliveries an Update/Cancel refers to ----------------

    async def _with_references(
        self, conn: AsyncConnection, channel: str, claimed: list[Claimed]
    ) -> list[Claimed]:
        """Fill ``references`` of claimed Update/Cancel deliveries: the idempotency keys of the same
        recipient's sent deliveries on this channel for earlier revisions of the same alert chain."""
        later = {
            c.delivery["id"]
            for c in claimed
            if c.alert["msg_type"] in ("Update", "Cancel") and c.alert["root_id"]
        }
        if not later:
            return claimed
        rows = await conn.execute(
            select(deliveries.c.idempotency_key, deliveries.c.recipient_id, alerts.c.root_id)
            .join(alerts, alerts.c.id == deliveries.c.alert_id)
            .where(
                alerts.c.root_id.in_({c.alert["root_id"] for c in claimed if c.delivery["id"] in later}),
                deliveries.c.channel == channel,
                deliveries.c.status.in_(RECEIVED),
                is_warning(deliveries),
                deliveries.c.recipient_id.in_(
                    {c.delivery["recipient_id"] for c in claimed if c.delivery["id"] in later}
                ),
            )
            .order_by(deliveries.c.id)
        )
        keys: dict[tuple[int, int], list[str]] = {}
        for key, recipient_id, root_id in rows:
            keys.setdefault((root_id, recipient_id), []).append(key)
        out = []
        for c in claimed:
            if c.delivery["id"] in later:
                found = keys.get((c.alert["root_id"], c.delivery["recipient_id"]), [])
                own = c.delivery["idempotency_key"]
                c = Claimed(c.delivery, c.recipient, c.message, c.alert, tuple(k for k in found if k != own))
            out.append(c)
        return out

    async def record_feedback(
        self,
        channels: str | Sequence[str],
        msg_id: str | None,
        state: str,
        detail: Mapping[str, Any],
        now: datetime,
        *,
        kind: str = "",
        provider_id: str | None = None,
        segment: int | None = None,
        phone: str | None = None,
        actor: str | None = None,
    ) -> Feedback:
        """Record a provider's or terminal's report about a message and apply it to its delivery, atomically.

        The delivery is found by ``msg_id`` (its idempotency key) on one of ``channels``, else by provider message
        id (``provider_id``, else ``msg_id``) in ``delivery_parts`` — an SMPP part id matches its own part.
        ``state`` is mapped by :func:`warnd.receipts.classify` for the channel ``kind`` (sms, push, loudspeaker);
        ``segment`` (1-based) narrows the report to one part. Every report becomes a ``feedback`` delivery event
        (``detail``: the state, its verdict, the parts it touched, duplicate / late / applied); the delivery's
        status follows its parts (docs/feedback.md). A report that matches no delivery is kept in the audit log
        (action ``feedback_unknown``)."""
        names = [channels] if isinstance(channels, str) else list(channels)
        verdict = classify(kind, state)
        event: dict[str, Any] = {
            "state": state,
            **dict(detail),
            "verdict": verdict.value,
            "provider_id": provider_id,
            "segment": segment,
        }
        async with self.write() as conn:
            delivery = None
            if msg_id:
                delivery = await self._feedback_delivery(
                    conn, and_(deliveries.c.idempotency_key == msg_id, deliveries.c.channel.in_(names))
                )
            outcome = "unknown"
            wanted = provider_id or msg_id
            if delivery is None and wanted:
                ids = [
                    r[0]
                    for r in await conn.execute(
                        select(delivery_parts.c.delivery_id)
                        .where(
                            delivery_parts.c.channel.in_(names), delivery_parts.c.provider_id == wanted[:128]
                        )
                        .distinct()
                    )
                ]
                if len(ids) > 1 and phone:
                    ids = [
                        r[0]
                        for r in await conn.execute(
                            select(deliveries.c.id)
                            .join(recipients, recipients.c.id == deliveries.c.recipient_id)
                            .where(deliveries.c.id.in_(ids), recipients.c.phone == phone)
                        )
                    ]
                if len(ids) == 1:
                    delivery = await self._feedback_delivery(conn, deliveries.c.id == ids[0])
                    if provider_id is None:
                        event["provider_id"] = provider_id = wanted
                elif ids:
                    outcome = "ambiguous"
            if delivery is None:
                await conn.execute(
                    insert(audit_log).values(
                        at=now,
                        actor=actor or f"channel:{names[0] if len(names) == 1 else kind}",
                        action="feedback_unknown",
                        target=(msg_id or provider_id or "")[:200] or None,
                        detail={**event, "channels": names, "outcome": outcome},
                    )
                )
                return Feedback(outcome)
            late = delivery["expires"] is not None and delivery["expires"] <= now
            if late:
                event["late"] = True
            applied = await self._apply_report(
                conn, delivery, provider_id, segment, state, verdict, event.get("error"), now
            )
            event.update(applied)
            await conn.execute(
                insert(delivery_events).values(
                    delivery_id=delivery["id"], at=now, kind="feedback", detail=event
                )
            )
            if applied.get("duplicate"):
                result = "duplicate"
            elif applied.get("applied"):
                result = "matched"
            else:
                result = "recorded"
            return Feedback(result, int(delivery["id"]), applied.get("status", delivery["status"]), late)

    async def _feedback_delivery(self, conn: AsyncConnection, where: Any) -> dict[str, Any] | None:
        row = (
            await conn.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.status,
                    deliveries.c.channel,
                    alerts.c.expires,
                )
                .join(alerts, alerts.c.id == deliveries.c.alert_id)
                .where(where)
            )
        ).first()
        return dict(row._mapping) if row else None

    async def _apply_report(
        self,
        conn: AsyncConnection,
        delivery: Mapping[str, Any],
        provider_id: str | None,
        segment: int | None,
        state: str,
        verdict: Verdict,
        error: Any,
        now: datetime,
    ) -> dict[str, Any]:
        """Apply one report to the delivery's parts and status; returns what to note in its event."""
        parts = [
            dict(r._mapping)
            for r in await conn.execute(
                select(delivery_parts)
                .where(delivery_parts.c.delivery_id == delivery["id"])
                .order_by(delivery_parts.c.part)
            )
        ]
        if not parts:  # in flight (the send's answer has not landed yet) or never sent: nothing to move
            return {"applied": False, "pending": delivery["status"] == "queued"}
        targets = parts
        if provider_id:
            own = [p for p in parts if p["provider_id"] == provider_id[:128]]
            targets = own or targets
        if segment is not None:
            targets = [p for p in targets if p["part"] == segment - 1]
            if not targets:
                return {"applied": False, "no_such_part": True}
        indices = [p["part"] for p in targets]
        report = state[:32]
        if all(p["report"] == report for p in targets):
            return {"applied": False, "duplicate": True, "parts": indices}
        states = {p["part"]: p["state"] for p in parts}
        for p in targets:
            states[p["part"]] = part_state(p["state"], verdict)
            await conn.execute(
                update(delivery_parts)
                .where(delivery_parts.c.delivery_id == delivery["id"], delivery_parts.c.part == p["part"])
                .values(state=states[p["part"]], report=report, updated_at=now)
            )
        status = delivery["status"]
        new = delivery_status(states.values())
        if status in RECEIPT_STATUSES and PART_RANK[new] > PART_RANK[status]:
            values: dict[str, Any] = {"status": new, "updated_at": now}
            if new == "delivered":
                values["delivered_at"] = now
            else:
                failed = [i for i, st in sorted(states.items()) if st == "failed"]
                where = f" (part {failed[0] + 1}/{len(states)})" if len(states) > 1 else ""
                values["error"] = f"receipt: {state}{where}" + (f": {error}" if error else "")
                values["delivered_at"] = None
            await conn.execute(update(deliveries).where(deliveries.c.id == delivery["id"]).values(**values))
            status = new
        return {"applied": True, "parts": indices, "status": status}

    # --- dispatch (continued) --------------------------------------------------------------------------------

    async def next_due(self, channel: str) -> datetime | None:
        async with self.read() as conn:
            return (
                await conn.execute(
                    select(func.min(deliveries.c.visible_at)).where(
                        deliveries.c.status == "queued", deliveries.c.channel == channel
                    )
                )
            ).scalar_one()

    # --- push tokens: expired subscriptions (issue 4, app push) ----------------------------------------------

    async def remove_push_tokens(self, tokens: Mapping[int, Iterable[str]], now: datetime) -> int:
        """Remove push tokens a provider called expired or unregistered (recipient id → tokens) from the
        recipients' ``push_tokens``, so no later delivery uses them; a recipient left with none gets NULL (the
        audience then skips it for push channels). Returns how many tokens were removed. A later import of the
        recipient's source (config sync, CSV) that still lists a token brings it back."""
        removed = 0
        async with self.write() as conn:
            for recipient_id, gone in tokens.items():
                drop = set(gone)
                query = select(recipients.c.push_tokens).where(recipients.c.id == recipient_id)
                if not self.is_sqlite:
                    query = query.with_for_update()
                current = (await conn.execute(query)).scalar_one_or_none() or []
                kept = [t for t in current if t not in drop]
                if len(kept) == len(current):
                    continue
                await conn.execute(
                    update(recipients)
                    .where(recipients.c.id == recipient_id)
                    .values(push_tokens=kept or None, updated_at=now)
                )
                removed += len(current) - len(kept)
        return removed

    # --- delivery log ------------------------------------------------------------------------------------------

    def _log_query(self, filters: Mapping[str, Any]) -> Select[Any]:
        d, r, m, a = deliveries, recipients, messages, alerts
        query = (
            select(
                d.c.id,
                d.c.alert_id,
                a.c.root_id,
                a.c.identifier,
                a.c.event,
                a.c.colour,
                d.c.channel,
                d.c.status,
                d.c.recipient_id,
                r.c.name.label("recipient"),
                r.c.key.label("recipient_key"),
                r.c.phone,
                r.c.role,
                d.c.area_code,
                m.c.body,
                m.c.title,
                d.c.segments,
                d.c.repeat,
                d.c.attempts,
                d.c.provider_message_id,
                d.c.error,
                d.c.reason,
                d.c.level,
                d.c.ack_required,
                d.c.ack_deadline,
                d.c.purpose,
                d.c.created_at,
                d.c.sent_at,
                d.c.delivered_at,
                d.c.updated_at,
                d.c.rules,
                d.c.suppressed_by,
            )
            .join(r, r.c.id == d.c.recipient_id)
            .join(m, m.c.id == d.c.message_id)
            .join(a, a.c.id == d.c.alert_id)
        )
        if filters.get("alert_id") is not None:
            query = query.where(d.c.alert_id == filters["alert_id"])
        if filters.get("alert_ids") is not None:  # a whole chain: every revision's id
            query = query.where(d.c.alert_id.in_(list(filters["alert_ids"])))
        if filters.get("recipient_id") is not None:
            query = query.where(d.c.recipient_id == filters["recipient_id"])
        if filters.get("purpose") == "warning":
            query = query.where(is_warning(d))
        elif filters.get("purpose") == "notice":  # notice:<escalation> and doorknock:<village>:<n>
            query = query.where(d.c.purpose != "warning")
        if filters.get("channel"):
            query = query.where(d.c.channel == filters["channel"])
        if filters.get("status"):
            # SQLite without statistics would pick ix_deliveries_ready (status, ...) and sort every row of the
            # status for each page; ``status || ''`` keeps it walking the primary key (keyset pages), which costs
            # what the rows scanned cost whatever the page number. PostgreSQL's planner has statistics: untouched.
            status = d.c.status.concat("") if self.is_sqlite else d.c.status
            query = query.where(status == filters["status"])
        if filters.get("area"):
            query = query.where(_prefix_range(d.c.area_code, area_prefix(filters["area"])))
        if filters.get("since"):
            query = query.where(d.c.created_at >= filters["since"])
        if filters.get("until"):
            query = query.where(d.c.created_at < filters["until"])
        if filters.get("phone_suffix"):
            # the (much smaller) recipients table is searched first, then ix_deliveries_recipient finds their rows
            query = query.where(
                d.c.recipient_id.in_(
                    select(r.c.id).where(r.c.phone.like(f"%{filters['phone_suffix']}")).scalar_subquery()
                )
            )
        return query

    async def deliveries_page(
        self, filters: Mapping[str, Any], *, limit: int, after_id: int = 0, descending: bool = False
    ) -> list[dict[str, Any]]:
        """One keyset page of the delivery log: ``limit`` rows with an id above ``after_id``, oldest first; or,
        ``descending``, newest first with an id below ``after_id`` (0: from the newest). The id is the primary
        key (SQLite's rowid), so page N costs what page 1 does."""
        async with self.read() as conn:
            return [
                dict(r._mapping)
                for r in await conn.execute(self._log_page(filters, limit, after_id, descending))
            ]

    def _log_page(
        self, filters: Mapping[str, Any], limit: int, after_id: int, descending: bool
    ) -> Select[Any]:
        d = deliveries
        query = self._log_query(filters)
        if descending:
            if after_id:
                query = query.where(d.c.id < after_id)
            return query.order_by(d.c.id.desc()).limit(limit)
        return query.where(d.c.id > after_id).order_by(d.c.id).limit(limit)

    async def explain_log_page(
        self, filters: Mapping[str, Any], *, limit: int, after_id: int = 0, descending: bool = False
    ) -> list[str]:
        """SQLite's EXPLAIN QUERY PLAN of a :meth:`deliveries_page` query (its detail lines), to check that it
        walks the primary key instead of sorting the whole log. SQLite only."""
        query = self._log_page(filters, limit, after_id, descending)
        sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        async with self.read() as conn:
            return [str(r[-1]) for r in await conn.execute(text("EXPLAIN QUERY PLAN " + sql))]

    async def recipient_history(
        self, recipient_id: int, *, limit: int, after_id: int = 0
    ) -> dict[str, Any] | None:
        """One person's deliveries, newest first (a keyset page as :meth:`deliveries_page`), with their 叫应
        (acknowledgements of the revisions on the page) and door-knock rows (of the chains on the page); None when
        there is no such recipient. Both side lookups use the unique indexes (alert_id / root_id, recipient_id)."""
        async with self.read() as conn:
            person = (await conn.execute(select(recipients).where(recipients.c.id == recipient_id))).first()
        if person is None:
            return None
        rows = await self.deliveries_page(
            {"recipient_id": recipient_id}, limit=limit, after_id=after_id, descending=True
        )
        alert_ids = sorted({r["alert_id"] for r in rows})
        root_ids = sorted({r["root_id"] or r["alert_id"] for r in rows})
        acks: list[dict[str, Any]] = []
        knocks: list[dict[str, Any]] = []
        if rows:
            ack, knock = acknowledgements, doorknocks
            async with self.read() as conn:
                acks = [
                    dict(r._mapping)
                    for r in await conn.execute(
                        select(
                            ack.c.id,
                            ack.c.alert_id,
                            ack.c.root_id,
                            ack.c.delivery_id,
                            ack.c.at,
                            ack.c.channel,
                            ack.c.recorded_by,
                        )
                        .where(ack.c.recipient_id == recipient_id, ack.c.alert_id.in_(alert_ids))
                        .order_by(ack.c.at.desc(), ack.c.id.desc())
                    )
                ]
                knocks = [
                    dict(r._mapping)
                    for r in await conn.execute(
                        select(
                            knock.c.id,
                            knock.c.root_id,
                            knock.c.alert_id,
                            knock.c.area_code,
                            knock.c.household,
                            knock.c.reason,
                            knock.c.added_at,
                            knock.c.result,
                            knock.c.result_at,
                            knock.c.result_by,
                            knock.c.note,
                        )
                        .where(knock.c.recipient_id == recipient_id, knock.c.root_id.in_(root_ids))
                        .order_by(knock.c.added_at.desc(), knock.c.id.desc())
                    )
                ]
        return {
            "recipient": dict(person._mapping),
            "deliveries": rows,
            "acknowledgements": acks,
            "doorknocks": knocks,
        }

    async def delivery_events(self, delivery_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        ids = list(delivery_ids)
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        async with self.read() as conn:
            for start in range(0, len(ids), 5000):
                rows = await conn.execute(
                    select(delivery_events)
                    .where(delivery_events.c.delivery_id.in_(ids[start : start + 5000]))
                    .order_by(delivery_events.c.id)
                )
                for row in rows:
                    out[row.delivery_id].append(dict(row._mapping))
        return out

    # --- feeds --------------------------------------------------------------------------------------------------

    async def feed_state(self, name: str) -> dict[str, Any] | None:
        async with self.read() as conn:
            row = (await conn.execute(select(feed_state).where(feed_state.c.name == name))).first()
            return dict(row._mapping) if row else None

    async def all_feed_states(self) -> list[dict[str, Any]]:
        async with self.read() as conn:
            return [
                dict(r._mapping) for r in await conn.execute(select(feed_state).order_by(feed_state.c.name))
            ]

    async def save_feed_state(self, name: str, **values: Any) -> None:
        stmt = self._insert(feed_state).values(name=name, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[feed_state.c.name], set_=values)
        async with self.write() as conn:
            await conn.execute(stmt)

    async def claim_feed_entry(self, feed: str, entry_key: str, now: datetime) -> bool:
        """True the first time an entry is seen (so it is fetched once, by one node)."""
        stmt = self._insert(feed_entries).values(feed=feed, entry_key=entry_key[:600], seen_at=now)
        async with self.write() as conn:
            result = await conn.execute(stmt.on_conflict_do_nothing())
            return bool(result.rowcount)

    async def forget_feed_entry(self, feed: str, entry_key: str) -> None:
        async with self.write() as conn:
            await conn.execute(
                delete(feed_entries).where(
                    feed_entries.c.feed == feed, feed_entries.c.entry_key == entry_key[:600]
                )
            )


async def _insert_payload(
    conn: AsyncConnection,
    *,
    received_at: datetime,
    source: str,
    content_type: str | None,
    body: bytes,
    outcome: str,
    errors: list[str] | None,
    alert_id: int | None = None,
) -> int:
    result = await conn.execute(
        insert(payloads)
        .values(
            received_at=received_at,
            source=source[:500],
            content_type=content_type,
            sha256=hashlib.sha256(body).hexdigest(),
            body=body,
            outcome=outcome,
            errors=errors,
            alert_id=alert_id,
        )
        .returning(payloads.c.id)
    )
    return int(result.scalar_one())


_RECIPIENT_UPSERT_COLUMNS = (
    "kind",
    "name",
    "phone",
    "role",
    "area_code",
    "lat",
    "lon",
    "language",
    "push_tokens",
    "terminal_id",
    "address",
    "household",
    "vulnerable",
    "superior",
    "source",
    "active",
    "updated_at",
)
_SQLITE_UPSERT_RECIPIENT = (
    "INSERT INTO recipients (key, kind, name, phone, role, area_code, lat, lon, language, push_tokens, terminal_id, "
    "address, household, vulnerable, superior, source, active, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (key) DO UPDATE SET "
    "kind=excluded.kind, name=excluded.name, phone=excluded.phone, role=excluded.role, "
    "area_code=excluded.area_code, lat=excluded.lat, lon=excluded.lon, language=excluded.language, "
    "push_tokens=excluded.push_tokens, terminal_id=excluded.terminal_id, address=excluded.address, "
    "household=excluded.household, vulnerable=excluded.vulnerable, superior=excluded.superior, "
    "source=excluded.source, active=1, "
    "updated_at=excluded.updated_at"
)


def _sqlite_pragmas(engine: AsyncEngine, *, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


__all__ = ["AudienceQuery", "Claimed", "Feedback", "Store", "covers", "is_warning", "metadata", "reached"]
