"""The daemon's HTTP API for integration tests: a real aiohttp test server around ``make_web_app``,
authenticated as the tests' admin unless told otherwise, and a JSON call that returns status and body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import AUTH
from warnd.api import make_web_app
from warnd.app import App


@asynccontextmanager
async def api_client(app: App, headers: dict[str, str] = AUTH) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0), headers=headers) as client:
        yield client


async def call(
    client: TestClient, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """``method path`` with ``body`` as JSON (``headers`` over the client's); the status and the JSON reply."""
    resp = await client.request(method, path, json=body, headers=headers)
    return resp.status, await resp.json()
