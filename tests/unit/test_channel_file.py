"""file adapter: JSON lines, fsync, one result per message."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from channels.base import Address, Outcome, OutgoingMessage, Recipient
from channels.file import FileChannel, FileSettings
from warnd.clock import FakeClock

BODY = "【梁平区应急管理局】梁平区气象台发布暴雨橙色预警信号，请注意防范山洪、地质灾害。"


def message(i: int, *, terminal: bool = False) -> OutgoingMessage:
    if terminal:
        recipient = Recipient(
            key=f"T-{i}",
            name=f"礼让镇{i}号大喇叭",
            kind="terminal",
            role="loudspeaker",
            area_code="500155101",
            language="zh",
            terminal_id=f"T-{i}",
        )
    else:
        recipient = Recipient(
            key=f"1380000{i:04d}",
            name=f"村民{i}",
            kind="person",
            role="resident",
            area_code="500155101",
            language="zh",
            phone=f"1380000{i:04d}",
        )
    return OutgoingMessage(
        delivery_id=i,
        idempotency_key=f"7:{i}:demo",
        recipient=recipient,
        address=recipient.terminal_id or recipient.phone or recipient.key,
        body=BODY,
        content_key="c1",
        title="暴雨橙色预警",
        data={"content": BODY[10:]},
        repeat=3 if terminal else 1,
        priority=2,
        alert={"id": 1, "identifier": "500155-2026-0001", "expires": datetime(2026, 7, 1, 12, tzinfo=UTC)},
    )


def channel(tmp_path: Path, name: str = "demo", **settings: object) -> FileChannel:
    return FileChannel(name, FileSettings(adapter="file", **settings), data_dir=str(tmp_path))  # type: ignore[arg-type]


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_default_path_and_lines(tmp_path: Path) -> None:
    ch = channel(tmp_path)
    ch.clock = FakeClock(datetime(2026, 7, 1, 1, 0, tzinfo=UTC))
    assert ch.address is Address.ANY and ch.max_batch == 500
    assert ch.path == tmp_path / "outbox" / "demo.jsonl"
    await ch.start()
    results = await ch.send([message(1), message(2)])
    await ch.close()

    assert [(r.delivery_id, r.outcome, r.provider_message_id) for r in results] == [
        (1, Outcome.ACCEPTED, "file:7:1:demo"),
        (2, Outcome.ACCEPTED, "file:7:2:demo"),
    ]
    lines = read_lines(tmp_path / "outbox" / "demo.jsonl")
    assert len(lines) == 2
    first = lines[0]
    assert first["at"] == "2026-07-01T01:00:00.000+00:00"
    assert first["channel"] == "demo" and first["delivery_id"] == 1 and first["idempotency_key"] == "7:1:demo"
    assert first["address"] == "13800000001"  # nothing masked: the operator's own file
    recipient = first["recipient"]
    assert isinstance(recipient, dict)
    assert recipient["phone"] == "13800000001" and recipient["name"] == "村民1"
    assert first["body"] == BODY and first["title"] == "暴雨橙色预警"
    assert first["data"] == {"content": BODY[10:]}
    assert (first["segments"], first["repeat"], first["priority"]) == (1, 1, 2)
    alert = first["alert"]
    assert isinstance(alert, dict) and alert["identifier"] == "500155-2026-0001"
    assert BODY in (tmp_path / "outbox" / "demo.jsonl").read_text(encoding="utf-8")  # UTF-8, not escapes


async def test_appends_across_batches(tmp_path: Path) -> None:
    ch = channel(tmp_path, path="spool/out.jsonl")
    assert ch.path == tmp_path / "spool" / "out.jsonl"
    await ch.send([message(1)])
    await ch.send([message(2), message(3)])
    assert [line["delivery_id"] for line in read_lines(ch.path)] == [1, 2, 3]


async def test_absolute_path_and_terminal_address(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "loudspeaker.jsonl"
    ch = channel(tmp_path, name="loudspeaker", path=str(target), address="terminal")
    assert ch.address is Address.TERMINAL
    [result] = await ch.send([message(4, terminal=True)])
    assert result.outcome is Outcome.ACCEPTED
    [line] = read_lines(target)
    assert line["address"] == "T-4" and line["repeat"] == 3


async def test_fsync_is_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ch = channel(tmp_path)
    await ch.send([message(i) for i in range(10)])
    assert len(synced) == 1  # one open + fsync per batch


async def test_oserror_is_retry(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    ch = channel(tmp_path, path="not-a-dir/out.jsonl")
    results = await ch.send([message(1), message(2)])
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
    assert results[0].error is not None and "cannot write" in results[0].error


async def test_concurrent_batches_do_not_interleave(tmp_path: Path) -> None:
    ch = channel(tmp_path)
    batches = [[message(b * 100 + i) for i in range(50)] for b in range(8)]
    results = await asyncio.gather(*(ch.send(batch) for batch in batches))
    assert sum(len(r) for r in results) == 400
    lines = read_lines(ch.path)
    assert len(lines) == 400
    ids = [line["delivery_id"] for line in lines]
    assert sorted(ids) == sorted(m.delivery_id for batch in batches for m in batch)  # type: ignore[type-var]


async def test_empty_batch(tmp_path: Path) -> None:
    assert await channel(tmp_path).send([]) == []
    assert not (tmp_path / "outbox").exists()


def test_settings_forbid_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        FileSettings(adapter="file", pth="x")  # type: ignore[call-arg]
