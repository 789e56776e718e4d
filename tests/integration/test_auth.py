"""Accounts and access over real HTTP (aiohttp TestServer on 127.0.0.1) around an App on a real SQLite file:
401 without credentials on every route, what each role may do, console sessions with CSRF, sliding expiry,
lockout after failed logins, disabled users, revoked tokens, and the users / tokens commands."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import cap_cn, edit_yaml

from warnd.api import make_web_app
from warnd.app import App
from warnd.auth import (
    ADMIN,
    APPROVER,
    CSRF_HEADER,
    OPERATOR,
    PERMISSIONS,
    RANK,
    ROLES,
    SESSION_COOKIE,
    SESSION_TTL,
    VIEWER,
    Accounts,
    access_for,
    sha256_hex,
)
from warnd.cli import main
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.store.auth import AuthStore

PASSWORD = "值班密码-correct-horse"
VILLAGE = "500228101201"
BEARER_ONLY = "authentication required"
PARAMS = {
    "id": None,
    "root_id": None,
    "household": "h-1",
    "name": "0123456789abcdef01234567.wav",
    "language": "zh-CN",  # PUT /api/v1/templates/zh-CN/<no such name>: 404, nothing written
    "section": "groups",  # PUT /api/v1/config/groups without a body: 400, nothing written
}


@pytest.fixture
async def server(app: App) -> AsyncIterator[TestServer]:
    async with TestServer(make_web_app(app), host="127.0.0.1", port=0) as test_server:
        yield test_server


@pytest.fixture
async def anon(server: TestServer) -> AsyncIterator[TestClient]:
    """A client without credentials (its cookie jar keeps a session once it logs in)."""
    async with TestClient(server) as client:
        yield client


@pytest.fixture
def accounts(app: App) -> Accounts:
    return Accounts(app.store, app.clock, app.config.api.tokens)


@pytest.fixture
async def tokens(accounts: Accounts) -> dict[str, str]:
    """A database token per role, made through the store."""
    return {role: await accounts.add_token(f"t-{role}", role, actor="tests:setup") for role in ROLES}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def path_for(canonical: str, alert_id: int) -> str:
    values = {**PARAMS, "id": str(alert_id), "root_id": str(alert_id)}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)] or "1", canonical)


def guarded_routes(server: TestServer) -> list[tuple[str, str]]:
    """(method, canonical) of every registered route that needs credentials (not /healthz, the login, the
    signed-link pages or the signed webhooks), HEAD left out (it is GET's)."""
    assert isinstance(server.app, web.Application)
    out = []
    for route in server.app.router.routes():
        assert route.resource is not None
        if route.method == "HEAD":
            continue
        access = access_for(route.method, route.resource.canonical)
        assert access is not None, (route.method, route.resource.canonical)
        if access.role in RANK:
            out.append((route.method, route.resource.canonical))
    return sorted(out)


async def post_alert(client: TestClient, headers: dict[str, str]) -> Any:
    return await client.post(
        "/api/v1/alerts", data=cap_cn(), headers={"Content-Type": "application/cap+xml", **headers}
    )


async def login(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    return await client.post("/api/v1/session", json={"name": name, "password": password})


async def audit(app: App, action: str) -> list[dict[str, Any]]:
    return [e for e in await app.store.audit_entries(500) if e["action"] == action]


# --- no credentials --------------------------------------------------------------------------------------------


async def test_every_guarded_route_without_credentials_is_401(server: TestServer, anon: TestClient) -> None:
    routes = guarded_routes(server)
    assert routes == sorted(k for k, a in PERMISSIONS.items() if a.role in RANK)  # all but the open ones
    for method, canonical in routes:
        for headers in ({}, bearer("wd_not-a-real-token"), {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            resp = await anon.request(method, path_for(canonical, 1), headers=headers)
            assert resp.status == 401, (method, canonical, headers, await resp.text())
            assert (await resp.json())["error"].startswith(BEARER_ONLY)
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # a cookie that is no session is no credential either (and the browser is told to forget it)
    resp = await anon.get("/api/v1/alerts", headers={"Cookie": f"{SESSION_COOKIE}=forged"})
    assert resp.status == 401
    assert f"{SESSION_COOKIE}=" in resp.headers.get("Set-Cookie", "")


async def test_open_routes_stay_open_and_unknown_paths_need_credentials_first(
    anon: TestClient, tokens: dict[str, str]
) -> None:
    assert (await anon.get("/healthz")).status == 200
    # the console's static shell holds no data: it loads without credentials, its API calls need the session
    assert (await anon.get("/console/")).status == 200
    assert (await anon.get("/console/js/app.js")).status == 200
    home = await anon.get("/", allow_redirects=False)
    assert home.status == 302 and home.headers["Location"] == "/console/"
    page = await anon.get("/a/not-a-valid-token")  # the signed link is checked by the route: no 401
    assert page.status not in (401, 403)
    knock = await anon.get("/k/not-a-valid-token")
    assert knock.status not in (401, 403)
    unsigned = await anon.post("/api/v1/feedback/sms", json=[])
    assert unsigned.status == 401 and "signature required" in (await unsigned.json())["error"]
    # probing for routes tells nothing without credentials; with them, 404 / 405 as usual
    assert (await anon.get("/api/v1/no-such-thing")).status == 401
    assert (await anon.get("/api/v1/no-such-thing", headers=bearer(tokens[VIEWER]))).status == 404
    assert (await anon.put("/api/v1/alerts", headers=bearer(tokens[ADMIN]))).status == 405


# --- roles -----------------------------------------------------------------------------------------------------


async def test_each_role_may_do_only_what_it_may(
    server: TestServer, anon: TestClient, tokens: dict[str, str]
) -> None:
    created = await post_alert(anon, bearer(tokens[OPERATOR]))
    assert created.status == 201, await created.text()
    alert_id = (await created.json())["id"]
    for role in ROLES:
        for method, canonical in guarded_routes(server):
            access = access_for(method, canonical)
            assert access is not None
            resp = await anon.request(method, path_for(canonical, alert_id), headers=bearer(tokens[role]))
            if RANK[role] < RANK[access.role]:
                assert resp.status == 403, (role, method, canonical)
                assert (await resp.json())["error"] == f"forbidden: needs role {access.role}"
            else:
                assert resp.status not in (401, 403), (role, method, canonical, await resp.text())


async def test_viewer_reads_operator_acts(anon: TestClient, tokens: dict[str, str], app: App) -> None:
    viewer, operator = bearer(tokens[VIEWER]), bearer(tokens[OPERATOR])
    refused = await post_alert(anon, viewer)
    assert refused.status == 403
    assert (await refused.json()) == {"error": "forbidden: needs role operator"}
    assert await app.store.list_alerts(limit=10) == []  # nothing was ingested
    created = await post_alert(anon, operator)
    assert created.status == 201
    alert_id = (await created.json())["id"]
    listed = await anon.get("/api/v1/alerts", headers=viewer)
    assert listed.status == 200 and [a["id"] for a in (await listed.json())["alerts"]] == [alert_id]

    doorknock = f"/api/v1/alerts/{alert_id}/doorknock"
    assert (await anon.get(doorknock, headers=viewer)).status == 200  # masked phones
    for query in ({"phones": "full"}, {"format": "csv"}, {"phones": "full", "village": VILLAGE}):
        resp = await anon.get(doorknock, params=query, headers=viewer)
        assert resp.status == 403, query
        assert (await resp.json())["error"] == "forbidden: needs role operator"
        assert (await anon.get(doorknock, params=query, headers=operator)).status == 200, query
    assert (await anon.get(doorknock + "/print", headers=viewer)).status == 403
    assert (await anon.get(doorknock + "/print", headers=operator)).status == 200
    # approvers and admins may do what operators may
    for role in (APPROVER, ADMIN):
        resp = await anon.get(doorknock, params={"phones": "full"}, headers=bearer(tokens[role]))
        assert resp.status == 200, role
    # who am I, as a token
    me = await anon.get("/api/v1/session", headers=viewer)
    assert await me.json() == {
        "principal": "token:t-viewer",
        "kind": "token",
        "role": "viewer",
        "role_label": "查看员",
        "token": "t-viewer",
    }


async def test_config_token_has_its_role(config_dir: Path, clock: FakeClock) -> None:
    def tokens(data: dict[str, Any]) -> None:
        data["api"]["tokens"] = [
            {"name": "wall-screen", "token": "wd_wall-screen-token-0123456789", "role": "viewer"}
        ]

    edit_yaml(config_dir / "warnd.yaml", tokens)
    app = App(load_config(config_dir), clock=clock)
    await app.start()
    try:
        async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0)) as client:
            headers = bearer("wd_wall-screen-token-0123456789")
            assert (await client.get("/api/v1/alerts", headers=headers)).status == 200
            refused = await post_alert(client, headers)
            assert (
                refused.status == 403 and (await refused.json())["error"] == "forbidden: needs role operator"
            )
            me = await (await client.get("/api/v1/session", headers=headers)).json()
            assert me["principal"] == "token:wall-screen" and me["role"] == "viewer"
    finally:
        await app.close()


async def test_revoked_token_is_401_and_use_is_noted(
    anon: TestClient, accounts: Accounts, tokens: dict[str, str], app: App, clock: FakeClock
) -> None:
    headers = bearer(tokens[VIEWER])
    assert (await anon.get("/api/v1/alerts", headers=headers)).status == 200
    row = next(t for t in await AuthStore(app.store).tokens() if t["name"] == "t-viewer")
    assert row["last_used_at"] == clock.now()
    clock.advance(30)  # within a minute: not written again
    assert (await anon.get("/api/v1/alerts", headers=headers)).status == 200
    row = next(t for t in await AuthStore(app.store).tokens() if t["name"] == "t-viewer")
    assert row["last_used_at"] == clock.now() - timedelta(seconds=30)
    assert await accounts.revoke_token("t-viewer", actor="tests:admin") is True
    resp = await anon.get("/api/v1/alerts", headers=headers)
    assert resp.status == 401
    assert await accounts.revoke_token("t-viewer", actor="tests:admin") is False
    assert [e["target"] for e in await audit(app, "tokens.revoke")] == ["token:t-viewer"]


# --- sessions --------------------------------------------------------------------------------------------------


async def test_login_cookie_csrf_logout(anon: TestClient, accounts: Accounts, app: App) -> None:
    await accounts.add_user("张值班", PASSWORD, OPERATOR, actor="tests:setup")
    resp = await login(anon, "张值班")
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["user"] == "张值班" and data["role"] == "operator" and data["role_label"] == "值班员"
    assert data["kind"] == "session" and data["principal"] == "user:张值班"
    csrf = data["csrf_token"]
    assert len(csrf) >= 40
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; Secure when the request is https
    value = resp.cookies[SESSION_COOKIE].value
    stored = await AuthStore(app.store).session(sha256_hex(value))
    assert stored is not None and stored["csrf_token"] == csrf and stored["remote"] == "127.0.0.1"

    assert (await anon.get("/api/v1/alerts")).status == 200  # the cookie is the credential
    me = await (await anon.get("/api/v1/session")).json()
    assert me["user"] == "张值班" and me["csrf_token"] == csrf

    no_csrf = await post_alert(anon, {})
    assert no_csrf.status == 403 and CSRF_HEADER in (await no_csrf.json())["error"]
    wrong = await post_alert(anon, {CSRF_HEADER: csrf[:-2] + "xx"})
    assert wrong.status == 403
    assert await app.store.list_alerts(limit=10) == []
    ok = await post_alert(anon, {CSRF_HEADER: csrf})
    assert ok.status == 201, await ok.text()
    posted = await audit(app, "alert.post")
    assert [e["actor"] for e in posted] == ["user:张值班"]

    assert (await anon.delete("/api/v1/session")).status == 403  # logout is state-changing too
    out = await anon.delete("/api/v1/session", headers={CSRF_HEADER: csrf})
    assert out.status == 200 and (await out.json()) == {"logged_out": True, "user": "张值班"}
    after = await anon.get("/api/v1/alerts", headers={"Cookie": f"{SESSION_COOKIE}={value}"})
    assert after.status == 401  # the old cookie is dead server-side
    assert (await anon.get("/api/v1/alerts")).status == 401

    logins, logouts = await audit(app, "session.login"), await audit(app, "session.logout")
    assert [(e["actor"], e["remote"]) for e in logins] == [("user:张值班", "127.0.0.1")]
    assert [(e["actor"], e["remote"]) for e in logouts] == [("user:张值班", "127.0.0.1")]


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    anon: TestClient, accounts: Accounts, app: App
) -> None:
    await accounts.add_user("li.ops", PASSWORD, VIEWER, actor="tests:setup")
    wrong = await login(anon, "li.ops", PASSWORD + "x")
    unknown = await login(anon, "nobody", PASSWORD)
    assert wrong.status == unknown.status == 401
    assert (
        await wrong.json() == await unknown.json() == {"error": "用户名或密码错误 (wrong name or password)"}
    )
    assert SESSION_COOKIE not in wrong.cookies and SESSION_COOKIE not in unknown.cookies
    failed = await audit(app, "session.login_failed")
    assert sorted((e["target"], e["detail"]["reason"], e["remote"]) for e in failed) == [
        ("user:li.ops", "wrong password", "127.0.0.1"),
        ("user:nobody", "unknown user", "127.0.0.1"),
    ]
    for bad in ({"name": "li.ops"}, {"name": 1, "password": PASSWORD}, ["li.ops", PASSWORD]):
        assert (await anon.post("/api/v1/session", json=bad)).status == 400
    form = await anon.post("/api/v1/session", data={"name": "li.ops", "password": PASSWORD})
    assert form.status == 415  # JSON only: a cross-site form cannot log anyone in


async def test_sixth_failed_login_is_429_for_that_name(
    anon: TestClient, accounts: Accounts, app: App, clock: FakeClock
) -> None:
    await accounts.add_user("wang", PASSWORD, OPERATOR, actor="tests:setup")
    await accounts.add_user("zhao", PASSWORD, OPERATOR, actor="tests:setup")
    for attempt in range(5):
        resp = await login(anon, "wang", f"guess-number-{attempt}")
        assert resp.status == 401, attempt
    locked = await login(anon, "wang", PASSWORD)  # even the right password, while locked
    assert locked.status == 429 and "15" in (await locked.json())["error"]
    assert SESSION_COOKIE not in locked.cookies
    assert (await login(anon, "zhao")).status == 200  # another name is not affected
    entries = await audit(app, "session.login_locked")
    assert [(e["target"], e["remote"]) for e in entries] == [("user:wang", "127.0.0.1")]
    clock.advance(15 * 60 + 1)  # the failures fall out of the window
    assert (await login(anon, "wang")).status == 200


async def test_session_slides_then_expires(anon: TestClient, accounts: Accounts, clock: FakeClock) -> None:
    await accounts.add_user("night.shift", PASSWORD, VIEWER, actor="tests:setup")
    assert (await login(anon, "night.shift")).status == 200
    for _ in range(3):  # used every 11 hours: never expires
        clock.advance(11 * 3600)
        assert (await anon.get("/api/v1/alerts")).status == 200
    clock.advance(SESSION_TTL.total_seconds() + 60)
    resp = await anon.get("/api/v1/alerts")
    assert resp.status == 401
    assert resp.cookies[SESSION_COOKIE].value == ""  # the browser is told to forget it


async def test_disabled_user_is_401(anon: TestClient, accounts: Accounts, app: App) -> None:
    await accounts.add_user("leaver", PASSWORD, ADMIN, actor="tests:setup")
    assert (await login(anon, "leaver")).status == 200
    assert (await anon.get("/api/v1/alerts")).status == 200
    assert await accounts.disable_user("leaver", actor="tests:admin") is True
    assert (await anon.get("/api/v1/alerts")).status == 401
    again = await login(anon, "leaver")
    assert again.status == 401
    assert (await again.json())["error"] == "用户名或密码错误 (wrong name or password)"
    failed = await audit(app, "session.login_failed")
    assert [e["detail"]["reason"] for e in failed] == ["account disabled"]
    assert [e["target"] for e in await audit(app, "users.disable")] == ["user:leaver"]


# --- the command line ------------------------------------------------------------------------------------------


async def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    """``warnd.cli.main`` in a worker thread (it runs its own event loop), with stdin patched."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return await asyncio.to_thread(main, argv)


async def test_cli_users_add_then_login(
    config_dir: Path,
    anon: TestClient,
    app: App,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = ["-c", str(config_dir)]
    code = await run_cli(
        monkeypatch, ["users", "add", "admin", "--role", "admin", "--password-stdin", *c], PASSWORD + "\n"
    )
    assert code == 0
    assert "added user admin (admin)" in capsys.readouterr().out
    resp = await login(anon, "admin")
    assert resp.status == 200 and (await resp.json())["role"] == "admin"

    refused = [
        (["users", "add", "admin", "--role", "viewer", "--password-stdin"], PASSWORD, "已存在"),
        (["users", "add", "short", "--role", "viewer", "--password-stdin"], "123456789\n", "至少 10"),
        (["users", "add", "", "--role", "viewer", "--password-stdin"], PASSWORD, "名称"),
    ]
    for argv, stdin, why in refused:
        assert await run_cli(monkeypatch, [*argv, *c], stdin) == 1, argv
        assert why in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):  # an unknown role never gets past argparse
        await run_cli(monkeypatch, ["users", "add", "x1", "--role", "root", "--password-stdin", *c], PASSWORD)
    assert await AuthStore(app.store).user("short") is None

    # an approver's phone, for SMS notices of drafts waiting for approval; shown masked
    leader = [
        "users",
        "add",
        "leader",
        "--role",
        "approver",
        "--phone",
        "+86 138-0000-0009",
        "--password-stdin",
    ]
    assert await run_cli(monkeypatch, [*leader, *c], PASSWORD) == 0
    bad_phone = ["users", "add", "leader2", "--role", "approver", "--phone", "12345", "--password-stdin"]
    assert await run_cli(monkeypatch, [*bad_phone, *c], PASSWORD) == 1
    assert "phone" in capsys.readouterr().err
    assert (await AuthStore(app.store).user("leader") or {})["phone"] == "13800000009"

    assert await run_cli(monkeypatch, ["users", "list", *c]) == 0
    listing = capsys.readouterr().out
    assert "admin" in listing and "active" in listing and "$argon2" not in listing
    assert "138****0009" in listing and "13800000009" not in listing

    assert await run_cli(monkeypatch, ["users", "disable", "admin", *c]) == 0
    assert (await anon.get("/api/v1/session")).status == 401  # its session ended
    added = await audit(app, "users.add")
    assert sorted((e["target"], e["detail"]["role"]) for e in added) == [
        ("user:admin", "admin"),
        ("user:leader", "approver"),
    ]
    assert added[0]["actor"].startswith("cli:")
    assert [e["actor"].startswith("cli:") for e in await audit(app, "users.disable")] == [True]


async def test_cli_tokens_add_prints_a_usable_token_once(
    config_dir: Path,
    anon: TestClient,
    app: App,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = ["-c", str(config_dir)]
    assert await run_cli(monkeypatch, ["tokens", "add", "gauge-feed", "--role", "operator", *c]) == 0
    printed = capsys.readouterr()
    token = printed.out.strip()
    assert re.fullmatch(r"wd_[A-Za-z0-9_-]{43}", token), printed.out
    assert "only this once" in printed.err
    created = await post_alert(anon, bearer(token))
    assert created.status == 201
    assert [e["actor"] for e in await audit(app, "alert.post")] == ["token:gauge-feed"]

    assert await run_cli(monkeypatch, ["tokens", "add", "gauge-feed", "--role", "viewer", *c]) == 1
    assert "已存在" in capsys.readouterr().err
    assert await run_cli(monkeypatch, ["tokens", "list", *c]) == 0
    listing = capsys.readouterr().out
    assert "gauge-feed" in listing and "operator" in listing and token not in listing
    rows = await AuthStore(app.store).tokens()
    assert all(token not in str(v) for row in rows for v in row.values())

    assert await run_cli(monkeypatch, ["tokens", "revoke", "gauge-feed", *c]) == 0
    assert (await anon.get("/api/v1/alerts", headers=bearer(token))).status == 401
    added = await audit(app, "tokens.add")
    assert [(e["target"], e["detail"]["role"]) for e in added] == [("token:gauge-feed", "operator")]
    assert added[0]["actor"].startswith("cli:")
    assert [e["target"] for e in await audit(app, "tokens.revoke")] == ["token:gauge-feed"]


def test_permission_table_is_what_the_tests_walk() -> None:
    """The loops above walk the routes of make_web_app through this table: make sure the open kinds stay few."""
    open_routes = sorted(k for k, a in PERMISSIONS.items() if a.role not in RANK)
    assert open_routes == [
        ("GET", "/"),
        ("GET", "/a/{token}"),
        ("GET", "/console"),
        ("GET", "/console/"),
        ("GET", "/console/{path}"),
        ("GET", "/healthz"),
        ("GET", "/k/{token}"),
        ("POST", "/a/{token}"),
        ("POST", "/api/v1/feedback/reply"),
        ("POST", "/api/v1/feedback/{kind}"),
        ("POST", "/api/v1/session"),
        ("POST", "/k/{token}"),
    ]
