"""Village loudspeaker terminals (应急广播 / 大喇叭) over MQTT.

One long-lived MQTT client per channel, with its own reconnect loop, a fixed client id and a persistent
session (``clean_session=False``), so the broker keeps the subscriptions and queued QoS 1 messages across
restarts of either side. Topics, under ``topic_prefix`` (default ``warnd/loudspeaker``):

- ``<prefix>/terminal/<terminal id>/cmd`` — the commands warnd publishes (one per delivery, QoS 1);
- ``<prefix>/area/<admin code>/cmd`` — the area topic terminals may subscribe to instead (documented for
  terminal firmware; warnd publishes per terminal, so every command is a delivery of its own);
- ``<prefix>/terminal/<terminal id>/status`` — play-state reports, recorded as delivery feedback;
- ``<prefix>/terminal/<terminal id>/heartbeat`` — heartbeats, keeping the in-memory online map.

Outcomes: ACCEPTED only once the broker's PUBACK arrived; broker unreachable, a publish timing out or the
connection dropping → RETRY (the outbox re-sends with the same ``msg_id``; terminals drop repeats by it);
a terminal that missed ``heartbeat_timeout`` → FAILED "terminal offline (…)" so failover can act. A terminal
never heard from since the channel started counts as online until ``heartbeat_timeout`` after the start.
The command payload is built by :func:`command` (its fields are documented in docs/channels.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

import aiomqtt
from pydantic import Field, field_validator

from channels.base import Address, Channel, ChannelSettings, Outcome, OutgoingMessage, SendResult
from warnd.clock import Clock, SystemClock

log = logging.getLogger(__name__)

MAX_TEXT = 500  # GY/T 385 text limit, in characters

# EBM severity (early-warning-cn.md §1, §7): 1 red … 4 blue, 0 unknown, 15 test (drills and tests)
SEVERITY = {"red": 1, "orange": 2, "yellow": 3, "blue": 4}
SEVERITY_TEST = 15
DRILL = {"Actual": "none", "Exercise": "exercise", "Test": "test"}
# play states as terminals report them, by GY/T 385 number or by name
PLAY_STATES = ("pending", "waiting", "playing", "success", "failed", "cancelled")


class MqttLoudspeakerSettings(ChannelSettings):
    """Settings of the ``mqtt_loudspeaker`` adapter."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None  # write as ${WARND_MQTT_USER}
    password: str | None = None  # write as ${WARND_MQTT_PASSWORD}
    tls: bool = False
    ca_file: str | None = None  # a CA bundle for the broker's certificate (implies tls)
    client_id: str | None = None
    """Fixed MQTT client id of the persistent session. Default ``warnd-<channel name>``; must be unique per
    daemon on a broker."""
    topic_prefix: str = "warnd/loudspeaker"
    qos: Literal[1, 2] = 1
    keepalive: int = Field(default=60, ge=5)
    heartbeat_timeout: float = Field(default=90.0, gt=0)
    """Seconds without a heartbeat after which a terminal is offline and its deliveries fail (failover)."""
    volume: int = Field(default=80, ge=1, le=100)
    """Playback volume in per cent, sent in every command."""
    red_volume: int | None = Field(default=None, ge=1, le=100)
    """Volume for red warnings (default: ``volume``)."""
    connect_wait: float = Field(default=5.0, ge=0)
    """How long a send waits for the first connection before answering RETRY."""
    reconnect_min: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)
    audio_base_url: str | None = None
    """Where terminals fetch the rendered WAV (``http://<warnd>/api/v1/audio``); with it, commands whose script
    was rendered to audio (espeak-ng installed) carry ``audio_url``. Without it: ``audio`` (the file name) only."""

    @field_validator("username", "password", "ca_file", "client_id", "audio_base_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty string is "not set", so ``${WARND_MQTT_USER:-}`` with the variable unset means no user."""
        if isinstance(value, str) and not value.strip():
            return None
        return value


@dataclass
class TerminalState:
    last_seen: datetime
    state: str | None = None  # idle | working | fault, as the terminal reported


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def spoken_text(body: str, limit: int = MAX_TEXT) -> str:
    """``body`` cut to ``limit`` characters, at the last sentence end in the final fifth when there is one."""
    text = body.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(p) for p in "。！？；!?;")
    return cut[: end + 1] if end >= limit * 4 // 5 else cut


