"""HTTP routes of the escalation ladder and the door-knock lists (docs/escalation.md).

Operators (bearer token):

* ``GET /api/v1/alerts/{id}/escalations`` — every ladder of the alert's chain with its events;
* ``GET /api/v1/alerts/{id}/doorknock`` — the door-knock list as JSON (``?phones=full`` unmasks, audited;
  ``?format=csv`` one row per person, UTF-8 with BOM; ``?village=CODE``);
* ``GET /api/v1/alerts/{id}/doorknock/print`` — a printable page (full phones: it is for the field);
* ``POST /api/v1/alerts/{id}/doorknock/{household}`` — record a household's result ``{result, note, village}``.

Door-knockers, on their phones (no bearer; the signed link is the credential):

* ``GET /k/{token}`` — their village's list with a 已通知到 / 已转移 / 不在家 form per household;
* ``POST /k/{token}`` — form fields ``household``, ``result``, ``note``; 303 back to the page.

``village`` (query or body) must be a 12-digit admin code (400 otherwise). Every value put into HTML is
escaped. The pages send the headers of the 叫应 pages (``warnd.api_common.html_page``: no-store, noindex,
nosniff, no referrer) and a Content-Security-Policy that allows nothing but their inline CSS and posting back to
themselves. A /k/ link stops working (404 「链接已失效」) once its door-knocker is deactivated or may no longer
knock in the village (``Escalator.may_knock``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from warnd.api_common import (
    APP_KEY,
    PAGE_HEADERS,
    PRINCIPAL,
    error_response,
    html_page,
    json_response,
    path_id,
)
from warnd.escalation import (
    RESULT_LABELS,
    VULNERABLE_LABELS,
    alert_title,
    doorknock_csv,
    valid_village,
    vulnerable_words,
)
from warnd.links import DOORKNOCK, BadLink
from warnd.logs import mask_phone
from warnd.store.escalation import RESULTS

MAX_NOTE = 500
BAD_VILLAGE = "village must be a 12-digit admin code"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/alerts/{id}/escalations", escalations)
    router.add_get("/api/v1/alerts/{id}/doorknock", doorknock)
    router.add_get("/api/v1/alerts/{id}/doorknock/print", doorknock_print)
    router.add_post("/api/v1/alerts/{id}/doorknock/{household}", doorknock_result)
    router.add_get("/k/{token}", knock_page)
    router.add_post("/k/{token}", knock_post)


# --- operators ------------------------------------------------------------------------------------------------------


async def escalations(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    alert = await app.store.get_alert(path_id(request))
    if alert is None:
        return error_response(404, "no such alert")
    root_id = alert["root_id"] or alert["id"]
    ladders = []
    for row in await app.escalator.ladders(root_id):
        ladders.append(
            {
                "id": row["id"],
                "alert_id": row["alert_id"],
                "recipient": {
                    "id": row["recipient_id"],
                    "name": row["name"],
                    "phone": mask_phone(row["phone"]),
                    "role": row["role"],
                    "area_code": row["area_code"],
                },
                "reason": row["reason"],
                "state": row["state"],
                "step": row["step"],
                "due_at": row["due_at"] if row["state"] == "open" else None,
                "resolution": row["resolution"],
                "created_at": row["created_at"],
                "updated_at": row["updated_at"],
                "events": row["events"],
            }
        )
    return json_response({"alert_id": alert["id"], "root_id": root_id, "escalations": ladders}, tz=app.tz)


async def doorknock(request: web.Request) -> web.StreamResponse:
    app = request.app[APP_KEY]
    alert_id = path_id(request)
    full = request.query.get("phones") == "full"
    village = request.query.get("village") or None
    if village is not None and not valid_village(village):
        return error_response(400, BAD_VILLAGE)
    data = await app.escalator.doorknock_list(alert_id, village=village, full_phones=full)
    if data is None:
        return error_response(404, "no such alert")
    fmt = request.query.get("format", "json")
    if full or fmt == "csv":
        await app.store.audit(
            app.clock.now(),
            request[PRINCIPAL],
            "doorknock.export",
            target=f"alert:{alert_id}",
            detail={"format": fmt, "phones": "full" if full else "masked", "village": village},
            remote=request.remote,
        )
    if fmt == "csv":
        body = "\ufeff" + doorknock_csv(data, app.config.roles, app.tz)
        return web.Response(
            body=body.encode("utf-8"),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="doorknock-{data["root_id"]}.csv"'},
        )
    if fmt != "json":
        return error_response(400, "format must be json or csv")
    return json_response(data, tz=app.tz)


async def doorknock_print(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    alert_id = path_id(request)
    village = request.query.get("village") or None
    if village is not None and not valid_village(village):
        return _page(400, "参数错误", "<p>village 必须是12位行政区划代码。</p>")
    data = await app.escalator.doorknock_list(alert_id, village=village, full_phones=True)
    if data is None:
        return _page(404, "未找到", "<p>没有这条预警。</p>")
    await app.store.audit(
        app.clock.now(),
        request[PRINCIPAL],
        "doorknock.print",
        target=f"alert:{alert_id}",
        remote=request.remote,
    )
    parts = [
        f"<h1>敲门名单：{_e(data['headline'])}</h1>",
        f"<p class='meta'>预警 #{_e(data['root_id'])} · 打印于 {_e(_time(app.clock.now(), app.tz))} · "
        f"共 {_e(data['total']['households'])} 户 {_e(data['total']['people'])} 人，"
        f"待敲门 {_e(data['total']['open'])} 户</p>",
    ]
    for village in data["villages"]:
        knockers = "、".join(f"{k['name']} {k['phone'] or ''}".strip() for k in village["door_knockers"])
        parts.append(
            f"<section><h2>{_e(village['name'])} <small>{_e(village['area_code'])}</small></h2>"
            f"<p class='meta'>敲门人：{_e(knockers or '（无）')} · 待敲门 {_e(village['open'])} 户 · "
            f"已完成 {_e(village['done'])} 户</p>"
            "<table><thead><tr><th>户</th><th>地址</th><th>姓名</th><th>电话</th><th>重点人群</th><th>列入原因</th>"
            "<th>结果</th><th>登记</th><th>备注</th></tr></thead><tbody>"
        )
        for h in village["households"]:
            span = len(h["members"])
            for i, m in enumerate(h["members"]):
                row = "<tr>"
                if i == 0:
                    row += (
                        f"<td rowspan='{_e(span)}'>{_e(h['household'])}</td>"
                        f"<td rowspan='{_e(span)}'>{_e(h['address'] or '')}</td>"
                    )
                row += (
                    f"<td>{_e(m['name'])}</td><td>{_e(m['phone'] or '')}</td>"
                    f"<td>{_e(vulnerable_words(m['vulnerable']))}</td><td>{_e(m['reason'])}"
                    f"{_e(_informed_note(m))}</td>"
                )
                if i == 0:
                    by = f"{h['result_by'] or ''} {_time(h['result_at'], app.tz)}".strip()
                    row += (
                        f"<td rowspan='{_e(span)}' class='box'>"
                        f"{_e(RESULT_LABELS.get(h['result'] or '', '□已通知 □已转移 □不在家'))}</td>"
                        f"<td rowspan='{_e(span)}'>{_e(by)}</td><td rowspan='{_e(span)}'>{_e(h['note'] or '')}</td>"
                    )
                parts.append(row + "</tr>")
        if not village["households"]:
            parts.append("<tr><td colspan='9'>暂无需要敲门的住户</td></tr>")
        parts.append("</tbody></table></section>")
    return _page(200, f"敲门名单 · {data['headline']}", "".join(parts), printable=True)


async def doorknock_result(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    alert = await app.store.get_alert(path_id(request))
    if alert is None:
        return error_response(404, "no such alert")
    try:
        body = await request.json()
    except ValueError:
        return error_response(400, "body must be JSON: {result, note}")
    if not isinstance(body, Mapping):
        return error_response(400, "body must be a JSON object")
    result = body.get("result")
    note = body.get("note")
    village = body.get("village") or None
    if village is not None and (not isinstance(village, str) or not valid_village(village)):
        return error_response(400, BAD_VILLAGE)
    if result not in RESULTS:
        return error_response(400, f"result must be one of {', '.join(RESULTS)}")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        return error_response(400, f"note must be text of at most {MAX_NOTE} characters")
    root_id = alert["root_id"] or alert["id"]
    household = request.match_info["household"]
    principal = request[PRINCIPAL]
    changed = await app.escalator.record_result(
        root_id,
        household,
        result=result,
        note=note,
        by=principal,
        actor=principal,
        village=village,
        remote=request.remote,
    )
    if not changed:
        return error_response(404, "no such household on this alert's door-knock list")
    data = await app.escalator.doorknock_list(alert["id"])
    assert data is not None
    for v in data["villages"]:
        for h in v["households"]:
            if h["household"] == household:
                return json_response({"area_code": v["area_code"], **h, "people": changed}, tz=app.tz)
    return json_response({"household": household, "people": changed}, tz=app.tz)


# --- door-knockers' phones --------------------------------------------------------------------------------------------


async def _link(request: web.Request) -> dict[str, Any] | web.Response:
    app = request.app[APP_KEY]
    try:
        fields = app.links.verify(DOORKNOCK, request.match_info["token"], 3)
    except BadLink:
        return _page(404, "链接无效", "<p>这个链接无效或已被改动。请使用短信中的完整链接。</p>")
    target = await app.escalator.link_target(fields)
    if target["status"] == "missing":
        return _page(404, "链接无效", "<p>找不到这个敲门任务。</p>")
    if target["status"] == "revoked":
        return _page(404, "链接已失效", "<p>这个敲门链接已失效：敲门人已变更。如有情况请直接报告镇村。</p>")
    if target["status"] == "gone":
        return _page(410, "任务已结束", "<p>这次预警已结束，敲门登记已关闭。如有情况请直接报告镇村。</p>")
    return target


async def knock_page(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    target = await _link(request)
    if isinstance(target, web.Response):
        return target
    village, knocker = target["village"], target["knocker"]
    data = await app.escalator.doorknock_list(target["root_id"], village=village, full_phones=True)
    assert data is not None
    [v] = data["villages"]
    title = alert_title(target["head"])
    parts = [
        f"<h1>敲门登记 · {_e(v['name'])}</h1>",
        f"<p class='meta'>{_e(title)} · 敲门人 {_e(knocker['name'])}<br>"
        f"待敲门 <b>{_e(v['open'])}</b> 户，已完成 {_e(v['done'])} 户</p>",
    ]
    if request.query.get("ok"):
        parts.append("<p class='ok'>已登记，谢谢！</p>")
    if not v["households"]:
        parts.append("<p>暂无需要敲门的住户。</p>")
    for h in v["households"]:
        done = bool(h["result"])
        flags = "".join(
            f"<span class='tag'>{_e(VULNERABLE_LABELS.get(f, f))}</span>" for f in h["vulnerable"]
        )
        members = "".join(
            f"<li>{_e(m['name'])} "
            + (f"<a href='tel:{_e(m['phone'])}'>{_e(m['phone'])}</a>" if m["phone"] else "")
            + (f" <span class='small'>{_e(_informed_note(m))}</span>" if _informed_note(m) else "")
            + f"<br><span class='small'>{_e(m['reason'])}</span></li>"
            for m in h["members"]
        )
        status = ""
        if done:
            by = f"{h['result_by'] or ''} {_time(h['result_at'], app.tz)}".strip()
            status = (
                f"<p class='status'>{_e(RESULT_LABELS.get(h['result'] or '', h['result'] or ''))}"
                f"{'（' + _e(by) + '）' if by else ''}{'：' + _e(h['note']) if h['note'] else ''}</p>"
            )
        buttons = "".join(
            f"<button name='result' value='{_e(value)}'>{_e(label)}</button>"
            for value, label in (("reached", "已通知到"), ("moved", "已转移"), ("not_home", "不在家"))
        )
        parts.append(
            f"<section class='{'done' if done else 'open'}'>"
            f"<h2>{_e(h['address'] or h['household'])} {flags}</h2><ul>{members}</ul>{status}"
            f"<form method='post'><input type='hidden' name='household' value='{_e(h['household'])}'>"
            f"<input name='note' maxlength='{_e(MAX_NOTE)}' placeholder='备注（可选）'>"
            f"<div class='buttons'>{buttons}</div></form></section>"
        )
    return _page(200, f"敲门登记 · {v['name']}", "".join(parts))


async def knock_post(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    target = await _link(request)
    if isinstance(target, web.Response):
        return target
    form = await request.post()
    household = str(form.get("household") or "")
    result = str(form.get("result") or "")
    note = str(form.get("note") or "").strip()[:MAX_NOTE] or None
    if result not in RESULTS or not household:
        return _page(400, "登记失败", "<p>请选择 已通知到 / 已转移 / 不在家。</p>")
    knocker = target["knocker"]
    changed = await app.escalator.record_result(
        target["root_id"],
        household,
        result=result,
        note=note,
        by=knocker["name"],
        actor=f"link:doorknock:{knocker['id']}",
        village=target["village"],
        remote=request.remote,
    )
    if not changed:
        return _page(404, "登记失败", "<p>本村名单上没有这一户。</p>")
    raise web.HTTPSeeOther(location=f"{request.path}?ok=1", headers=PAGE_HEADERS)


# --- HTML ----------------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;padding:12px;color:#222;
background:#f6f6f6;font-size:16px;line-height:1.5}
h1{font-size:20px;margin:4px 0}h2{font-size:17px;margin:0 0 6px}.meta{color:#555;font-size:14px;margin:4px 0 12px}
section{background:#fff;border-radius:8px;padding:12px;margin:0 0 12px;border-left:5px solid #c62828}
section.done{border-left-color:#2e7d32;opacity:.8}ul{margin:0 0 8px;padding-left:20px}
.tag{display:inline-block;background:#c62828;color:#fff;border-radius:4px;padding:0 6px;font-size:13px;margin-left:4px}
.small{color:#666;font-size:13px}.status{color:#2e7d32;font-weight:bold;margin:4px 0}
.ok{background:#e8f5e9;color:#2e7d32;padding:8px;border-radius:6px}
input[name=note]{width:100%;box-sizing:border-box;padding:8px;font-size:16px;margin:4px 0;border:1px solid #bbb;
border-radius:6px}.buttons{display:flex;gap:6px}
button{flex:1;padding:12px 4px;font-size:16px;border:0;border-radius:6px;background:#1565c0;color:#fff}
button[value=moved]{background:#2e7d32}button[value=not_home]{background:#ef6c00}
a{color:#1565c0}
"""
_PRINT_CSS = """
body{background:#fff;font-size:13px}section{border:0;padding:0;margin-bottom:18px;page-break-inside:auto}
table{width:100%;border-collapse:collapse}th,td{border:1px solid #444;padding:4px 6px;text-align:left;
vertical-align:top}th{background:#eee}tr{page-break-inside:avoid}.box{white-space:nowrap}
@media print{body{padding:0}h2{page-break-after:avoid}@page{size:A4 landscape;margin:12mm}}
"""


def _page(status: int, title: str, body: str, *, printable: bool = False) -> web.Response:
    """An HTML page; ``body`` must already be escaped HTML."""
    css = _CSS + (_PRINT_CSS if printable else "")
    text = (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<meta name='robots' content='noindex'><title>{_e(title)}</title><style>{css}</style></head>"
        f"<body>{body}</body></html>"
    )
    return html_page(status, text)


def _informed_note(member: dict[str, Any]) -> str:
    """What the list says of a listed person informed after all."""
    if member.get("acknowledged"):
        return "（已确认收到）"
    return "（消息已送达）" if member["reached_by_message"] else ""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _time(value: datetime | None, tz: Any) -> str:
    return value.astimezone(tz).strftime("%m-%d %H:%M") if value else ""
