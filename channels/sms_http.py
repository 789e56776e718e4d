"""Generic HTTP SMS gateway: the request body comes from a Jinja2 template in config.

One request carries up to ``max_recipients_per_request`` numbers that all receive the same text (the
dispatcher hands a batch with one ``content_key``). The response is read through dotted paths configured per
gateway, so the same adapter speaks to a bureau's own gateway, Aliyun (``ok_path: Code``, ``ok_values: [OK]``)
or Tencent Cloud (``results_path: Response.SendStatusSet``, ``result_phone_field: PhoneNumber``,
``result_ok_field: Code``, ``result_ok_values: [Ok]``). Request signing schemes that need code (TC3, Aliyun
RPC signatures) belong in an adapter of their own or a signing proxy.

Outcomes:

* 2xx and the request-level check passes → per number: the matching result decides (ok → ACCEPTED, a
  code listed in ``retryable_codes`` → RETRY, anything else → FAILED with the provider's error); a number
  missing from a non-empty results list → RETRY (the gateway did not take it; the idempotency key makes the
  retry safe); no results in the response → ACCEPTED with the request-level id.
* 2xx but ``ok_path`` does not hold an ``ok_values`` value → FAILED for all (RETRY if the code is retryable).
* 429 and 5xx → RETRY with ``Retry-After`` (seconds or HTTP-date); timeouts and connection errors → RETRY.
* Other 4xx and unexpected 3xx → FAILED with the status and an excerpt of the body.

Phone numbers never appear in full in log lines (``138****5678``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlencode

import aiohttp
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator, Field, field_validator, model_validator

from channels.base import Address, ChannelSettings, Outcome, OutgoingMessage, SendResult
from channels.http import HttpChannel, HttpUrl
from warnd.clock import Clock, SystemClock
from warnd.logs import mask_phone, mask_text

log = logging.getLogger(__name__)

DEFAULT_BODY = (
    '{"signature": {{ signature|tojson }}, "content": {{ content|tojson }}, '
    '"messages": {{ messages|tojson }}}'
)


def lookup_path(data: Any, path: str | None) -> Any:
    """Follow a dotted path (``Response.SendStatusSet``, ``data.0.id``) into parsed JSON; None if absent."""
    if path is None or path == "":
        return None
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return None
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return None
            current = current[index]
        else:
            return None
    return current


def scalar_text(value: Any) -> str:
    """Compare provider codes as text: JSON true → "true", 0 → "0", "OK" → "OK"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def normalize_phone(phone: str | None) -> str:
    """Digits only, without the mainland country code, so ``+86 138-1234-5678`` matches ``13812345678``."""
    if not phone:
        return ""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if digits.startswith("0086") and len(digits) == 15:
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits


# ----------------------------------------------------------------------------------------------------


def _compile_body(value: str) -> str:
    try:
        _template_environment().from_string(value)
    except TemplateSyntaxError as exc:
        raise ValueError(f"body template: {exc.message} (line {exc.lineno})") from exc
    return value


BodyTemplate = Annotated[str, AfterValidator(_compile_body)]  # a request body template in channel settings


def _template_environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
    # tojson keeps Chinese readable and copes with dates etc. inside data
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False, "default": str}
    return env


