"""Generic HTTP push provider (FCM-, JPush- or a vendor relay-style JSON): the request body comes from a Jinja2
template in config, per-token results are read through dotted paths.

**Tokens.** A recipient's ``push_tokens`` that are not Web Push subscriptions (those are JSON objects, sent by
the ``webpush`` adapter) are the provider's device tokens (FCM registration tokens, JPush registration ids).
Every such token of every recipient goes out; one request carries up to ``max_tokens_per_request`` tokens of
recipients that get identical content.

**Collapse and priority.** The template gets ``collapse_key`` (the identifier of the alert chain's first
revision: an Update or Cancel replaces the earlier notification — FCM ``collapse_key`` / Android ``tag``, APNs
``apns-collapse-id``, JPush ``apns_collapse_id``) and ``priority`` (``high`` for red and orange, ``normal``
otherwise and for drills).

**Outcomes**, per token: the result's status in ``result_ok_values`` → accepted; in ``expired_codes``
(FCM ``UNREGISTERED``, legacy FCM ``NotRegistered``) → failed, and the token is returned in
:attr:`SendResult.disable_tokens` so the dispatcher removes it from the recipient; in ``retryable_codes`` →
retry; anything else → failed with the provider's error; a token missing from a non-empty results list →
retry. No results list in a 2xx answer → all accepted with the request-level id. A request-level code
(``ok_path``) not in ``ok_values`` fails (or retries, or — for a code in ``expired_codes``, such as JPush 1011
"no valid target" — disables) every token of the request. 429/5xx, timeouts and connection errors → retry
with ``Retry-After``; other statuses → failed. Per delivery: any token accepted → ACCEPTED, else any retryable →
RETRY, else FAILED.

Template and path machinery are ``channels.sms_http``'s (sandboxed Jinja2, :func:`lookup_path`,
:func:`scalar_text`).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from jinja2 import TemplateError
from pydantic import Field

from channels.base import Address, ChannelSettings, Outcome, OutgoingMessage, SendResult
from channels.http import HttpAnswer, HttpChannel, HttpUrl
from channels.sms_http import BodyTemplate, SmsHttpChannel, _template_environment, lookup_path, scalar_text
from channels.webpush import TokenTry, collapse_key, combine_tries, is_high_priority, is_subscription_token

log = logging.getLogger(__name__)

DEFAULT_BODY = (
    '{"tokens": {{ tokens|tojson }}, "collapse_key": {{ collapse_key|tojson }}, '
    '"priority": {{ priority|tojson }}, "ttl": {{ ttl }}, '
    '"notification": {"title": {{ title|tojson }}, "body": {{ body|tojson }}}, "data": {{ data|tojson }}}'
)


def mask_token(token: str) -> str:
    """Enough of a device token to tell two apart in a log, not enough to use it."""
    return token if len(token) <= 10 else f"{token[:6]}…{token[-4:]}"


class PushHttpSettings(ChannelSettings):
    """Settings of the ``push_http`` adapter."""

    url: HttpUrl
    """Provider endpoint, e.g. ``https://api.jpush.cn/v3/push`` or a bureau's own push relay."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers, e.g. ``Authorization: "Basic ${JPUSH_AUTH}"`` (secrets come from the
    environment). A ``Content-Type`` given here replaces the adapter's."""

    body: BodyTemplate = DEFAULT_BODY
    """Jinja2 template of the JSON request body (sandboxed). Variables: ``tokens`` (list), ``token`` (the
    first), ``messages`` (list of ``{"token", "key", "delivery_id"}``), ``title``, ``body``, ``data`` (alert
    id, colour, level, msg_type, url), ``collapse_key``, ``priority`` (``high``/``normal``), ``high_priority``
    (bool), ``ttl``, ``alert`` (id, identifier, colour, level, msg_type, status, expires) and ``channel``. Use
    ``|tojson`` for values inside JSON. Undefined names are errors."""

    max_tokens_per_request: int = Field(default=500, ge=1, le=10_000)
    """How many device tokens one request may carry (FCM multicast 500, JPush 1000)."""

    ttl: int = Field(default=3600, ge=0, le=28 * 24 * 3600)
    """Seconds the provider keeps the message for an offline device; passed to the template as ``ttl``."""

    ok_path: str | None = None
    """Dotted path to a request-level status code in the JSON answer. None = no check."""

    ok_values: list[str] = Field(default_factory=list)
    """Values of ``ok_path`` meaning success. Empty = any truthy value is success."""

    error_code_path: str | None = None
    """Dotted path to the provider's error code in a non-2xx answer, checked against ``expired_codes`` and
    ``retryable_codes`` (JPush answers 400 ``{"error": {"code": 1011}}``: ``error.code``; FCM v1 answers 404
    for an unregistered token: ``error.details.0.errorCode``)."""

    message_id_path: str | None = None
    """Dotted path to a request-level message id (JPush: ``msg_id``)."""

    results_path: str | None = "results"
    """Dotted path to the per-token results list; optional in the answer."""

    result_token_field: str | None = "token"
    """Field of a per-token result naming its token. None = results are in the order of ``tokens`` (legacy
    FCM multicast)."""

    result_status_field: str = "status"
    """Field of a per-token result holding its status or error code (legacy FCM: ``error``)."""

    result_ok_values: list[str] = Field(default_factory=lambda: ["OK", "ok", "success", "0"])
    """Per-token status values meaning accepted; ``""`` stands for an absent field (legacy FCM: ``[""]``)."""

    result_id_field: str = "message_id"
    """Field of a per-token result holding the provider's message id."""

    result_error_field: str = "error"
    """Field of a per-token result holding the provider's reason."""

    expired_codes: list[str] = Field(default_factory=lambda: ["UNREGISTERED", "NotRegistered"])
    """Codes (per token, or request-level) meaning the token is expired or unregistered: the token is removed
    from the recipient (JPush: add ``"1011"``)."""

    retryable_codes: list[str] = Field(default_factory=lambda: ["UNAVAILABLE", "INTERNAL", "Unavailable"])
    """Codes (per token, or request-level) that mean "try later"."""


