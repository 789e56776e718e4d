"""The interface every channel adapter implements.

A channel adapter turns a batch of outgoing messages into provider requests and reports, per message, what the
provider said. It never touches the database: the dispatcher claims deliveries, calls :meth:`Channel.send`, and
records the results. Everything provider-specific (request shape, error codes, batching limits) stays inside
the adapter; everything it knows about a failure is expressed as a :class:`SendResult`.

To add a channel: write one module in ``channels/`` with a ``Settings`` model (pydantic) and a ``Channel``
subclass, add one line to ``channels.REGISTRY``, and add its test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Address(StrEnum):
    """Which of a recipient's addresses a channel sends to."""

    PHONE = "phone"  # SMS, voice
    PUSH = "push"  # app / web push tokens
    TERMINAL = "terminal"  # loudspeaker terminal id
    ANY = "any"  # the channel does not need a personal address (webhook, file)


def can_address(kind: str, recipient: Mapping[str, Any]) -> bool:
    """Whether a recipient row has the address a channel of this kind (an :class:`Address` value) sends to."""
    if kind == Address.PHONE:
        return bool(recipient.get("phone"))
    if kind == Address.PUSH:
        return bool(recipient.get("push_tokens"))
    if kind == Address.TERMINAL:
        return bool(recipient.get("terminal_id"))
    return True


@dataclass(frozen=True)
class Recipient:
    key: str  # stable recipient key (phone for people, terminal id for terminals)
    name: str
    kind: str  # "person" | "terminal"
    role: str
    area_code: str
    language: str
    phone: str | None = None
    push_tokens: tuple[str, ...] = ()
    terminal_id: str | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    """One delivery to send: one recipient, one rendered content."""

    delivery_id: int
    idempotency_key: (
        str  # "<alert revision id>:<recipient id>:<channel>"; forward it where the provider takes one
    )
    recipient: Recipient
    address: str  # the address picked for this channel (phone, terminal id, key); push: first token
    body: str  # what the recipient sees or hears (SMS: 【signature】 + content)
    content_key: str  # identical content_key => identical body/title/data: may share one provider request
    title: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)  # push data; SMS: {"signature": …, "content": …}
    segments: int = 1  # SMS segments by the 70/67 rule (1 elsewhere)
    repeat: int = 1  # how many times a loudspeaker should play it
    priority: int = 4  # 1 = red / most urgent ... 4 = blue; drills and tests 9
    alert: Mapping[str, Any] = field(
        default_factory=dict
    )  # id, identifier, colour, level, msg_type, status, expires
    # idempotency keys of this recipient's earlier sent deliveries on this channel in the same alert chain
    # (filled for Update and Cancel), so a terminal can stop / replace what it was told before
    references: tuple[str, ...] = ()


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the provider took it (does not mean the handset has it)
    RETRY = "retry"  # temporary failure: timeouts, 5xx, 429, connection errors
    FAILED = "failed"  # permanent failure: bad number, 4xx, provider refusal


@dataclass(frozen=True)
class SendResult:
    delivery_id: int
    outcome: Outcome
    provider_message_id: str | None = None
    # one provider id per part when the provider numbers parts separately (SMPP: one per submit_sm); empty =
    # every part (SMS segment) goes by ``provider_message_id``. Receipts are matched by these (docs/feedback.md).
    part_ids: tuple[str, ...] = ()
    error: str | None = None  # the provider's reason, in its own words where it gave one
    retry_after: float | None = None  # seconds, from Retry-After or the provider's own hint
    response: Mapping[str, Any] | None = None  # status code / excerpt kept in delivery events
    # Push tokens of this recipient the provider says are gone for good (Web Push 404/410, FCM UNREGISTERED,
    # JPush 1011): the dispatcher removes them from the recipient's push_tokens so they are not used again.
    disable_tokens: tuple[str, ...] = ()
    # The recipient's endpoint is down (a loudspeaker terminal offline), not the message or the provider: with
    # FAILED, the dispatcher counts it against that target's circuit breaker and may fail over (rules
    # ``failover`` / ``failover_groups``). A bad phone number is FAILED without this flag.
    unreachable: bool = False


