"""Accounts and access (docs/security.md): who may call which route.

- **Roles**, lowest to highest: viewer < operator < approver < admin. A role may do everything a lower one may.
- **Users** log in to the console with a name and password (argon2id, salted and slow; at least 10 characters)
  and get a session: the ``warnd_session`` cookie (HttpOnly, SameSite=Strict, Secure over https) plus a CSRF
  token that every state-changing request of the session must send as ``X-CSRF-Token``. Sessions slide: 12 h
  after the last request they end.
- **API tokens** are for machines: ``Authorization: Bearer wd_…``. ``warnd tokens add`` prints one once; only
  its SHA-256 is kept. Tokens from config (``api.tokens``, each with a role, admin by default) work too.
- **Permissions**: :data:`PERMISSIONS` maps every route (method + aiohttp canonical path) to the lowest role
  that may call it. The middleware in :mod:`warnd.api` refuses a route that is not in the table, so a new route
  cannot be forgotten open; ``tests/unit/test_access.py`` checks the table against the routes ``make_web_app``
  registers.

Users and tokens are managed on the command line (``warnd users …``, ``warnd tokens …``), every change audited.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import hmac
import re
import secrets
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from warnd.clock import Clock
from warnd.config import ApiToken, Config, normalise_phone
from warnd.logs import mask_phone
from warnd.store import Store
from warnd.store.auth import LOGIN_FAILED, AuthStore, NameTaken

VIEWER, OPERATOR, APPROVER, ADMIN = ROLES = ("viewer", "operator", "approver", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}
ROLE_LABELS = {VIEWER: "查看员", OPERATOR: "值班员", APPROVER: "审批人", ADMIN: "管理员"}

# route kinds that need no role: the middleware lets them through on their own terms
PUBLIC = "public"  # no credentials at all: /healthz, the login, the console's static files
LINK = "link"  # the signed token in the URL is the credential (/a/ 叫应, /k/ 敲门; the route checks it)
SIGNED = "signed"  # an HMAC-signed webhook (X-Warnd-Signature with api.feedback_secrets[kind])

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
NAME = re.compile(r"^[\w.@-]{1,64}$")  # user and token names (\w includes Chinese characters)
TOKEN_PREFIX = "wd_"
SESSION_COOKIE = "warnd_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = timedelta(hours=12)  # sliding: from the last request
# a session's expiry (a token's last_used_at) is written at most this often
SLIDE_EVERY = timedelta(minutes=1)
LOGIN_FAILURES = 5  # failed logins for one name within LOGIN_WINDOW; the next attempt gets 429
LOGIN_WINDOW = timedelta(minutes=15)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


# --- the permission table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """Who may call one route: ``role`` is the lowest role that may (or PUBLIC / LINK / SIGNED). A request with
    any of the ``raised_by`` query parameters (name, value) needs ``raised_to`` instead."""

    role: str
    raised_by: tuple[tuple[str, str], ...] = ()
    raised_to: str | None = None

    def needs(self, query: Mapping[str, str]) -> str:
        if self.raised_to and any(query.get(name) == value for name, value in self.raised_by):
            return self.raised_to
        return self.role


PERMISSIONS: dict[tuple[str, str], Access] = {
    ("GET", "/healthz"): Access(PUBLIC),
    # the session (warnd/api_auth.py)
    ("POST", "/api/v1/session"): Access(PUBLIC),
    ("GET", "/api/v1/session"): Access(VIEWER),
    ("DELETE", "/api/v1/session"): Access(VIEWER),
    # alerts and deliveries (warnd/api.py)
    ("GET", "/api/v1/alerts"): Access(VIEWER),
    ("POST", "/api/v1/alerts"): Access(OPERATOR),
    ("GET", "/api/v1/alerts/{id}"): Access(VIEWER),
    ("GET", "/api/v1/alerts/{id}/deliveries"): Access(VIEWER),
    ("GET", "/api/v1/quarantine"): Access(VIEWER),
    ("GET", "/api/v1/feeds"): Access(VIEWER),
    ("GET", "/api/v1/channels"): Access(VIEWER),
    ("POST", "/api/v1/readings"): Access(OPERATOR),
    ("GET", "/api/v1/hydrology"): Access(VIEWER),
    ("GET", "/api/v1/audio/{name}"): Access(VIEWER),
    ("GET", "/api/v1/push/vapid-public-key"): Access(VIEWER),
    ("POST", "/api/v1/feedback/{kind}"): Access(SIGNED),
    # the broadcast composer and two-person approval (warnd/api_broadcasts.py): the submitter never approves
    ("GET", "/api/v1/composer"): Access(VIEWER),
    ("POST", "/api/v1/broadcasts/preview"): Access(OPERATOR),
    ("POST", "/api/v1/broadcasts"): Access(OPERATOR),
    ("GET", "/api/v1/broadcasts"): Access(VIEWER),
    ("GET", "/api/v1/broadcasts/{id}"): Access(VIEWER),
    ("POST", "/api/v1/broadcasts/{id}/approve"): Access(APPROVER),
    ("POST", "/api/v1/broadcasts/{id}/reject"): Access(APPROVER),
    ("POST", "/api/v1/broadcasts/{id}/withdraw"): Access(OPERATOR),
    ("POST", "/api/v1/alerts/{id}/update"): Access(OPERATOR),
    ("POST", "/api/v1/alerts/{id}/cancel"): Access(OPERATOR),
    # 叫应 (warnd/api_acks.py)
    ("GET", "/a/{token}"): Access(LINK),
    ("POST", "/a/{token}"): Access(LINK),
    ("POST", "/api/v1/feedback/reply"): Access(SIGNED),
    ("GET", "/api/v1/alerts/{id}/acks"): Access(VIEWER),
    ("POST", "/api/v1/alerts/{id}/acks"): Access(OPERATOR),
    # escalation and door-knock lists (warnd/api_escalation.py): full phone numbers need an operator
    ("GET", "/api/v1/alerts/{id}/escalations"): Access(VIEWER),
    ("GET", "/api/v1/alerts/{id}/doorknock"): Access(
        VIEWER, raised_by=(("phones", "full"), ("format", "csv")), raised_to=OPERATOR
    ),
    ("GET", "/api/v1/alerts/{id}/doorknock/print"): Access(OPERATOR),
    ("POST", "/api/v1/alerts/{id}/doorknock/{household}"): Access(OPERATOR),
    ("GET", "/k/{token}"): Access(LINK),
    ("POST", "/k/{token}"): Access(LINK),
    # coverage reports and recommendations (warnd/api_reports.py)
    ("GET", "/api/v1/alerts/{id}/report"): Access(VIEWER),
    ("GET", "/api/v1/reports"): Access(VIEWER),
    ("GET", "/api/v1/reports/{root_id}"): Access(VIEWER),
    ("GET", "/api/v1/recommendations"): Access(VIEWER),
    # delivery log review (warnd/api_logs.py): full phone numbers for an admin only; the CSV export
    # (?format=csv) needs an operator, which the route checks (one raised role per entry)
    ("GET", "/api/v1/deliveries"): Access(VIEWER, raised_by=(("phones", "full"),), raised_to=ADMIN),
    ("GET", "/api/v1/recipients/{id}/history"): Access(VIEWER),
    # the live board, its event stream, an alert's timeline and the dashboard (warnd/api_board.py)
    ("GET", "/api/v1/board"): Access(VIEWER),
    ("GET", "/api/v1/events"): Access(VIEWER),
    ("GET", "/api/v1/alerts/{id}/timeline"): Access(VIEWER),
    ("GET", "/api/v1/dashboard"): Access(VIEWER),
    # subscribers, templates and config sections (warnd/api_admin.py, docs/admin.md): reading is the viewer's,
    # full phone numbers the admin's (?phones=full); subscribers are edited, imported and exported by an operator,
    # templates previewed by an operator and saved by an admin; config sections saved by an admin
    ("GET", "/api/v1/subscribers"): Access(VIEWER, raised_by=(("phones", "full"),), raised_to=ADMIN),
    ("POST", "/api/v1/subscribers"): Access(OPERATOR),
    ("GET", "/api/v1/subscribers/export.csv"): Access(
        OPERATOR, raised_by=(("phones", "full"),), raised_to=ADMIN
    ),
    ("POST", "/api/v1/subscribers/import"): Access(OPERATOR),
    ("GET", "/api/v1/subscribers/{id}"): Access(VIEWER, raised_by=(("phones", "full"),), raised_to=ADMIN),
    ("PUT", "/api/v1/subscribers/{id}"): Access(OPERATOR),
    ("DELETE", "/api/v1/subscribers/{id}"): Access(OPERATOR),
    ("GET", "/api/v1/templates"): Access(VIEWER),
    ("POST", "/api/v1/templates/preview"): Access(OPERATOR),
    ("PUT", "/api/v1/templates/{language}/{name}"): Access(ADMIN),
    ("GET", "/api/v1/config/{section}"): Access(VIEWER),
    ("PUT", "/api/v1/config/{section}"): Access(ADMIN),
    # this API's OpenAPI document (warnd/api_openapi.py)
    ("GET", "/api/v1/openapi.json"): Access(VIEWER),
    # the operator console's static shell (warnd/api_console.py): it holds no data, every API call it makes
    # needs the session; / and /console redirect to /console/
    ("GET", "/"): Access(PUBLIC),
    ("GET", "/console"): Access(PUBLIC),
    ("GET", "/console/"): Access(PUBLIC),
    ("GET", "/console/{path}"): Access(PUBLIC),
}


def access_for(method: str, canonical: str) -> Access | None:
    """The table's entry for a route (HEAD is GET's), or None when the route is not listed."""
    return PERMISSIONS.get(("GET" if method == "HEAD" else method, canonical))


def route_key(request: web.Request) -> tuple[str, str] | None:
    """(method, canonical path) of the route the request matched; None when none did (404 / 405)."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    return request.match_info.route.method, resource.canonical


