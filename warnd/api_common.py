"""What every HTTP route module shares: the app key, the principal key, JSON answers and HTML pages.

Routes live in :mod:`warnd.api` (alerts, feeds, channels, receipts), :mod:`warnd.api_acks` (叫应),
:mod:`warnd.api_escalation` (door-knock lists) and :mod:`warnd.api_reports` (coverage, recommendations); each
module adds its routes with ``add_routes(router)``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from warnd.app import App

# what every HTML page behind a signed link (/a/ 叫应, /k/ 敲门) sends: never cached, never indexed, no referrer
# (the token is in the URL), no content sniffing; the pages have inline CSS and a form posting to themselves,
# nothing else is loaded or allowed
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
}

APP_KEY: web.AppKey[App] = web.AppKey("warnd")
PRINCIPAL: web.RequestKey[str] = web.RequestKey("principal", str)
# the caller's role (viewer, operator, approver, admin; warnd/auth.py), set by the auth middleware on every route
# that needs credentials
ROLE: web.RequestKey[str] = web.RequestKey("role", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, *, tz: tzinfo | None = None) -> web.Response:
    """JSON with readable Chinese; datetimes in the district's time zone (ISO 8601 with offset)."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(tz).isoformat() if tz else value.isoformat()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    return web.json_response(
        data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False, default=default)
    )


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


async def json_list(request: web.Request, key: str, limit: int) -> list[Any]:
    """A webhook body: a JSON list, or ``{key: [...]}``, of at most ``limit`` items (400 otherwise)."""
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(reason=f"body must be JSON: a list of {key}") from None
    items = body.get(key) if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise web.HTTPBadRequest(reason=f'body must be a list of {key} (or {{"{key}": [...]}})')
    if len(items) > limit:
        raise web.HTTPBadRequest(reason=f"at most {limit} {key} per request")
    return items


def path_id(request: web.Request, name: str = "id") -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer") from None


def int_param(
    request: web.Request, name: str, default: int | None = None, *, maximum: int = 10_000
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer") from None
    if value < 0 or value > maximum:
        raise web.HTTPBadRequest(reason=f"{name} must be between 0 and {maximum}")
    return value


def html_page(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """A complete HTML document (UTF-8) with PAGE_HEADERS (plus ``headers``)."""
    return web.Response(
        status=status,
        text=text,
        content_type="text/html",
        charset="utf-8",
        headers={**PAGE_HEADERS, **(headers or {})},
    )
