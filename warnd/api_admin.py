"""Subscribers, templates and config sections: view and edit with validation (docs/admin.md).

Subscribers (people; loudspeaker terminals are a config section):

* ``GET /api/v1/subscribers`` — keyset pages in id order (``after`` = the previous page's ``next_after``):
  ``q`` (part of the name, or the phone's last 3–11 digits), ``village`` (admin code or digit prefix), ``role``,
  ``group`` (members and everyone with one of the group's roles), ``source`` (config | import), ``state``
  (active | removed | all). Viewer; phones masked, ``?phones=full`` for an admin (audited).
* ``GET /api/v1/subscribers/{id}`` — one person (the same ``phones``).
* ``POST /api/v1/subscribers`` — add one (operator): a JSON object with the CSV columns, checked by the CSV
  import's :class:`warnd.subscribers.RowChecker`. A removed person's phone adds them back (the same id).
* ``PUT /api/v1/subscribers/{id}`` — change fields of an imported person (operator; fields left out stay; a
  phone sent back masked as it was shown stays). People from config are read-only here: 409.
* ``DELETE /api/v1/subscribers/{id}`` — remove an imported person (operator): marked inactive, never deleted,
  so their deliveries, 叫应 and door-knock rows keep their name (warnd/store/admin.py says why).
* ``GET /api/v1/subscribers/export.csv`` — every active person (``?source=import``: only those an import may
  change), the columns of ``warnd subscribers export`` (operator; ``?phones=full`` admin only; audited).
* ``POST /api/v1/subscribers/import`` — a CSV body (operator; at most 20 MB and 200,000 rows): every row is
  checked first; one bad row and nothing is written (the answer lists the first 50 problems by line).

Templates (``templates/<language>/<name>.j2``):

* ``GET /api/v1/templates`` — every language × template with its source (viewer).
* ``POST /api/v1/templates/preview`` — ``{language, name, source}``: the candidate rendered in the template
  sandbox (:mod:`warnd.template_sandbox`) on a red rainstorm warning for a village, as issued, updated, upgraded
  and cancelled, styled as its channel sends it; nothing saved (operator).
* ``PUT /api/v1/templates/{language}/{name}`` — ``{source, sha256}`` (``sha256``: the file's, from the GET):
  the same checks, then written atomically with a ``.bak``; the running renderer forgets its compiled
  templates, so the next message uses it (admin).

Config sections (groups, terminals, rules):

* ``GET /api/v1/config/{section}`` — the section as written in its file (viewer).
* ``PUT /api/v1/config/{section}`` — ``{value, sha256}``: the whole configuration is loaded with the new
  section (as ``warnd check-config`` would), then the file is rewritten atomically with a ``.bak`` (admin).
  The daemon reads config at start only: ``restart_required`` is always true.

Every change, export, full-phone read and refused template or config edit is audited (who, what, from where).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from warnd.api_common import (
    APP_KEY,
    MAX_ID,
    PRINCIPAL,
    ROLE,
    csv_download,
    error_response,
    int_param,
    json_body,
    json_response,
    path_id,
    read_body,
    spreadsheet_safe,
)
from warnd.app import App
from warnd.auth import ADMIN
from warnd.config import SUBSCRIBER_CSV_COLUMNS, is_village
from warnd.editing import (
    SECTIONS,
    EditRefused,
    Saved,
    StaleEdit,
    differs_from_running,
    read_section,
    save_section,
    save_template,
    section_file,
    sha256_text,
)
from warnd.escalation import NOTICE_TEMPLATE
from warnd.logs import mask_phone
from warnd.render import TEMPLATE_SUFFIX, style_for
from warnd.store.admin import CONFIG, SubscriberFilters, SubscriberStore
from warnd.subscribers import ImportRejected, ImportReport, RowChecker, validated_chunks, write_csv
from warnd.template_sandbox import (
    SAMPLE_VILLAGE,
    SANDBOX,
    SandboxBusy,
    SandboxFailed,
    SandboxUnavailable,
)

MAX_SUBSCRIBER_BODY = 16 * 1024
MAX_TEMPLATE_BODY = 256 * 1024
MAX_TEMPLATE_SOURCE = 64 * 1024  # characters
MAX_SECTION_BODY = 2 * 1024 * 1024
MAX_IMPORT_BYTES = 20 * 1024 * 1024
MAX_IMPORT_ROWS = 200_000
SHOWN_PROBLEMS = 50
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
EXPORT_FLUSH = 64 * 1024  # characters buffered before they are sent
STATES = ("active", "removed", "all")
SOURCES = (CONFIG, "import")
_VILLAGE = re.compile(r"^[0-9]{2,12}$")
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PROBLEM = re.compile(r"^line (\d+): ([a-z_/]+)?")
_LIST_COLUMNS = ("groups", "vulnerable")  # JSON lists, "a|b" in the CSV


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/subscribers", list_subscribers)
    router.add_post("/api/v1/subscribers", add_subscriber)
    router.add_get("/api/v1/subscribers/export.csv", export_subscribers)
    router.add_post("/api/v1/subscribers/import", import_subscribers)
    router.add_get("/api/v1/subscribers/{id}", get_subscriber)
    router.add_put("/api/v1/subscribers/{id}", change_subscriber)
    router.add_delete("/api/v1/subscribers/{id}", remove_subscriber)
    router.add_get("/api/v1/templates", list_templates)
    router.add_post("/api/v1/templates/preview", preview_template)
    router.add_put("/api/v1/templates/{language}/{name}", save_template_route)
    router.add_get("/api/v1/config/{section}", get_section)
    router.add_put("/api/v1/config/{section}", put_section)


async def _audit(
    request: web.Request, action: str, target: str | None = None, detail: Mapping[str, Any] | None = None
) -> None:
    app = request.app[APP_KEY]
    await app.store.audit(
        app.clock.now(), request[PRINCIPAL], action, target=target, detail=detail, remote=request.remote
    )


def _full_phones(request: web.Request) -> bool:
    """``?phones=full`` (admin only; the permission table raises these routes' role for it, checked again
    here), else masked."""
    phones = request.query.get("phones", "masked") or "masked"
    if phones not in ("masked", "full"):
        raise web.HTTPBadRequest(reason="phones: 须为 masked 或 full (masked | full)")
    if phones == "full" and request[ROLE] != ADMIN:
        raise web.HTTPForbidden(reason=f"forbidden: needs role {ADMIN}")
    return phones == "full"


def _expected_sha256(body: Mapping[str, Any]) -> str | None:
    """The ``sha256`` of the file as the edit started from it (``GET`` gives it; null: there was no file).
    Required, so that a save never overwrites a change made meanwhile by someone else."""
    if "sha256" not in body or not (body["sha256"] is None or isinstance(body["sha256"], str)):
        raise web.HTTPBadRequest(
            reason="sha256: 须附上读取时文件的 sha256 (send the sha256 the file had when you read it, "
            "from GET; null if there was no file)"
        )
    value: str | None = body["sha256"]
    return value


def _saved_detail(saved: Saved, previous: Any) -> dict[str, Any]:
    """The audit detail of a saved edit: the file, its backup, both digests and the previous content (so a
    bad edit can be put back from the audit log alone)."""
    return {
        "file": str(saved.path),
        "backup": str(saved.backup) if saved.backup else None,
        "sha256": saved.sha256,
        "previous_sha256": saved.previous_sha256,
        "previous": previous,
    }


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="请求体须为 JSON 对象 (body must be a JSON object)")
    return body


# --- subscribers ------------------------------------------------------------------------------------------------


def subscriber_json(app: App, row: Mapping[str, Any], *, unmask: bool = False) -> dict[str, Any]:
    config = app.config
    return {
        "id": row["id"],
        "name": row["name"],
        "phone": row["phone"] if unmask else mask_phone(row["phone"]),
        "role": row["role"],
        "role_label": config.roles.get(row["role"]),
        "area_code": row["area_code"],
        "area_name": config.area_name(row["area_code"]),
        "lat": row["lat"],
        "lon": row["lon"],
        "language": row["language"],
        "groups": [g for g in (row["groups"] or "").split("|") if g],
        "address": row["address"],
        "household": row["household"],
        "vulnerable": row["vulnerable"] or [],
        "superior": row["superior"] if unmask else mask_phone(row["superior"]),
        "push_subscriptions": len(row["push_tokens"] or []),
        "source": row["source"],
        "active": row["active"],
        # config people are edited in config; removed people are added back with POST
        "editable": row["source"] != CONFIG and bool(row["active"]),
        "updated_at": row["updated_at"],
    }


def _filters(app: App, request: web.Request) -> SubscriberFilters:
    query = request.query
    config = app.config
    q = query.get("q", "").strip()
    if len(q) > 50:
        raise web.HTTPBadRequest(reason="q: 最多 50 个字符 (at most 50 characters)")
    digits = q.isascii() and q.isdigit() and 3 <= len(q) <= 11
    village = query.get("village", "")
    if village and not _VILLAGE.match(village):
        raise web.HTTPBadRequest(
            reason="village: 须为 12 位区划代码或 2–11 位代码前缀 (admin code or prefix, digits)"
        )
    role = query.get("role", "")
    if role and role not in config.roles:
        raise web.HTTPBadRequest(
            reason=f"role: 未知身份 {role!r} (unknown role; known: {', '.join(sorted(config.roles))})"
        )
    group = query.get("group", "")
    if group and group not in config.groups:
        raise web.HTTPBadRequest(
            reason=f"group: 未知分组 {group!r} (unknown group; known: {', '.join(sorted(config.groups))})"
        )
    source = query.get("source", "")
    if source and source not in SOURCES:
        raise web.HTTPBadRequest(reason="source: 须为 config 或 import (config | import)")
    state = query.get("state", "") or "active"
    if state not in STATES:
        raise web.HTTPBadRequest(reason="state: 须为 active、removed 或 all (active | removed | all)")
    return SubscriberFilters(
        name=q or None,
        phone_suffix=q if digits else None,
        village=village or None,
        role=role or None,
        group=group or None,
        group_roles=tuple(config.groups[group].roles) if group else (),
        source=source or None,
        state=state,
    )


def _given(request: web.Request) -> dict[str, str]:
    """The filters as given, for the answer and the audit log."""
    names = ("q", "village", "role", "group", "source", "state")
    return {k: request.query[k] for k in names if request.query.get(k)}


async def list_subscribers(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    full = _full_phones(request)
    filters = _filters(app, request)
    limit = int_param(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT) or DEFAULT_LIMIT
    after = int_param(request, "after", 0, maximum=MAX_ID) or 0
    rows = await SubscriberStore(app.store).page(filters, after_id=after, limit=limit)
    if full:
        await _audit(
            request,
            "subscribers.unmask",
            detail={"filters": _given(request), "after": after, "rows": len(rows)},
        )
    return json_response(
        {
            "filters": _given(request),
            "phones": "full" if full else "masked",
            "subscribers": [subscriber_json(app, r, unmask=full) for r in rows],
            "next_after": rows[-1]["id"] if len(rows) == limit else None,
        },
        tz=app.tz,
    )


async def _person(app: App, recipient_id: int) -> dict[str, Any]:
    row = await SubscriberStore(app.store).get(recipient_id)
    if row is None:
        raise web.HTTPNotFound(reason=f"没有编号为 {recipient_id} 的订阅人 (no subscriber {recipient_id})")
    return row


async def get_subscriber(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    recipient_id = path_id(request)
    full = _full_phones(request)
    row = await _person(app, recipient_id)
    if full:
        await _audit(request, "subscribers.unmask", target=f"recipient:{recipient_id}")
    return json_response(subscriber_json(app, row, unmask=full), tz=app.tz)


def _cells(body: Mapping[str, Any]) -> dict[str, str]:
    """A JSON subscriber as CSV cells (strings): lists joined with |, numbers as text, null as empty."""
    unknown = sorted(set(body) - set(SUBSCRIBER_CSV_COLUMNS))
    if unknown:
        raise web.HTTPBadRequest(
            reason=f"未知字段 (unknown field(s)): {', '.join(unknown)}; "
            f"可用 (known): {', '.join(SUBSCRIBER_CSV_COLUMNS)}"
        )
    cells = {}
    for key, value in body.items():
        if value is None:
            cells[key] = ""
        elif isinstance(value, list) and key in _LIST_COLUMNS and all(isinstance(v, str) for v in value):
            cells[key] = "|".join(value)
        elif isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
            cells[key] = str(value)
        else:
            kind = (
                "字符串列表 (a list of strings)"
                if key in _LIST_COLUMNS
                else "字符串或数字 (a string or number)"
            )
            raise web.HTTPBadRequest(reason=f"{key}: 须为{kind}")
    return cells


def _stored_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """A stored person as the CSV cells RowChecker checks (what an edit starts from)."""
    cells = {
        c: "" if row.get(c) is None else str(row[c]) for c in SUBSCRIBER_CSV_COLUMNS if c not in _LIST_COLUMNS
    }
    cells["groups"] = row["groups"] or ""
    cells["vulnerable"] = "|".join(row["vulnerable"] or [])
    return cells


def _checked(app: App, cells: Mapping[str, str]) -> dict[str, Any] | web.Response:
    """RowChecker's recipients row, or a 400 naming every bad field."""
    record, errors = RowChecker(groups=app.config.groups, roles=app.config.roles).check(cells)
    if record is not None:
        return record
    problems = [{"field": e.split(":", 1)[0], "message": e} for e in errors]
    more = f"；另有 {len(errors) - 1} 处 (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(
        400, f"字段 {problems[0]['field']} 有误 (invalid {errors[0]}){more}", errors=problems
    )


