"""SMPP 3.4 to a carrier's SMS centre (短信中心), the second SMS provider kind beside ``sms_http``.

One long-lived ``bind_transceiver`` session per channel: submits and delivery receipts share it. PDUs are
encoded and decoded by smpplib (its ``smpp``/``gsm`` modules only; its blocking client is not used); the
session — sequence numbers, responses matched to requests, ``enquire_link`` keep-alive, reconnect — is
asyncio here.

* Text: GSM 7-bit where it fits, otherwise UCS-2 (``data_coding`` 8, every Chinese message). A long message
  is split into concatenated parts with a UDH (67 UCS-2 characters per part); each part is one ``submit_sm``
  and the delivery is ACCEPTED only when every part is (provider message ids joined with ``,``).
* Outcomes: ``submit_sm_resp`` status 0 → ACCEPTED; throttled / queue full / system error → RETRY; an invalid
  destination or any other status → FAILED with the SMPP error name; no answer within ``response_timeout``,
  a lost connection or a failed bind → RETRY (the outbox re-sends; carriers do not deduplicate SMPP, so a
  message can be sent twice only if the connection drops after the SMSC accepted it and before it answered).
* Receipts: ``deliver_sm`` with a delivery receipt (esm_class bit 2) is answered at once and reported to the
  channel's feedback sink with the state (``DELIVRD``, ``UNDELIV``, ``EXPIRED`` …) and the part's message id;
  receipts for messages sent before a restart are kept as unknown reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field
from smpplib import consts, gsm, smpp
from smpplib.command import Command

from channels.base import Address, Channel, ChannelSettings, Outcome, OutgoingMessage, SendResult
from warnd.logs import mask_phone

log = logging.getLogger(__name__)

RETRYABLE = {
    consts.SMPP_ESME_RTHROTTLED,
    consts.SMPP_ESME_RMSGQFUL,
    consts.SMPP_ESME_RSYSERR,
    consts.SMPP_ESME_RSUBMITFAIL,
}
MAX_PDU = 64 * 1024
ESM_TYPE_MASK, ESM_DELIVERY_RECEIPT = 0x3C, 0x04  # deliver_sm esm_class bits 5-2: SMSC delivery receipt
SENT_IDS_KEPT = 500_000  # message ids remembered for matching receipts (~100 bytes each)
_RECEIPT = re.compile(r"id:(?P<id>\S+).*?stat:(?P<stat>[A-Z]+)(?:.*?err:(?P<err>\w+))?", re.S)
_STATUS_NAMES = {
    value: name.removeprefix("SMPP_ESME_")
    for name, value in vars(consts).items()
    if name.startswith("SMPP_ESME_") and isinstance(value, int)
}


class SmppSettings(ChannelSettings):
    """Settings of the ``smpp`` adapter."""

    host: str
    port: int = Field(2775, ge=1, le=65535)
    system_id: str = Field(max_length=16)
    password: str = Field(max_length=9)  # write ${WARND_SMPP_PASSWORD}
    system_type: str = ""
    source_addr: str  # the 短信接入号 (long code) messages come from
    source_addr_ton: int = 0
    source_addr_npi: int = 1
    dest_addr_ton: int = 0
    dest_addr_npi: int = 1
    service_type: str = ""
    window: int = Field(10, ge=1, le=100)  # submit_sm in flight at once
    response_timeout: float = 10.0  # seconds to wait for any *_resp
    enquire_link_interval: float = 30.0
    registered_delivery: bool = True  # ask for delivery receipts


class _Closed(Exception):
    pass


class SmppChannel(Channel):
    """SMS over SMPP 3.4 (bind_transceiver, submit_sm, deliver_sm receipts, enquire_link)."""

    Settings: ClassVar[type[ChannelSettings]] = SmppSettings
    settings: SmppSettings
    address = Address.PHONE

    def __init__(self, name: str, settings: ChannelSettings, *, data_dir: str):
        super().__init__(name, settings, data_dir=data_dir)
        self.max_batch = self.settings.window
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Command]] = {}
        self._sequence = 0
        self._connect_lock = asyncio.Lock()
        self._window = asyncio.Semaphore(self.settings.window)
        self._sent_ids: dict[str, str] = {}  # SMSC message id → our msg_id (idempotency key), for receipts

    # --- session ------------------------------------------------------------------------------------------

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def start(self) -> None:
        """Bind now if the SMSC is reachable; otherwise the first send binds (and retries until it can)."""
        try:
            await self._ensure_bound()
        except (OSError, TimeoutError, _Closed) as exc:
            log.warning(
                "channel %s: cannot bind to %s:%s yet: %s",
                self.name,
                self.settings.host,
                self.settings.port,
                exc,
            )

    async def _ensure_bound(self) -> None:
        async with self._connect_lock:
            if self.connected:
                return
            s = self.settings
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(s.host, s.port), s.response_timeout
            )
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_loop(reader, writer))
            resp = await self._request(
                "bind_transceiver",
                system_id=s.system_id,
                password=s.password,
                system_type=s.system_type,
                interface_version=0x34,
                addr_ton=0,
                addr_npi=0,
                address_range="",
            )
            if resp.status != consts.SMPP_ESME_ROK:
                await self._drop(f"bind refused: {_status_name(resp.status)}")
                raise _Closed(f"bind refused: {_status_name(resp.status)}")
            self._keepalive_task = asyncio.create_task(self._keepalive(writer))
            log.info("channel %s: bound to %s:%s as %s", self.name, s.host, s.port, s.system_id)

    async def close(self) -> None:
        if self.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._request("unbind"), 2)
        await self._drop("closed")

    async def _drop(self, why: str) -> None:
        writer, self._writer = self._writer, None
        for task in (self._keepalive_task, self._reader_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_Closed(why))
        self._pending.clear()
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _write(self, pdu: Command, writer: asyncio.StreamWriter | None = None) -> None:
        target = writer or self._writer
        if target is None or target.is_closing():
            raise _Closed("not connected")
        target.write(pdu.generate())

    async def _request(self, command: str, **fields: Any) -> Command:
        pdu = _pdu(command, self._next_sequence(), **fields)
        future: asyncio.Future[Command] = asyncio.get_running_loop().create_future()
        self._pending[pdu.sequence] = future
        try:
            self._write(pdu)
            return await asyncio.wait_for(future, self.settings.response_timeout)
        finally:
            self._pending.pop(pdu.sequence, None)

    async def _keepalive(self, writer: asyncio.StreamWriter) -> None:
        while self._writer is writer:
            await asyncio.sleep(self.settings.enquire_link_interval)
            try:
                await self._request("enquire_link")
            except (TimeoutError, _Closed):
                log.warning("channel %s: enquire_link unanswered; reconnecting at the next send", self.name)
                await self._drop("enquire_link unanswered")
                return

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        why = "connection closed by the SMSC"
        try:
            while True:
                header = await reader.readexactly(4)
                (length,) = struct.unpack(">L", header)
                if not 16 <= length <= MAX_PDU:
                    why = f"bad PDU length {length}"
                    break
                pdu = smpp.parse_pdu(header + await reader.readexactly(length - 4), sequence=0)
                if pdu is None:
                    continue
                await self._handle(pdu, writer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except Exception as exc:  # a PDU smpplib cannot parse: drop the session rather than guess
            why = f"unreadable PDU: {exc}"
            log.exception("channel %s: %s", self.name, why)
        if self._writer is writer:
            log.warning("channel %s: %s", self.name, why)
            await self._drop(why)

    async def _handle(self, pdu: Command, writer: asyncio.StreamWriter) -> None:
        command = str(pdu.command)
        if command.endswith("_resp") or command == "generic_nack":
            future = self._pending.get(pdu.sequence)
            if future is not None and not future.done():
                future.set_result(pdu)
            return
        if command == "enquire_link":
            self._write(_pdu("enquire_link_resp", pdu.sequence), writer)
        elif command == "deliver_sm":
            self._write(_pdu("deliver_sm_resp", pdu.sequence, message_id=""), writer)
            await self._receipt(pdu)
        elif command == "unbind":
            self._write(_pdu("unbind_resp", pdu.sequence), writer)
            await self._drop("unbound by the SMSC")
        else:
            self._write(_pdu("generic_nack", pdu.sequence, status=consts.SMPP_ESME_RINVCMDID), writer)

    async def _receipt(self, pdu: Command) -> None:
        if int(pdu.esm_class or 0) & ESM_TYPE_MASK != ESM_DELIVERY_RECEIPT:
            # a mobile-originated SMS: a person answering (叫应 keywords are warnd.acks' business)
            if self.feedback is not None:
                await self.feedback.reply(
                    self.name,
                    _text(pdu.source_addr),
                    _decode(pdu),
                    {"via": "smpp", "to": _text(pdu.destination_addr)},
                )
            return
        text = _text(pdu.short_message)
        found = _RECEIPT.search(text)
        message_id = _text(getattr(pdu, "receipted_message_id", None)) or (found["id"] if found else "")
        state = found["stat"] if found else str(getattr(pdu, "message_state", "") or "unknown")
        detail = {
            "message_id": message_id,
            "error": found["err"] if found and found["err"] else None,
            "phone": mask_phone(_text(pdu.source_addr)),
            "receipt": text[:300],
        }
        msg_id = self._sent_ids.get(message_id, f"smpp:{message_id}")
        if self.feedback is not None:
            await self.feedback.record(self.name, msg_id, state, detail)

    def _remember(self, message_id: str, msg_id: str) -> None:
        self._sent_ids[message_id] = msg_id
        if len(self._sent_ids) > SENT_IDS_KEPT:  # receipts come within hours; keep the newest only
            self._sent_ids.pop(next(iter(self._sent_ids)))

    # --- sending --------------------------------------------------------------------------------------------

    async def send(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        try:
            await self._ensure_bound()
        except (OSError, TimeoutError, _Closed) as exc:
            reason = f"cannot bind to the SMSC: {exc}"
            return [SendResult(m.delivery_id, Outcome.RETRY, error=reason) for m in batch]
        return list(await asyncio.gather(*(self._send_one(m) for m in batch)))

    async def _send_one(self, message: OutgoingMessage) -> SendResult:
        phone = message.address or message.recipient.phone
        if not phone:
            return SendResult(message.delivery_id, Outcome.FAILED, error="recipient has no phone number")
        s = self.settings
        parts, data_coding, esm_class = gsm.make_parts(message.body)
        ids: list[str] = []
        async with self._window:
            for part in parts:
                try:
                    resp = await self._request(
                        "submit_sm",
                        service_type=s.service_type,
                        source_addr_ton=s.source_addr_ton,
                        source_addr_npi=s.source_addr_npi,
                        source_addr=s.source_addr,
                        dest_addr_ton=s.dest_addr_ton,
                        dest_addr_npi=s.dest_addr_npi,
                        destination_addr=phone.removeprefix("+"),
                        esm_class=esm_class,
                        data_coding=data_coding,
                        registered_delivery=1 if s.registered_delivery else 0,
                        short_message=part,
                    )
                except (TimeoutError, _Closed) as exc:
                    reason = "no answer from the SMSC" if isinstance(exc, TimeoutError) else str(exc)
                    return SendResult(
                        message.delivery_id, Outcome.RETRY, error=_parts_note(reason, ids, parts)
                    )
                if resp.status != consts.SMPP_ESME_ROK:
                    name = _status_name(resp.status)
                    outcome = Outcome.RETRY if resp.status in RETRYABLE else Outcome.FAILED
                    log.warning("channel %s: submit_sm to %s: %s", self.name, mask_phone(phone), name)
                    return SendResult(
                        message.delivery_id,
                        outcome,
                        error=_parts_note(f"SMSC: {name}", ids, parts),
                        response={"status": int(resp.status), "parts": len(parts)},
                    )
                ids.append(_text(resp.message_id))
                self._remember(ids[-1], message.idempotency_key)
        return SendResult(
            message.delivery_id,
            Outcome.ACCEPTED,
            provider_message_id=",".join(ids),
            part_ids=tuple(ids),
            response={"status": 0, "parts": len(parts)},
        )


def _pdu(command: str, sequence: int, **fields: Any) -> Command:
    pdu: Command = smpp.make_pdu(command, sequence=sequence, **fields)
    pdu.sequence = sequence  # smpplib's own sequence comes from its blocking client
    return pdu


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _decode(pdu: Command) -> str:
    """The text of a mobile-originated message: UCS-2 (data_coding 8, every Chinese reply) or GSM/Latin-1."""
    raw = pdu.short_message or b""
    if isinstance(raw, str):
        return raw
    if int(pdu.data_coding or 0) == 8:
        return raw.decode("utf-16-be", errors="replace")
    return raw.decode("latin-1")


def _status_name(status: int) -> str:
    return f"{_STATUS_NAMES.get(status, 'UNKNOWN')} (0x{status:08X})"


def _parts_note(reason: str, ids: list[str], parts: Sequence[bytes]) -> str:
    if len(parts) == 1:
        return reason
    return f"{reason} (after {len(ids)} of {len(parts)} parts)"
