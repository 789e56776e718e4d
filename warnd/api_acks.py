"""HTTP routes of the feedback loop. SKELETON."""

from __future__ import annotations

from aiohttp import web


def add_routes(router: web.UrlDispatcher) -> None:
    return None
