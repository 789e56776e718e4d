"""A fake SMS centre speaking SMPP 3.4 over a real TCP socket on 127.0.0.1 (PDUs through smpplib).

It binds one ESME with a password, answers submit_sm with message ids (reassembling concatenated UCS-2 parts
into ``messages``), answers enquire_link, and can send delivery receipts, refuse submits with a status, stay
silent, or drop the connection.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from dataclasses import dataclass, field
from typing import Any

from smpplib import consts, smpp
from smpplib.command import Command


@dataclass
class Submitted:
    phone: str
    text: str
    message_ids: list[str]


@dataclass
class FakeSmsc:
    system_id: str = "warnd"
    password: str = "secret"
    host: str = "127.0.0.1"
    port: int = 0
    submits: list[Command] = field(default_factory=list)  # every submit_sm, in order
    messages: list[Submitted] = field(default_factory=list)  # whole messages, parts joined
    binds: int = 0
    enquire_links: int = 0
    refuse_next: list[int] = field(default_factory=list)  # statuses for the next submits
    silent: bool = False  # accept submits but never answer
    _server: asyncio.base_events.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _partial: dict[tuple[str, int], dict[int, tuple[bytes, str]]] = field(default_factory=dict)
    _seq: Any = field(default_factory=lambda: itertools.count(1000))

    async def __aenter__(self) -> FakeSmsc:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def drop_connections(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await asyncio.sleep(0)

    async def receipt(self, message_id: str, stat: str = "DELIVRD", phone: str = "13800000001") -> None:
        text = f"id:{message_id} sub:001 dlvrd:001 submit date:2407120530 done date:2407120531 stat:{stat} err:000 text:"
        pdu = _pdu(
            "deliver_sm",
            next(self._seq),
            source_addr=phone,
            destination_addr="1069",
            esm_class=0x04,  # SMSC delivery receipt
            short_message=text.encode(),
        )
        for writer in self._writers:
            writer.write(pdu.generate())
            await writer.drain()

    async def mobile_originated(self, phone: str, text: str) -> None:
        """A person's SMS to the service number (deliver_sm, esm_class 0), in UCS-2 like every Chinese reply."""
        pdu = _pdu(
            "deliver_sm",
            next(self._seq),
            source_addr=phone,
            destination_addr="10690228",
            esm_class=0x00,
            data_coding=8,
            short_message=text.encode("utf-16-be"),
        )
        for writer in self._writers:
            writer.write(pdu.generate())
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while True:
                header = await reader.readexactly(4)
                (length,) = struct.unpack(">L", header)
                pdu = smpp.parse_pdu(header + await reader.readexactly(length - 4), sequence=0)
                answer = self._answer(pdu)
                if answer is not None:
                    writer.write(answer.generate())
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def _answer(self, pdu: Command) -> Command | None:
        command = pdu.command
        if command == "bind_transceiver":
            ok = pdu.system_id.decode() == self.system_id and pdu.password.decode() == self.password
            self.binds += ok
            status = consts.SMPP_ESME_ROK if ok else consts.SMPP_ESME_RINVPASWD
            return _pdu("bind_transceiver_resp", pdu.sequence, status=status, system_id="fake-smsc")
        if command == "enquire_link":
            self.enquire_links += 1
            return _pdu("enquire_link_resp", pdu.sequence)
        if command == "unbind":
            return _pdu("unbind_resp", pdu.sequence)
        if command == "submit_sm":
            self.submits.append(pdu)
            if self.silent:
                return None
            if self.refuse_next:
                return _pdu("submit_sm_resp", pdu.sequence, status=self.refuse_next.pop(0), message_id="")
            message_id = f"m{next(self._ids)}"
            self._collect(pdu, message_id)
            return _pdu("submit_sm_resp", pdu.sequence, message_id=message_id)
        if command.endswith("_resp"):
            return None
        return _pdu("generic_nack", pdu.sequence, status=consts.SMPP_ESME_RINVCMDID)

    def _collect(self, pdu: Command, message_id: str) -> None:
        phone = pdu.destination_addr.decode()
        data: bytes = pdu.short_message
        if not int(pdu.esm_class) & consts.SMPP_GSMFEAT_UDHI:
            self.messages.append(Submitted(phone, _decode(data, int(pdu.data_coding)), [message_id]))
            return
        ref, total, seq, body = data[3], data[4], data[5], data[6:]  # UDH: 05 00 03 ref total seq
        parts = self._partial.setdefault((phone, ref), {})
        parts[seq] = (body, message_id)
        if len(parts) == total:
            del self._partial[(phone, ref)]
            ordered = [parts[i] for i in sorted(parts)]
            text = _decode(b"".join(b for b, _ in ordered), int(pdu.data_coding))
            self.messages.append(Submitted(phone, text, [i for _, i in ordered]))


def _decode(data: bytes, data_coding: int) -> str:
    return (
        data.decode("utf-16-be") if data_coding == consts.SMPP_ENCODING_ISO10646 else data.decode("latin-1")
    )


def _pdu(command: str, sequence: int, **fields: Any) -> Command:
    pdu: Command = smpp.make_pdu(command, sequence=sequence, **fields)
    pdu.sequence = sequence
    return pdu
