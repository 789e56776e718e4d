"""HTTP routes of coverage reports and recommendations (docs/reports.md):

- ``GET /api/v1/alerts/{id}/report`` — the live report of the chain (``?format=csv``: one row per village and a
  total row);
- ``GET /api/v1/reports`` — kept reports of real alerts (``?drill=1``: drills only), newest first;
- ``GET /api/v1/reports/{root_id}`` — one kept report with its recommendations;
- ``GET /api/v1/recommendations[?alert=ID][&since=30d]`` — recommendations from the delivery logs.
"""

from __future__ import annotations

from aiohttp import web

from warnd.api_common import APP_KEY, error_response, int_param, json_response, path_id
from warnd.config import parse_when
from warnd.report import report_csv


async def alert_report(request: web.Request) -> web.StreamResponse:
    app = request.app[APP_KEY]
    alert_id = path_id(request)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        return error_response(400, "format must be json or csv")
    report = await app.reporter.report(alert_id)
    if report is None:
        return error_response(404, f"no alert {alert_id}")
    if fmt == "csv":
        return web.Response(
            text=report_csv(report),
            content_type="text/csv",
            charset="utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="alert-{report["alert"]["root_id"]}-report.csv"'
            },
        )
    return json_response(report, tz=app.tz)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


async def list_reports(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    drill = _flag(request, "drill")
    limit = int_param(request, "limit", 50, maximum=500) or 50
    before = int_param(request, "before", None, maximum=2**31)
    items = await app.reporter.kept(drill=drill, limit=limit, before=before)
    return json_response({"drill": drill, "reports": items}, tz=app.tz)


async def get_report(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    root_id = path_id(request, "root_id")
    kept = await app.reporter.kept_one(root_id)
    if kept is None:
        return error_response(404, f"no kept report for alert {root_id} (it has not ended, or is unknown)")
    return json_response(kept, tz=app.tz)


async def recommendations(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    alert_id = int_param(request, "alert", None, maximum=2**31)
    try:
        since = parse_when(request.query.get("since"), app.clock.now(), app.tz)
    except (ValueError, OverflowError):  # OverflowError: a duration reaching before year 1
        return error_response(400, "since must be a duration (30d, 12h) or an ISO time")
    if since is None and alert_id is None:
        since = app.reporter.default_since()
    recs = await app.reporter.recommendations(since=since, alert_id=alert_id, apply=False)
    if recs is None:
        return error_response(404, f"no alert {alert_id}")
    return json_response(
        {"since": since, "alert": alert_id, "recommendations": recs, "count": len(recs)}, tz=app.tz
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/alerts/{id}/report", alert_report)
    router.add_get("/api/v1/reports", list_reports)
    router.add_get("/api/v1/reports/{root_id}", get_report)
    router.add_get("/api/v1/recommendations", recommendations)
