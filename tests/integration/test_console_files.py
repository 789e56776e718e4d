"""The console's static shell over real HTTP (aiohttp TestServer around an App on a real SQLite file): served
without credentials under the strict headers, nothing outside warnd/console/, and files that keep to the CSP
(no inline scripts, styles or handlers; server text never parsed as HTML)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from warnd.api import make_web_app
from warnd.api_console import CONSOLE_DIR, CONSOLE_HEADERS
from warnd.app import App

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@pytest.fixture
async def anon(app: App) -> AsyncIterator[TestClient]:
    """A client without credentials."""
    async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0)) as client:
        yield client


def console_files(suffix: str) -> list[Path]:
    return sorted(CONSOLE_DIR.rglob(f"*{suffix}"))


async def test_the_shell_is_served_with_strict_headers(anon: TestClient) -> None:
    for path, content_type in (
        ("/console/", "text/html"),
        ("/console/index.html", "text/html"),
        ("/console/console.css", "text/css"),
        ("/console/js/app.js", "text/javascript"),
        ("/console/icon.svg", "image/svg+xml"),
    ):
        resp = await anon.get(path)
        assert resp.status == 200, path
        assert resp.content_type == content_type, path
        assert resp.headers["Content-Security-Policy"] == CSP, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"
        assert resp.headers["Cache-Control"] == "no-cache"
    assert CONSOLE_HEADERS["Content-Security-Policy"] == CSP
    for path in ("/", "/console"):
        resp = await anon.get(path, allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/console/", path
    # every module the shell imports is there (a typo in an import would leave the page blank)
    for module in console_files(".js"):
        for name in re.findall(r'from "\./([\w-]+\.js)"', module.read_text(encoding="utf-8")):
            resp = await anon.get(f"/console/js/{name}")
            assert resp.status == 200, (module.name, name)


async def test_nothing_outside_the_console_directory(anon: TestClient) -> None:
    for path in (
        "/console/../auth.py",
        "/console/%2e%2e/auth.py",
        "/console/js/../../auth.py",
        "/console/..%2fauth.py",
        "/console/js/app.py",
        "/console/README",
        "/console/.hidden.js",
        "/console/js/missing.js",
    ):
        resp = await anon.get(path)
        assert resp.status in (401, 404), (path, resp.status)  # never a file
        assert resp.content_type == "application/json" and "error" in await resp.json(), path


def test_the_files_keep_to_the_content_security_policy() -> None:
    index = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>", index)
    assert scripts == ['<script type="module" src="js/app.js">'], scripts  # no inline script
    assert "<style" not in index and " style=" not in index
    assert not re.search(r"\son[a-z]+=", index), "inline event handler"
    assert not re.search(r'(src|href)="(https?:)?//', index), "everything is served from here"
    for module in console_files(".js"):
        text = module.read_text(encoding="utf-8")
        for forbidden in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert forbidden not in text, (module.name, forbidden)
        assert not re.search(r'import[^;]*from "(https?:)?//', text), module.name
        assert not re.search(r'setAttribute\("style"', text), module.name
    css = (CONSOLE_DIR / "console.css").read_text(encoding="utf-8")
    assert "@import" not in css and "url(http" not in css
