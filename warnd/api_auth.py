"""The console's session (docs/security.md):

- ``POST /api/v1/session`` ``{"name", "password"}`` (JSON) → 200 ``{user, role, role_label, csrf_token,
  expires_at}`` and the ``warnd_session`` cookie; a wrong name or password → 401 (the same answer, as slowly,
  either way); 5 failures for a name within 15 minutes → 429 for that name.
- ``GET /api/v1/session`` → who is calling: ``{principal, kind (session | token), user | token, role,
  role_label, csrf_token?, expires_at?}``.
- ``DELETE /api/v1/session`` → logout: the session ends, the cookie is cleared (with ``X-CSRF-Token``, like
  every state-changing request of a session).

Login, failed login, refusal and logout are audited with the remote address.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from warnd.api_common import APP_KEY, error_response, json_response
from warnd.auth import (
    IDENTITY,
    LOGIN_WINDOW,
    MAX_PASSWORD,
    ROLE_LABELS,
    SESSION_COOKIE,
    Identity,
)

BAD_LOGIN = "用户名或密码错误 (wrong name or password)"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/api/v1/session", login)
    router.add_get("/api/v1/session", whoami)
    router.add_delete("/api/v1/session", logout)


def set_session_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    """HttpOnly, SameSite=Strict, Path=/; Secure when the request came over https. No Max-Age: the server
    ends the session (12 h after the last request), the browser forgets it when it closes."""
    response.set_cookie(
        SESSION_COOKIE, value, path="/", httponly=True, samesite="Strict", secure=request.secure
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict", secure=request.secure)


def _session_json(identity: Identity) -> dict[str, Any]:
    data: dict[str, Any] = {
        "principal": identity.principal,
        "kind": identity.kind,
        "role": identity.role,
        "role_label": ROLE_LABELS.get(identity.role),
    }
    if identity.session_id:
        data.update(user=identity.name, csrf_token=identity.csrf_token, expires_at=identity.expires_at)
    else:
        data["token"] = identity.name
    return data


async def login(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    if request.content_type != "application/json":  # a cross-site form cannot send JSON without CORS
        return error_response(415, 'send JSON: Content-Type: application/json, {"name": …, "password": …}')
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error_response(400, "body must be JSON")
    if not isinstance(body, dict):
        return error_response(400, "body must be a JSON object")
    name, password = body.get("name"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        return error_response(400, "name and password are required (strings)")
    if len(name) > 200 or len(password) > MAX_PASSWORD:
        return error_response(400, "name or password too long")
    result = await app.accounts.login(name, password, remote=request.remote)
    if result.outcome == "locked":
        minutes = int(LOGIN_WINDOW.total_seconds() // 60)
        return error_response(
            429,
            f"登录失败次数过多，请 {minutes} 分钟后再试 (too many failed logins for this name; "
            f"try again within {minutes} minutes)",
        )
    if result.outcome != "ok" or result.identity is None or result.cookie is None:
        return error_response(401, BAD_LOGIN)
    data = _session_json(result.identity)
    response = json_response(data, tz=app.tz)
    set_session_cookie(request, response, result.cookie)
    response.headers["Cache-Control"] = "no-store"
    return response


async def whoami(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    response = json_response(_session_json(request[IDENTITY]), tz=app.tz)
    response.headers["Cache-Control"] = "no-store"
    return response


async def logout(request: web.Request) -> web.Response:
    identity = request[IDENTITY]
    if identity.session_id is None:
        return error_response(
            400, "no session: this is an API token (revoke tokens with warnd tokens revoke NAME)"
        )
    await request.app[APP_KEY].accounts.logout(identity, remote=request.remote)
    response = json_response({"logged_out": True, "user": identity.name})
    clear_session_cookie(request, response)
    return response
