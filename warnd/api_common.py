"""What every HTTP route module shares: the app key, the principal key, JSON answers and HTML pages.

Routes live in :mod:`warnd.api` (alerts, feeds, channels, receipts), :mod:`warnd.api_acks` (叫应),
:mod:`warnd.api_escalation` (door-knock lists) and :mod:`warnd.api_reports` (coverage, recommendations); each
module adds its routes with ``add_routes(router)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from aiohttp import web

from warnd.auth import SESSION_COOKIE
from warnd.feeds import feed_health
from warnd.hazards import COLOUR_LABELS, LEVEL_LABELS
from warnd.logs import mask_phone, mask_text

if TYPE_CHECKING:
    from warnd.app import App
    from warnd.auth import Identity
    from warnd.pipeline import IngestResult

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


def json_text(data: Any, tz: tzinfo | None = None) -> str:
    """JSON with readable Chinese; datetimes in the district's time zone (ISO 8601 with offset)."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(tz).isoformat() if tz else value.isoformat()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    return json.dumps(data, ensure_ascii=False, default=default)


def json_response(data: Any, status: int = 200, *, tz: tzinfo | None = None) -> web.Response:
    """:func:`json_text` as a response."""
    return web.json_response(data, status=status, dumps=lambda d: json_text(d, tz))


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


async def feeds_health(app: App) -> list[dict[str, Any]]:
    """Every configured feed's health, as ``GET /api/v1/feeds`` lists it (:func:`warnd.feeds.feed_health`)."""
    states = {s["name"]: s for s in await app.store.all_feed_states()}
    now = app.clock.now()
    return [feed_health(f, states.get(f.name), now, app.started_at) for f in app.config.feeds]


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


MAX_ID = 2**63 - 1  # the largest id the database can hold (SQLite and PostgreSQL BIGINT)


def path_id(request: web.Request, name: str = "id") -> int:
    """An id from the path: 400 unless an integer from 0 to MAX_ID (a larger one would crash the query)."""
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer") from None
    if not 0 <= value <= MAX_ID:
        raise web.HTTPBadRequest(reason=f"{name} must be an integer from 0 to {MAX_ID}")
    return value


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


class BodyTooLarge(web.HTTPClientError):
    """413 with the route's own limit (the error middleware's 413 names ``api.max_body_bytes``)."""

    status_code = 413


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, read as it streams in, at most ``limit`` bytes (413 beyond): for routes whose limit is
    not ``api.max_body_bytes`` — a subscriber CSV may be larger, one subscriber or a template much smaller."""
    reason = f"请求体超过 {limit} 字节 (request body too large: limit {limit} bytes)"
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(reason=reason)
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(reason=reason)
    return bytes(body)


async def json_body(request: web.Request, limit: int) -> Any:
    """The request body as JSON, at most ``limit`` bytes (400 when empty or not JSON, 413 when larger)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise web.HTTPBadRequest(reason="请求体为空，须为 JSON (empty body: send JSON)")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(reason="请求体须为 JSON (body must be JSON)") from None


# a CSV cell a spreadsheet would run as a formula: prefixed with ' (a plain signed number, e.g. +86…, is left)
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_SIGNED_NUMBER = re.compile(r"^[+-][0-9*]+$")


def spreadsheet_safe(text: str) -> str:
    """A CSV cell that a spreadsheet shows as text: ``=HYPERLINK(…)`` becomes ``'=HYPERLINK(…)``."""
    if _FORMULA.match(text) and not _SIGNED_NUMBER.match(text):
        return "'" + text
    return text