def allows(role: str, needed: str) -> bool:
    return needed in RANK and RANK.get(role, -1) >= RANK[needed]


# --- secrets -----------------------------------------------------------------------------------------------------

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile: t=3, m=64 MiB, p=4, 16-byte salt
_hash_slots = threading.BoundedSemaphore(4)  # at most 4 hashes at once (64 MiB each), in worker threads


def hash_password(password: str) -> str:
    """The argon2id hash (salted, with its parameters) of a password. Slow on purpose: call it in a thread."""
    with _hash_slots:
        return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``. Slow on purpose: call it in a thread."""
    with _hash_slots:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


@cache
def _dummy_hash() -> str:
    """What an unknown name's password is checked against, so it takes as long as a known one's."""
    return hash_password(secrets.token_urlsafe(16))


def _check(password_hash: str | None, password: str) -> bool:
    """verify_password, against the dummy hash when there is no account (then always False). The dummy hash is
    made by the first login whichever it is, so that one is not the only slow unknown name."""
    dummy = _dummy_hash()
    if password_hash is None:
        verify_password(dummy, password)
        return False
    return verify_password(password_hash, password)


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"密码至少 {MIN_PASSWORD} 个字符 (password must have at least {MIN_PASSWORD} characters)"
    if len(password) > MAX_PASSWORD:
        return f"密码最多 {MAX_PASSWORD} 个字符 (password must have at most {MAX_PASSWORD} characters)"
    return None


def name_problem(name: str) -> str | None:
    if not NAME.match(name):
        return "名称须为 1–64 个字母、数字、汉字或 . _ @ - (name: 1-64 letters, digits, . _ @ -)"
    return None


def role_problem(role: str) -> str | None:
    if role not in RANK:
        return f"未知角色 {role!r}，可选 {', '.join(ROLES)} (unknown role)"
    return None


def new_token() -> str:
    """A new API token: ``wd_`` + 32 random bytes, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def sha256_hex(value: str) -> str:
    """What is stored of an API token or a session cookie."""
    return hashlib.sha256(value.encode()).hexdigest()