class FeedbackSink(Protocol):
    """Where adapters report what happened after a send (a terminal's play state, a delivery receipt).

    ``msg_id`` is the delivery's idempotency key as the adapter sent it (or ``<adapter>:<provider id>`` when the
    adapter does not know it); ``state`` the reported state (e.g. ``playing``, ``success``, ``DELIVRD``);
    ``detail`` whatever else came with it — ``message_id`` there is the provider's id of the part reported on.
    What a state means for the delivery is :mod:`warnd.receipts`'. Unknown msg_ids are recorded too."""

    async def record(self, channel: str, msg_id: str, state: str, detail: Mapping[str, Any]) -> None: ...

    async def reply(self, channel: str, phone: str, text: str, detail: Mapping[str, Any]) -> None:
        """A mobile-originated SMS (e.g. 「收到」 answering a warning that asked for 叫应)."""
        ...


class BreakerSettings(BaseModel):
    """The channel's circuit breaker (``breaker:`` in a channel's settings; docs/failover.md).

    Only provider / transport failures count (a request whose every message came back RETRY: timeouts, 5xx,
    429, connection errors); a provider that answers, even with a per-number refusal, counts as a success."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(5, ge=1)  # consecutive failed requests that open the breaker
    error_rate: float = Field(0.5, gt=0, le=1)  # ... or this share of failed requests within ``window``
    window: float = Field(60.0, gt=0)  # seconds
    min_attempts: int = Field(10, ge=1)  # requests within ``window`` before ``error_rate`` applies
    open_for: float = Field(30.0, gt=0)  # seconds open before half-open probes are let through
    probes: int = Field(1, ge=1)  # requests let through while half-open; a success closes, a failure re-opens
    target_failures: int = Field(1, ge=1)  # per terminal: "unreachable" results in a row that open it


class ChannelSettings(BaseModel):
    """Settings every channel has; adapters extend this with their own fields."""

    model_config = ConfigDict(extra="forbid")

    adapter: str
    template: str | None = None  # template name under templates/<lang>/ (default: the channel's name)
    style: str | None = None  # "sms" | "spoken" | "push" | "text"; default follows the template name
    signature: str | None = None  # SMS signature without brackets, e.g. 梁平区应急管理局 (style sms)
    max_chars: int | None = None  # content cap (SMS platforms ~500, loudspeaker text 500)
    concurrency: int = 4  # requests in flight at once
    rate_per_second: float | None = None  # messages per second; None = unlimited
    requests_per_second: float | None = None  # provider requests/s (a batch is one); None = unlimited
    max_attempts: int = 8
    backoff_initial: float = 2.0  # seconds; doubles per attempt, full jitter
    backoff_max: float = 300.0
    timeout: float = 10.0  # seconds per provider request
    breaker: BreakerSettings = BreakerSettings()  # circuit breaker (warnd/health.py, docs/failover.md)

    # Secrets (gateway keys, tokens) are written in config as ${ENV_VAR}; the loader substitutes them and
    # reports a missing variable as a configuration error, so settings hold plain values here.


class Channel:
    """Base class of channel adapters.

    ``max_batch`` is how many messages with the same ``content_key`` one provider request may carry; the
    dispatcher hands :meth:`send` at most that many, all with the same content_key when ``max_batch > 1``.
    """

    Settings: ClassVar[type[ChannelSettings]] = ChannelSettings
    address: Address = Address.ANY  # adapters may set it per instance from their settings
    max_batch: int = 1

    def __init__(self, name: str, settings: ChannelSettings, *, data_dir: str):
        self.name = name
        # the registry may hand the generic ChannelSettings; each adapter reads its own Settings model
        self.settings = (
            settings
            if isinstance(settings, self.Settings)
            else self.Settings.model_validate(settings.model_dump())
        )
        self.data_dir = data_dir  # where file-writing adapters put their output
        self.feedback: FeedbackSink | None = None  # set by the app; adapters with receipts use it

    async def start(self) -> None:
        """Open connections; called once before the first send."""

    async def close(self) -> None:
        """Release connections; in-flight sends have finished when this is called."""

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send the batch; return exactly one result per message, in any order. Must not raise for provider
        errors (return RETRY/FAILED results instead); an exception is treated as RETRY for the whole batch."""
        raise NotImplementedError
