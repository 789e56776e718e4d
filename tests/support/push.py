"""Push doubles: a Web Push service (RFC 8030 endpoint per subscription, real ECDH keys so a test can decrypt
what it received) and a generic JSON push provider (FCM-/JPush-style batch answers).

Usage::

    async with WebPushService() as ps:
        device = ps.subscriber("wang")          # real P-256 keypair + auth secret; device.token is the JSON
        ps.answer("wang", 410)                  # next answer for that subscription (default 201)
        ...
        [req] = ps.requests_for("wang"); device.decrypt(req.raw) -> dict
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from tests.support.server import LocalServer
from tests.support.webhook import ReceivedRequest


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def new_vapid_key() -> tuple[str, str]:
    """(private key as base64url raw 32 bytes, public key as base64url uncompressed point)."""
    vapid = Vapid()
    vapid.generate_keys()
    private = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    public = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(private), b64url(public)


@dataclass
class Device:
    """One browser subscription: the keys the user agent keeps, and the token warnd stores."""

    name: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def token(self) -> str:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return json.dumps(
            {"endpoint": self.endpoint, "keys": {"p256dh": b64url(public), "auth": b64url(self.auth_secret)}}
        )

    def decrypt(self, raw: bytes) -> Any:
        plain = http_ece.decrypt(
            raw, private_key=self.private_key, auth_secret=self.auth_secret, version="aes128gcm"
        )
        return json.loads(plain.decode("utf-8"))


class WebPushService(LocalServer):
    """Accepts ``POST /push/<subscription>``; answers 201 unless told otherwise per subscription."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(path="/push/{sub}", host=host)
        self.requests: list[ReceivedRequest] = []
        self.devices: dict[str, Device] = {}
        self._answers: dict[str, list[tuple[int, str | None]]] = {}

    def subscriber(self, name: str) -> Device:
        device = self.devices[name] = Device(name, f"{self.base_url}/push/{name}")
        return device

    def answer(self, name: str, status: int, *, retry_after: str | None = None, times: int = 1) -> None:
        self._answers.setdefault(name, []).extend([(status, retry_after)] * times)

    def requests_for(self, name: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path == f"/push/{name}"]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(ReceivedRequest(request.method, request.path, dict(request.headers), raw))
        queue = self._answers.get(request.match_info["sub"]) or []
        status, retry_after = queue.pop(0) if queue else (201, None)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if 200 <= status <= 299:
            headers["Location"] = f"{self.base_url}/message/{len(self.requests)}"
        return web.Response(
            status=status, headers=headers, text="" if status < 300 else "push service says no"
        )


class JsonPushProvider(LocalServer):
    """An FCM-/JPush-style batch endpoint: body ``{"tokens": [...], ...}`` (whatever the template renders is
    recorded); answers ``{"results": [{"token", "status", "message_id"|"error"}]}``, with tokens listed in
    ``unregistered`` answered ``{"status": "UNREGISTERED"}``, unless a whole-request answer is queued."""

    def __init__(self, *, path: str = "/v1/push", host: str = "127.0.0.1") -> None:
        super().__init__(path=path, host=host)
        self.requests: list[ReceivedRequest] = []
        self.unregistered: set[str] = set()
        self._answers: list[tuple[int, Any, str | None]] = []
        self._ids = 0

    def respond_with(self, status: int, body: Any = None, *, retry_after: str | None = None) -> None:
        self._answers.append((status, body, retry_after))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        received = ReceivedRequest(request.method, request.path, dict(request.headers), raw)
        received.json = json.loads(raw.decode("utf-8"))
        self.requests.append(received)
        if self._answers:
            status, body, retry_after = self._answers.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.json_response(
                body if body is not None else {"error": "busy"}, status=status, headers=headers
            )
        results = []
        for token in received.json.get("tokens", []):
            if token in self.unregistered:
                results.append({"token": token, "status": "UNREGISTERED", "error": "token not registered"})
            else:
                self._ids += 1
                results.append({"token": token, "status": "OK", "message_id": f"m-{self._ids}"})
        return web.json_response({"request_id": f"r-{len(self.requests)}", "results": results})