# --- who is calling ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: ``principal`` is ``token:<name>`` or ``user:<name>`` (what the audit log and
    ``request[PRINCIPAL]`` hold), ``role`` its role; ``session_id`` / ``csrf_token`` / ``expires_at`` are set
    for a console session (cookie), None for a bearer token."""

    principal: str
    role: str
    name: str
    session_id: str | None = None
    csrf_token: str | None = None
    expires_at: datetime | None = None

    @property
    def kind(self) -> str:
        return "session" if self.session_id else "token"


IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)


@dataclass(frozen=True)
class Login:
    """What a login attempt came to: ``outcome`` ok | failed | locked; ``cookie`` (the session cookie's value,
    only here) and ``identity`` when ok."""

    outcome: str
    identity: Identity | None = None
    cookie: str | None = None


class AccountError(Exception):
    """A refused account or token change; the message says why (Chinese first)."""


class Accounts:
    """Users, API tokens and sessions over :class:`warnd.store.auth.AuthStore`, on ``clock``'s time."""

    def __init__(self, store: Store, clock: Clock, config_tokens: Iterable[ApiToken] = ()):
        self.db = AuthStore(store)
        self.store = store
        self.clock = clock
        # (name, token, role) of config's api.tokens with a value
        self.config_tokens = [(t.name, t.token, t.role) for t in config_tokens if t.token]

    # --- managing -----------------------------------------------------------------------------------------------

    async def add_user(
        self,
        name: str,
        password: str,
        role: str,
        *,
        actor: str,
        remote: str | None = None,
        phone: str | None = None,
    ) -> int:
        """``phone``: where an approver is told of drafts waiting for them (warnd/broadcasts.py)."""
        problem = name_problem(name) or role_problem(role) or password_problem(password)
        if problem:
            raise AccountError(problem)
        if phone is not None:
            try:
                phone = normalise_phone(phone)
            except ValueError as exc:
                raise AccountError(f"phone: {exc}") from None
        password_hash = await asyncio.to_thread(hash_password, password)
        try:
            return await self.db.add_user(
                name=name,
                password_hash=password_hash,
                role=role,
                now=self.clock.now(),
                actor=actor,
                remote=remote,
                phone=phone,
            )
        except NameTaken:
            raise AccountError(f"用户 {name} 已存在 (user exists)") from None

    async def disable_user(self, name: str, *, actor: str, remote: str | None = None) -> bool:
        """Disable an account and end its sessions; False when it was disabled already."""
        done = await self.db.disable_user(name, now=self.clock.now(), actor=actor, remote=remote)
        if done is None:
            raise AccountError(f"没有用户 {name} (no such user)")
        return done

    async def add_token(self, name: str, role: str, *, actor: str, remote: str | None = None) -> str:
        """A new API token (returned once; only its SHA-256 is stored)."""
        problem = name_problem(name) or role_problem(role)
        if problem:
            raise AccountError(problem)
        if any(name == configured for configured, _, _ in self.config_tokens):
            raise AccountError(f"配置文件 api.tokens 已有令牌 {name} (a config token has this name)")
        token = new_token()
        try:
            await self.db.add_token(
                name=name,
                token_hash=sha256_hex(token),
                role=role,
                now=self.clock.now(),
                actor=actor,
                remote=remote,
            )
        except NameTaken:
            raise AccountError(f"令牌 {name} 已存在 (token exists)") from None
        return token

    async def revoke_token(self, name: str, *, actor: str, remote: str | None = None) -> bool:
        """Revoke a token; False when it was revoked already."""
        done = await self.db.revoke_token(name, now=self.clock.now(), actor=actor, remote=remote)
        if done is None:
            raise AccountError(f"没有令牌 {name} (no such token; config tokens are removed from config)")
        return done

    # --- authenticating -----------------------------------------------------------------------------------------

    async def bearer(self, token: str) -> Identity | None:
        """The caller behind a bearer token: a config token (compared in constant time) or a stored one that is
        not revoked (its last_used_at written at most once a minute)."""
        if not token:
            return None
        given = token.encode()
        found: tuple[str, str] | None = None
        for name, configured, role in self.config_tokens:  # every entry compared: no early exit
            if hmac.compare_digest(given, configured.encode()) and found is None:
                found = (name, role)
        if found:
            return Identity(principal=f"token:{found[0]}", role=found[1], name=found[0])
        digest = sha256_hex(token)
        row = await self.db.token(digest)
        if row is None or row["revoked"] or not hmac.compare_digest(row["token_hash"], digest):
            return None
        now = self.clock.now()
        if row["last_used_at"] is None or now - row["last_used_at"] >= SLIDE_EVERY:
            await self.db.token_used(row["id"], now)
        return Identity(principal=f"token:{row['name']}", role=row["role"], name=row["name"])

    async def session(self, cookie: str) -> Identity | None:
        """The user behind a session cookie: a session that has not expired, of an account that is not disabled.
        Using it moves its expiry to 12 h from now (written at most once a minute)."""
        if not cookie:
            return None
        row = await self.db.session(sha256_hex(cookie))
        now = self.clock.now()
        if row is None or row["disabled"] or row["expires_at"] <= now or row["role"] not in RANK:
            return None
        expires_at = row["expires_at"]
        if now + SESSION_TTL - expires_at >= SLIDE_EVERY:
            expires_at = now + SESSION_TTL
            await self.db.extend_session(row["id"], expires_at)
        return Identity(
            principal=f"user:{row['user_name']}",
            role=row["role"],
            name=row["user_name"],
            session_id=row["id"],
            csrf_token=row["csrf_token"],
            expires_at=expires_at,
        )

    async def login(self, name: str, password: str, *, remote: str | None) -> Login:
        """Check a name and password; a new session when they match an enabled account. The answer takes as long
        for an unknown name as for a wrong password. After LOGIN_FAILURES failures for a name within
        LOGIN_WINDOW, attempts for it are refused (``locked``) without checking. All audited."""
        now = self.clock.now()
        target = f"user:{name[:64]}"
        if await self.db.failed_logins(name[:64], now - LOGIN_WINDOW) >= LOGIN_FAILURES:
            await self.store.audit(
                now,
                "anonymous",
                "session.login_locked",
                target=target,
                detail={"failures": LOGIN_FAILURES, "window_minutes": LOGIN_WINDOW.total_seconds() / 60},
                remote=remote,
            )
            return Login("locked")
        user = await self.db.user(name) if NAME.match(name) else None
        ok = await asyncio.to_thread(_check, user["password_hash"] if user else None, password)
        reason = "unknown user" if user is None else ("wrong password" if not ok else None)
        if user is not None and ok and user["disabled"]:
            reason = "account disabled"
        if reason or user is None:
            await self.store.audit(
                now, "anonymous", LOGIN_FAILED, target=target, detail={"reason": reason}, remote=remote
            )
            return Login("failed")
        rehashed = None
        if needs_rehash(user["password_hash"]):
            rehashed = await asyncio.to_thread(hash_password, password)
        await self.db.logged_in(user["id"], now, rehashed)
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session_id = sha256_hex(cookie)
        expires_at = now + SESSION_TTL
        await self.db.create_session(
            session_id=session_id,
            user_id=user["id"],
            csrf_token=csrf,
            now=now,
            expires_at=expires_at,
            remote=remote,
        )
        principal = f"user:{user['name']}"
        await self.store.audit(now, principal, "session.login", target=principal, remote=remote)
        identity = Identity(
            principal=principal,
            role=user["role"],
            name=user["name"],
            session_id=session_id,
            csrf_token=csrf,
            expires_at=expires_at,
        )
        return Login("ok", identity, cookie)

    async def logout(self, identity: Identity, *, remote: str | None) -> None:
        if identity.session_id:
            await self.db.end_session(identity.session_id)
            await self.store.audit(
                self.clock.now(),
                identity.principal,
                "session.logout",
                target=identity.principal,
                remote=remote,
            )


