"""Web Push (RFC 8030) with message encryption (RFC 8291, ``aes128gcm``) and VAPID (RFC 8292), for PWA and
browser subscribers.

**Token format.** A Web Push subscription is stored in a recipient's ``push_tokens`` as the JSON of the
browser's ``PushSubscription.toJSON()``, serialised on one line::

    {"endpoint": "https://fcm.googleapis.com/fcm/send/…", "keys": {"p256dh": "<base64url>", "auth": "<base64url>"}}

(``expirationTime`` and other members are ignored). A recipient may hold several (phone and desktop); a message
goes to every Web Push subscription of the recipient. Tokens that are not such JSON (an FCM or JPush
registration id for the ``push_http`` adapter) are skipped; a recipient with none fails with that reason.

**What is sent.** The encrypted payload is JSON ``{"title", "body", "tag", "renotify", "requireInteraction",
"data": {"alert_id", "identifier", "colour", "level", "msg_type", "url"?}}``, meant for
``registration.showNotification(title, {body, tag, renotify, requireInteraction, data})`` in the service
worker. ``tag`` is the collapse key — the identifier of the alert chain's first revision — so an Update or
Cancel replaces the earlier notification; the ``Topic`` header (a hash of the same key) lets the push service
replace a copy it still holds. ``Urgency: high`` for red and orange (``normal`` otherwise, and for drills);
``TTL`` from the settings.

**Outcomes**, per subscription: 2xx → accepted; 404/410 → "subscription expired", and the subscription is
returned in :attr:`SendResult.disable_tokens` so the dispatcher removes it from the recipient; 429/5xx,
timeouts and connection errors → retry (``Retry-After`` honoured); other statuses → failed. Per delivery: any
subscription accepted → ACCEPTED; else any retryable → RETRY; else FAILED.

Encryption and VAPID signing use pywebpush's ``WebPusher.encode`` and py_vapid; the request goes through the
channel's own aiohttp session (:meth:`HttpChannel.exchange`), so classification, timeouts and Retry-After are the
same as every other HTTP adapter's (``webpush_async`` would raise for non-2xx and does not release responses).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid, Vapid01
from pydantic import Field, field_validator
from pywebpush import WebPusher, WebPushException

from channels.base import Address, ChannelSettings, Outcome, OutgoingMessage, SendResult
from channels.http import HttpAnswer, HttpChannel

log = logging.getLogger(__name__)

EXPIRED_STATUSES = (404, 410)
MAX_PLAINTEXT = 3993  # RFC 8291: 4096-byte record − 86 bytes header − 16 tag − 1 delimiter
VAPID_LIFETIME = 12 * 3600  # seconds a VAPID token is valid (push services accept at most 24 h)
VAPID_RENEW = 3600  # re-sign when less than this is left


# --- shared by the push adapters (push_http imports these) ------------------------------------------------


def collapse_key(message: OutgoingMessage) -> str:
    """One key per alert chain: the identifier of its first revision, so an update replaces the earlier
    notification (falls back to the revision's own identifier, then its id)."""
    alert = message.alert or {}
    for name in ("root_identifier", "identifier", "id"):
        value = alert.get(name)
        if value not in (None, ""):
            return str(value)
    return message.content_key


def is_high_priority(message: OutgoingMessage) -> bool:
    """Red and orange (priority 1–2) go at high priority; drills and tests (priority 9) never do."""
    return message.priority <= 2


def is_subscription_token(token: str) -> bool:
    """True if ``token`` is meant as a Web Push subscription (JSON object) rather than a provider token."""
    return token.lstrip().startswith("{")


# ----------------------------------------------------------------------------------------------------------


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@dataclass(frozen=True)
class Subscription:
    token: str  # as stored, so an expired one can be removed
    endpoint: str
    p256dh: str
    auth: str

    @property
    def origin(self) -> str:
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc}"

    def info(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def parse_subscription(token: str) -> Subscription | str:
    """The subscription in ``token``, or why it is not one."""
    if not is_subscription_token(token):
        return "not a Web Push subscription"
    try:
        data = json.loads(token)
    except json.JSONDecodeError as exc:
        return f"subscription is not valid JSON ({exc.msg})"
    if not isinstance(data, Mapping):
        return "subscription is not a JSON object"
    endpoint = data.get("endpoint")
    keys = data.get("keys")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        return "subscription has no http(s) endpoint"
    if not isinstance(keys, Mapping):
        return "subscription has no keys"
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not isinstance(p256dh, str) or not isinstance(auth, str):
        return "subscription keys need p256dh and auth"
    try:
        raw_key, raw_auth = _b64url_decode(p256dh), _b64url_decode(auth)
    except (ValueError, TypeError):
        return "subscription keys are not base64url"
    if len(raw_key) != 65 or raw_key[0] != 4:
        return "subscription p256dh is not an uncompressed P-256 point"
    if len(raw_auth) < 16:
        return "subscription auth secret is shorter than 16 bytes"
    return Subscription(token, endpoint, p256dh, auth)


def load_vapid_key(value: str) -> Vapid01:
    """A VAPID private key: base64url raw 32 bytes (what ``web-push generate-vapid-keys`` prints), base64
    DER, or PEM (``vapid --gen`` writes ``private_key.pem``)."""
    text = value.strip()
    if "-----BEGIN" in text:
        return Vapid.from_pem(text.encode("ascii"))
    return Vapid.from_string(text)


def public_key_b64url(vapid: Vapid01) -> str:
    """The public half of a VAPID key as base64url (no padding) of the uncompressed point: what
    ``PushManager.subscribe({applicationServerKey})`` takes and the ``k=`` of the Authorization header."""
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def topic_for(key: str) -> str:
    """RFC 8030 ``Topic``: at most 32 characters of the URL-safe base64 alphabet."""
    return base64.urlsafe_b64encode(hashlib.sha256(key.encode("utf-8")).digest()).decode("ascii")[:32]


class WebPushSettings(ChannelSettings):
    """Settings of the ``webpush`` adapter."""

    vapid_private_key: str | None = None
    """The application server's VAPID private key (P-256): base64url raw key, base64 DER or PEM. Write it in
    config as ``${WARND_VAPID_PRIVATE_KEY}``; the matching public key is what the web app subscribes with
    (``applicationServerKey``, also served at ``GET /api/v1/push/vapid-public-key``). Empty or absent: the key
    in ``vapid_private_key_file``, generated there on first start."""

    vapid_private_key_file: str = Field(default="vapid_private.pem", min_length=1)
    """PEM file of the key used when ``vapid_private_key`` is empty; relative paths are under data_dir. Created
    (mode 0600) with a new key when missing; keep it: subscriptions are bound to its public key."""

    vapid_subject: str
    """Contact for the push service operators: ``mailto:duty@example.gov.cn`` or an ``https://`` URL."""

    ttl: int = Field(default=3600, ge=0, le=28 * 24 * 3600)
    """Seconds the push service keeps the message for an offline device (``TTL`` header)."""

    @field_validator("vapid_private_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("vapid_private_key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            load_vapid_key(value)
        except Exception as exc:  # py_vapid raises ValueError, binascii.Error, VapidException…
            raise ValueError(
                "vapid_private_key is not a P-256 private key (base64url raw, base64 DER or PEM)"
            ) from exc
        return value

    @field_validator("vapid_subject")
    @classmethod
    def _check_subject(cls, value: str) -> str:
        if not value.startswith(("mailto:", "https://")):
            raise ValueError("vapid_subject must be a mailto: address or an https:// URL")
        return value


@dataclass(frozen=True)
class TokenTry:
    """What happened to one push token of a delivery (``where``: push service origin or a masked token)."""

    token: str
    where: str
    outcome: Outcome
    error: str = ""
    retry_after: float | None = None
    status: int | str | None = None
    expired: bool = False
    provider_message_id: str | None = None


class WebPushChannel(HttpChannel):
    """One encrypted, VAPID-signed POST per subscription of each recipient."""

    Settings: ClassVar[type[ChannelSettings]] = WebPushSettings
    settings: WebPushSettings
    address = Address.PUSH
    max_batch = 1

    def __init__(self, name: str, settings: ChannelSettings, *, data_dir: str):
        super().__init__(name, settings, data_dir=data_dir)
        self._vapid: Vapid01 | None = None
        self.key_file: Path | None = None  # where the key lives when it is not given in the settings
        if self.settings.vapid_private_key:
            self._vapid = load_vapid_key(self.settings.vapid_private_key)
        else:
            path = Path(self.settings.vapid_private_key_file).expanduser()
            self.key_file = path if path.is_absolute() else Path(data_dir) / path
        self._vapid_headers: dict[str, tuple[str, int]] = {}  # push service origin → (Authorization, exp)

    async def start(self) -> None:
        self.vapid  # noqa: B018 - load (or generate) the key file now, not at the first push
        await super().start()

    # --- the VAPID key ---------------------------------------------------------------------------------------

    @property
    def vapid(self) -> Vapid01:
        """The VAPID key: from the settings, else read from :attr:`key_file` (generated there when missing)."""
        if self._vapid is None:
            assert self.key_file is not None
            self._vapid = self._load_or_generate(self.key_file)
        return self._vapid

    @property
    def application_server_key(self) -> str:
        """The VAPID public key as the browser's ``applicationServerKey``: base64url uncompressed P-256 point."""
        return public_key_b64url(self.vapid)

    def _load_or_generate(self, path: Path) -> Vapid01:
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return self._generate(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"channel {self.name}: cannot read the VAPID key file {path}: {exc}") from exc
        try:
            vapid = load_vapid_key(text)
        except Exception as exc:  # py_vapid raises ValueError, VapidException, …
            raise ValueError(f"channel {self.name}: {path} is not a VAPID (P-256) private key") from exc
        log.info(
            "channel %s: VAPID key from %s; applicationServerKey %s",
            self.name,
            path,
            public_key_b64url(vapid),
        )
        return vapid

    def _generate(self, path: Path) -> Vapid01:
        # Vapid (= Vapid02, RFC 8292 "vapid t=…, k=…") like load_vapid_key: a Vapid01 would sign the draft-01
        # "WebPush <JWT>" header, which needs a Crypto-Key header this adapter does not send
        vapid = Vapid()
        vapid.generate_keys()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # created 0600 and exclusively: another process starting at the same moment keeps its key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self._load_or_generate(path)
        with os.fdopen(fd, "wb") as out:
            out.write(vapid.private_pem())
        log.warning(
            "channel %s: no vapid_private_key set; generated a new VAPID key in %s. Web apps subscribe with "
            "applicationServerKey %s (also at GET /api/v1/push/vapid-public-key)",
            self.name,
            path,
            public_key_b64url(vapid),
        )
        return vapid

    # ----------------------------------------------------------------------------------------------------

    def payload(self, message: OutgoingMessage) -> bytes:
        """The plaintext JSON (before encryption) for ``message``, cut to fit one Web Push record."""
        alert = message.alert or {}
        data: dict[str, Any] = {
            "alert_id": alert.get("id"),
            "identifier": alert.get("identifier"),
            "colour": alert.get("colour"),
            "level": alert.get("level"),
            "msg_type": alert.get("msg_type"),
        }
        data.update({k: v for k, v in (message.data or {}).items() if v is not None})
        document: dict[str, Any] = {
            "title": message.title or "",
            "body": message.body,
            "tag": collapse_key(message),
            "renotify": True,
            "requireInteraction": is_high_priority(message),
            "data": data,
        }
        encoded = _dumps(document)
        body = message.body
        while len(encoded) > MAX_PLAINTEXT and body:
            body = body[: max(0, len(body) - max(1, (len(encoded) - MAX_PLAINTEXT) // 3 + 1))]
            document["body"] = body + "…"
            encoded = _dumps(document)
        return encoded

    def headers(self, subscription: Subscription, message: OutgoingMessage) -> dict[str, str]:
        """TTL, Urgency, Topic and the VAPID Authorization for one subscription (content headers excluded)."""
        return {
            "TTL": str(self.settings.ttl),
            "Urgency": "high" if is_high_priority(message) else "normal",
            "Topic": topic_for(collapse_key(message)),
            "Authorization": self._authorization(subscription.origin),
        }

    def _authorization(self, origin: str) -> str:
        now = int(self.clock.now().timestamp())
        cached = self._vapid_headers.get(origin)
        if cached is not None and cached[1] - now > VAPID_RENEW:
            return cached[0]
        exp = now + VAPID_LIFETIME
        signed = self.vapid.sign({"sub": self.settings.vapid_subject, "aud": origin, "exp": exp})
        header = str(signed["Authorization"])
        self._vapid_headers[origin] = (header, exp)
        return header

    # ----------------------------------------------------------------------------------------------------

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not batch:
            return []
        if self._session is None or self._session.closed:
            await self.start()
        return list(await asyncio.gather(*(self._send_message(m) for m in batch)))

    def _subscriptions(self, message: OutgoingMessage) -> tuple[list[Subscription], list[str]]:
        tokens = list(message.recipient.push_tokens) or [message.address]
        found: list[Subscription] = []
        problems: list[str] = []
        seen: set[str] = set()
        for token in tokens:
            if token in seen:
                continue
            seen.add(token)
            parsed = parse_subscription(token)
            if isinstance(parsed, Subscription):
                found.append(parsed)
            else:
                problems.append(parsed)
        return found, problems

    async def _send_message(self, message: OutgoingMessage) -> SendResult:
        subscriptions, problems = self._subscriptions(message)
        if not subscriptions:
            reason = "no Web Push subscription among the recipient's push tokens"
            if problems:
                reason += f" ({'; '.join(sorted(set(problems)))})"
            return SendResult(message.delivery_id, Outcome.FAILED, error=reason)
        plaintext = self.payload(message)
        tries = await asyncio.gather(*(self._send_one(s, message, plaintext) for s in subscriptions))
        return combine_tries(message.delivery_id, tries)

    async def _send_one(
        self, subscription: Subscription, message: OutgoingMessage, plaintext: bytes
    ) -> TokenTry:
        t, o = subscription.token, subscription.origin
        try:
            encoded = WebPusher(subscription.info()).encode(plaintext, "aes128gcm")
        except (WebPushException, ValueError) as exc:  # a key that is not on the curve etc.
            return TokenTry(t, o, Outcome.FAILED, f"cannot encrypt for this subscription: {exc}")
        headers = self.headers(subscription, message)
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Encoding"] = "aes128gcm"
        answer: HttpAnswer = await self.exchange(
            "POST",
            subscription.endpoint,
            data=encoded["body"],
            headers=headers,
            seconds=self.settings.timeout,
        )
        if answer.outcome is None:
            return TokenTry(t, o, Outcome.ACCEPTED, status=answer.status)
        if answer.status in EXPIRED_STATUSES:
            log.info(
                "channel %s: delivery %s: subscription at %s expired (HTTP %s)",
                self.name,
                message.delivery_id,
                subscription.origin,
                answer.status,
            )
            return TokenTry(t, o, Outcome.FAILED, "subscription expired", status=answer.status, expired=True)
        log.warning(
            "channel %s: delivery %s: %s: %s",
            self.name,
            message.delivery_id,
            subscription.origin,
            answer.error,
        )
        return TokenTry(t, o, answer.outcome, answer.error, answer.retry_after, answer.status)


def _dumps(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def combine_tries(
    delivery_id: int, tries: Sequence[TokenTry], response: Mapping[str, Any] | None = None
) -> SendResult:
    """One delivery's result from its tokens' (accepted beats retry beats failed); expired tokens are
    reported in ``disable_tokens`` whatever the outcome."""
    disable = tuple(dict.fromkeys(t.token for t in tries if t.expired))
    response = {
        **(response or {}),
        "tokens": [{"to": t.where, "status": t.status, "outcome": t.outcome.value} for t in tries],
    }
    accepted = [t for t in tries if t.outcome is Outcome.ACCEPTED]
    if accepted:
        ids = [t.provider_message_id for t in accepted if t.provider_message_id]
        return SendResult(
            delivery_id,
            Outcome.ACCEPTED,
            provider_message_id=ids[0] if ids else None,
            response=response,
            disable_tokens=disable,
        )
    errors = "; ".join(dict.fromkeys(t.error for t in tries if t.error))
    retry = [t for t in tries if t.outcome is Outcome.RETRY]
    if retry:
        hints = [t.retry_after for t in retry if t.retry_after is not None]
        return SendResult(
            delivery_id,
            Outcome.RETRY,
            error=errors,
            retry_after=max(hints) if hints else None,
            response=response,
            disable_tokens=disable,
        )
    return SendResult(delivery_id, Outcome.FAILED, error=errors, response=response, disable_tokens=disable)


Settings = WebPushSettings
