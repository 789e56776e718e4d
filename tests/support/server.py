"""The lifecycle shared by the test doubles: a real aiohttp server on 127.0.0.1, on a free port, serving one
path with the subclass's ``_handle``; usable as ``async with``."""

from __future__ import annotations

import asyncio
from typing import Self

from aiohttp import web


class LocalServer:
    def __init__(self, *, path: str, host: str = "127.0.0.1") -> None:
        self.path = path
        self.host = host
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()  # set on close: lets handlers stuck in a delay return

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_route("*", self.path, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