def csrf_ok(identity: Identity, request: web.Request) -> bool:
    """A session's state-changing request carries the session's CSRF token (bearer tokens need none)."""
    if identity.session_id is None or request.method in SAFE_METHODS:
        return True
    return hmac.compare_digest(
        request.headers.get(CSRF_HEADER, "").encode(), (identity.csrf_token or "").encode()
    )


# --- command line ------------------------------------------------------------------------------------------------

Command = Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]


def add_cli(sub: Any, common: argparse.ArgumentParser) -> dict[str, Command]:
    """Adds ``warnd users`` and ``warnd tokens``; returns their handlers by command name."""
    users = sub.add_parser("users", help="console accounts: add, list, disable")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", parents=[common], help="add an account (the first admin too)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument(
        "--phone", help="mobile number: approvers and admins are told by SMS of drafts to approve"
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (otherwise: asked twice on the terminal)",
    )
    users_sub.add_parser("list", parents=[common], help="list accounts")
    disable = users_sub.add_parser("disable", parents=[common], help="disable an account, end its sessions")
    disable.add_argument("name", metavar="NAME")

    tokens = sub.add_parser("tokens", help="API tokens for machines: add, list, revoke")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    tadd = tokens_sub.add_parser("add", parents=[common], help="add a token; it is printed once")
    tadd.add_argument("name", metavar="NAME")
    tadd.add_argument("--role", required=True, choices=ROLES)
    tokens_sub.add_parser("list", parents=[common], help="list tokens (never the tokens themselves)")
    revoke = tokens_sub.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("name", metavar="NAME")
    return {"users": cmd_users, "tokens": cmd_tokens}


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1].removesuffix("\r") if line.endswith("\n") else line
    if not sys.stdin.isatty():
        print("warnd users add: no terminal to ask on; use --password-stdin", file=sys.stderr)
        return None
    first = getpass.getpass("密码 (password): ")
    if getpass.getpass("再输入一次 (again): ") != first:
        print("两次输入的密码不一致 (passwords differ)", file=sys.stderr)
        return None
    return first