def html_page(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """A complete HTML document (UTF-8) with PAGE_HEADERS (plus ``headers``)."""
    return web.Response(
        status=status,
        text=text,
        content_type="text/html",
        charset="utf-8",
        headers={**PAGE_HEADERS, **(headers or {})},
    )


# --- what alert routes answer (warnd/api.py, warnd/api_broadcasts.py) ---------------------------------------


def alert_json(row: Mapping[str, Any], counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    plan = row.get("rules") or {}
    return {
        "id": row["id"],
        "identifier": row["identifier"],
        "sender": row["sender"],
        "sent": row["sent"],
        "msg_type": row["msg_type"],
        "status": row["status"],
        "scope": row["scope"],
        "profile": row["profile"],
        "event": row["event"],
        "hazard_code": row["hazard_code"],
        "colour": row["colour"],
        "colour_label": COLOUR_LABELS.get(row["colour"] or ""),
        "level": row["level"],
        "level_label": f"{LEVEL_LABELS[row['level']]}级" if row["level"] else None,
        "headline": row["headline"],
        "area_desc": row["area_desc"],
        "effective": row["effective"],
        "expires": row["expires"],
        "state": row["state"],
        "root_id": row["root_id"],
        "previous_id": row["previous_id"],
        "rules": plan.get("rules", []),
        "fanout": row["fanout"],
        "fanout_stats": row["fanout_stats"],
        "received_at": row["received_at"],
        "source": row["source"],
        "deliveries": dict(counts or {}),
    }


def delivery_json(row: Mapping[str, Any], *, unmask: bool = False) -> dict[str, Any]:
    return {
        "id": row["id"],
        "alert_id": row["alert_id"],
        "channel": row["channel"],
        "status": row["status"],
        "recipient": row["recipient"],
        "phone": row["phone"] if unmask else mask_phone(row["phone"]),
        "role": row["role"],
        "area_code": row["area_code"],
        # a superior's 叫应 notice names the person's phone in full (they must call): masked here like the rest
        "body": row["body"] if unmask else mask_text(row["body"]),
        "title": row["title"],
        "segments": row["segments"],
        "repeat": row["repeat"],
        "attempts": row["attempts"],
        "provider_message_id": row["provider_message_id"],
        "error": row["error"],
        "reason": row["reason"],
        "level": row["level"],
        "ack_required": row["ack_required"],
        "ack_deadline": row["ack_deadline"],
        "purpose": row["purpose"],  # warning, or a notice: notice:<escalation> / doorknock:<village>:<n>
        "created_at": row["created_at"],
        "sent_at": row["sent_at"],
        "delivered_at": row["delivered_at"],
        "updated_at": row["updated_at"],
        "rules": row["rules"],
        "suppressed_by": row["suppressed_by"],  # the alert chain that covered the recipient
    }


async def alert_response(app: App, alert_id: int) -> dict[str, Any]:
    row = await app.store.get_alert(alert_id)
    assert row is not None
    counts = await app.store.delivery_counts([alert_id])
    return alert_json(row, counts.get(alert_id))


async def result_json(app: App, result: IngestResult) -> tuple[dict[str, Any], int]:
    """What an ingested (or broadcast) alert answers, and its status: 400 rejected, 202 held (an Update/Cancel
    before its original) or fanning out, 201 done, 200 a duplicate."""
    if result.outcome == "rejected":
        errors = result.errors
        return {"error": "; ".join(errors), "errors": errors, "quarantine_id": result.payload_id}, 400
    if result.outcome == "held":
        return {"held": True, "payload_id": result.payload_id, "warnings": result.warnings}, 202
    assert result.alert_id is not None
    data = await alert_response(app, result.alert_id)
    data["warnings"] = result.warnings
    if result.outcome == "duplicate":
        data["duplicate"] = True
        return data, 200
    return data, 201 if data["fanout"] == "done" else 202


async def single_result(app: App, result: IngestResult) -> web.Response:
    data, status = await result_json(app, result)
    return json_response(data, status=status, tz=app.tz)


async def authenticate(app: App, request: web.Request) -> Identity | None:
    """Who is making the request, or None if it is not authenticated: a bearer token (``Authorization: Bearer``,
    which wins when sent) or the console session cookie."""
    accounts = app.accounts
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return await accounts.bearer(value.strip()) if scheme.lower() == "bearer" else None
    cookie = request.cookies.get(SESSION_COOKIE)
    return await accounts.session(cookie) if cookie else None


def csv_download(app: App, name: str) -> web.StreamResponse:
    """A streamed CSV attachment named ``<name>-<local time>.csv``, never cached (the delivery log and
    subscriber exports)."""
    stamp = app.clock.now().astimezone(app.tz).strftime("%Y%m%d-%H%M%S")
    return web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
