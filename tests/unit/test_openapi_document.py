"""The OpenAPI document (warnd/openapi.yaml, served by warnd/api_openapi.py) against the implementation: valid
OpenAPI 3.1, exactly the routes make_web_app registers, the roles of warnd.auth.PERMISSIONS, and the error
answers every route can give documented (so schemathesis's status-code check holds them to it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import AUTH
from openapi_spec_validator import validate
from test_access import registered

from warnd.api import make_web_app
from warnd.api_openapi import PATH, document
from warnd.app import App
from warnd.auth import PERMISSIONS, RANK
from warnd.config import load_config

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
STATE_CHANGING = ("post", "put", "patch", "delete")


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) of every operation in the document."""
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def parameters(doc: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    """An operation's parameters, $refs to components resolved."""
    out = []
    for param in operation.get("parameters", []):
        if "$ref" in param:
            param = doc["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
        out.append(param)
    return out


@pytest.fixture
async def app(config_dir: Path) -> AsyncIterator[App]:
    application = App(load_config(config_dir))  # not started: routes and the config token are enough
    try:
        yield application
    finally:
        await application.close()


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    validate(doc)  # raises OpenAPIValidationError, naming the place, when it is not
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)), "operationIds must be unique (the schemathesis test excludes by them)"


async def test_the_document_names_exactly_the_registered_routes(app: App) -> None:
    documented = {(method, path) for method, path, _ in operations(document())}
    routes = registered(app)  # HEAD is counted as the GET it mirrors
    missing = sorted(routes - documented)
    assert not missing, f"routes make_web_app registers that warnd/openapi.yaml does not document: {missing}"
    extra = sorted(documented - routes)
    assert not extra, f"operations in warnd/openapi.yaml that make_web_app does not register: {extra}"


def test_each_operation_has_the_role_of_the_permission_table() -> None:
    for method, path, op in operations(document()):
        access = PERMISSIONS.get((method, path))
        if access is None:  # not registered (yet): the test above names it
            continue
        assert op.get("x-warnd-role") == access.role, (method, path)
        raised = op.get("x-warnd-raised")
        if access.raised_to is None:
            assert raised is None, (method, path)
        else:
            assert raised == {"role": access.raised_to, "by": dict(access.raised_by)}, (method, path)


def test_the_error_answers_every_route_can_give_are_documented() -> None:
    """What the middleware and the common helpers answer on any route: 401/403 where credentials are needed,
    401 for a bad webhook signature, 404 where a path parameter may name nothing, 400 and 413 for bodies."""
    doc = document()
    for method, path, op in operations(doc):
        role = op["x-warnd-role"]
        responses = op["responses"]
        where = (method, path)
        if role in RANK:
            assert {"401", "403"} <= set(responses), where
            assert "security" not in op or op["security"], where  # an empty list would mean "open"
            if method.lower() in STATE_CHANGING:  # a session must send X-CSRF-Token
                assert {"sessionCookie": [], "csrfToken": []} in op["security"], where
        elif role == "signed":
            assert "401" in responses, where
            assert op["security"] == [{"webhookTimestamp": [], "webhookSignature": []}], where
        else:
            assert op["security"] == [], where
        if any(p["in"] == "path" for p in parameters(doc, op)):
            assert "404" in responses, where
        if "requestBody" in op and role != "link":
            assert {"400", "413"} <= set(responses), where
        for status, response in responses.items():
            if status.startswith(("4", "5")) and "$ref" not in response and "content" in response:
                assert set(response["content"]) & {"application/json", "text/html"}, where


async def test_the_document_is_served_as_json(app: App) -> None:
    async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0)) as client:
        resp = await client.get(PATH, headers=AUTH)
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == document()
        assert (await client.get(PATH)).status == 401  # like every other route: credentials first
