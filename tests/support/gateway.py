"""A fake HTTP SMS gateway: a real aiohttp server on 127.0.0.1 that speaks the default ``sms_http`` body.

Usage::

    async with FakeSmsGateway() as gw:
        channel = SmsHttpChannel("sms", SmsHttpSettings(adapter="sms_http", url=gw.url), data_dir=...)
        ...
        assert gw.accepted_keys == {"r1:p1:sms": 1}

Request bodies it understands:

* JSON (the default template): ``{"signature", "content", "messages": [{"phone", "key", "delivery_id"}]}``;
* form or JSON with flat fields: ``phone`` or ``phones`` (comma-separated or list), ``key`` or ``keys``
  (else the ``Idempotency-Key`` header for a single number), ``content``, ``signature``.

Answer: ``{"id": "<batch id>", "results": [{"phone", "id": <key>, "status": "ok"|"failed", "message_id",
"error"}]}``. A key seen before is answered with its original result and not accepted again, so
``accepted_keys`` stays at 1 per key however often a message is retried.

Knobs: :meth:`fail_phones` (permanent per-number failure, ``"invalid number"``), :meth:`fail_next` (next N
requests answered 503 / 429 / any status, optional ``Retry-After``), ``delay`` (seconds before answering;
the request is processed first, as a real gateway that accepted but answered too late),
``max_numbers_per_request`` (numbers beyond it are left out of the results), :meth:`respond_next` (script
raw answers, e.g. Aliyun- or Tencent-shaped JSON; the request is recorded but not processed),
:meth:`hold_answers` / :meth:`answer` (requests are processed but their answers wait, ``held`` counts them: a
sender killed meanwhile had requests in flight whose results it never saw; ``when=`` starts holding at the first
request that finds a condition true).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.support.server import LocalServer


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    json: Any = None  # parsed JSON body, if it was JSON
    form: dict[str, str] | None = None  # parsed form body (or query string for GET), if it was a form

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class SentSms:
    """One newly accepted number (duplicates by idempotency key are not listed again)."""

    phone: str
    key: str
    content: str | None
    signature: str | None
    message_id: str
    batch_id: str


@dataclass
class _Scripted:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


class FakeSmsGateway(LocalServer):
    """A real HTTP SMS gateway double. See the module docstring."""

    def __init__(self, *, path: str = "/sms", host: str = "127.0.0.1") -> None:
        super().__init__(path=path, host=host)
        self.requests: list[RecordedRequest] = []  # every raw request, in arrival order
        self.accepted_keys: dict[str, int] = {}  # idempotency key → times accepted (1)
        self.results_by_key: dict[str, dict[str, Any]] = {}  # the original per-number answer of each key
        self.sent: list[SentSms] = []  # newly accepted numbers, in order
        self.failing_phones: set[str] = set()
        self.delay: float = 0.0
        self.max_numbers_per_request: int | None = None
        self._failures: list[tuple[int, str | None]] = []
        self._scripted: list[_Scripted] = []
        self._batch_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._answering = asyncio.Event()
        self._answering.set()
        self._hold_when: Callable[[], bool] | None = None
        self.held = 0  # requests whose answer waited for answer() (hold_answers)

    @property
    def request_count(self) -> int:
        return len(self.requests)

    # -- knobs -----------------------------------------------------------------------------------------------

    def fail_phones(self, *phones: str) -> None:
        """These numbers fail permanently (per-number status ``failed``, error ``invalid number``)."""
        self.failing_phones.update(phones)

    def fail_next(self, n: int = 1, *, status: int = 503, retry_after: str | float | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (nothing processed), optionally with Retry-After."""
        header = None if retry_after is None else str(retry_after)
        self._failures.extend([(status, header)] * n)

    def throttle_next(self, n: int = 1, *, retry_after: str | float | None = 7) -> None:
        """Answer the next ``n`` requests with 429 Too Many Requests."""
        self.fail_next(n, status=429, retry_after=retry_after)

    def hold_answers(self, when: Callable[[], bool] | None = None) -> None:
        """Process each request but keep its answer until :meth:`answer` (or close): from now on, or from the
        first request processed when ``when()`` is true."""
        if when is None:
            self._answering.clear()
        self._hold_when = when

    def answer(self) -> None:
        """Send the held answers, and answer at once again."""
        self._hold_when = None
        self._answering.set()

    def respond_next(
        self,
        status: int = 200,
        body: Any = None,
        *,
        text: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue a raw answer (JSON ``body`` or plain ``text``) for the next request; it is not processed."""
        payload = text if text is not None else json.dumps(body, ensure_ascii=False)
        hdrs = dict(headers or {})
        if text is None:
            hdrs.setdefault("Content-Type", "application/json; charset=utf-8")
        self._scripted.append(_Scripted(status, payload, hdrs))

    # -- handler ---------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            raw=raw,
        )
        content_type = request.content_type
        if content_type == "application/x-www-form-urlencoded":
            recorded.form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        elif raw:
            with contextlib.suppress(ValueError):
                recorded.json = json.loads(raw.decode("utf-8"))
        if request.method in {"GET", "DELETE"} and request.query:
            recorded.form = dict(request.query)
        self.requests.append(recorded)

        if self._scripted:
            scripted = self._scripted.pop(0)
            await self._sleep()
            return web.Response(status=scripted.status, text=scripted.body, headers=scripted.headers)
        if self._failures:
            status, retry_after = self._failures.pop(0)
            await self._sleep()
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.json_response(
                {"error": "busy" if status != 429 else "too many requests"}, status=status, headers=headers
            )

        try:
            messages, content, signature = self._messages(recorded)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)

        batch_id = f"batch-{next(self._batch_ids)}"
        taken = messages if self.max_numbers_per_request is None else messages[: self.max_numbers_per_request]
        results = [self._process(phone, key, content, signature, batch_id) for phone, key in taken]
        await self._sleep()
        return web.json_response(
            {"id": batch_id, "results": results}, dumps=lambda o: json.dumps(o, ensure_ascii=False)
        )

    async def _sleep(self) -> None:
        if self.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.delay)
        if self._hold_when is not None and self._hold_when():
            self._hold_when = None
            self._answering.clear()
        if not self._answering.is_set():
            self.held += 1
            answering, closing = (
                asyncio.ensure_future(self._answering.wait()),
                asyncio.ensure_future(self._closing.wait()),
            )
            await asyncio.wait([answering, closing], return_when=asyncio.FIRST_COMPLETED)
            answering.cancel()
            closing.cancel()

    def _process(
        self, phone: str, key: str, content: str | None, signature: str | None, batch_id: str
    ) -> dict[str, Any]:
        if key in self.results_by_key:
            return self.results_by_key[key]  # a duplicate: the original answer, not accepted again
        if phone in self.failing_phones:
            result: dict[str, Any] = {
                "phone": phone,
                "id": key,
                "status": "failed",
                "message_id": None,
                "error": "invalid number",
            }
        else:
            message_id = f"msg-{next(self._message_ids)}"
            result = {"phone": phone, "id": key, "status": "ok", "message_id": message_id, "error": None}
            self.accepted_keys[key] = self.accepted_keys.get(key, 0) + 1
            self.sent.append(SentSms(phone, key, content, signature, message_id, batch_id))
        self.results_by_key[key] = result
        return result

    @staticmethod
    def _messages(recorded: RecordedRequest) -> tuple[list[tuple[str, str]], str | None, str | None]:
        body: Any = recorded.json if recorded.json is not None else recorded.form
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object or a form body")
        content = body.get("content")
        signature = body.get("signature")
        if isinstance(body.get("messages"), list):
            pairs = []
            for item in body["messages"]:
                if not isinstance(item, dict) or not item.get("phone") or not item.get("key"):
                    raise ValueError("each message needs phone and key")
                pairs.append((str(item["phone"]), str(item["key"])))
            return pairs, content, signature

        def as_list(value: Any) -> list[str]:
            if value is None:
                return []
            if isinstance(value, list):
                return [str(v) for v in value]
            return [v for v in str(value).split(",") if v]

        phones = as_list(body.get("phones")) or as_list(body.get("phone"))
        keys = as_list(body.get("keys")) or as_list(body.get("key"))
        if not keys and len(phones) == 1 and recorded.header("Idempotency-Key"):
            keys = [str(recorded.header("Idempotency-Key"))]
        if not phones:
            raise ValueError("no phone numbers in the request")
        if len(keys) != len(phones):
            raise ValueError("every phone needs an idempotency key")
        return list(zip(phones, keys, strict=True)), content, signature
