"""What every HTTP adapter shares: one client session per channel, and one exchange that turns a request into
an :class:`HttpAnswer` — never an exception.

Classification (the same for every HTTP provider): 2xx → ``outcome`` None, the adapter reads the answer;
429 and 5xx → RETRY honouring ``Retry-After`` (seconds or HTTP-date); timeouts and connection errors → RETRY;
other statuses → FAILED with the status and an excerpt of the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Annotated, Any

import aiohttp
from pydantic import AfterValidator

from channels.base import Channel, Outcome, SendResult
from warnd.clock import Clock, SystemClock


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("url must start with http:// or https://")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]  # a provider URL in channel settings

RESPONSE_EXCERPT = 500  # characters of the provider's answer kept in SendResult.response
ERROR_EXCERPT = 200  # characters of the provider's answer quoted in SendResult.error


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (unix time): delta-seconds or an HTTP-date.

    None if absent or unparseable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None
            return None
        return max(0.0, when.timestamp() - now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def is_retryable_status(status: int) -> bool:
    """429 and 5xx are temporary; every other non-2xx status is permanent."""
    return status == 429 or 500 <= status <= 599


def transport_outcome(exc: BaseException) -> tuple[Outcome, str]:
    """Map a client-side exception to an outcome and a short reason."""
    if isinstance(exc, TimeoutError):
        return Outcome.RETRY, "timeout waiting for the provider"
    if isinstance(exc, aiohttp.InvalidURL):
        return Outcome.FAILED, f"invalid URL: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Outcome.RETRY, f"cannot connect: {exc.os_error.strerror or exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return Outcome.RETRY, "server disconnected"
    return Outcome.RETRY, f"{type(exc).__name__}: {exc}"


def decode_body(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class HttpAnswer:
    """One request's result. ``outcome`` is None for a 2xx answer (the adapter decides from ``text``), else
    RETRY or FAILED with ``error``; ``status`` is None when no answer came."""

    status: int | None
    text: str = ""
    outcome: Outcome | None = None
    error: str = ""
    retry_after: float | None = None

    @property
    def response(self) -> dict[str, Any]:
        """What is kept on the delivery event: status and an excerpt of the body."""
        return {"status": self.status, "body": self.text[:RESPONSE_EXCERPT]}

    def result(self, delivery_id: int) -> SendResult:
        """The SendResult of a delivery this (non-2xx) answer decides."""
        assert self.outcome is not None
        return SendResult(
            delivery_id, self.outcome, error=self.error, retry_after=self.retry_after, response=self.response
        )


class HttpChannel(Channel):
    """A channel that talks HTTP through one long-lived client session (opened in start, closed in close)."""

    _session: aiohttp.ClientSession | None = None
    clock: Clock = SystemClock()

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "warnd"}, connector=aiohttp.TCPConnector(limit=0)
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def exchange(
        self, method: str, url: str, *, data: bytes | None, headers: dict[str, str], seconds: float
    ) -> HttpAnswer:
        """Send one request (no redirects followed) and classify the answer."""
        if self._session is None or self._session.closed:
            await self.start()
        assert self._session is not None
        try:
            async with self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=seconds),
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                status = resp.status
                text = decode_body(raw, resp.charset)
                retry_after_header = resp.headers.get("Retry-After")
        except Exception as exc:  # provider trouble must become a result, never an exception
            outcome, reason = transport_outcome(exc)
            return HttpAnswer(None, outcome=outcome, error=reason)
        if 200 <= status <= 299:
            return HttpAnswer(status, text)
        excerpt = " ".join(text[:ERROR_EXCERPT].split())
        reason = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
        if is_retryable_status(status):
            retry_after = parse_retry_after(retry_after_header, now=self.clock.now().timestamp())
            return HttpAnswer(status, text, Outcome.RETRY, reason, retry_after)
        return HttpAnswer(status, text, Outcome.FAILED, reason)