async def _accounts(config: Config, args: argparse.Namespace) -> Accounts:
    from warnd.clock import SystemClock

    store = Store.open(args.database or config.database_url)
    await store.upgrade()
    return Accounts(store, SystemClock(), config.api.tokens)


def _when(value: datetime | None, config: Config) -> str:
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(config.timezone)).strftime("%Y-%m-%d %H:%M") if value else "-"


async def cmd_users(config: Config, args: argparse.Namespace) -> int:
    from warnd.cli import actor, print_table

    password = ""
    if args.users_command == "add":
        given = _read_password(args)
        if given is None:
            return 2
        if not given:
            print("warnd users add: empty password", file=sys.stderr)
            return 2
        password = given
    accounts = await _accounts(config, args)
    try:
        if args.users_command == "add":
            try:
                await accounts.add_user(args.name, password, args.role, actor=actor(args), phone=args.phone)
            except AccountError as exc:
                print(f"warnd users add: {exc}", file=sys.stderr)
                return 1
            print(f"added user {args.name} ({args.role})")
        elif args.users_command == "disable":
            try:
                done = await accounts.disable_user(args.name, actor=actor(args))
            except AccountError as exc:
                print(f"warnd users disable: {exc}", file=sys.stderr)
                return 1
            print(f"disabled user {args.name}" if done else f"user {args.name} was disabled already")
        else:
            rows = [
                [
                    u["name"],
                    u["role"],
                    mask_phone(u["phone"]) if u["phone"] else "",
                    "disabled" if u["disabled"] else "active",
                    _when(u["created_at"], config),
                    _when(u["last_login_at"], config),
                ]
                for u in await accounts.db.users()
            ]
            print_table(("name", "role", "phone", "state", "created", "last_login"), rows)
        return 0
    finally:
        await accounts.store.close()


