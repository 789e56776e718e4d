"""The live API against its OpenAPI document (warnd/openapi.yaml): schemathesis (the ``schemathesis`` CLI, as a
subprocess) generates requests from the document — valid ones and invalid ones — and sends them to a real
warnd on a free port of 127.0.0.1 (aiohttp AppRunner in this test's event loop, an App on a SQLite file with an
alert, a 叫应, a pending red broadcast, a reading and a quarantined payload in it). No answer may be a 5xx, and
every status code, content type and JSON body must be what the document says.

Below it: regression tests for the 500s schemathesis found, each as the request that caused it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import AUTH, TEST_TOKEN, cap_cn, edit_yaml

from channels.webhook import sign
from warnd.api import make_web_app
from warnd.api_openapi import PATH, document
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 10  # per operation and phase: about 2,200 requests
SEED = 20240712  # the same requests every run (a new failure is a change in the code or the document)
# operations a request/response fuzzer cannot test: the event stream only ends when the client goes away, so
# every request would time out (the live board's own tests cover it)
STREAMS = {"events"}
VILLAGE = "500228101201"


@pytest.fixture
async def base_url(app: App) -> AsyncIterator[str]:
    """The app served on a free port of 127.0.0.1, with something in each list."""
    runner = web.AppRunner(make_web_app(app))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    try:
        await seed(url)
        yield url
    finally:
        await runner.cleanup()


async def seed(url: str) -> None:
    async with aiohttp.ClientSession(url, headers=AUTH) as http:
        cap = await http.post(
            "/api/v1/alerts", data=cap_cn(), headers={"Content-Type": "application/cap+xml"}
        )
        assert cap.status == 201, await cap.text()
        alert_id = (await cap.json())["id"]
        assert alert_id == 1  # the document's example id
        ack = await http.post(f"/api/v1/alerts/{alert_id}/acks", json={"recipient": 1})
        assert ack.status == 201, await ack.text()
        rejected = await http.post("/api/v1/alerts", data=b"<alert/>", headers={"Content-Type": "text/xml"})
        assert rejected.status == 400
        reading = [{"station": "longxi", "time": "2024-07-12T05:00:00+08:00", "level": 96.5}]
        assert (await http.post("/api/v1/readings", json=reading)).status == 200
        red = {"areas": [VILLAGE], "channels": ["sms"], "hazard": "暴雨", "colour": "red"}
        pending = await http.post("/api/v1/broadcasts", json=red)
        assert pending.status == 202 and (await pending.json())["broadcast"]["status"] == "pending"


def unregistered(app: App) -> dict[str, tuple[str, str]]:
    """Operations of the document that make_web_app does not register (yet), by operationId.
    tests/unit/test_openapi_document.py fails for each; here they are left out so the rest is still tested."""
    routes = {(r.method, r.resource.canonical) for r in make_web_app(app).router.routes() if r.resource}
    out = {}
    for path, item in document()["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "operationId" in op and (method.upper(), path) not in routes:
                out[op["operationId"]] = (method.upper(), path)
    return out


@pytest.mark.file_loudspeaker
@pytest.mark.timeout(330)
async def test_the_api_answers_as_its_openapi_document_says(app: App, base_url: str, tmp_path: Path) -> None:
    missing = unregistered(app)
    if missing:
        warnings.warn(f"not fuzzed, not registered yet: {sorted(missing.values())}", stacklevel=1)
    excluded = sorted(STREAMS | set(missing))
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{base_url}{PATH}",  # the document as served (it needs the token too)
        "--header",
        f"Authorization: Bearer {TEST_TOKEN}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-with-security-parameters",
        "false",  # the bearer token above on every request, no generated credentials
        "--generation-database",
        "none",
        "--max-redirects",
        "0",  # GET / answers 302 itself, as documented
        "--request-timeout",
        "20",
        "--no-color",
        *(arg for op in excluded for arg in ("--exclude-operation-id", op)),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)  # ~35 s on two idle cores
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    report = out.decode("utf-8", "replace")
    assert proc.returncode == 0, report
    operations = sum(
        1 for item in document()["paths"].values() for op in item.values() if "operationId" in op
    )
    # none silently skipped; schemathesis leaves out the operation that serves the document it was given
    # (tests/unit/test_openapi_document.py fetches that one)
    tested = re.search(r"Tested:\s+(\d+)", report)
    assert tested and int(tested.group(1)) == operations - len(excluded) - 1, report


# --- what schemathesis found: each was a 500 ------------------------------------------------------------------


@pytest.fixture
async def client(app: App) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0)) as test_client:
        yield test_client


async def error(resp: Any) -> dict[str, Any]:
    data: dict[str, Any] = await resp.json()
    return data


@pytest.mark.file_loudspeaker
async def test_ids_beyond_the_database_are_400(client: TestClient) -> None:
    """An id larger than SQLite's INTEGER made every /{id} route crash with OverflowError."""
    huge = "49538907055882301656268800"
    for path in (
        f"/api/v1/alerts/{huge}",
        f"/api/v1/alerts/{huge}/deliveries",
        f"/api/v1/reports/{huge}",
        f"/api/v1/recipients/{huge}/history",
        "/api/v1/alerts/-1",
    ):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 400, (path, await resp.text())
        assert "must be an integer from 0 to 9223372036854775807" in (await error(resp))["error"]
    assert (await client.get("/api/v1/alerts/9223372036854775807", headers=AUTH)).status == 404


