"""HTTP routes of 叫应 (docs/acknowledgement.md).

- ``GET /a/{token}``: the one-tap page on the person's phone (no bearer token: the signed token is the key).
  GET never acknowledges — carriers' URL scanners and link previews fetch every link in an SMS; the page's
  button POSTs to the same URL.
- ``POST /a/{token}``: records the acknowledgement, then 303 back to the page.
- ``POST /api/v1/feedback/reply``: inbound SMS replies from the SMS provider (signed with
  ``api.feedback_secrets["reply"]`` by the middleware in :mod:`warnd.api`).
- ``POST /api/v1/alerts/{id}/acks``: an operator records an acknowledgement taken by phone.
- ``GET /api/v1/alerts/{id}/acks``: the chain's 叫应 board.
"""

from __future__ import annotations

import html
from datetime import datetime, tzinfo
from typing import Any

from aiohttp import web

from warnd.acks import MAX_TEXT, AckError, LinkView
from warnd.api_common import (
    APP_KEY,
    PAGE_HEADERS,
    PRINCIPAL,
    error_response,
    html_page,
    json_list,
    json_response,
    path_id,
)
from warnd.cap.model import DRILL_STATUSES
from warnd.hazards import COLOUR_LABELS
from warnd.links import BadLink
from warnd.logs import mask_phone
from warnd.store.acks import Ack

MAX_REPLIES = 1000  # per request
REPLY_COUNTS = ("acknowledged", "no_obligation", "not_a_keyword", "unknown_phone", "invalid")
CSS_COLOURS = {"red": "#d9001b", "orange": "#f08300", "yellow": "#e6b800", "blue": "#0067c5"}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/a/{token}", ack_page)
    router.add_post("/a/{token}", ack_post)
    router.add_post("/api/v1/feedback/reply", post_replies)
    router.add_post("/api/v1/alerts/{id}/acks", post_ack)
    router.add_get("/api/v1/alerts/{id}/acks", get_acks)


# --- the one-tap page ------------------------------------------------------------------------------------------