def _config_phones(app: App) -> dict[str, str]:
    """Phones of people defined in config, each with where to edit them."""
    where = _config_people_file(app)
    reason = f"由配置文件定义，请在 {where} 中修改 (defined in config: edit {where})"
    return {p.phone: reason for p in app.config.subscribers if p.phone}


def _config_people_file(app: App) -> str:
    directory = app.config.directory
    csvs = sorted(p.name for p in directory.glob("*.csv"))
    return str(directory / "subscribers.yaml") + (f" / {', '.join(csvs)}" if csvs else "")


def _read_only(app: App, recipient_id: int) -> web.Response:
    where = _config_people_file(app)
    return error_response(
        409,
        f"订阅人 {recipient_id} 由配置文件定义，此处只读；请修改 {where} 后重启 "
        f"(defined in config: read-only here; edit {where} and restart warnd)",
        config_file=where,
    )


async def add_subscriber(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    cells = _cells(_object(await json_body(request, MAX_SUBSCRIBER_BODY)))
    record = _checked(app, cells)
    if isinstance(record, web.Response):
        return record
    reserved = _config_phones(app)
    if record["key"] in reserved:
        return error_response(409, f"phone: {mask_phone(record['phone'])} {reserved[record['key']]}")
    existing = (await SubscriberStore(app.store).by_keys([record["key"]])).get(record["key"])
    if existing is not None and existing["active"]:
        return error_response(
            409,
            f"手机号 {mask_phone(record['phone'])} 已是订阅人 {existing['id']} "
            f"(phone already belongs to subscriber {existing['id']}: edit it with PUT)",
            id=existing["id"],
        )
    await app.store.upsert_recipients([[record]], source="import", now=app.clock.now())
    added = (await SubscriberStore(app.store).by_keys([record["key"]]))[record["key"]]
    await _audit(
        request,
        "subscribers.add" if existing is None else "subscribers.restore",
        target=f"recipient:{added['id']}",
        detail={
            "phone": mask_phone(record["phone"]),
            "name": record["name"],
            "area_code": record["area_code"],
        },
    )
    return json_response(subscriber_json(app, await _person(app, added["id"])), status=201, tz=app.tz)


async def change_subscriber(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    recipient_id = path_id(request)
    given = _cells(_object(await json_body(request, MAX_SUBSCRIBER_BODY)))
    row = await _person(app, recipient_id)
    if row["source"] == CONFIG:
        return _read_only(app, recipient_id)
    if not row["active"]:
        return error_response(
            409,
            f"订阅人 {recipient_id} 已删除；如需恢复请重新添加 (removed: POST /api/v1/subscribers to add again)",
        )
    cells = _stored_cells(row)
    for key in ("phone", "superior"):  # sent back as shown (masked): unchanged
        if key in given and row[key] and given[key] == mask_phone(row[key]):
            del given[key]
    cells.update(given)
    record = _checked(app, cells)
    if isinstance(record, web.Response):
        return record
    if record["key"] != row["key"]:
        reserved = _config_phones(app)
        if record["key"] in reserved:
            return error_response(409, f"phone: {mask_phone(record['phone'])} {reserved[record['key']]}")
        other = (await SubscriberStore(app.store).by_keys([record["key"]])).get(record["key"])
        if other is not None:
            return error_response(
                409,
                f"手机号 {mask_phone(record['phone'])} 已属于订阅人 {other['id']} "
                f"(phone already belongs to subscriber {other['id']})",
                id=other["id"],
            )
    before = _stored_cells(row)
    after = _stored_cells(record)
    changed = sorted(k for k in after if after[k] != before[k])
    try:
        done = await SubscriberStore(app.store).update(
            recipient_id,
            record,
            now=app.clock.now(),
            actor=request[PRINCIPAL],
            remote=request.remote,
            detail={"changed": changed},
        )
    except IntegrityError:  # the phone was taken between the check and the update
        return error_response(409, "手机号已被占用 (phone already belongs to another subscriber)")
    if not done:  # removed (or changed into something else) since it was read
        return error_response(409, f"订阅人 {recipient_id} 已被他人修改或删除 (changed or removed meanwhile)")
    return json_response(subscriber_json(app, await _person(app, recipient_id)), tz=app.tz)


async def remove_subscriber(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    recipient_id = path_id(request)
    row = await _person(app, recipient_id)
    if row["source"] == CONFIG:
        return _read_only(app, recipient_id)
    removed = row["active"] and await SubscriberStore(app.store).remove(
        recipient_id,
        now=app.clock.now(),
        actor=request[PRINCIPAL],
        remote=request.remote,
        detail={"name": row["name"], "phone": mask_phone(row["phone"])},
    )
    return json_response({"id": recipient_id, "removed": True, "already_removed": not removed})


def _export_row(row: Mapping[str, Any], *, unmask: bool) -> dict[str, Any]:
    """A person as ``write_csv`` takes it: phones masked unless ``unmask``, text cells spreadsheet-safe."""
    out = dict(row)
    for key in ("name", "address", "household"):
        if out[key]:
            out[key] = spreadsheet_safe(out[key])
    if not unmask:
        out["phone"], out["superior"] = mask_phone(row["phone"]), mask_phone(row["superior"])
    return out


async def export_subscribers(request: web.Request) -> web.StreamResponse:
    """The columns of ``warnd subscribers export`` (UTF-8 with a BOM, for spreadsheets; import accepts it);
    ``?source=import`` leaves out the people from config (what an import may change)."""
    app = request.app[APP_KEY]
    full = _full_phones(request)
    source = request.query.get("source", "") or None
    if source is not None and source not in SOURCES:
        return error_response(400, "source: 须为 config 或 import (config | import)")
    response = csv_download(app, "subscribers")
    buffer = io.StringIO()
    rows = 0

    async def flushed() -> None:
        await response.write(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()

    async def people() -> AsyncIterator[dict[str, Any]]:
        nonlocal rows
        async for row in app.store.export_recipients(source=source):
            yield _export_row(row, unmask=full)
            rows += 1
            if buffer.tell() >= EXPORT_FLUSH:  # write_csv has written the rows before this one
                await flushed()

    complete = False
    try:
        await response.prepare(request)
        buffer.write("\ufeff")
        await write_csv(people(), buffer)
        await flushed()
        complete = True
    finally:  # the client went away, or the database failed: what was sent is still audited
        await _audit(
            request,
            "subscribers.export",
            detail={
                "phones": "full" if full else "masked",
                "source": source,
                "rows": rows,
                "complete": complete,
            },
        )
    await response.write_eof()
    return response


def _problem(message: str) -> dict[str, Any]:
    match = _PROBLEM.match(message)
    return {
        "line": int(match.group(1)) if match else None,
        "field": match.group(2) if match else None,
        "message": message,
    }


def _check_file(text: str, app: App, report: ImportReport) -> None:
    """The whole file checked, nothing kept (pass one of an import, in a worker thread)."""
    handle = io.StringIO(text, newline="")
    for _ in validated_chunks(
        handle, report, groups=app.config.groups, roles=app.config.roles, reserved=_config_phones(app)
    ):
        pass


def _decode(raw: bytes, charset: str | None) -> str:
    encoding = (charset or "utf-8").lower()
    if encoding not in ("utf-8", "utf8", "gb18030", "gbk", "gb2312"):
        raise web.HTTPBadRequest(
            reason=f"charset {charset!r}: 须为 utf-8 或 gb18030 (use UTF-8, or say charset=gb18030)"
        )
    try:
        return raw.decode("utf-8-sig" if encoding.startswith("utf") else "gb18030")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise web.HTTPBadRequest(
            reason=f"第 {line} 行不是 {encoding} 编码；请另存为“CSV UTF-8”或在 Content-Type 中注明 "
            f"charset=gb18030 (line {line} is not {encoding}: save as CSV UTF-8, or send charset=gb18030)"
        ) from None


async def import_subscribers(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    raw = await read_body(request, MAX_IMPORT_BYTES)
    if not raw.strip():
        return error_response(400, "请求体为空，须为 CSV (empty body: send the CSV file)")
    text = _decode(raw, request.charset)
    digest = hashlib.sha256(raw).hexdigest()
    report = ImportReport()
    try:
        await asyncio.to_thread(_check_file, text, app, report)
    except ImportRejected:
        problems = [_problem(m) for m in report.errors]
        total = len(report.errors) + report.more_errors
        first = problems[0]
        await _audit(
            request,
            "subscribers.import_rejected",
            detail={"bytes": len(raw), "sha256": digest, "problems": total, "first": first["message"]},
        )
        place = f"第 {first['line']} 行 " if first["line"] else ""
        return error_response(
            400,
            f"{place}{first['field'] or ''}有误等 {total} 处问题，未导入任何记录 "
            f"({total} problem(s), the first: {first['message']}; nothing was imported)",
            errors=problems[:SHOWN_PROBLEMS],
            more_errors=max(0, total - SHOWN_PROBLEMS),
        )
    if report.rows > MAX_IMPORT_ROWS:
        return error_response(
            413, f"超过 {MAX_IMPORT_ROWS} 行，请分批导入 (more than {MAX_IMPORT_ROWS} rows: split the file)"
        )
    # pass two: the same rows again, upserted in chunks inside one transaction
    again = ImportReport()
    result = await app.store.upsert_recipients(
        validated_chunks(
            io.StringIO(text, newline=""), again, groups=app.config.groups, roles=app.config.roles
        ),
        source="import",
        now=app.clock.now(),
    )
    await _audit(
        request,
        "subscribers.import",
        detail={"rows": result["upserted"], "bytes": len(raw), "sha256": digest},
    )
    return json_response({"rows": report.rows, "imported": result["upserted"]})


# --- templates ------------------------------------------------------------------------------------------------


def _template_names(app: App) -> dict[str, list[str]]:
    """language → its template names (file stems), for every language directory."""
    root = app.renderer.templates_dir
    return {
        language: sorted(
            p.name.removesuffix(TEMPLATE_SUFFIX) for p in (root / language).glob("*" + TEMPLATE_SUFFIX)
        )
        for language in app.renderer.languages()
    }


def _template_spec(app: App, name: str) -> dict[str, Any]:
    """How ``name`` is rendered when it goes out: its kind of sample, style and the settings of the first
    channel that uses it (signature, max_chars), and every channel that does."""
    config = app.config
    if name == NOTICE_TEMPLATE:  # the escalation ladder's notices: SMS on the first notice channel
        channels = [c for c in config.feedback.notice_channels if c in config.channels]
        settings = config.channel_settings(channels[0]) if channels else None
        return {
            "kind": "notice",
            "style": "sms",
            "channels": channels,
            "signature": settings.signature if settings else None,
            "max_chars": settings.max_chars if settings else None,
        }
    channels = [c for c in sorted(config.channels) if (config.channel_settings(c).template or c) == name]
    settings = config.channel_settings(channels[0]) if channels else None
    return {
        "kind": "warning",
        "style": (settings.style if settings else None) or style_for(name),
        "channels": channels,
        "signature": settings.signature if settings else None,
        "max_chars": settings.max_chars if settings else None,
    }


async def list_templates(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    templates = await asyncio.to_thread(_templates, app)
    return json_response(
        {
            "default_language": app.renderer.default_language,
            "languages": app.renderer.languages(),
            "templates": templates,
        }
    )


def _templates(app: App) -> list[dict[str, Any]]:
    """Every language × template with its source (blocking: file reads)."""
    root = app.renderer.templates_dir
    out = []
    for language, names in _template_names(app).items():
        for name in names:
            path = root / language / (name + TEMPLATE_SUFFIX)
            source = path.read_text(encoding="utf-8")
            spec = _template_spec(app, name)
            out.append(
                {
                    "language": language,
                    "name": name,
                    "file": str(path),
                    "style": spec["style"],
                    "channels": spec["channels"],
                    "sha256": sha256_text(source),
                    "source": source,
                }
            )
    return out


def _template_target(app: App, language: Any, name: Any) -> tuple[str, str]:
    """(language, name) of an existing language directory and a template name some language has; 404/400."""
    if not isinstance(language, str) or not isinstance(name, str):
        raise web.HTTPBadRequest(reason="language 和 name 须为字符串 (language and name must be strings)")
    name = name.removesuffix(TEMPLATE_SUFFIX)
    names = _template_names(app)
    if language not in names:
        raise web.HTTPNotFound(
            reason=f"没有语言 {language!r} 的模板目录 (no template language {language!r}; "
            f"known: {', '.join(names)})"
        )
    known = sorted({n for ns in names.values() for n in ns})
    if not _TEMPLATE_NAME.match(name) or name not in known:
        raise web.HTTPNotFound(reason=f"没有模板 {name!r} (no template {name!r}; known: {', '.join(known)})")
    return language, name


def _source(body: Mapping[str, Any]) -> str:
    source = body.get("source")
    if not isinstance(source, str) or not source.strip():
        raise web.HTTPBadRequest(reason="source: 须为非空字符串 (the template source, a non-empty string)")
    if len(source) > MAX_TEMPLATE_SOURCE:
        raise web.HTTPBadRequest(
            reason=f"source: 超过 {MAX_TEMPLATE_SOURCE} 个字符 (longer than {MAX_TEMPLATE_SOURCE} characters)"
        )
    return source


async def _rendered(
    request: web.Request, app: App, language: str, name: str, source: str, action: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The candidate in the sandbox: (spec, previews), or 400 with every error (503 when busy)."""
    spec = _template_spec(app, name)
    villages = sorted((c, n) for c, n in app.config.areas.items() if is_village(c))
    village = {"code": villages[0][0], "name": villages[0][1]} if villages else SAMPLE_VILLAGE
    job = {
        "templates_dir": str(app.renderer.templates_dir),
        "default_language": app.renderer.default_language,
        "timezone": app.config.timezone,
        "language": language,
        "file": name + TEMPLATE_SUFFIX,
        "source": source,
        "kind": spec["kind"],
        "style": spec["style"],
        "signature": spec["signature"],
        "max_chars": spec["max_chars"],
        "village": village,
    }
    try:
        answer = await asyncio.to_thread(SANDBOX.run, job)
    except (SandboxBusy, SandboxUnavailable) as exc:
        raise web.HTTPServiceUnavailable(reason=str(exc)) from None
    except SandboxFailed as exc:
        answer = {"errors": [{"line": None, "kind": "limit", "message": str(exc)}], "previews": []}
    errors = answer.get("errors") or []
    if errors:
        target = f"template:{language}/{name}"
        if any(e["kind"] in ("sandbox", "limit") for e in errors):
            await _audit(request, "templates.refused", target, {"action": action, "errors": errors[:10]})
        first = errors[0]
        where = f"第 {first['line']} 行：" if first.get("line") else ""
        raise _TemplateRefused(
            f"模板有误，{where}{first['message']} (template refused; nothing saved)", errors
        )
    return spec, answer.get("previews") or []


class _TemplateRefused(Exception):
    def __init__(self, message: str, errors: list[dict[str, Any]]):
        super().__init__(message)
        self.errors = errors


async def preview_template(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    body = _object(await json_body(request, MAX_TEMPLATE_BODY))
    language, name = _template_target(app, body.get("language"), body.get("name"))
    try:
        spec, previews = await _rendered(request, app, language, name, _source(body), "preview")
    except _TemplateRefused as exc:
        return error_response(400, str(exc), errors=exc.errors)
    return json_response(
        {
            "language": language,
            "name": name,
            "style": spec["style"],
            "channels": spec["channels"],
            "signature": spec["signature"],
            "previews": previews,
        }
    )


async def save_template_route(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    language, name = _template_target(app, request.match_info["language"], request.match_info["name"])
    body = _object(await json_body(request, MAX_TEMPLATE_BODY))
    source = _source(body)
    expected = _expected_sha256(body)
    try:
        _, previews = await _rendered(request, app, language, name, source, "save")
    except _TemplateRefused as exc:
        return error_response(400, str(exc), errors=exc.errors)
    path = app.renderer.templates_dir / language / (name + TEMPLATE_SUFFIX)
    try:
        saved, previous = await asyncio.to_thread(save_template, path, source, expected)
    except StaleEdit:
        return error_response(409, f"{path} 已被他人修改，请重新载入 (changed since you read it: reload)")
    except OSError as exc:
        return error_response(409, f"无法写入 {path} (cannot write: {exc.strerror})")
    app.renderer.reload()  # the next message compiles the new file
    await _audit(request, "templates.save", f"template:{language}/{name}", _saved_detail(saved, previous))
    return json_response(
        {
            "saved": True,
            "language": language,
            "name": name,
            "file": str(path),
            "backup": str(saved.backup) if saved.backup else None,
            "sha256": saved.sha256,
            "previews": previews,
        }
    )


# --- config sections --------------------------------------------------------------------------------------------


def _section(request: web.Request) -> str:
    section = request.match_info["section"]
    if section not in SECTIONS:
        raise web.HTTPNotFound(
            reason=f"没有可编辑的配置段 {section!r} (no editable section; one of {', '.join(SECTIONS)})"
        )
    return section


async def get_section(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    section = _section(request)
    path, value, digest = await asyncio.to_thread(read_section, app.config.directory, section)
    return json_response(
        {
            "section": section,
            "file": str(path),
            "sha256": digest,
            "value": value,
            # the file says something else than the running daemon uses (it reads config at start only)
            "restart_pending": differs_from_running(app.config, section, value),
        }
    )


async def put_section(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    section = _section(request)
    body = _object(await json_body(request, MAX_SECTION_BODY))
    if "value" not in body:
        return error_response(400, 'value: 缺少配置段内容 (send {"value": <the whole section>})')
    value, expected = body["value"], _expected_sha256(body)
    kind = SECTIONS[section]
    if not isinstance(value, kind):
        what = "对象 (an object: name → settings)" if kind is dict else "数组 (an array)"
        return error_response(400, f"value: {section} 须为{what}")
    path = section_file(app.config.directory, section)
    try:
        saved, previous = await asyncio.to_thread(
            save_section, app.config.directory, section, value, expected
        )
    except EditRefused as exc:
        await _audit(request, "config.refused", f"config:{section}", {"errors": exc.errors[:10]})
        return error_response(400, str(exc), errors=exc.errors)
    except StaleEdit:
        return error_response(409, f"{path} 已被他人修改，请重新载入 (changed since you read it: reload)")
    except OSError as exc:
        return error_response(409, f"无法写入 {path} (cannot write: {exc.strerror})")
    await _audit(request, "config.save", f"config:{section}", _saved_detail(saved, previous))
    return json_response(
        {
            "saved": True,
            "restart_required": True,
            "section": section,
            "file": str(saved.path),
            "backup": str(saved.backup) if saved.backup else None,
            "sha256": saved.sha256,
        }
    )