class SmsHttpSettings(ChannelSettings):
    """Settings of the ``sms_http`` adapter."""

    url: HttpUrl
    """Gateway endpoint, e.g. ``https://sms.example.gov.cn/api/send``."""

    method: str = "POST"
    """HTTP method. With GET/DELETE a ``form`` body is sent as the query string."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers (``Authorization: Bearer ${SMS_TOKEN}``; secrets are substituted by the loader).
    A ``Content-Type`` given here replaces the adapter's."""

    body_format: Literal["json", "form"] = "json"
    """``json``: the rendered body must parse as JSON and is sent as ``application/json; charset=utf-8``.
    ``form``: the rendered body must be a JSON object of scalar (or list-of-scalar) fields, sent as
    ``application/x-www-form-urlencoded`` (UTF-8)."""

    body: BodyTemplate = DEFAULT_BODY
    """Jinja2 template of the request body (sandboxed). Variables: ``content`` (SMS text without the
    signature), ``signature`` (from the message, else the channel's ``signature``), ``text`` (the full text as
    the recipient sees it), ``phones`` (list), ``messages`` (list of ``{"phone", "key", "delivery_id"}``),
    ``keys`` (idempotency keys), ``phone`` / ``key`` (the first ones), ``title``, ``segments``, ``priority``
    and ``channel`` (channel name). Use ``|tojson`` for values inside JSON. Undefined names are errors."""

    max_recipients_per_request: int = Field(default=100, ge=1, le=10_000)
    """How many numbers (with identical text) one request may carry; 1 for one-number-per-request gateways."""

    ok_path: str | None = None
    """Dotted path to a request-level status code in the JSON answer (Aliyun: ``Code``). None = no check."""

    ok_values: list[str] = Field(default_factory=list)
    """Values of ``ok_path`` meaning success (Aliyun: ``["OK"]``). Empty = any truthy value is success."""

    error_message_path: str | None = None
    """Dotted path to the provider's human-readable error (Aliyun: ``Message``). None = try ``Message``,
    ``message``, ``msg``, ``errmsg``, ``error``."""

    message_id_path: str | None = "id"
    """Dotted path to a request-level message/batch id (Aliyun: ``BizId``)."""

    results_path: str | None = "results"
    """Dotted path to the per-number results list (Tencent: ``Response.SendStatusSet``); optional in the
    answer."""

    result_phone_field: str = "phone"
    """Field of a per-number result holding the number (Tencent: ``PhoneNumber``; ``+86`` prefixes match)."""

    result_key_field: str | None = "id"
    """Field of a per-number result echoing our idempotency key; matched first, then the phone."""

    result_ok_field: str = "status"
    """Field of a per-number result holding its status code (Tencent: ``Code``)."""

    result_ok_values: list[str] = Field(default_factory=lambda: ["ok", "accepted", "0", "OK"])
    """Per-number status values meaning success (Tencent: ``["Ok"]``)."""

    result_id_field: str = "message_id"
    """Field of a per-number result holding the provider's message id (Tencent: ``SerialNo``)."""

    result_error_field: str = "error"
    """Field of a per-number result holding the provider's reason (Tencent: ``Message``)."""

    retryable_codes: list[str] = Field(default_factory=list)
    """Provider error codes (request-level ``ok_path`` or per-number status) that mean "try later", e.g.
    ``isv.BUSINESS_LIMIT_CONTROL`` or ``LimitExceeded.AppDailyLimit``."""

    @field_validator("method")
    @classmethod
    def _upper_method(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in {"POST", "PUT", "PATCH", "GET", "DELETE"}:
            raise ValueError(f"unsupported HTTP method {value!r}")
        return value

    @model_validator(mode="after")
    def _check_method_format(self) -> SmsHttpSettings:
        if self.method in {"GET", "DELETE"} and self.body_format == "json":
            raise ValueError(f"method {self.method} cannot carry a json body; use body_format: form")
        return self


class _RenderError(Exception):
    pass


class SmsHttpChannel(HttpChannel):
    """Generic HTTP SMS gateway driven by a body template and response paths."""

    Settings: ClassVar[type[ChannelSettings]] = SmsHttpSettings
    settings: SmsHttpSettings
    address = Address.PHONE

    def __init__(self, name: str, settings: ChannelSettings, *, data_dir: str):
        super().__init__(name, settings, data_dir=data_dir)
        self.max_batch = self.settings.max_recipients_per_request
        self.clock: Clock = SystemClock()
        self._template = _template_environment().from_string(self.settings.body)
        self._session: aiohttp.ClientSession | None = None

    # ----------------------------------------------------------------------------------------------------

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not batch:
            return []
        if self._session is None or self._session.closed:
            await self.start()
        # The dispatcher already groups by content_key and respects max_batch; regroup defensively anyway.
        groups: dict[str, list[OutgoingMessage]] = defaultdict(list)
        for message in batch:
            groups[message.content_key].append(message)
        results: list[SendResult] = []
        for messages in groups.values():
            for start in range(0, len(messages), self.max_batch):
                results.extend(await self._send_request(messages[start : start + self.max_batch]))
        return results

    def _render(self, messages: Sequence[OutgoingMessage]) -> tuple[bytes, str | None, str | None]:
        """Return (payload, content type, query string) or raise _RenderError."""
        first = messages[0]
        data = first.data or {}
        content = data.get("content")
        if content is None:
            content = first.body
        signature = data.get("signature")
        if signature is None:
            signature = self.settings.signature
        phones = [m.address for m in messages]
        keys = [m.idempotency_key for m in messages]
        context = {
            "content": content,
            "signature": signature,
            "text": first.body,
            "title": first.title,
            "phones": phones,
            "keys": keys,
            "phone": phones[0],
            "key": keys[0],
            "messages": [
                {"phone": m.address, "key": m.idempotency_key, "delivery_id": m.delivery_id} for m in messages
            ],
            "channel": self.name,
            "segments": first.segments,
            "priority": first.priority,
        }
        try:
            rendered = self._template.render(context)
        except TemplateError as exc:
            raise _RenderError(f"body template failed to render: {exc}") from exc
        except Exception as exc:  # a filter blew up (TypeError, ZeroDivisionError…): still a template problem
            raise _RenderError(f"body template failed to render: {type(exc).__name__}: {exc}") from exc
        try:
            parsed = json.loads(rendered)
        except json.JSONDecodeError as exc:
            raise _RenderError(
                f"body template did not render valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from exc
        if self.settings.body_format == "json":
            payload = json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            return payload, "application/json; charset=utf-8", None
        if not isinstance(parsed, dict):
            raise _RenderError("form body template must render a JSON object of fields")
        pairs: list[tuple[str, str]] = []
        for field_name, value in parsed.items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, dict | list):
                    raise _RenderError(
                        f"form field {field_name!r} must be a string, not {type(item).__name__}"
                    )
                pairs.append((str(field_name), item if isinstance(item, str) else scalar_text(item)))
        encoded = urlencode(pairs, encoding="utf-8")
        if self.settings.method in {"GET", "DELETE"}:
            return b"", None, encoded
        return encoded.encode("ascii"), "application/x-www-form-urlencoded; charset=utf-8", None

    @staticmethod
    def _idempotency_key(messages: Sequence[OutgoingMessage]) -> str:
        if len(messages) == 1:
            return messages[0].idempotency_key
        joined = "\n".join(sorted(m.idempotency_key for m in messages))
        return hashlib.sha256(joined.encode("utf-8")).hexdigest()

    def _who(self, messages: Sequence[OutgoingMessage]) -> str:
        if len(messages) == 1:
            return mask_phone(messages[0].address) or "-"
        return f"{len(messages)} numbers"

    async def _send_request(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        try:
            payload, content_type, query = self._render(messages)
        except _RenderError as exc:
            log.error("channel %s: %s", self.name, exc)
            return [SendResult(m.delivery_id, Outcome.FAILED, error=str(exc)) for m in messages]

        headers = dict(self.settings.headers)
        if content_type and not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = content_type
        headers["Idempotency-Key"] = self._idempotency_key(messages)
        url = self.settings.url
        if query:
            url = f"{url}{'&' if '?' in url else '?'}{query}"

        answer = await self.exchange(
            self.settings.method, url, data=payload or None, headers=headers, seconds=self.settings.timeout
        )
        if answer.outcome is not None:
            log.warning(
                "channel %s: request for %s: %s", self.name, self._who(messages), mask_text(answer.error)
            )
            return [answer.result(m.delivery_id) for m in messages]
        return self._map_success(messages, answer.text, answer.response)

    def _map_success(
        self, messages: Sequence[OutgoingMessage], text: str, response: dict[str, Any]
    ) -> list[SendResult]:
        s = self.settings
        try:
            answer: Any = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            answer = None
            if s.ok_path is not None:
                reason = "provider answered 2xx without JSON; cannot confirm acceptance"
                log.warning("channel %s: %s (%s)", self.name, reason, self._who(messages))
                return [
                    SendResult(m.delivery_id, Outcome.RETRY, error=reason, response=response)
                    for m in messages
                ]

        if s.ok_path is not None:
            code = lookup_path(answer, s.ok_path)
            code_text = scalar_text(code)
            ok = code_text in s.ok_values if s.ok_values else bool(code)
            if not ok:
                provider_text = self._provider_message(answer)
                reason = f"{code_text or 'no ' + s.ok_path}" + (f": {provider_text}" if provider_text else "")
                outcome = Outcome.RETRY if code_text and code_text in s.retryable_codes else Outcome.FAILED
                log.warning(
                    "channel %s: provider refused %s: %s",
                    self.name,
                    self._who(messages),
                    mask_text(reason),
                )
                return [SendResult(m.delivery_id, outcome, error=reason, response=response) for m in messages]

        request_id_value = lookup_path(answer, s.message_id_path)
        request_id = None if request_id_value is None else scalar_text(request_id_value) or None
        raw_results = lookup_path(answer, s.results_path)
        results = [r for r in raw_results if isinstance(r, Mapping)] if isinstance(raw_results, list) else []
        if not results:
            return [
                SendResult(m.delivery_id, Outcome.ACCEPTED, provider_message_id=request_id, response=response)
                for m in messages
            ]

        matched = self._match_results(messages, results)
        out: list[SendResult] = []
        for message in messages:
            result = matched.get(message.delivery_id)
            if result is None:
                out.append(
                    SendResult(
                        message.delivery_id,
                        Outcome.RETRY,
                        error="the gateway's answer has no result for this number",
                        response=response,
                    )
                )
                continue
            status_text = scalar_text(result.get(s.result_ok_field))
            id_value = result.get(s.result_id_field)
            provider_id = (scalar_text(id_value) or None) if id_value is not None else None
            if status_text in s.result_ok_values:
                out.append(
                    SendResult(
                        message.delivery_id,
                        Outcome.ACCEPTED,
                        provider_message_id=provider_id or request_id,
                        response=response,
                    )
                )
                continue
            error_value = result.get(s.result_error_field)
            error_text = scalar_text(error_value) if error_value is not None else ""
            reason = (status_text or "no status") + (f": {error_text}" if error_text else "")
            outcome = Outcome.RETRY if status_text and status_text in s.retryable_codes else Outcome.FAILED
            log.info(
                "channel %s: %s not accepted: %s",
                self.name,
                mask_phone(message.address) or "-",
                mask_text(reason),
            )
            out.append(
                SendResult(
                    message.delivery_id,
                    outcome,
                    provider_message_id=provider_id,
                    error=reason,
                    response=response,
                )
            )
        return out

    def _match_results(
        self, messages: Sequence[OutgoingMessage], results: list[Mapping[str, Any]]
    ) -> dict[int, Mapping[str, Any]]:
        """delivery_id → its result: by echoed idempotency key first, then by phone (in order)."""
        s = self.settings
        by_key = {m.idempotency_key: m for m in messages}
        by_phone: dict[str, list[OutgoingMessage]] = defaultdict(list)
        for m in messages:
            by_phone[normalize_phone(m.address)].append(m)
        matched: dict[int, Mapping[str, Any]] = {}
        unkeyed: list[Mapping[str, Any]] = []
        for result in results:
            key = result.get(s.result_key_field) if s.result_key_field else None
            message = by_key.get(key) if isinstance(key, str) else None
            if message is not None and message.delivery_id not in matched:
                matched[message.delivery_id] = result
            else:
                unkeyed.append(result)
        for result in unkeyed:
            phone = normalize_phone(scalar_text(result.get(s.result_phone_field)))
            for message in by_phone.get(phone, []):
                if message.delivery_id not in matched:
                    matched[message.delivery_id] = result
                    break
        return matched

    def _provider_message(self, answer: Any) -> str:
        paths = (
            [self.settings.error_message_path]
            if self.settings.error_message_path
            else ["Message", "message", "msg", "errmsg", "error", "Response.Error.Message"]
        )
        for path in paths:
            value = lookup_path(answer, path)
            if value is not None and not isinstance(value, dict | list):
                return scalar_text(value)
        return ""


Settings = SmsHttpSettings
