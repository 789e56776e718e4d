"""The HTTP API under /api/v1 (JSON), plus /healthz.

Authentication (docs/security.md, warnd/auth.py): every route but /healthz, the login, the signed-link pages
(/a/, /k/) and the HMAC-signed receipt webhooks needs credentials — ``Authorization: Bearer <token>`` (a token
from ``warnd tokens add`` or from ``api.tokens`` in config) or a console session cookie (with ``X-CSRF-Token``
on state-changing requests). Then the route's minimum role in ``warnd.auth.PERMISSIONS`` decides; a route missing
from that table is refused. Every state-changing request is written to the audit log with who and from where.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from channels.webhook import verify_signature
from channels.webpush import WebPushChannel
from warnd import (
    __version__,
    api_acks,
    api_admin,
    api_auth,
    api_board,
    api_broadcasts,
    api_console,
    api_escalation,
    api_logs,
    api_openapi,
    api_reports,
)
from warnd.api_auth import clear_session_cookie
from warnd.api_common import (
    APP_KEY,
    PRINCIPAL,
    ROLE,
    Handler,
    alert_json,
    alert_response,
    authenticate,
    delivery_json,
    error_response,
    feeds_health,
    int_param,
    json_list,
    json_response,
    path_id,
    single_result,
)
from warnd.app import App
from warnd.auth import (
    CSRF_HEADER,
    IDENTITY,
    PUBLIC,
    SESSION_COOKIE,
    access_for,
    allows,
    csrf_ok,
    route_key,
)
from warnd.hydro.readings import parse_pushed
from warnd.logs import mask_phone
from warnd.receipts import ADAPTER_KINDS, KINDS

log = logging.getLogger("warnd.api")


def _unauthenticated(request: web.Request) -> web.Response:
    response = error_response(
        401, "authentication required: send Authorization: Bearer <token> or log in (POST /api/v1/session)"
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="warnd"'
    if SESSION_COOKIE in request.cookies:  # an expired or ended session: the browser may forget it
        clear_session_cookie(request, response)
    return response


FEEDBACK_PREFIX = "/api/v1/feedback/"
LINK_PREFIXES = ("/a/", "/k/")  # 叫应 one-tap links, grid workers' door-knock pages (warnd/links.py)
REPLAY_WINDOW = 300.0  # seconds either side of X-Warnd-Timestamp


async def _feedback_principal(app: App, request: web.Request) -> str | None:
    """Receipt webhooks carry no bearer token: they are signed (``X-Warnd-Timestamp`` + ``X-Warnd-Signature``,
    HMAC-SHA256 as channels/webhook.py) with the kind's secret from ``api.feedback_secrets``. A missing, bad or
    stale signature is refused and only audited."""
    kind = request.path[len(FEEDBACK_PREFIX) :].strip("/")
    secret = app.config.api.feedback_secrets.get(kind, "")
    body = await request.read()
    ok = verify_signature(
        secret,
        request.headers.get("X-Warnd-Timestamp", ""),
        body,
        request.headers.get("X-Warnd-Signature", ""),
        now=app.clock.now().timestamp(),
        tolerance=REPLAY_WINDOW,
    )
    if ok:
        return f"feedback:{kind}"
    await app.store.audit(
        app.clock.now(),
        f"feedback:{kind[:40]}",
        "feedback.rejected",
        target=kind[:200] or None,
        detail={
            "reason": "no secret configured for this kind"
            if not secret
            else "missing, bad or expired signature",
            "bytes": len(body),
            "timestamp": request.headers.get("X-Warnd-Timestamp", "")[:20],
        },
        remote=request.remote,
    )
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/healthz":
        return await handler(request)
    if request.path.startswith(LINK_PREFIXES):  # people's phones: the route checks the signed token itself
        request[PRINCIPAL] = "link"
        return await handler(request)
    app = request.app[APP_KEY]
    if request.path.startswith(FEEDBACK_PREFIX) and request.method == "POST":
        principal = await _feedback_principal(app, request)
        if principal is None:
            return error_response(
                401, "signature required: X-Warnd-Timestamp and X-Warnd-Signature: sha256=<hmac>"
            )
        request[PRINCIPAL] = principal
        return await handler(request)
    key = route_key(request)  # None: no such route (404/405), answered to authenticated callers only
    access = access_for(*key) if key else None
    if access is not None and access.role == PUBLIC:  # the login, the console's static shell
        request[PRINCIPAL] = f"anonymous@{request.remote}"
        return await handler(request)
    identity = await authenticate(app, request)
    if identity is None:
        return _unauthenticated(request)
    if not csrf_ok(identity, request):
        return error_response(403, f"forbidden: a session's {request.method} needs the {CSRF_HEADER} header")
    request[PRINCIPAL] = identity.principal
    request[ROLE] = identity.role
    request[IDENTITY] = identity
    if key is None:
        return await handler(request)
    if access is None:  # every route must be in warnd.auth.PERMISSIONS: a forgotten one stays closed
        log.error("route %s %s is not in warnd.auth.PERMISSIONS: refused", *key)
        return error_response(403, "forbidden: route not in the permission table")
    needed = access.needs(request.query)
    if not allows(identity.role, needed):
        return error_response(403, f"forbidden: needs role {needed}")
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[APP_KEY].config.api.max_body_bytes
        return error_response(413, f"request body too large (limit {limit} bytes)")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error; see the daemon log")


async def post_alert(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    body = await request.read()
    if not body:
        return error_response(400, "empty body: POST a CAP XML document")
    source = f"http:{request[PRINCIPAL]}"
    results = await app.pipeline.ingest(
        body, source=source, content_type=request.content_type, max_bytes=app.config.api.max_body_bytes
    )
    await app.store.audit(
        app.clock.now(),
        request[PRINCIPAL],
        "alert.post",
        target=",".join(str(r.alert_id) for r in results if r.alert_id) or None,
        detail={"outcomes": [r.outcome for r in results]},
        remote=request.remote,
    )
    if len(results) == 1:
        return await single_result(app, results[0])
    created = [await alert_response(app, r.alert_id) for r in results if r.alert_id]
    rejected = [
        {"errors": r.errors, "quarantine_id": r.payload_id} for r in results if r.outcome == "rejected"
    ]
    # Updates/Cancels waiting for their original (applied when it arrives): accepted, not yet processed
    held = [{"payload_id": r.payload_id, "warnings": r.warnings} for r in results if r.outcome == "held"]
    if held:
        status = 202
    elif any(r.outcome == "created" for r in results):
        status = 201
    else:
        status = 200 if created else 400  # duplicates only / nothing usable
    return json_response({"alerts": created, "rejected": rejected, "held": held}, status=status, tz=app.tz)


async def post_readings(request: web.Request) -> web.Response:
    """Gauge readings pushed by a water-data system: a JSON list of {station, time, level, flow, rainfall}."""
    app = request.app[APP_KEY]
    body = await request.read()
    source = f"http:{request[PRINCIPAL]}"
    try:
        readings = parse_pushed(json.loads(body))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and ReadingsError are ValueErrors
        message = f"readings rejected: {exc}"
        payload_id = await app.store.save_payload(
            received_at=app.clock.now(),
            source=f"readings:{source}",
            content_type=request.content_type,
            body=body,
            outcome="rejected",
            errors=[message],
        )
        return error_response(400, message, quarantine_id=payload_id)
    summary = await app.hydro.ingest(readings, source=source)
    await app.store.audit(
        app.clock.now(),
        request[PRINCIPAL],
        "readings.post",
        target=",".join(sorted({r.station for r in readings}))[:500] or None,
        detail={k: summary[k] for k in ("received", "new", "unknown_gauges")},
        remote=request.remote,
    )
    return json_response(summary, tz=app.tz)


MAX_RECEIPTS = 1000  # per request


async def post_feedback(request: web.Request) -> web.Response:
    """Signed receipt webhook (docs/feedback.md): a JSON list (or ``{"receipts": [...]}``) of
    ``{message_id, state, error?, segment?, segments?, phone?, time?, channel?}`` for one report kind. Every item
    is recorded (unknown ids in the audit log); the answer counts them."""
    app = request.app[APP_KEY]
    kind = request.match_info["kind"]
    if kind not in KINDS:
        return error_response(404, f"unknown feedback kind {kind!r} (one of {', '.join(KINDS)})")
    items = await json_list(request, "receipts", MAX_RECEIPTS)
    own = [name for name, c in app.config.channels.items() if ADAPTER_KINDS.get(c["adapter"]) == kind]
    counts = {"matched": 0, "duplicate": 0, "recorded": 0, "unknown": 0, "ambiguous": 0, "invalid": 0}
    now = app.clock.now()
    for item in items:
        receipt = _receipt(item, app.config.channels, own)
        if receipt is None:
            counts["invalid"] += 1
            continue
        channels, message_id, state, segment, detail = receipt
        phone = detail.pop("_phone", None)
        result = await app.store.record_feedback(
            channels,
            message_id,
            state,
            detail,
            now,
            kind=kind,
            provider_id=message_id,
            segment=segment,
            phone=phone,
            actor=request[PRINCIPAL],
        )
        counts[result.outcome] += 1
    return json_response({"received": len(items), **counts})


def _receipt(
    item: Any, configured: Mapping[str, Any], own: list[str]
) -> tuple[list[str], str, str, int | None, dict[str, Any]] | None:
    """One webhook receipt, checked: (channels to look in, message id, state, segment, detail) or None."""
    if not isinstance(item, dict):
        return None
    message_id, state = item.get("message_id"), item.get("state")
    if not isinstance(message_id, str | int) or not str(message_id) or not isinstance(state, str | int):
        return None
    channel = item.get("channel")
    if channel is not None and (not isinstance(channel, str) or channel not in configured):
        return None
    segment = item.get("segment")
    if segment is not None and (not isinstance(segment, int) or isinstance(segment, bool) or segment < 1):
        return None
    detail: dict[str, Any] = {"message_id": str(message_id)[:128], "source": "webhook"}
    for key in ("error", "segments", "phone", "time"):
        value = item.get(key)
        if value is not None:
            detail[key] = value if isinstance(value, int | float) else str(value)[:200]
    if "phone" in detail:  # raw for telling deliveries apart, masked in the record
        detail["_phone"], detail["phone"] = str(detail["phone"]), mask_phone(str(detail["phone"]))
    return ([channel] if channel else own or list(configured)), str(message_id), str(state), segment, detail


async def audio(request: web.Request) -> web.StreamResponse:
    """A loudspeaker script rendered to WAV (warnd/audio.py), for terminals that play audio files."""
    app = request.app[APP_KEY]
    path = app.speech.path(request.match_info["name"])
    if path is None:
        return error_response(404, "no such audio file")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Cache-Control": "max-age=86400"})


async def vapid_public_key(request: web.Request) -> web.Response:
    """The VAPID public key of every ``webpush`` channel, ``{"channels": {name: applicationServerKey}}``: what a
    web app passes to ``PushManager.subscribe({userVisibleOnly: true, applicationServerKey})`` (base64url of the
    uncompressed P-256 point). A channel without a configured key generates its key file here if it has not
    started yet."""
    app = request.app[APP_KEY]
    keys = {
        name: channel.application_server_key
        for name, channel in sorted(app.channels.items())
        if isinstance(channel, WebPushChannel)
    }
    return json_response({"channels": keys})


async def hydrology(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    return json_response(await app.hydro.status(), tz=app.tz)


async def list_alerts(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    rows = await app.store.list_alerts(
        state=request.query.get("state") or None,
        limit=int_param(request, "limit", 50, maximum=500) or 50,
        before_id=int_param(request, "before", maximum=2**62),
    )
    counts = await app.store.delivery_counts([r["id"] for r in rows])
    return json_response({"alerts": [alert_json(r, counts.get(r["id"])) for r in rows]}, tz=app.tz)


async def get_alert(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    alert_id = path_id(request)
    row = await app.store.get_alert(alert_id)
    if row is None:
        return error_response(404, f"no alert {alert_id}")
    data = alert_json(row, (await app.store.delivery_counts([alert_id])).get(alert_id))
    data["revisions"] = [alert_json(r) for r in await app.store.chain(row["root_id"] or alert_id)]
    return json_response(data, tz=app.tz)


async def alert_deliveries(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    alert_id = path_id(request)
    if await app.store.get_alert(alert_id) is None:
        return error_response(404, f"no alert {alert_id}")
    limit = int_param(request, "limit", 1000, maximum=10_000) or 1000
    rows = await app.store.deliveries_page(
        {
            "alert_id": alert_id,
            "channel": request.query.get("channel"),
            "status": request.query.get("status"),
        },
        limit=limit,
        after_id=int_param(request, "after", 0, maximum=2**62) or 0,
    )
    items = [delivery_json(r) for r in rows]
    if request.query.get("events") in ("1", "true"):
        events = await app.store.delivery_events(r["id"] for r in rows)
        for item in items:
            item["events"] = events[item["id"]]
    next_after = rows[-1]["id"] if len(rows) == limit else None
    return json_response({"alert_id": alert_id, "deliveries": items, "next_after": next_after}, tz=app.tz)


async def quarantine(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    rows = await app.store.quarantine(limit=int_param(request, "limit", 100, maximum=1000) or 100)
    return json_response({"quarantine": rows}, tz=app.tz)


async def feeds(request: web.Request) -> web.Response:
    """Per configured feed: state (ok / failing / stale / never polled / disabled), last success and error,
    failures in a row, items, latency, the backoff and next try; ``status`` is "degraded" if any is stale."""
    app = request.app[APP_KEY]
    out = await feeds_health(app)
    stale = [f["name"] for f in out if f["stale"]]
    return json_response({"status": "degraded" if stale else "ok", "stale": stale, "feeds": out}, tz=app.tz)


async def channels(request: web.Request) -> web.Response:
    """Per channel: its adapter and circuit breaker (state closed / open / half_open, failures in a row, error
    rate in the window, opened_at, retry_at, last_error) and the open breakers of its terminals; ``status`` is
    "degraded" if any breaker is open. In memory, per process (docs/failover.md)."""
    app = request.app[APP_KEY]
    health = app.dispatcher.health
    out = [
        {"name": name, "adapter": app.config.channels[name]["adapter"], **health.snapshot(name)}
        for name in sorted(app.channels)
    ]
    open_ = health.open_breakers()
    return json_response({"status": "degraded" if open_ else "ok", "open": open_, "channels": out}, tz=app.tz)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 503 only when the database is unreachable. A stale feed or an open circuit breaker makes the
    status "degraded" (still 200 — restarting warnd does not bring a publisher or a provider back), named under
    ``feeds.stale`` / ``breakers.open``."""
    app = request.app[APP_KEY]
    try:
        await app.store.recipient_count()
        stale = [f["name"] for f in await feeds_health(app) if f["stale"]]
    except Exception as exc:
        return json_response({"status": "error", "database": str(exc)}, status=503)
    open_breakers = app.dispatcher.health.open_breakers()
    return json_response(
        {
            "status": "degraded" if stale or open_breakers else "ok",
            "version": __version__,
            "channels": sorted(app.channels),
            "feeds": {"stale": stale},
            "breakers": {"open": open_breakers},
        }
    )