async def cmd_tokens(config: Config, args: argparse.Namespace) -> int:
    from warnd.cli import actor, print_table

    accounts = await _accounts(config, args)
    try:
        if args.tokens_command == "add":
            try:
                token = await accounts.add_token(args.name, args.role, actor=actor(args))
            except AccountError as exc:
                print(f"warnd tokens add: {exc}", file=sys.stderr)
                return 1
            print(token)
            print(
                f"token {args.name} ({args.role}): shown only this once; send it as "
                "Authorization: Bearer <token>",
                file=sys.stderr,
            )
        elif args.tokens_command == "revoke":
            try:
                done = await accounts.revoke_token(args.name, actor=actor(args))
            except AccountError as exc:
                print(f"warnd tokens revoke: {exc}", file=sys.stderr)
                return 1
            print(f"revoked token {args.name}" if done else f"token {args.name} was revoked already")
        else:
            rows = [
                [
                    t["name"],
                    t["role"],
                    "revoked" if t["revoked"] else "active",
                    _when(t["created_at"], config),
                    _when(t["last_used_at"], config),
                    "database",
                ]
                for t in await accounts.db.tokens()
            ]
            rows += [[name, role, "active", "-", "-", "config"] for name, _, role in accounts.config_tokens]
            print_table(("name", "role", "state", "created", "last_used", "source"), rows)
        return 0
    finally:
        await accounts.store.close()