@pytest.mark.file_loudspeaker
async def test_digits_int_cannot_read_are_400(client: TestClient) -> None:
    """str.isdigit() is true of "²": the delivery log's numbers then crashed int()."""
    for path, parameter in (
        ("/api/v1/deliveries?limit=²", "limit"),
        ("/api/v1/deliveries?after=²", "after"),
        ("/api/v1/deliveries?alert=²", "alert"),
        ("/api/v1/recipients/1/history?limit=²", "limit"),
    ):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 400, (path, await resp.text())
        assert (await error(resp))["parameter"] == parameter


@pytest.mark.file_loudspeaker
async def test_a_phone_of_odd_digits_is_not_a_recipient(client: TestClient) -> None:
    """POST /api/v1/alerts/{id}/acks looked "²" up as a recipient id and crashed int()."""
    cap = await client.post(
        "/api/v1/alerts", data=cap_cn(), headers={**AUTH, "Content-Type": "application/cap+xml"}
    )
    alert_id = (await cap.json())["id"]
    resp = await client.post(f"/api/v1/alerts/{alert_id}/acks", json={"recipient": "²"}, headers=AUTH)
    assert resp.status == 404, await resp.text()


@pytest.mark.file_loudspeaker
async def test_a_window_before_year_one_is_400(client: TestClient) -> None:
    """GET /api/v1/recommendations?since=99999999999d reached before datetime.min: OverflowError."""
    resp = await client.get("/api/v1/recommendations", params={"since": "99999999999d"}, headers=AUTH)
    assert resp.status == 400, await resp.text()
    assert "since" in (await error(resp))["error"]


async def test_a_play_state_of_odd_digits_is_recorded(config_dir: Path, clock: FakeClock) -> None:
    """A loudspeaker report whose state was "²" crashed int() in warnd.receipts (signed webhook, MQTT)."""

    def secret(data: dict[str, Any]) -> None:
        data["api"]["feedback_secrets"] = {"loudspeaker": "play-report-secret"}

    edit_yaml(config_dir / "warnd.yaml", secret)
    app = App(load_config(config_dir), clock=clock)
    await app.start()
    try:
        async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0)) as test_client:
            body = json.dumps([{"message_id": "LS-1", "state": "²"}]).encode()
            stamp = str(int(clock.now().timestamp()))
            headers = {
                "Content-Type": "application/json",
                "X-Warnd-Timestamp": stamp,
                "X-Warnd-Signature": sign("play-report-secret", stamp, body),
            }
            resp = await test_client.post("/api/v1/feedback/loudspeaker", data=body, headers=headers)
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["received"] == 1
    finally:
        await app.close()
