"""Delivery log review (docs/security.md, README "HTTP API"): the log across alerts, its CSV export and one
person's history.

* ``GET /api/v1/deliveries`` — the log, **newest first**, keyset pages (``after`` = the ``next_after`` of the
  previous page): filters ``alert`` (any revision id: the whole chain), ``channel``, ``status``, ``village``
  (a 12-digit admin code — a township's or county's code covers its villages — or a shorter digit prefix),
  ``since`` / ``until`` (``30m`` / ``2h`` / ``1d`` ago, or ISO 8601 read in the configured time zone),
  ``phone_suffix`` (3–11 digits), ``purpose`` (warning | notice | all). Viewer; phone numbers masked, except
  ``?phones=full`` for an admin (audited as ``deliveries.unmask``).
* ``GET /api/v1/deliveries?format=csv`` — the same filters, every matching row streamed as CSV (UTF-8 with BOM,
  Chinese + English headers, newest first; ``limit`` / ``after`` do not apply). Operator (checked here: the
  permission table's raised role is the admin's, for ``phones=full``); ``?phones=full`` admin only. Every export is audited as
  ``deliveries.export`` (who, filters, phones, row count, whether it completed, from where).
* ``GET /api/v1/recipients/{id}/history`` — one person's deliveries, newest first (keyset pages), with their
  叫应 (acknowledgements) and door-knock rows for the alerts on the page. Viewer; phones always masked.

Why newest first by id: ``deliveries.id`` is the primary key (SQLite's rowid), so ``ORDER BY id DESC`` with
``id < after`` walks the table backwards from the last page's end and stops after ``limit`` matching rows —
page N costs what page 1 does, with no OFFSET and no sort of the whole log.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from warnd.api_common import (
    APP_KEY,
    PRINCIPAL,
    ROLE,
    csv_download,
    delivery_json,
    error_response,
    json_response,
    path_id,
    spreadsheet_safe,
)
from warnd.app import App
from warnd.auth import ADMIN, OPERATOR, allows
from warnd.config import parse_when
from warnd.logs import mask_phone, mask_text
from warnd.store import FINAL

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
EXPORT_PAGE = 1000  # rows fetched per query while streaming a CSV export
STATUSES = ("queued", *FINAL)  # every delivery status
PURPOSES = ("warning", "notice", "all")
_CHANNEL = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_VILLAGE = re.compile(r"^[0-9]{2,12}$")
_PHONE_SUFFIX = re.compile(r"^[0-9]{3,11}$")

# (column, header: Chinese first, then the English field name)
CSV_COLUMNS = (
    ("id", "编号 id"),
    ("alert_id", "预警 alert_id"),
    ("root_id", "预警链 root_id"),
    ("identifier", "预警标识 identifier"),
    ("event", "灾种 event"),
    ("colour", "颜色 colour"),
    ("created_at", "生成时间 created_at"),
    ("channel", "渠道 channel"),
    ("status", "状态 status"),
    ("purpose", "用途 purpose"),
    ("recipient_id", "接收人编号 recipient_id"),
    ("recipient", "接收人 recipient"),
    ("phone", "手机号 phone"),
    ("role", "身份 role"),
    ("area_code", "区划代码 area_code"),
    ("area_name", "区划名称 area_name"),
    ("segments", "短信条数 segments"),
    ("attempts", "尝试次数 attempts"),
    ("sent_at", "发送时间 sent_at"),
    ("delivered_at", "送达时间 delivered_at"),
    ("provider_message_id", "服务商消息号 provider_message_id"),
    ("error", "错误 error"),
    ("reason", "原因 reason"),
    ("body", "内容 body"),
)


class BadParameter(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


def _digits(raw: str) -> bool:
    """ASCII digits only: str.isdigit() is also true of "²" and other digits int() refuses."""
    return raw.isascii() and raw.isdigit()


def _bad(exc: BadParameter) -> web.Response:
    return error_response(400, str(exc), parameter=exc.name)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw in (None, ""):
        return DEFAULT_LIMIT
    if not _digits(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadParameter("limit", f"须为 1–{MAX_LIMIT} 的整数 (an integer from 1 to {MAX_LIMIT})")
    return int(raw)


def _after(request: web.Request) -> int:
    raw = request.query.get("after")
    if raw in (None, ""):
        return 0
    if not _digits(raw) or len(raw) > 18:
        raise BadParameter("after", "须为上一页的 next_after (a delivery id: a non-negative integer)")
    return int(raw)


def _full_phones(request: web.Request) -> bool:
    phones = request.query.get("phones", "masked")
    if phones not in ("masked", "full"):
        raise BadParameter("phones", "须为 masked 或 full (masked | full)")
    return phones == "full"


async def log_filters(app: App, request: web.Request) -> tuple[dict[str, Any], dict[str, str]]:
    """The store filters of a log request and the filters as given (for the answer and the audit log). Raises
    BadParameter naming the first bad one, web.HTTPNotFound for an unknown alert."""
    query = request.query
    filters: dict[str, Any] = {}
    given: dict[str, str] = {}
    alert = query.get("alert", "")
    if alert:
        if not _digits(alert) or len(alert) > 18:
            raise BadParameter("alert", "须为预警编号 (an alert id: an integer)")
        row = await app.store.get_alert(int(alert))
        if row is None:
            raise web.HTTPNotFound(reason=f"alert: no alert {int(alert)}")
        filters["alert_ids"] = await app.store.chain_ids(row["root_id"] or row["id"])
        given["alert"] = alert
    channel = query.get("channel", "")
    if channel:
        if not _CHANNEL.match(channel):
            raise BadParameter("channel", "渠道名称无效 (a channel name: letters, digits, _ . -)")
        filters["channel"] = given["channel"] = channel
    status = query.get("status", "")
    if status:
        if status not in STATUSES:
            raise BadParameter("status", f"须为 {', '.join(STATUSES)} 之一 (unknown status)")
        filters["status"] = given["status"] = status
    village = query.get("village", "")
    if village:
        if not _VILLAGE.match(village):
            raise BadParameter(
                "village", "须为 12 位区划代码或 2–11 位代码前缀 (admin code or prefix, digits)"
            )
        filters["area"] = given["village"] = village
    now = app.clock.now()
    for name in ("since", "until"):
        value = query.get(name, "")
        if not value:
            continue
        try:
            when = parse_when(value, now, app.tz)
        except (ValueError, OverflowError):
            raise BadParameter(
                name, "须为 ISO 8601 时间或时长如 30m、2h、1d (ISO 8601 time or a duration ago)"
            ) from None
        filters[name] = when
        given[name] = value
    if filters.get("since") and filters.get("until") and filters["since"] >= filters["until"]:
        raise BadParameter("until", "须晚于 since (must be after since)")
    suffix = query.get("phone_suffix", "")
    if suffix:
        if not _PHONE_SUFFIX.match(suffix):
            raise BadParameter("phone_suffix", "须为 3–11 位数字 (3 to 11 digits)")
        filters["phone_suffix"] = given["phone_suffix"] = suffix
    purpose = query.get("purpose", "all") or "all"
    if purpose not in PURPOSES:
        raise BadParameter("purpose", "须为 warning、notice 或 all (warning | notice | all)")
    if purpose != "all":
        filters["purpose"] = given["purpose"] = purpose
    return filters, given


def _item(app: App, row: Mapping[str, Any], *, unmask: bool) -> dict[str, Any]:
    item = delivery_json(row, unmask=unmask)
    item.update(
        root_id=row["root_id"] or row["alert_id"],
        identifier=row["identifier"],
        event=row["event"],
        colour=row["colour"],
        recipient_id=row["recipient_id"],
        area_name=app.config.area_name(row["area_code"]),
    )
    return item


async def list_deliveries(request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format", "json") or "json"
    if fmt == "csv":
        return await export_deliveries(request)
    if fmt != "json":
        return _bad(BadParameter("format", "须为 json 或 csv (json | csv)"))
    app = request.app[APP_KEY]
    try:
        full = _full_phones(request)
        limit, after = _limit(request), _after(request)
        filters, given = await log_filters(app, request)
    except BadParameter as exc:
        return _bad(exc)
    if full and request[ROLE] != ADMIN:  # the permission table already says so; never rely on one check
        return error_response(403, f"forbidden: needs role {ADMIN}")
    rows = await app.store.deliveries_page(filters, limit=limit, after_id=after, descending=True)
    if full:
        await app.store.audit(
            app.clock.now(),
            request[PRINCIPAL],
            "deliveries.unmask",
            detail={"filters": given, "after": after, "rows": len(rows)},
            remote=request.remote,
        )
    return json_response(
        {
            "order": "id_desc",
            "filters": given,
            "phones": "full" if full else "masked",
            "deliveries": [_item(app, r, unmask=full) for r in rows],
            "next_after": rows[-1]["id"] if len(rows) == limit else None,
        },
        tz=app.tz,
    )


def _cell(value: Any, app: App) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(app.tz).isoformat()
    return spreadsheet_safe(str(value))


async def export_deliveries(request: web.Request) -> web.StreamResponse:
    app = request.app[APP_KEY]
    if not allows(request[ROLE], OPERATOR):  # the export: an operator's (the table raises phones=full only)
        return error_response(403, f"forbidden: needs role {OPERATOR}")
    try:
        full = _full_phones(request)
        filters, given = await log_filters(app, request)
    except BadParameter as exc:
        return _bad(exc)
    if full and request[ROLE] != ADMIN:
        return error_response(403, f"forbidden: needs role {ADMIN}")
    response = csv_download(app, "deliveries")
    rows = 0

    async def audited(complete: bool) -> None:
        await app.store.audit(
            app.clock.now(),
            request[PRINCIPAL],
            "deliveries.export",
            detail={
                "format": "csv",
                "filters": given,
                "phones": "full" if full else "masked",
                "rows": rows,
                "complete": complete,
            },
            remote=request.remote,
        )

    try:
        await response.prepare(request)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow([header for _, header in CSV_COLUMNS])
        after = 0
        while True:
            page = await app.store.deliveries_page(
                filters, limit=EXPORT_PAGE, after_id=after, descending=True
            )
            for row in page:
                values = _item(app, row, unmask=full)
                writer.writerow([_cell(values[column], app) for column, _ in CSV_COLUMNS])
            await response.write(buffer.getvalue().encode("utf-8"))
            rows += len(page)
            buffer.seek(0)
            buffer.truncate()
            if len(page) < EXPORT_PAGE:
                break
            after = page[-1]["id"]
    except BaseException:  # the client went away, or the database failed: what was sent is still audited
        await audited(False)
        raise
    await audited(True)  # before the end of the body, so the record exists when the download completes
    await response.write_eof()
    return response


async def recipient_history(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    recipient_id = path_id(request)
    try:
        limit, after = _limit(request), _after(request)
    except BadParameter as exc:
        return _bad(exc)
    history = await app.store.recipient_history(recipient_id, limit=limit, after_id=after)
    if history is None:
        return error_response(404, f"no recipient {recipient_id}")
    person = history["recipient"]
    rows = history["deliveries"]
    return json_response(
        {
            "recipient": {
                "id": person["id"],
                "key": mask_text(person["key"]),  # a person's key is often their phone number
                "kind": person["kind"],
                "name": person["name"],
                "phone": mask_phone(person["phone"]),
                "role": person["role"],
                "area_code": person["area_code"],
                "area_name": app.config.area_name(person["area_code"]),
                "household": person["household"],
                "address": person["address"],
                "vulnerable": person["vulnerable"] or [],
                "active": person["active"],
            },
            "order": "id_desc",
            "deliveries": [_item(app, r, unmask=False) for r in rows],
            # 叫应 of the revisions on this page, newest first
            "acknowledgements": history["acknowledgements"],
            # door-knock rows (敲门行动) of the alert chains on this page
            "doorknocks": [
                {**k, "reason": mask_text(k["reason"]), "note": mask_text(k["note"]) if k["note"] else None}
                for k in history["doorknocks"]
            ],
            "next_after": rows[-1]["id"] if len(rows) == limit else None,
        },
        tz=app.tz,
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/deliveries", list_deliveries)
    router.add_get("/api/v1/recipients/{id}/history", recipient_history)
