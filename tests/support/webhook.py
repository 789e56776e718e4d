"""A webhook receiver double: a real aiohttp server on 127.0.0.1 recording every request.

Usage::

    async with WebhookReceiver() as rx:
        rx.respond_with(503, retry_after=5)  # next answer; default 200 {"id": "wh-<n>"}
        ...
        rx.requests[0].json, rx.requests[0].headers, rx.requests[0].raw
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.support.server import LocalServer


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    json: Any = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class _Answer:
    status: int
    body: Any
    retry_after: str | None


class WebhookReceiver(LocalServer):
    """Records JSON bodies and headers; answers 200 ``{"id": "wh-<n>"}`` unless told otherwise."""

    def __init__(self, *, path: str = "/hook", host: str = "127.0.0.1") -> None:
        super().__init__(path=path, host=host)
        self.requests: list[ReceivedRequest] = []
        self.delay: float = 0.0
        self.default_status: int = 200
        self._answers: list[_Answer] = []
        self._ids = itertools.count(1)

    def respond_with(
        self, status: int, body: Any = None, *, retry_after: str | float | None = None, times: int = 1
    ) -> None:
        """Queue the answer for the next ``times`` requests (JSON ``body``; default ``{"error": …}`` for
        non-2xx, ``{"id": "wh-<n>"}`` for 2xx)."""
        header = None if retry_after is None else str(retry_after)
        self._answers.extend([_Answer(status, body, header)] * times)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        received = ReceivedRequest(request.method, request.path, dict(request.headers), raw)
        with contextlib.suppress(ValueError):
            received.json = json.loads(raw.decode("utf-8"))
        self.requests.append(received)
        if self.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.delay)
        answer = self._answers.pop(0) if self._answers else _Answer(self.default_status, None, None)
        body = answer.body
        if body is None:
            body = {"id": f"wh-{next(self._ids)}"} if 200 <= answer.status <= 299 else {"error": "refused"}
        headers = {"Retry-After": answer.retry_after} if answer.retry_after is not None else {}
        return web.json_response(body, status=answer.status, headers=headers)
