"""All SQL of accounts and access: users, API tokens, console sessions, failed-login counting
(warnd/auth.py, docs/security.md).

Only hashes are stored: argon2id for passwords, SHA-256 (hex) for API tokens and session cookies. Failed logins
are not a table of their own: they are ``session.login_failed`` audit entries, counted per name over a window.
Writes that an operator makes (adding a user or token, disabling, revoking) are audited in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from warnd.schema import api_tokens, audit_log, sessions, users
from warnd.store import Store, audit_in

LOGIN_FAILED = "session.login_failed"  # the audit action failed logins are counted by


class NameTaken(Exception):
    """A user or token of that name exists already."""


class AuthStore:
    def __init__(self, store: Store):
        self.store = store

    # --- users --------------------------------------------------------------------------------------------------

    async def add_user(
        self,
        *,
        name: str,
        password_hash: str,
        role: str,
        now: datetime,
        actor: str,
        remote: str | None = None,
        phone: str | None = None,
    ) -> int:
        async with self.store.write() as conn:
            if (await conn.execute(select(users.c.id).where(users.c.name == name))).first() is not None:
                raise NameTaken(name)
            user_id = (
                await conn.execute(
                    insert(users)
                    .values(
                        name=name,
                        password_hash=password_hash,
                        role=role,
                        created_at=now,
                        disabled=False,
                        phone=phone,
                    )
                    .returning(users.c.id)
                )
            ).scalar_one()
            await audit_in(conn, now, actor, "users.add", f"user:{name}", {"role": role}, remote)
            return int(user_id)

    async def user(self, name: str) -> dict[str, Any] | None:
        async with self.store.read() as conn:
            row = (await conn.execute(select(users).where(users.c.name == name))).first()
            return dict(row._mapping) if row else None

    async def users(self) -> list[dict[str, Any]]:
        """Every account (without its password hash), by name."""
        query = select(*(c for c in users.c if c.name != "password_hash")).order_by(users.c.name)
        async with self.store.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def disable_user(
        self, name: str, *, now: datetime, actor: str, remote: str | None = None
    ) -> bool | None:
        """Disable the account and end its sessions: True when done, False when it was disabled already, None
        when there is no such account."""
        async with self.store.write() as conn:
            row = (
                await conn.execute(select(users.c.id, users.c.disabled).where(users.c.name == name))
            ).first()
            if row is None:
                return None
            ended = (await conn.execute(delete(sessions).where(sessions.c.user_id == row.id))).rowcount
            if row.disabled:
                return False
            await conn.execute(update(users).where(users.c.id == row.id).values(disabled=True))
            await audit_in(
                conn, now, actor, "users.disable", f"user:{name}", {"sessions_ended": ended}, remote
            )
            return True

    async def logged_in(self, user_id: int, now: datetime, password_hash: str | None = None) -> None:
        """Note a successful login (and a re-hashed password when the hashing parameters changed)."""
        values: dict[str, Any] = {"last_login_at": now}
        if password_hash:
            values["password_hash"] = password_hash
        async with self.store.write() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(**values))

    async def failed_logins(self, name: str, since: datetime) -> int:
        """Failed logins for this name since ``since`` (the ``session.login_failed`` audit entries)."""
        query = select(func.count()).where(
            audit_log.c.action == LOGIN_FAILED, audit_log.c.target == f"user:{name}", audit_log.c.at >= since
        )
        async with self.store.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    # --- API tokens ---------------------------------------------------------------------------------------------

    async def add_token(
        self, *, name: str, token_hash: str, role: str, now: datetime, actor: str, remote: str | None = None
    ) -> int:
        async with self.store.write() as conn:
            if (
                await conn.execute(select(api_tokens.c.id).where(api_tokens.c.name == name))
            ).first() is not None:
                raise NameTaken(name)
            token_id = (
                await conn.execute(
                    insert(api_tokens)
                    .values(name=name, token_hash=token_hash, role=role, created_at=now, revoked=False)
                    .returning(api_tokens.c.id)
                )
            ).scalar_one()
            await audit_in(conn, now, actor, "tokens.add", f"token:{name}", {"role": role}, remote)
            return int(token_id)

    async def token(self, token_hash: str) -> dict[str, Any] | None:
        async with self.store.read() as conn:
            row = (
                await conn.execute(select(api_tokens).where(api_tokens.c.token_hash == token_hash))
            ).first()
            return dict(row._mapping) if row else None

    async def tokens(self) -> list[dict[str, Any]]:
        """Every token (without its hash), by name."""
        query = select(*(c for c in api_tokens.c if c.name != "token_hash")).order_by(api_tokens.c.name)
        async with self.store.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def token_used(self, token_id: int, now: datetime) -> None:
        async with self.store.write() as conn:
            await conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now))

    async def revoke_token(
        self, name: str, *, now: datetime, actor: str, remote: str | None = None
    ) -> bool | None:
        """True when revoked now, False when it was revoked already, None when there is no such token."""
        async with self.store.write() as conn:
            row = (
                await conn.execute(
                    select(api_tokens.c.id, api_tokens.c.revoked).where(api_tokens.c.name == name)
                )
            ).first()
            if row is None:
                return None
            if row.revoked:
                return False
            await conn.execute(update(api_tokens).where(api_tokens.c.id == row.id).values(revoked=True))
            await audit_in(conn, now, actor, "tokens.revoke", f"token:{name}", {}, remote)
            return True

    # --- sessions -----------------------------------------------------------------------------------------------

    async def create_session(
        self,
        *,
        session_id: str,
        user_id: int,
        csrf_token: str,
        now: datetime,
        expires_at: datetime,
        remote: str | None,
    ) -> None:
        """A new session; sessions that expired (anyone's) are deleted on the way."""
        async with self.store.write() as conn:
            await conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
            await conn.execute(
                insert(sessions).values(
                    id=session_id,
                    user_id=user_id,
                    csrf_token=csrf_token,
                    created_at=now,
                    expires_at=expires_at,
                    remote=(remote or "")[:100] or None,
                )
            )

    async def session(self, session_id: str) -> dict[str, Any] | None:
        """The session with its user's name, role and disabled flag (``user_name``, ``role``, ``disabled``)."""
        query = (
            select(sessions, users.c.name.label("user_name"), users.c.role, users.c.disabled)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id == session_id)
        )
        async with self.store.read() as conn:
            row = (await conn.execute(query)).first()
            return dict(row._mapping) if row else None

    async def extend_session(self, session_id: str, expires_at: datetime) -> None:
        async with self.store.write() as conn:
            await conn.execute(
                update(sessions).where(sessions.c.id == session_id).values(expires_at=expires_at)
            )

    async def end_session(self, session_id: str) -> bool:
        async with self.store.write() as conn:
            return bool((await conn.execute(delete(sessions).where(sessions.c.id == session_id))).rowcount)