def command(message: OutgoingMessage, settings: MqttLoudspeakerSettings, now: datetime) -> dict[str, Any]:
    """The command document published for ``message`` (docs/channels.md, "mqtt_loudspeaker")."""
    alert = message.alert or {}
    status = alert.get("status") or "Actual"
    colour = alert.get("colour") or ""
    drill = DRILL.get(status, "none")
    severity = SEVERITY_TEST if drill != "none" else SEVERITY.get(colour, 0)
    red = severity == 1
    cancel = alert.get("msg_type") == "Cancel"
    references = list(message.references)
    if cancel and not references:
        references = [str(alert.get("root_identifier") or alert.get("identifier") or "")]
    max_chars = min(settings.max_chars or MAX_TEXT, MAX_TEXT)
    return {
        "msg_id": message.idempotency_key,
        "type": "cancel" if cancel else "broadcast",
        "references": references,
        "severity": severity,
        "event_type": alert.get("hazard_code") or "",
        "event": alert.get("event") or "",
        "start_time": _iso(alert.get("effective")) or now.isoformat(),
        "end_time": _iso(alert.get("expires")),
        "area_codes": [message.recipient.area_code],
        "text": spoken_text(message.body, max_chars),
        "repeat": max(1, message.repeat),
        "volume": (settings.red_volume or settings.volume) if red else settings.volume,
        "drill": drill,
        "priority": 0 if drill != "none" else max(0, 5 - message.priority),  # larger = more urgent
        "interrupt": red and drill == "none",
        "alert_identifier": alert.get("identifier"),
        "sent_at": now.isoformat(),
        **_audio(message, settings),
    }


def _audio(message: OutgoingMessage, settings: MqttLoudspeakerSettings) -> dict[str, str]:
    """``audio`` / ``audio_url`` when the script was rendered to a WAV (warnd/audio.py)."""
    name = (message.data or {}).get("audio")
    if not name:
        return {}
    if settings.audio_base_url:
        return {"audio": str(name), "audio_url": f"{settings.audio_base_url.rstrip('/')}/{name}"}
    return {"audio": str(name)}


