"""Accounts and access (warnd/auth.py): password hashing, API tokens, the permission table against the routes
make_web_app registers, and config tokens' roles."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import get_args

import pytest
import yaml
from multidict import MultiDict

from warnd.api import LINK_PREFIXES, make_web_app
from warnd.app import App
from warnd.auth import (
    ADMIN,
    APPROVER,
    LINK,
    OPERATOR,
    PERMISSIONS,
    PUBLIC,
    RANK,
    ROLES,
    SIGNED,
    TOKEN_PREFIX,
    VIEWER,
    Access,
    access_for,
    allows,
    hash_password,
    name_problem,
    needs_rehash,
    new_token,
    password_problem,
    role_problem,
    sha256_hex,
    verify_password,
)
from warnd.config import ApiToken, ConfigInvalid, load_config

# --- passwords -----------------------------------------------------------------------------------------------------


def test_password_hash_round_trip_and_wrong_password() -> None:
    first = hash_password("正确的密码-correct horse")
    assert first.startswith("$argon2id$")  # argon2id with its parameters and salt in the string
    assert "correct horse" not in first
    assert verify_password(first, "正确的密码-correct horse")
    assert not verify_password(first, "正确的密码-correct hors")
    assert not verify_password(first, "")
    assert not needs_rehash(first)
    # salted: the same password hashes differently each time, and each hash verifies
    second = hash_password("正确的密码-correct horse")
    assert second != first and verify_password(second, "正确的密码-correct horse")


def test_a_broken_hash_never_verifies() -> None:
    assert not verify_password("not-a-hash", "whatever password")
    assert not verify_password("$argon2id$v=19$m=65536,t=3,p=4$bad$bad", "whatever password")


def test_password_and_name_rules() -> None:
    assert password_problem("123456789") is not None  # 9 characters
    assert password_problem("1234567890") is None
    assert password_problem("x" * 1025) is not None
    assert name_problem("张值班") is None and name_problem("ops.duty-1@lp") is None
    for bad in ("", "has space", "a:b", "a/b", "x" * 65):
        assert name_problem(bad) is not None, bad
    assert role_problem("approver") is None
    assert role_problem("root") is not None


# --- tokens ------------------------------------------------------------------------------------------------------


def test_new_tokens_are_random_urlsafe_and_prefixed() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert token.startswith(TOKEN_PREFIX)
        body = token[len(TOKEN_PREFIX) :]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body)  # 32 bytes, base64url without padding


def test_only_the_sha256_of_a_token_is_stored() -> None:
    token = new_token()
    digest = sha256_hex(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert len(digest) == 64 and token not in digest


# --- roles ---------------------------------------------------------------------------------------------------------


def test_roles_are_ordered() -> None:
    assert ROLES == (VIEWER, OPERATOR, APPROVER, ADMIN)
    assert [RANK[r] for r in ROLES] == [0, 1, 2, 3]
    assert allows(ADMIN, VIEWER) and allows(OPERATOR, OPERATOR) and allows(APPROVER, OPERATOR)
    assert not allows(VIEWER, OPERATOR) and not allows(APPROVER, ADMIN)
    assert not allows("nobody", VIEWER)
    assert not allows(ADMIN, PUBLIC)  # the open kinds are not roles


def test_config_token_roles_are_the_same_four() -> None:
    assert get_args(ApiToken.model_fields["role"].annotation) == ROLES
    assert ApiToken(name="feed", token="x").role == ADMIN


def test_config_token_with_unknown_role_is_refused(config_dir: Path) -> None:
    path = config_dir / "warnd.yaml"
    settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    settings["api"]["tokens"] = [{"name": "gw", "token": "abc", "role": "root"}]
    path.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigInvalid) as caught:
        load_config(config_dir)
    assert any(e.path.endswith("role") and "viewer" in e.reason for e in caught.value.errors), caught.value
    settings["api"]["tokens"] = [{"name": "gw", "token": "abc", "role": "operator"}]
    path.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    assert load_config(config_dir).api.tokens[0].role == OPERATOR


# --- the permission table ---------------------------------------------------------------------------------------


@pytest.fixture
async def app(config_dir: Path) -> AsyncIterator[App]:
    application = App(load_config(config_dir))  # not started: only its routes are looked at
    try:
        yield application
    finally:
        await application.close()


def registered(app: App) -> set[tuple[str, str]]:
    """(method, canonical path) of every route make_web_app registers (HEAD counted as the GET it mirrors)."""
    router = make_web_app(app).router
    out = set()
    for route in router.routes():
        assert route.resource is not None
        method = "GET" if route.method == "HEAD" else route.method
        out.add((method, route.resource.canonical))
    return out


async def test_the_table_lists_exactly_the_registered_routes(app: App) -> None:
    routes = registered(app)
    assert routes, "make_web_app registered no routes"
    missing = sorted(routes - set(PERMISSIONS))
    assert not missing, f"routes without an entry in warnd.auth.PERMISSIONS: {missing}"
    stale = sorted(set(PERMISSIONS) - routes)
    assert not stale, f"PERMISSIONS entries for routes that do not exist: {stale}"
    for method, canonical in routes:
        assert access_for(method, canonical) is not None
        if method == "GET":
            assert access_for("HEAD", canonical) == access_for("GET", canonical)


async def test_open_entries_are_exactly_the_routes_the_middleware_lets_through(app: App) -> None:
    """PUBLIC, LINK and SIGNED in the table match what auth_middleware checks by path: /healthz, the login and
    the console's static shell need nothing, /a/ and /k/ check their signed token, POST /api/v1/feedback/… is
    HMAC-signed."""
    for (method, canonical), access in PERMISSIONS.items():
        if access.role == LINK:
            assert canonical.startswith(LINK_PREFIXES), canonical
        elif access.role == SIGNED:
            assert method == "POST" and canonical.startswith("/api/v1/feedback/"), canonical
        elif access.role == PUBLIC:
            assert (method, canonical) in {
                ("GET", "/healthz"),
                ("POST", "/api/v1/session"),
                ("GET", "/"),
                ("GET", "/console"),
                ("GET", "/console/"),
                ("GET", "/console/{path}"),
            }
        else:
            assert access.role in RANK, (method, canonical)
            assert not canonical.startswith(LINK_PREFIXES), canonical
            assert not (method == "POST" and canonical.startswith("/api/v1/feedback/")), canonical


def test_minimum_roles() -> None:
    def needs(method: str, canonical: str, **query: str) -> str:
        access = access_for(method, canonical)
        assert access is not None
        return access.needs(MultiDict(query))

    for (method, canonical), access in PERMISSIONS.items():
        if method == "GET" and canonical.startswith("/api/v1/") and access.role in RANK:
            # reading is the viewer's; printing door-knock lists and exporting subscribers the operator's
            if canonical not in ("/api/v1/alerts/{id}/doorknock/print", "/api/v1/subscribers/export.csv"):
                assert access.role == VIEWER, canonical
    for write in (
        "/api/v1/alerts",
        "/api/v1/readings",
        "/api/v1/broadcasts",
        "/api/v1/alerts/{id}/acks",
        "/api/v1/alerts/{id}/doorknock/{household}",
    ):
        assert needs("POST", write) == OPERATOR, write
    doorknock = "/api/v1/alerts/{id}/doorknock"
    assert needs("GET", doorknock) == VIEWER
    assert needs("GET", doorknock, village="500228101201") == VIEWER
    assert needs("GET", doorknock, phones="masked") == VIEWER
    assert needs("GET", doorknock, phones="full") == OPERATOR
    assert needs("GET", doorknock, format="csv") == OPERATOR
    assert needs("GET", doorknock, format="json") == VIEWER
    assert needs("GET", doorknock + "/print") == OPERATOR
    assert needs("DELETE", "/api/v1/session") == VIEWER
    # subscribers, templates and config sections (warnd/api_admin.py)
    for subscribers in ("/api/v1/subscribers", "/api/v1/subscribers/{id}"):
        assert needs("GET", subscribers) == VIEWER
        assert needs("GET", subscribers, phones="full") == ADMIN
    for write in (
        ("POST", "/api/v1/subscribers"),
        ("PUT", "/api/v1/subscribers/{id}"),
        ("DELETE", "/api/v1/subscribers/{id}"),
        ("POST", "/api/v1/subscribers/import"),
        ("GET", "/api/v1/subscribers/export.csv"),
        ("POST", "/api/v1/templates/preview"),
    ):
        assert needs(*write) == OPERATOR, write
    assert needs("GET", "/api/v1/subscribers/export.csv", phones="full") == ADMIN
    assert needs("PUT", "/api/v1/templates/{language}/{name}") == ADMIN
    assert needs("PUT", "/api/v1/config/{section}") == ADMIN
    assert needs("GET", "/api/v1/config/{section}") == VIEWER
    assert access_for("POST", "/api/v1/no-such-route") is None
    assert Access(VIEWER).needs(MultiDict(phones="full")) == VIEWER  # raising is per entry
