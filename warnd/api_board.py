"""HTTP routes of the live board, the alert timeline and the dashboard (docs/board.md):

- ``GET /api/v1/board`` — the active alert chains, most severe first, with delivery, 叫应 and door-knock progress
  per village (:mod:`warnd.board`);
- ``GET /api/v1/events`` — server-sent events: ``event: board`` with the board's JSON at connect and whenever
  it changes, a ``: keepalive`` comment every 15 s;
- ``GET /api/v1/alerts/{id}/timeline[?limit=1000]`` — what happened to an alert chain, in order
  (:mod:`warnd.timeline`);
- ``GET /api/v1/dashboard[?days=7]`` — coverage by village, time to delivery, channel success rates, feed
  health over the last days.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from warnd.api_common import APP_KEY, authenticate, error_response, int_param, json_response, path_id
from warnd.board import MAX_DAYS, LiveBoard, Snapshot, dashboard
from warnd.timeline import timeline

KEEPALIVE = 15.0  # seconds without an event before a ": keepalive" comment (proxies close idle streams)
EVENT_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


async def board(request: web.Request) -> web.Response:
    snapshot = await request.app[APP_KEY].board.current()
    return web.Response(
        text=snapshot.text, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


async def _send(response: web.StreamResponse, snapshot: Snapshot) -> None:
    await response.write(f"event: board\nid: {snapshot.version}\ndata: {snapshot.text}\n\n".encode())


async def events(request: web.Request) -> web.StreamResponse:
    """The board as server-sent events. Every stream of this process shares one poller (``LiveBoard``); the
    stream ends when the client goes away (noticed within ``api.live_every``) or the web app shuts down."""
    live: LiveBoard = request.app[APP_KEY].board
    loop = asyncio.get_running_loop()
    response = web.StreamResponse(headers=EVENT_HEADERS)
    try:
        async with live.watch():
            snapshot = await live.current()  # before the headers: a failure is still a plain 500
            await response.prepare(request)
            await _send(response, snapshot)
            last_write = loop.time()
            while not live.closed and _connected(request):
                quiet = loop.time() - last_write
                if quiet >= KEEPALIVE:
                    # a logout, a disabled account or a revoked token ends the stream too (within KEEPALIVE)
                    if await authenticate(request.app[APP_KEY], request) is None:
                        break
                    await response.write(b": keepalive\n\n")
                    last_write = loop.time()
                    continue
                try:  # wake at least every live_every to notice a client that went away
                    async with asyncio.timeout(min(live.every, KEEPALIVE - quiet)):
                        newer = await live.changed(snapshot.version)
                except TimeoutError:
                    continue
                if newer is not None and _connected(request):
                    snapshot = newer
                    await _send(response, snapshot)
                    last_write = loop.time()
    except ConnectionResetError:  # the client went away while we wrote
        pass
    return response


async def alert_timeline(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    alert_id = path_id(request)
    limit = int_param(request, "limit", 1000, maximum=10_000) or 1000
    data = await timeline(app, alert_id, limit=limit)
    if data is None:
        return error_response(404, f"no alert {alert_id}")
    return json_response(data, tz=app.tz)


async def get_dashboard(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    days = int_param(request, "days", 7, maximum=MAX_DAYS)
    if not days:
        return error_response(400, f"days must be between 1 and {MAX_DAYS}")
    return json_response(await dashboard(app, days), tz=app.tz)


async def on_shutdown(web_app: web.Application) -> None:
    """Ends every open event stream, so shutting down does not wait for them."""
    await web_app[APP_KEY].board.close()


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/board", board)
    router.add_get("/api/v1/events", events)
    router.add_get("/api/v1/alerts/{id}/timeline", alert_timeline)
    router.add_get("/api/v1/dashboard", get_dashboard)