async def ack_page(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        view = await app.acks.look(request.match_info["token"])
    except BadLink:
        return _invalid()
    return _page_for(view, app.tz)


async def ack_post(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        view = await app.acks.from_link(request.match_info["token"], remote=request.remote)
    except BadLink:
        return _invalid()
    if view.state == "ended":
        return _page_for(view, app.tz)
    raise web.HTTPSeeOther(location=request.path, headers=PAGE_HEADERS)


def _invalid() -> web.Response:
    return _page(
        404,
        "链接无效",
        "<p>此链接无效或已损坏，无法确认。请以收到的预警短信为准，或回复短信确认。</p>",
    )


def _page_for(view: LinkView, tz: tzinfo) -> web.Response:
    card = _alert_card(view, tz)
    name = html.escape(view.recipient["name"])
    updated = (
        "<p class=note>此预警已更新，请以最新消息为准；最新消息如需确认，会再次请您确认。</p>"
        if view.updated
        else ""
    )
    if view.state == "ended":
        done = f"<p>您已于 {_when(view.ack.at, tz)} 确认收到。</p>" if view.ack else ""  # still worth saying
        return _page(
            410,
            "预警已结束，无需确认",
            f"{card}<p>{name}，您好：此预警已解除或已过期，无需再确认。</p>{done}",
        )
    if view.state == "acknowledged":
        assert view.ack is not None
        return _page(
            200,
            "已确认，谢谢",
            f"{card}<p class=ok>✓ {name}，您已于 {_when(view.ack.at, tz)} 确认收到此预警。</p>{updated}"
            "<p>请按预案做好防范和人员转移工作。</p>",
        )
    return _page(
        200,
        "请确认收到预警",
        f"{card}<p>{name}，您好：请确认您已收到此预警（叫应）。</p>{updated}"
        "<form method=post><button type=submit>确认收到</button></form>",
    )


def _alert_card(view: LinkView, tz: tzinfo) -> str:
    alert = view.alert
    colour = alert["colour"] or ""
    label = COLOUR_LABELS.get(colour, "")
    title = (
        f"{alert['event']}{label}预警" if label and label not in (alert["event"] or "") else alert["event"]
    )
    rows = [
        ("预警", title),
        ("标题", alert["headline"] or ""),
        ("发布", alert["sender"]),
        ("时间", _when(alert["sent"], tz)),
    ]
    if alert["area_desc"]:
        rows.append(("区域", alert["area_desc"]))
    if alert["status"] in DRILL_STATUSES:
        rows.insert(0, ("类别", "演练" if alert["status"] == "Exercise" else "测试"))
    body = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows if v)
    return (
        f'<div class=card style="border-color:{CSS_COLOURS.get(colour, "#555")}"><table>{body}</table></div>'
    )


def _when(value: datetime, tz: tzinfo) -> str:
    local = value.astimezone(tz)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


PAGE = """<!doctype html>
<html lang=zh-CN><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<meta name=robots content="noindex,nofollow">
<title>{title}</title>
<style>
body{{margin:0;padding:16px;font:17px/1.5 -apple-system,"PingFang SC","Microsoft YaHei",sans-serif;
color:#222;background:#f4f4f4}}
main{{max-width:480px;margin:0 auto}}
h1{{font-size:22px;margin:8px 0 16px}}
.card{{background:#fff;border-left:6px solid #555;border-radius:6px;padding:10px 12px;margin-bottom:16px}}
table{{border-collapse:collapse;width:100%}}
th{{text-align:left;white-space:nowrap;color:#666;font-weight:normal;padding:3px 10px 3px 0;vertical-align:top}}
td{{padding:3px 0}}
button{{display:block;width:100%;padding:18px;font-size:22px;font-weight:bold;color:#fff;background:#d9001b;
border:0;border-radius:8px;margin-top:20px}}
.ok{{color:#0a7d32;font-size:19px;font-weight:bold}}
.note{{background:#fff6d6;padding:8px 10px;border-radius:6px}}
</style></head>
<body><main><h1>{title}</h1>{body}</main></body></html>
"""


def _page(status: int, title: str, body: str) -> web.Response:
    return html_page(status, PAGE.format(title=html.escape(title), body=body))


# --- reply SMS webhook -----------------------------------------------------------------------------------------


async def post_replies(request: web.Request) -> web.Response:
    """Inbound SMS (signed webhook): a JSON list (or ``{"replies": [...]}``) of at most 1000
    ``{phone, text, time?, id?}``. Every reply is kept: acknowledgements, or ``reply.unmatched`` audit entries.
    ``acknowledged`` counts obligations acknowledged (one reply may answer several warnings)."""
    app = request.app[APP_KEY]
    items = await json_list(request, "replies", MAX_REPLIES)
    counts = dict.fromkeys(REPLY_COUNTS, 0)
    actor = request[PRINCIPAL]
    for item in items:
        reply = _reply(item, app.tz)
        if isinstance(reply, str):
            counts["invalid"] += 1
            await app.acks.unreadable_reply(item, reply, actor=actor, remote=request.remote)
            continue
        phone, text, at, detail = reply
        result = await app.acks.from_reply(phone, text, at, detail, actor=actor, remote=request.remote)
        counts[result.outcome] += len(result.acks) if result.outcome == "acknowledged" else 1
    return json_response({"received": len(items), **counts})


def _reply(item: Any, tz: tzinfo) -> tuple[str, str, datetime | None, dict[str, Any]] | str:
    """One webhook reply, checked: (phone, text, time, detail), or why it is invalid."""
    if not isinstance(item, dict):
        return "not an object"
    phone, text = item.get("phone"), item.get("text")
    if not isinstance(phone, str | int) or isinstance(phone, bool) or not str(phone).strip():
        return "phone is required"
    if not isinstance(text, str):
        return "text is required"
    at = None
    if item.get("time") is not None:
        try:
            at = datetime.fromisoformat(str(item["time"]))
        except ValueError:
            return f"time is not ISO 8601: {str(item['time'])[:40]!r}"
        if at.tzinfo is None:
            at = at.replace(tzinfo=tz)
    detail = {"provider_id": str(item["id"])[:128]} if item.get("id") is not None else {}
    return str(phone).strip(), text[:MAX_TEXT], at, detail


# --- operators -------------------------------------------------------------------------------------------------


def ack_json(ack: Ack) -> dict[str, Any]:
    return {
        "id": ack.id,
        "alert_id": ack.alert_id,
        "root_id": ack.root_id,
        "recipient_id": ack.recipient_id,
        "name": ack.name,
        "phone": mask_phone(ack.phone),
        "at": ack.at,
        "channel": ack.channel,
        "recorded_by": ack.recorded_by,
        "note": ack.note,
        "already": ack.already,
    }


async def post_ack(request: web.Request) -> web.Response:
    """An operator records a call: ``{"recipient": phone or id, "channel": "call", "note": "...", "at": ISO}``
    → 201 with the acknowledgement (200 with ``already: true`` when the person had acknowledged already)."""
    app = request.app[APP_KEY]
    alert_id = path_id(request)
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return error_response(400, "body must be JSON")
    if not isinstance(body, dict):
        return error_response(400, "body must be a JSON object")
    allowed = {"recipient", "channel", "note", "at"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        return error_response(
            400, f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )
    recipient = body.get("recipient")
    if not isinstance(recipient, str | int) or isinstance(recipient, bool) or not str(recipient).strip():
        return error_response(400, "recipient is required: a phone number or a recipient id")
    if body.get("channel", "call") != "call":
        return error_response(400, 'channel must be "call" (replies and links are recorded by themselves)')
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        return error_response(400, "note must be a string")
    at = None
    if body.get("at") is not None:
        try:
            at = datetime.fromisoformat(str(body["at"]))
        except ValueError:
            return error_response(400, "at must be an ISO 8601 time")
    try:
        ack = await app.acks.record_call(
            alert_id, str(recipient), request[PRINCIPAL], note, at, remote=request.remote
        )
    except AckError as exc:
        return error_response(exc.status, str(exc))
    return json_response(ack_json(ack), status=200 if ack.already else 201, tz=app.tz)


async def get_acks(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        board = await app.acks.board(path_id(request))
    except AckError as exc:
        return error_response(exc.status, str(exc))
    return json_response(board, tz=app.tz)
