"""The broadcast composer and its two-person approval (warnd/broadcasts.py, docs/console.md).

- ``GET /api/v1/composer``: what can be chosen — the township/village tree, groups, channels, hazards, colours.
- ``POST /api/v1/broadcasts/preview``: each channel's message as it would go out (SMS with signature and
  segment count, the spoken script, the push title and body) and the recipients per channel; nothing stored.
- ``POST /api/v1/broadcasts``: submit. Needs no approval → sent at once (201/202 with the alert, as before, plus
  ``broadcast``); needs approval → 202 ``{"broadcast": …}`` (pending) and the approvers are told.
- ``GET /api/v1/broadcasts[?status=]``, ``GET /api/v1/broadcasts/{id}``.
- ``POST /api/v1/broadcasts/{id}/approve`` (approver; never the submitter: 403), ``…/reject`` (a reason is
  required), ``…/withdraw`` (the submitter or an admin). A draft decided already → 409.
- ``POST /api/v1/alerts/{id}/update`` and ``…/cancel``: an Update or 解除 of an active alert chain in warnd's
  name, through the same approval rules.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from warnd.api_common import (
    APP_KEY,
    PRINCIPAL,
    ROLE,
    error_response,
    int_param,
    json_response,
    path_id,
    result_json,
)
from warnd.auth import ADMIN
from warnd.broadcasts import (
    Conflict,
    NotAllowed,
    NotFound,
    Submitted,
    broadcast_json,
    broadcast_request,
    revision_request,
)
from warnd.config import county_code, is_village, township_code
from warnd.hazards import COLOUR_LABELS
from warnd.pipeline import BroadcastInvalid
from warnd.store.broadcasts import STATUSES

STATUS_LABELS = {"Actual": "正式发布", "Exercise": "演练", "Test": "测试"}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/composer", composer)
    router.add_post("/api/v1/broadcasts/preview", preview)
    router.add_post("/api/v1/broadcasts", submit)
    router.add_get("/api/v1/broadcasts", list_broadcasts)
    router.add_get("/api/v1/broadcasts/{id}", get_broadcast)
    router.add_post("/api/v1/broadcasts/{id}/approve", approve)
    router.add_post("/api/v1/broadcasts/{id}/reject", reject)
    router.add_post("/api/v1/broadcasts/{id}/withdraw", withdraw)
    router.add_post("/api/v1/alerts/{id}/update", update_alert)
    router.add_post("/api/v1/alerts/{id}/cancel", cancel_alert)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(reason="body must be JSON") from None


def area_tree(areas: dict[str, str]) -> list[dict[str, Any]]:
    """The configured admin codes as county → township → village nodes (each sorted by code)."""
    nodes: dict[str, dict[str, Any]] = {
        code: {
            "code": code,
            "name": name,
            "kind": "village"
            if is_village(code)
            else ("county" if code == county_code(code) else "township"),
            "children": [],
        }
        for code, name in sorted(areas.items())
    }
    roots: list[dict[str, Any]] = []
    for code, node in nodes.items():
        parent = (
            None
            if node["kind"] == "county"
            else nodes.get(township_code(code))
            if node["kind"] == "village"
            else nodes.get(county_code(code))
        )
        (parent["children"] if parent is not None and parent is not node else roots).append(node)
    return roots


async def composer(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    config = app.config
    channels = [
        {"name": name, "adapter": settings["adapter"], "style": config.channel_style(name)}
        for name, settings in sorted(config.channels.items())
    ]
    return json_response(
        {
            "areas": area_tree(config.areas),
            "groups": [{"name": n, "label": g.label, "drill": g.drill} for n, g in config.groups.items()],
            "roles": [{"name": n, "label": label} for n, label in config.roles.items()],
            "channels": channels,
            "hazards": [{"code": h.code, "name": h.name} for h in app.pipeline.catalogue.hazards.values()],
            "colours": [{"code": c, "label": label} for c, label in COLOUR_LABELS.items()],
            "statuses": [{"code": c, "label": label} for c, label in STATUS_LABELS.items()],
        }
    )


def _bad(exc: Exception) -> web.Response:
    return error_response(400, str(exc))


async def preview(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        result = await app.broadcasts.preview(broadcast_request(await _body(request), request[PRINCIPAL]))
    except BroadcastInvalid as exc:
        return _bad(exc)
    return json_response(result.json(), tz=app.tz)


async def _submitted(request: web.Request, submitted: Submitted) -> web.Response:
    app = request.app[APP_KEY]
    broadcast = broadcast_json(submitted.broadcast)
    if submitted.result is None:  # waiting for approval, or failed to send
        status = 202 if submitted.broadcast["status"] == "pending" else 200
        return json_response({"broadcast": broadcast}, status=status, tz=app.tz)
    data, status = await result_json(app, submitted.result)
    return json_response({**data, "broadcast": broadcast}, status=status, tz=app.tz)


async def submit(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        req = broadcast_request(await _body(request), request[PRINCIPAL])
        submitted = await app.broadcasts.submit(req, remote=request.remote)
    except BroadcastInvalid as exc:
        return _bad(exc)
    return await _submitted(request, submitted)


async def list_broadcasts(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        return error_response(400, f"status must be one of {', '.join(STATUSES)}")
    rows = await app.broadcasts.recent(status, limit=int_param(request, "limit", 100, maximum=1000) or 100)
    return json_response({"broadcasts": [broadcast_json(r) for r in rows]}, tz=app.tz)


async def get_broadcast(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        return json_response(broadcast_json(await app.broadcasts.get(path_id(request))), tz=app.tz)
    except NotFound as exc:
        return error_response(404, str(exc))


def _note(body: Any, key: str, *, required: bool) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    if value is not None and not isinstance(value, str):
        raise web.HTTPBadRequest(reason=f"{key} must be a string")
    if required and not (value or "").strip():
        raise web.HTTPBadRequest(reason=f"{key} is required (驳回须说明理由)")
    return (value or "").strip()[:1000] or None


async def _decision(request: web.Request, action: str) -> web.Response:
    app = request.app[APP_KEY]
    broadcast_id = path_id(request)
    body = await _body(request)
    actor = request[PRINCIPAL]
    try:
        if action == "approve":
            return await _submitted(
                request,
                await app.broadcasts.approve(
                    broadcast_id, actor=actor, note=_note(body, "note", required=False), remote=request.remote
                ),
            )
        if action == "reject":
            row = await app.broadcasts.reject(
                broadcast_id,
                actor=actor,
                reason=_note(body, "reason", required=True) or "",
                remote=request.remote,
            )
        else:
            row = await app.broadcasts.withdraw(
                broadcast_id, actor=actor, admin=request[ROLE] == ADMIN, remote=request.remote
            )
    except NotFound as exc:
        return error_response(404, str(exc))
    except NotAllowed as exc:
        await app.store.audit(
            app.clock.now(),
            actor,
            f"broadcast.{action}_refused",
            target=f"broadcast:{broadcast_id}",
            detail={"reason": str(exc)},
            remote=request.remote,
        )
        return error_response(403, str(exc))
    except Conflict as exc:
        return error_response(409, str(exc))
    return json_response(broadcast_json(row), tz=app.tz)


async def approve(request: web.Request) -> web.Response:
    return await _decision(request, "approve")


async def reject(request: web.Request) -> web.Response:
    return await _decision(request, "reject")


async def withdraw(request: web.Request) -> web.Response:
    return await _decision(request, "withdraw")


async def _revise(request: web.Request, msg_type: str) -> web.Response:
    app = request.app[APP_KEY]
    try:
        req = revision_request(path_id(request), msg_type, await _body(request), request[PRINCIPAL])
        submitted = await app.broadcasts.submit(req, remote=request.remote)
    except BroadcastInvalid as exc:
        if str(exc).startswith("no alert "):
            return error_response(404, str(exc))
        return _bad(exc)
    return await _submitted(request, submitted)


async def update_alert(request: web.Request) -> web.Response:
    return await _revise(request, "Update")


async def cancel_alert(request: web.Request) -> web.Response:
    return await _revise(request, "Cancel")
