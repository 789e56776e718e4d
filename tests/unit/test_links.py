"""Signed short links (warnd/links.py): round trip, tampering, the other kind, another secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from warnd.links import ACK, DOORKNOCK, BadLink, LinkSigner

SECRET = b"link-secret-for-tests-0123456789"


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _flip(token: str, index: int) -> str:
    """The token with one character changed in its top bit (always a bit that carries data: the last character
    of unpadded base64 may have unused low bits)."""
    swap = ALPHABET[ALPHABET.index(token[index]) ^ 0b100000]
    return token[:index] + swap + token[index + 1 :]


def test_round_trip_and_short() -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign(ACK, 123456, 98765)
    assert signer.verify(ACK, token, 2) == (123456, 98765)
    assert len(token) <= 20 and all(c.isalnum() or c in "-_" for c in token)
    knock = signer.sign(DOORKNOCK, 42, 500228101201, 7)
    assert signer.verify(DOORKNOCK, knock, 3) == (42, 500228101201, 7)


def test_every_flipped_character_is_bad() -> None:
    signer = LinkSigner(SECRET)
    for fields in ((5, 9), (123456, 98765), (1, 300)):
        token = signer.sign(ACK, *fields)
        for index in range(len(token)):
            with pytest.raises(BadLink):
                signer.verify(ACK, _flip(token, index), 2)


def test_only_the_exact_token_is_accepted() -> None:
    """Any other character anywhere — also in the unused low bits of the last one — is refused, so a token has
    exactly one spelling (logs and audit entries can compare them)."""
    signer = LinkSigner(SECRET)
    token = signer.sign(ACK, 123456, 98765)
    for index in range(len(token)):
        for swap in ALPHABET:
            if swap != token[index]:
                with pytest.raises(BadLink):
                    signer.verify(ACK, token[:index] + swap + token[index + 1 :], 2)


def test_token_of_the_other_kind_is_bad() -> None:
    signer = LinkSigner(SECRET)
    ack = signer.sign(ACK, 5, 9)
    with pytest.raises(BadLink):
        signer.verify(DOORKNOCK, ack, 2)
    knock = signer.sign(DOORKNOCK, 5, 500228101201, 9)
    with pytest.raises(BadLink):
        signer.verify(ACK, knock, 3)


def test_token_signed_with_another_secret_is_bad() -> None:
    ours, theirs = LinkSigner(SECRET), LinkSigner(b"another-secret-9876543210-abcdef")
    with pytest.raises(BadLink):
        ours.verify(ACK, theirs.sign(ACK, 5, 9), 2)


@pytest.mark.parametrize("token", ["", "not a token", "a/b", "x" * 65, "AAAA"])
def test_garbage_is_bad(token: str) -> None:
    with pytest.raises(BadLink):
        LinkSigner(SECRET).verify(ACK, token, 2)


def test_generated_secret_is_kept(tmp_path: Path) -> None:
    first = LinkSigner.from_settings(None, tmp_path)
    token = first.sign(ACK, 1, 2)
    assert (tmp_path / "link_secret").stat().st_mode & 0o777 == 0o600
    assert LinkSigner.from_settings(None, tmp_path).verify(ACK, token, 2) == (1, 2)
    with pytest.raises(BadLink):
        LinkSigner.from_settings("configured-secret-0123456789", tmp_path).verify(ACK, token, 2)


def test_a_shared_database_needs_a_configured_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="link_secret must be set"):
        LinkSigner.from_settings(None, tmp_path, shared_database=True)
    assert not (tmp_path / "link_secret").exists()
    signer = LinkSigner.from_settings("configured-secret-0123456789", tmp_path, shared_database=True)
    assert signer.verify(ACK, signer.sign(ACK, 1, 2), 2) == (1, 2)


def test_generated_secret_is_written_once_and_whole(tmp_path: Path) -> None:
    first = LinkSigner.from_settings(None, tmp_path)
    second = LinkSigner.from_settings(None, tmp_path)  # a second process: reads the same key
    assert second.verify(ACK, first.sign(ACK, 7, 8), 2) == (7, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["link_secret"]  # no temporary file left behind
    assert (tmp_path / "link_secret").stat().st_mode & 0o777 == 0o600