class PushHttpChannel(HttpChannel):
    """Batches device tokens of identical content into templated JSON requests."""

    Settings: ClassVar[type[ChannelSettings]] = PushHttpSettings
    settings: PushHttpSettings
    address = Address.PUSH

    def __init__(self, name: str, settings: ChannelSettings, *, data_dir: str):
        super().__init__(name, settings, data_dir=data_dir)
        self.max_batch = self.settings.max_tokens_per_request
        self._template = _template_environment().from_string(self.settings.body)

    # ----------------------------------------------------------------------------------------------------

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not batch:
            return []
        if self._session is None or self._session.closed:
            await self.start()
        results: list[SendResult] = []
        groups: dict[str, list[OutgoingMessage]] = defaultdict(list)
        for message in batch:
            groups[message.content_key].append(message)
        for messages in groups.values():
            pairs: list[tuple[str, OutgoingMessage]] = []
            for message in messages:
                tokens = _device_tokens(message)
                if not tokens:
                    results.append(
                        SendResult(
                            message.delivery_id,
                            Outcome.FAILED,
                            error="no device token among the recipient's push tokens "
                            "(Web Push subscriptions go through the webpush adapter)",
                        )
                    )
                pairs.extend((token, message) for token in tokens)
            tries: dict[int, list[TokenTry]] = defaultdict(list)
            size = self.settings.max_tokens_per_request
            for start in range(0, len(pairs), size):
                chunk = pairs[start : start + size]
                for (_token, message), outcome in zip(chunk, await self._send_request(chunk), strict=True):
                    tries[message.delivery_id].append(outcome)
            results.extend(combine_tries(delivery_id, found) for delivery_id, found in tries.items())
        return results

    def _render(self, pairs: Sequence[tuple[str, OutgoingMessage]]) -> bytes:
        first = pairs[0][1]
        tokens = [token for token, _ in pairs]
        high = is_high_priority(first)
        context = {
            "tokens": tokens,
            "token": tokens[0],
            "messages": [
                {"token": token, "key": m.idempotency_key, "delivery_id": m.delivery_id} for token, m in pairs
            ],
            "title": first.title or "",
            "body": first.body,
            "data": dict(first.data or {}),
            "collapse_key": collapse_key(first),
            "priority": "high" if high else "normal",
            "high_priority": high,
            "ttl": self.settings.ttl,
            "alert": dict(first.alert or {}),
            "channel": self.name,
        }
        try:
            rendered = self._template.render(context)
        except TemplateError as exc:
            raise ValueError(f"body template failed to render: {exc}") from exc
        except Exception as exc:  # a filter blew up: still a template problem
            raise ValueError(f"body template failed to render: {type(exc).__name__}: {exc}") from exc
        try:
            parsed = json.loads(rendered)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"body template did not render valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from exc
        return json.dumps(parsed, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")

    async def _send_request(self, pairs: Sequence[tuple[str, OutgoingMessage]]) -> list[TokenTry]:
        """One TokenTry per pair, in order."""
        try:
            payload = self._render(pairs)
        except ValueError as exc:
            log.error("channel %s: %s", self.name, exc)
            return [TokenTry(t, mask_token(t), Outcome.FAILED, str(exc)) for t, _ in pairs]
        headers = dict(self.settings.headers)
        if not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Idempotency-Key"] = SmsHttpChannel._idempotency_key(
            list({m.delivery_id: m for _, m in pairs}.values())
        )
        answer: HttpAnswer = await self.exchange(
            "POST", self.settings.url, data=payload, headers=headers, seconds=self.settings.timeout
        )
        if answer.outcome is not None:
            log.warning("channel %s: request for %d token(s): %s", self.name, len(pairs), answer.error)
            outcome, expired = answer.outcome, False
            if outcome is Outcome.FAILED and self.settings.error_code_path:
                code = scalar_text(lookup_path(_parse(answer.text), self.settings.error_code_path))
                expired = bool(code) and code in self.settings.expired_codes
                if code and code in self.settings.retryable_codes:
                    outcome = Outcome.RETRY
            error = f"token expired: {answer.error}" if expired else answer.error
            return [
                TokenTry(t, mask_token(t), outcome, error, answer.retry_after, answer.status, expired)
                for t, _ in pairs
            ]
        return self._read_answer(pairs, answer)

    def _read_answer(
        self, pairs: Sequence[tuple[str, OutgoingMessage]], answer: HttpAnswer
    ) -> list[TokenTry]:
        s = self.settings
        parsed = _parse(answer.text)
        if s.ok_path is not None and parsed is None:
            reason = "provider answered 2xx without JSON; cannot confirm acceptance"
            return [TokenTry(t, mask_token(t), Outcome.RETRY, reason, status=answer.status) for t, _ in pairs]
        if s.ok_path is not None:
            code = scalar_text(lookup_path(parsed, s.ok_path))
            ok = code in s.ok_values if s.ok_values else bool(code)
            if not ok:
                message = _provider_message(parsed)
                reason = (code or f"no {s.ok_path}") + (f": {message}" if message else "")
                expired = bool(code) and code in s.expired_codes
                outcome = Outcome.RETRY if code and code in s.retryable_codes else Outcome.FAILED
                log.warning("channel %s: provider refused %d token(s): %s", self.name, len(pairs), reason)
                return [
                    TokenTry(t, mask_token(t), outcome, reason, status=code, expired=expired)
                    for t, _ in pairs
                ]
        id_value = lookup_path(parsed, s.message_id_path)
        request_id = scalar_text(id_value) or None if id_value is not None else None
        raw_results = lookup_path(parsed, s.results_path)
        if not isinstance(raw_results, list) or not raw_results:
            return [
                TokenTry(
                    t, mask_token(t), Outcome.ACCEPTED, status=answer.status, provider_message_id=request_id
                )
                for t, _ in pairs
            ]
        by_token: dict[str, Mapping[str, Any]] = {}
        if s.result_token_field:
            for item in raw_results:
                if isinstance(item, Mapping) and item.get(s.result_token_field) is not None:
                    by_token.setdefault(scalar_text(item[s.result_token_field]), item)
        elif len(raw_results) == len(pairs):
            by_token = {
                t: item for (t, _), item in zip(pairs, raw_results, strict=True) if isinstance(item, Mapping)
            }
        out: list[TokenTry] = []
        for token, _message in pairs:
            item = by_token.get(token)
            where = mask_token(token)
            if item is None:
                out.append(
                    TokenTry(
                        token, where, Outcome.RETRY, "the provider's answer has no result for this token"
                    )
                )
                continue
            code = scalar_text(item.get(s.result_status_field))
            id_value = item.get(s.result_id_field)
            provider_id = (scalar_text(id_value) or None) if id_value is not None else request_id
            if code in s.result_ok_values:
                out.append(
                    TokenTry(token, where, Outcome.ACCEPTED, status=code, provider_message_id=provider_id)
                )
                continue
            error_value = item.get(s.result_error_field)
            error = scalar_text(error_value) if error_value is not None and error_value != code else ""
            reason = (code or "no status") + (f": {error}" if error else "")
            if code in s.expired_codes:
                log.info("channel %s: token %s unregistered (%s)", self.name, where, code)
                out.append(
                    TokenTry(
                        token, where, Outcome.FAILED, f"token expired: {reason}", status=code, expired=True
                    )
                )
            elif code and code in s.retryable_codes:
                out.append(TokenTry(token, where, Outcome.RETRY, reason, status=code))
            else:
                out.append(TokenTry(token, where, Outcome.FAILED, reason, status=code))
        return out


def _device_tokens(message: OutgoingMessage) -> list[str]:
    tokens = list(message.recipient.push_tokens) or ([message.address] if message.address else [])
    return list(dict.fromkeys(t for t in tokens if t and not is_subscription_token(t)))


def _parse(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None


def _provider_message(answer: Any) -> str:
    for path in ("message", "msg", "error.message", "error", "errmsg"):
        value = lookup_path(answer, path)
        if value is not None and not isinstance(value, dict | list):
            return scalar_text(value)
    return ""


Settings = PushHttpSettings
