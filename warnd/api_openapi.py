"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of the HTTP API (viewer).

The document is kept by hand as YAML beside this module (``warnd/openapi.yaml``, package data) and served as
JSON. It is read and converted once per process. ``tests/unit/test_openapi_document.py`` checks it is valid and
names exactly the routes :func:`warnd.api.make_web_app` registers; ``tests/integration/test_openapi_schemathesis.py``
checks a live server answers as it says.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from aiohttp import web

PATH = "/api/v1/openapi.json"


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document as a dict (read once)."""
    text = files("warnd").joinpath("openapi.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


@cache
def _body() -> bytes:
    return json.dumps(document(), ensure_ascii=False).encode("utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_body(), content_type="application/json", charset="utf-8")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PATH, openapi)
