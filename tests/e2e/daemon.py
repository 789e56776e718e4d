"""Helpers to run `warnd run` as a real subprocess in tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

SHANGHAI = ZoneInfo("Asia/Shanghai")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cn_time(delta: timedelta = timedelta()) -> str:
    return (datetime.now(SHANGHAI) + delta).strftime("%Y-%m-%d %H:%M:%S+08:00")


class Daemon:
    """`python -m warnd run -c CONFIG --port P` in its own process group."""

    def __init__(self, config_dir: Path, port: int, env: dict[str, str] | None = None):
        self.config_dir = config_dir
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.log = config_dir.parent / f"daemon-{port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 90) -> None:
        """Start ``warnd run`` and wait for /healthz (a new Python process: seconds idle, much longer when the
        machine is loaded by parallel test workers)."""
        handle = self.log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "warnd", "run", "-c", str(self.config_dir), "--port", str(self.port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as session:
            while asyncio.get_running_loop().time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()}")
                try:
                    async with session.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"daemon did not answer /healthz:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def query(db: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql, params).fetchall()
