"""Signed short links for people on their phones: the 叫应 one-tap link (``/a/<token>``) and a grid worker's
door-knock check-off page (``/k/<token>``).

A token is ``base64url(fields ‖ mac)``: the fields are a few unsigned integers (varint-encoded) and the mac is
the first 8 bytes of HMAC-SHA256 over the link kind and the fields. An acknowledgement token is ~18 characters,
so the link costs an SMS as few characters as possible. Tokens carry no expiry: a link is valid while what it
points at is (the alert is active; a door-knock list a grace period longer), which the route checks in the
database — so an Update that extends the alert extends its links too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

MAC_BYTES = 8
ACK = "a"  # (alert revision id, recipient id)
DOORKNOCK = "k"  # (alert chain root id, village admin code, grid worker recipient id)


class BadLink(ValueError):
    """The token is malformed or its signature does not match (tampered, or signed with another key)."""


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("link fields are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varints(data: bytes) -> tuple[int, ...]:
    values: list[int] = []
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            raise BadLink("field too long")
        if not byte & 0x80:
            values.append(value)
            value = shift = 0
    if shift:
        raise BadLink("truncated field")
    return tuple(values)


class LinkSigner:
    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise ValueError("link secret must be at least 16 bytes")
        self._secret = secret

    @classmethod
    def from_settings(
        cls, configured: str | None, data_dir: Path, *, shared_database: bool = False
    ) -> LinkSigner:
        """The configured secret, or one generated once into ``data_dir/link_secret`` (mode 0600).

        Nodes sharing a PostgreSQL database must sign with the same key (a link sent by one node is opened on
        another), so there the secret has to be configured."""
        if configured:
            return cls(configured.encode())
        if shared_database:
            raise ValueError(
                "feedback.link_secret must be set (e.g. ${WARND_LINK_SECRET}) when warnd runs on a shared "
                "database: every node must sign and check links with the same key"
            )
        path = data_dir / "link_secret"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            # written whole under a temporary name, then linked into place: a process starting at the same
            # moment either wins or reads the winner's complete file, never a half-written one
            temporary = data_dir / f".link_secret.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return cls(path.read_text().strip().encode())

    def _mac(self, kind: str, payload: bytes) -> bytes:
        return hmac.new(self._secret, kind.encode() + b"\0" + payload, hashlib.sha256).digest()[:MAC_BYTES]

    def sign(self, kind: str, *fields: int) -> str:
        payload = b"".join(_varint(f) for f in fields)
        return base64.urlsafe_b64encode(payload + self._mac(kind, payload)).rstrip(b"=").decode()

    def verify(self, kind: str, token: str, arity: int) -> tuple[int, ...]:
        """The fields of a token of this kind, or :class:`BadLink`."""
        if not token or len(token) > 64 or not all(c.isalnum() or c in "-_" for c in token):
            raise BadLink("not a link token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise BadLink("not a link token") from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:  # unused trailing bits set
            raise BadLink("not a link token")
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if len(raw) <= MAC_BYTES or not hmac.compare_digest(mac, self._mac(kind, payload)):
            raise BadLink("signature does not match")
        fields = _read_varints(payload)
        if len(fields) != arity:
            raise BadLink("wrong number of fields")
        return fields