def make_web_app(app: App) -> web.Application:
    web_app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=app.config.api.max_body_bytes
    )
    web_app[APP_KEY] = app
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_post("/api/v1/alerts", post_alert)
    web_app.router.add_get("/api/v1/alerts", list_alerts)
    web_app.router.add_get("/api/v1/alerts/{id}", get_alert)
    web_app.router.add_get("/api/v1/alerts/{id}/deliveries", alert_deliveries)
    web_app.router.add_get("/api/v1/quarantine", quarantine)
    web_app.router.add_get("/api/v1/feeds", feeds)
    web_app.router.add_get("/api/v1/channels", channels)
    web_app.router.add_post("/api/v1/readings", post_readings)
    # the feedback loop's routes come first: /api/v1/feedback/reply is theirs, not a receipt kind
    for module in (
        api_auth,
        api_acks,
        api_broadcasts,
        api_escalation,
        api_reports,
        api_logs,
        api_console,
        api_openapi,
        api_board,
        api_admin,
    ):
        module.add_routes(web_app.router)
    web_app.on_shutdown.append(api_board.on_shutdown)  # ends the live board's event streams
    web_app.router.add_post(FEEDBACK_PREFIX + "{kind}", post_feedback)
    web_app.router.add_get("/api/v1/hydrology", hydrology)
    web_app.router.add_get("/api/v1/audio/{name}", audio)
    web_app.router.add_get("/api/v1/push/vapid-public-key", vapid_public_key)
    return web_app
