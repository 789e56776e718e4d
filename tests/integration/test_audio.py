"""Spoken scripts rendered to WAV by espeak-ng (when installed; .ci/run installs it) and served to terminals."""

from __future__ import annotations

import shutil
import wave
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import cap_cn

from channels.base import OutgoingMessage, Recipient
from channels.mqtt_loudspeaker import MqttLoudspeakerSettings, command
from tests.conftest import AUTH
from warnd.api import make_web_app
from warnd.app import App
from warnd.audio import Speech
from warnd.config import AudioSettings

needs_tts = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@needs_tts
async def test_a_script_becomes_a_wav_once(tmp_path: Path) -> None:
    speech = Speech(AudioSettings(), tmp_path / "audio")
    first = await speech.render("全体村民请注意！梁平区气象台发布暴雨红色预警信号。", "zh-CN")
    assert first is not None and first.suffix == ".wav"
    with wave.open(str(first)) as wav:
        assert wav.getnframes() / wav.getframerate() > 1.0  # seconds of speech, not an empty file
    mtime = first.stat().st_mtime_ns
    again = await speech.render("全体村民请注意！梁平区气象台发布暴雨红色预警信号。", "zh-CN")
    assert again == first and first.stat().st_mtime_ns == mtime  # content-addressed: rendered once
    assert speech.voice("zh-CN") == "cmn" and speech.voice("en") == "en"
    assert speech.path(first.name) == first
    assert speech.path("../warnd.db") is None and speech.path("0" * 24 + ".wav") is None


async def test_without_tts_there_is_text_only(tmp_path: Path) -> None:
    speech = Speech(AudioSettings(command="no-such-tts-engine"), tmp_path)
    assert not speech.available and await speech.render("请注意", "zh-CN") is None
    assert not Speech(AudioSettings(enabled=False), tmp_path).available


@needs_tts
async def test_loudspeaker_deliveries_carry_audio_served_by_the_api(app: App) -> None:
    [result] = await app.pipeline.ingest(cap_cn(), source="test")
    rows = await app.store.deliveries_page({"alert_id": result.alert_id, "channel": "loudspeaker"}, limit=100)
    assert len(rows) == len(app.config.terminals)
    audio_files = list((app.config.data_dir / "audio").glob("*.wav"))
    assert len(audio_files) == 1  # one script for all three terminals, rendered once
    async with TestClient(TestServer(make_web_app(app), host="127.0.0.1", port=0), headers=AUTH) as client:
        resp = await client.get(f"/api/v1/audio/{audio_files[0].name}")
        assert resp.status == 200 and resp.content_type == "audio/wav"
        assert (await resp.read())[:4] == b"RIFF"
        missing = await client.get("/api/v1/audio/..%2Fwarnd.db")
        assert missing.status == 404


def test_mqtt_command_points_terminals_at_the_audio() -> None:
    message = OutgoingMessage(
        delivery_id=1,
        idempotency_key="1:2:loudspeaker",
        recipient=Recipient(
            key="terminal:LS-1",
            name="村大喇叭",
            kind="terminal",
            role="loudspeaker",
            area_code="500228101201",
            language="zh-CN",
            terminal_id="LS-1",
        ),
        address="LS-1",
        body="全体村民请注意！",
        content_key="c",
        data={"audio": "ab" * 12 + ".wav"},
    )
    now = datetime(2024, 7, 12, tzinfo=UTC)
    settings = MqttLoudspeakerSettings(
        adapter="mqtt_loudspeaker", audio_base_url="http://10.0.0.5:8470/api/v1/audio/"
    )
    doc = command(message, settings, now)
    assert doc["audio_url"] == "http://10.0.0.5:8470/api/v1/audio/" + "ab" * 12 + ".wav"
    plain = command(message, MqttLoudspeakerSettings(adapter="mqtt_loudspeaker"), now)
    assert plain["audio"] == "ab" * 12 + ".wav" and "audio_url" not in plain