class MqttLoudspeakerChannel(Channel):
    """Commands to loudspeaker terminals over MQTT; play-state feedback and heartbeats back."""

    Settings: ClassVar[type[ChannelSettings]] = MqttLoudspeakerSettings
    settings: MqttLoudspeakerSettings
    address = Address.TERMINAL
    max_batch = 1

    def __init__(self, name: str, settings: ChannelSettings, *, data_dir: str):
        super().__init__(name, settings, data_dir=data_dir)
        self.clock: Clock = SystemClock()
        self.client_id = self.settings.client_id or f"warnd-{name}"
        self.prefix = self.settings.topic_prefix.rstrip("/")
        self.terminals: dict[str, TerminalState] = {}
        self.started_at: datetime | None = None
        self.last_error: str | None = None
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()  # set once the first connection attempt has ended either way
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # --- topics ---------------------------------------------------------------------------------------------

    def command_topic(self, terminal_id: str) -> str:
        return f"{self.prefix}/terminal/{terminal_id}/cmd"

    def area_topic(self, admin_code: str) -> str:
        return f"{self.prefix}/area/{admin_code}/cmd"

    # --- connection -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._closing = False
        self.started_at = self.clock.now()
        self._task = asyncio.create_task(self._run(), name=f"mqtt:{self.name}")

    async def close(self) -> None:
        self._closing = True
        task = self._task
        if task is not None:
            # Cancel until it ends: on Python 3.11 a cancel that lands as aiomqtt's internal wait_for completes
            # (CONNACK, SUBACK) is swallowed, and the task would then wait for messages for ever.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        self._task = None
        self._client = None
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, seconds: float) -> bool:
        """True once connected and subscribed (waiting up to ``seconds``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), seconds)
        return self._connected.is_set()

    def _tls_context(self) -> ssl.SSLContext | None:
        if not (self.settings.tls or self.settings.ca_file):
            return None
        return ssl.create_default_context(cafile=self.settings.ca_file)

    async def _run(self) -> None:
        delay = self.settings.reconnect_min
        while not self._closing:
            client = aiomqtt.Client(
                self.settings.host,
                self.settings.port,
                username=self.settings.username,
                password=self.settings.password,
                identifier=self.client_id,
                clean_session=False,
                keepalive=self.settings.keepalive,
                timeout=self.settings.timeout,
                tls_context=self._tls_context(),
            )
            try:
                async with client:
                    await client.subscribe(f"{self.prefix}/terminal/+/status", qos=self.settings.qos)
                    await client.subscribe(f"{self.prefix}/terminal/+/heartbeat", qos=self.settings.qos)
                    self._client = client
                    self.last_error = None
                    delay = self.settings.reconnect_min
                    self._connected.set()
                    self._attempted.set()
                    log.info(
                        "channel %s: connected to mqtt %s:%s",
                        self.name,
                        self.settings.host,
                        self.settings.port,
                    )
                    async for incoming in client.messages:
                        await self._handle(incoming)
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc) or type(exc).__name__
                log.warning("channel %s: mqtt connection: %s; reconnecting in %.0fs", self.name, exc, delay)
            finally:
                self._client = None
                self._connected.clear()
                self._attempted.set()
            if self._closing:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.reconnect_max)

    # --- incoming: heartbeats and play states ---------------------------------------------------------------

    async def _handle(self, incoming: aiomqtt.Message) -> None:
        topic = str(incoming.topic)
        parts = topic[len(self.prefix) + 1 :].split("/") if topic.startswith(self.prefix + "/") else []
        if len(parts) != 3 or parts[0] != "terminal":
            return
        terminal, kind = parts[1], parts[2]
        raw = incoming.payload
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw or "")
        try:
            document = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            document = {"raw": text[:500]}
        if not isinstance(document, Mapping):
            document = {"raw": text[:500]}
        now = self.clock.now()
        if kind == "heartbeat":
            self.terminals[terminal] = TerminalState(last_seen=now, state=_str(document.get("state")))
        elif kind == "status":
            # a status report also proves the terminal is alive
            known = self.terminals.get(terminal)
            self.terminals[terminal] = TerminalState(last_seen=now, state=known.state if known else None)
            try:
                await self._feedback(terminal, document)
            except Exception:  # the store failing must not take the connection down
                log.exception("channel %s: recording feedback from %s failed", self.name, terminal)

    async def _feedback(self, terminal: str, document: Mapping[str, Any]) -> None:
        state = document.get("state")
        if isinstance(state, int) and 0 <= state < len(PLAY_STATES):
            state = PLAY_STATES[state]
        state_name = str(state) if state is not None else "unknown"
        msg_id = _str(document.get("msg_id")) or ""
        detail = {
            "terminal": terminal,
            "state": state_name,
            "play_count": document.get("play_count"),
            "reported_at": _str(document.get("time")),
            "received_at": self.clock.now().isoformat(),
        }
        extra = {k: v for k, v in document.items() if k not in ("msg_id", "state", "play_count", "time")}
        if extra:
            detail["extra"] = extra
        if self.feedback is None:
            log.warning("channel %s: feedback with nowhere to record it: %s %s", self.name, msg_id, detail)
            return
        await self.feedback.record(self.name, msg_id, state_name, detail)

    # --- online map ------------------------------------------------------------------------------------------

    def offline_reason(self, terminal_id: str) -> str | None:
        """None when the terminal counts as online, else why it does not."""
        now = self.clock.now()
        timeout = self.settings.heartbeat_timeout
        known = self.terminals.get(terminal_id)
        if known is not None:
            if (now - known.last_seen).total_seconds() <= timeout:
                return None
            return f"terminal offline (no heartbeat since {known.last_seen.isoformat()})"
        started = self.started_at or now
        if (now - started).total_seconds() <= timeout:
            return None
        return f"terminal offline (no heartbeat since {started.isoformat()}, when the channel started)"

    def online(self, terminal_id: str) -> bool:
        return self.offline_reason(terminal_id) is None

    # --- sending --------------------------------------------------------------------------------------------

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not batch:
            return []
        if self._task is None or self._task.done():
            await self.start()
        if not self._connected.is_set() and not self._attempted.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attempted.wait(), self.settings.connect_wait)
        return list(await asyncio.gather(*(self._send_one(m) for m in batch)))

    async def _send_one(self, message: OutgoingMessage) -> SendResult:
        terminal = message.recipient.terminal_id or message.address
        offline = self.offline_reason(terminal)
        if offline is not None:
            return SendResult(message.delivery_id, Outcome.FAILED, error=offline, unreachable=True)
        client = self._client
        if client is None or not self._connected.is_set():
            reason = f"mqtt broker {self.settings.host}:{self.settings.port} unreachable"
            if self.last_error:
                reason += f": {self.last_error}"
            return SendResult(message.delivery_id, Outcome.RETRY, error=reason)
        topic = self.command_topic(terminal)
        document = command(message, self.settings, self.clock.now())
        payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            await client.publish(
                topic, payload, qos=self.settings.qos, retain=False, timeout=self.settings.timeout
            )
        except (aiomqtt.MqttError, TimeoutError) as exc:
            return SendResult(
                message.delivery_id, Outcome.RETRY, error=f"mqtt publish to {topic} failed: {exc}"
            )
        return SendResult(
            message.delivery_id,
            Outcome.ACCEPTED,
            provider_message_id=document["msg_id"],
            response={"topic": topic, "type": document["type"], "priority": document["priority"]},
        )


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


Settings = MqttLoudspeakerSettings
