"""The operator console (docs/console.md): static files from ``warnd/console/`` at ``/console/``.

The shell holds no data — every number on its pages comes from the JSON API with the person's session — so
these routes are public (``warnd.auth.PERMISSIONS``); the API calls it makes need the session. Everything is
served from here (no CDN, no build step) under a strict Content-Security-Policy: scripts and styles only from
this origin, no inline code or handlers, no framing, data fetched only from this origin.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from warnd.api_common import error_response

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
PREFIX = "/console/"
CONSOLE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidate every time (ETag / Last-Modified): an upgrade shows at once
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# what a console file may be called: lower-case path segments, one of the known extensions, no dot segments
_NAME = re.compile(r"(?:[a-z0-9_-]+/)*[a-z0-9_-]+\.(?:html|js|css|svg)")  # whole name: fullmatch


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", to_console)
    router.add_get("/console", to_console)
    router.add_get(PREFIX, index)
    router.add_get(PREFIX + "{path:.+}", static)


async def to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX)


def _file(name: str) -> web.StreamResponse:
    path = CONSOLE_DIR / name if _NAME.fullmatch(name) else None  # the pattern keeps it inside CONSOLE_DIR
    if path is None or not path.is_file():
        return error_response(404, f"no console file {name[:100]!r}")
    return web.FileResponse(path, headers={**CONSOLE_HEADERS, "Content-Type": CONTENT_TYPES[path.suffix]})


async def index(request: web.Request) -> web.StreamResponse:
    return _file("index.html")


async def static(request: web.Request) -> web.StreamResponse:
    return _file(request.match_info["path"])
