"""The mqtt_loudspeaker channel against the real local Mosquitto (127.0.0.1:1883).

A fake terminal (an aiomqtt client in the test) subscribes to its command topic, checks the commands and reports
play states and heartbeats. Each test uses its own topic prefix and client ids, so tests never see each other's
messages. Heartbeat timing runs on the injected FakeClock; only MQTT round-trips wait (with timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from conftest import cap_cn, edit_yaml

from channels.base import Outcome, OutgoingMessage, Recipient
from channels.mqtt_loudspeaker import MqttLoudspeakerChannel, MqttLoudspeakerSettings, spoken_text
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config

HOST, PORT = "127.0.0.1", 1883
FIRST = "50022841600000_20240712053000"
TERMINALS = {"LS-500228001201-01", "LS-500228101201-01", "LS-500228102201-01"}


def _broker_up() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _broker_up(), reason="Mosquitto is not running (mosquitto -d -c /etc/mosquitto/mosquitto.conf)"
)


class FakeTerminal:
    """Terminals' side of the broker: receives every command under a prefix, publishes reports."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.commands: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.client = aiomqtt.Client(HOST, PORT, identifier=f"term-{uuid.uuid4().hex[:8]}")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeTerminal:
        await self.client.__aenter__()
        await self.client.subscribe(f"{self.prefix}/terminal/+/cmd", qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.client.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for message in self.client.messages:
            terminal = str(message.topic).split("/")[-2]
            assert isinstance(message.payload, bytes)
            await self.commands.put((terminal, json.loads(message.payload)))

    async def next(self, timeout: float = 5) -> tuple[str, dict[str, Any]]:
        return await asyncio.wait_for(self.commands.get(), timeout)

    async def report(self, terminal: str, msg_id: str, state: str | int, play_count: int = 0) -> None:
        body = {
            "msg_id": msg_id,
            "state": state,
            "play_count": play_count,
            "time": "2024-07-12T05:31:00+08:00",
        }
        await self.client.publish(f"{self.prefix}/terminal/{terminal}/status", json.dumps(body), qos=1)

    async def heartbeat(self, terminal: str, state: str = "idle") -> None:
        await self.client.publish(
            f"{self.prefix}/terminal/{terminal}/heartbeat", json.dumps({"state": state}), qos=1
        )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s")


def channel_for(prefix: str, clock: FakeClock, **extra: Any) -> MqttLoudspeakerChannel:
    values: dict[str, Any] = {
        "adapter": "mqtt_loudspeaker",
        "host": HOST,
        "port": PORT,
        "topic_prefix": prefix,
        "client_id": f"warnd-test-{uuid.uuid4().hex[:8]}",
        **extra,
    }
    settings = MqttLoudspeakerSettings(**values)
    channel = MqttLoudspeakerChannel("loudspeaker", settings, data_dir="/tmp")
    channel.clock = clock
    return channel


def message(
    delivery_id: int = 1,
    *,
    colour: str = "red",
    status: str = "Actual",
    msg_type: str = "Alert",
    **extra: Any,
) -> OutgoingMessage:
    recipient = Recipient(
        key="terminal:LS-1",
        name="龙溪村大喇叭",
        kind="terminal",
        role="loudspeaker",
        area_code="500228001201",
        language="zh-CN",
        terminal_id="LS-1",
    )
    return OutgoingMessage(
        delivery_id=delivery_id,
        idempotency_key=f"7:{delivery_id}:loudspeaker",
        recipient=recipient,
        address="LS-1",
        body="全体村民请注意！" * 10,
        content_key="1",
        repeat=3,
        priority={"red": 1, "orange": 2, "yellow": 3, "blue": 4}[colour],
        alert={
            "id": 7,
            "identifier": FIRST,
            "colour": colour,
            "msg_type": msg_type,
            "status": status,
            "hazard_code": "11B03",
            "event": "暴雨",
            "effective": "2024-07-11T21:30:00+00:00",
            "expires": "2024-07-12T09:30:00+00:00",
        },
        **extra,
    )


@pytest.fixture
def prefix() -> str:
    return f"test/{uuid.uuid4().hex}"


@pytest.fixture
async def channel(prefix: str, clock: FakeClock) -> AsyncIterator[MqttLoudspeakerChannel]:
    ch = channel_for(prefix, clock)
    await ch.start()
    assert await ch.wait_connected(5)
    yield ch
    await ch.close()


# --- the adapter on its own ----------------------------------------------------------------------------------


async def test_command_fields_and_puback(channel: MqttLoudspeakerChannel, prefix: str) -> None:
    async with FakeTerminal(prefix) as term:
        [result] = await channel.send([message()])
        assert result.outcome is Outcome.ACCEPTED and result.provider_message_id == "7:1:loudspeaker"
        terminal, cmd = await term.next()
    assert terminal == "LS-1"
    assert cmd["msg_id"] == "7:1:loudspeaker"
    assert cmd["type"] == "broadcast" and cmd["references"] == []
    assert cmd["severity"] == 1 and cmd["event_type"] == "11B03" and cmd["event"] == "暴雨"
    assert cmd["start_time"] == "2024-07-11T21:30:00+00:00" and cmd["end_time"] == "2024-07-12T09:30:00+00:00"
    assert cmd["area_codes"] == ["500228001201"]
    assert cmd["text"] == "全体村民请注意！" * 10
    assert cmd["repeat"] == 3 and cmd["volume"] == 80 and cmd["drill"] == "none"
    assert cmd["priority"] == 4 and cmd["interrupt"] is True
    assert cmd["alert_identifier"] == FIRST


async def test_red_interrupts_and_outranks_blue_drills_are_15(
    channel: MqttLoudspeakerChannel, prefix: str
) -> None:
    async with FakeTerminal(prefix) as term:
        await channel.send([message(1, colour="red")])
        await channel.send([message(2, colour="blue")])
        await channel.send([message(3, colour="orange", status="Exercise")])
        cmds = {c["msg_id"]: c for c in [(await term.next())[1] for _ in range(3)]}
    red, blue, drill = cmds["7:1:loudspeaker"], cmds["7:2:loudspeaker"], cmds["7:3:loudspeaker"]
    assert red["interrupt"] is True and blue["interrupt"] is False
    assert red["priority"] > blue["priority"] and (red["severity"], blue["severity"]) == (1, 4)
    assert drill["severity"] == 15 and drill["drill"] == "exercise" and drill["interrupt"] is False
    assert drill["priority"] < blue["priority"]


async def test_resend_keeps_the_msg_id(channel: MqttLoudspeakerChannel, prefix: str) -> None:
    async with FakeTerminal(prefix) as term:
        await channel.send([message(5)])
        await channel.send([message(5)])  # the outbox retrying after a lost answer
        first, second = (await term.next())[1], (await term.next())[1]
    assert first["msg_id"] == second["msg_id"] == "7:5:loudspeaker"


async def test_cancel_is_a_stop_referencing_the_originals(
    channel: MqttLoudspeakerChannel, prefix: str
) -> None:
    async with FakeTerminal(prefix) as term:
        await channel.send([message(9, msg_type="Cancel", references=("7:1:loudspeaker",))])
        await channel.send([message(10, msg_type="Cancel")])  # nothing known was sent: the alert identifier
        a, b = (await term.next())[1], (await term.next())[1]
    assert a["type"] == b["type"] == "cancel"
    assert a["references"] == ["7:1:loudspeaker"] and b["references"] == [FIRST]


async def test_broker_unreachable_is_retry(clock: FakeClock, prefix: str) -> None:
    ch = channel_for(prefix, clock, port=1, connect_wait=5)
    try:
        [result] = await asyncio.wait_for(ch.send([message()]), 10)
    finally:
        await ch.close()
    assert result.outcome is Outcome.RETRY and "unreachable" in (result.error or "")


async def test_heartbeats_mark_terminals_offline(
    channel: MqttLoudspeakerChannel, prefix: str, clock: FakeClock
) -> None:
    # never heard from: online until heartbeat_timeout after the channel started
    assert channel.online("LS-1")
    clock.advance(91)
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.FAILED
    assert result.error and result.error.startswith("terminal offline (no heartbeat since")
    async with FakeTerminal(prefix) as term:
        await term.heartbeat("LS-1")
        await eventually(lambda: _async(channel.online("LS-1")))
        [result] = await channel.send([message(2)])
        assert result.outcome is Outcome.ACCEPTED
        seen = channel.terminals["LS-1"].last_seen
        clock.advance(60)
        assert channel.online("LS-1")
        clock.advance(31)  # 91 s since the last heartbeat
        [result] = await channel.send([message(3)])
    assert result.outcome is Outcome.FAILED
    assert result.error == f"terminal offline (no heartbeat since {seen.isoformat()})"


async def _async(value: bool) -> bool:
    return value


def test_text_is_cut_at_a_sentence_end() -> None:
    body = "请注意。" * 200  # 800 characters
    text = spoken_text(body)
    assert len(text) <= 500 and text.endswith("。")
    assert spoken_text("短句") == "短句"
    assert len(spoken_text("字" * 600)) == 500


# --- through the app: dispatcher, store feedback, Cancel -----------------------------------------------------


@pytest.fixture
async def mqtt_app(config_dir: Path, clock: FakeClock, prefix: str) -> AsyncIterator[App]:
    def change(data: dict[str, Any]) -> None:
        data["channels"]["loudspeaker"] = {
            "adapter": "mqtt_loudspeaker",
            "host": HOST,
            "port": PORT,
            "topic_prefix": prefix,
            "client_id": f"warnd-test-{uuid.uuid4().hex[:8]}",
            "template": "loudspeaker",
            "max_chars": 500,
        }

    edit_yaml(config_dir / "channels.yaml", change)
    app = App(load_config(config_dir), clock=clock)
    channel = app.channels["loudspeaker"]
    assert isinstance(channel, MqttLoudspeakerChannel)
    channel.clock = clock
    await app.start(channels=True)
    assert await channel.wait_connected(5)
    yield app
    await app.close()


async def _loudspeaker_rows(app: App, alert_id: int) -> list[dict[str, Any]]:
    return await app.store.deliveries_page({"alert_id": alert_id, "channel": "loudspeaker"}, limit=100)


async def test_alert_feedback_and_cancel_end_to_end(mqtt_app: App, prefix: str, clock: FakeClock) -> None:
    async with FakeTerminal(prefix) as term:
        [alert] = await mqtt_app.pipeline.ingest(cap_cn(), source="t")
        await mqtt_app.dispatcher.drain()
        rows = await _loudspeaker_rows(mqtt_app, alert.alert_id)
        assert len(rows) == 3 and {r["status"] for r in rows} == {"sent"}
        commands = dict([await term.next() for _ in range(3)])
        assert set(commands) == TERMINALS
        keys = {r["provider_message_id"] for r in rows}
        assert {c["msg_id"] for c in commands.values()} == keys
        one = commands["LS-500228001201-01"]
        assert one["severity"] == 1 and one["interrupt"] is True and one["event_type"] == "11B03"
        assert one["repeat"] == 3 and "请注意" in one["text"] and len(one["text"]) <= 500
        assert one["area_codes"] == ["500228001201"] and one["end_time"].startswith("2024-07-12T")

        # play states come back as delivery feedback
        await term.report("LS-500228001201-01", one["msg_id"], "playing")
        await term.report("LS-500228001201-01", one["msg_id"], 3, play_count=3)  # GY/T number: success
        await term.report("LS-500228001201-01", "nope:0:loudspeaker", "success", play_count=1)
        [row] = [r for r in rows if r["provider_message_id"] == one["msg_id"]]

        async def two_events() -> bool:
            events = (await mqtt_app.store.delivery_events([row["id"]]))[row["id"]]
            return len([e for e in events if e["kind"] == "feedback"]) == 2

        await eventually(two_events)
        events = [
            e
            for e in (await mqtt_app.store.delivery_events([row["id"]]))[row["id"]]
            if e["kind"] == "feedback"
        ]
        assert [e["detail"]["state"] for e in events] == ["playing", "success"]
        assert (
            events[1]["detail"]["play_count"] == 3 and events[1]["detail"]["terminal"] == "LS-500228001201-01"
        )

        async def audited() -> bool:
            return any(a["action"] == "feedback_unknown" for a in await mqtt_app.store.audit_entries())

        await eventually(audited)

        # a Cancel stops what each terminal was told to play
        clock.advance(1800)
        for terminal in TERMINALS:
            await term.heartbeat(terminal)
        [cancel] = await mqtt_app.pipeline.ingest(
            cap_cn(
                identifier="50022841600000_20240712060000",
                msg_type="Cancel",
                references=FIRST,
                sent="2024-07-12 06:00:00+08:00",
                note="降雨明显减弱",
            ),
            source="t",
        )
        await eventually(lambda: _async(all(mqtt_app.channels["loudspeaker"].online(t) for t in TERMINALS)))  # type: ignore[attr-defined]
        await mqtt_app.dispatcher.drain()
        stops = dict([await term.next() for _ in range(3)])
    assert {c["type"] for c in stops.values()} == {"cancel"}
    assert {t: c["references"] for t, c in stops.items()} == {t: [c["msg_id"]] for t, c in commands.items()}
    assert {r["status"] for r in await _loudspeaker_rows(mqtt_app, cancel.alert_id)} == {"sent"}


async def test_offline_terminal_delivery_fails_with_reason(mqtt_app: App, clock: FakeClock) -> None:
    clock.advance(120)  # no terminal has sent a heartbeat since the channel started
    [alert] = await mqtt_app.pipeline.ingest(cap_cn(), source="t")
    await mqtt_app.dispatcher.drain()
    rows = await _loudspeaker_rows(mqtt_app, alert.alert_id)
    assert all(r["error"].startswith("terminal offline (no heartbeat since") for r in rows)
    # the example rules fail an offline loudspeaker over to its village's grid workers by SMS
    # (docs/failover.md); they already have this warning by SMS, and 龙溪村 has none: nothing to fail over to
    status = {r["recipient"]: r["status"] for r in rows}
    assert status == {"龙溪村大喇叭": "failed", "万年村大喇叭": "failed_over", "川西村大喇叭": "failed_over"}
    assert all("网格员" in r["reason"] for r in rows if r["status"] == "failed_over")


# --- the example config: `loudspeaker` is this adapter, on the local broker ---------------------------------


def test_example_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, config_dir: Path
) -> None:
    for name in ("WARND_MQTT_HOST", "WARND_MQTT_PORT", "WARND_MQTT_USER", "WARND_MQTT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("WARND_AUDIO_BASE_URL", raising=False)
    settings = load_config(config_dir).channel_settings("loudspeaker")
    assert isinstance(settings, MqttLoudspeakerSettings)
    # unset variables: the local broker, no authentication, no audio URL (empty means "not set")
    assert (settings.host, settings.port, settings.username, settings.password) == (HOST, PORT, None, None)
    assert settings.audio_base_url is None and settings.template == "loudspeaker"
    monkeypatch.setenv("WARND_MQTT_HOST", "mqtt.liangping.example.cn")
    monkeypatch.setenv("WARND_MQTT_PORT", "8883")
    monkeypatch.setenv("WARND_MQTT_USER", "warnd")
    monkeypatch.setenv("WARND_MQTT_PASSWORD", "s3cret")
    monkeypatch.setenv("WARND_AUDIO_BASE_URL", "http://10.0.0.5:8470/api/v1/audio")
    settings = load_config(config_dir).channel_settings("loudspeaker")
    assert isinstance(settings, MqttLoudspeakerSettings)
    assert (settings.host, settings.port) == ("mqtt.liangping.example.cn", 8883)
    assert (settings.username, settings.password) == ("warnd", "s3cret")
    assert settings.audio_base_url == "http://10.0.0.5:8470/api/v1/audio"


async def test_example_loudspeakers_are_sent_after_puback(app: App) -> None:
    """The bare example config: three terminals never heard from count as online (heartbeat_timeout after the
    start), each gets its command on its own topic, and each delivery is sent once the broker acknowledged it."""
    channel = app.channels["loudspeaker"]
    assert isinstance(channel, MqttLoudspeakerChannel)
    assert channel.prefix.startswith("warnd-test/")  # conftest gave this test its own topics and session
    assert await channel.wait_connected(5)
    async with FakeTerminal(channel.prefix) as term:
        [alert] = await app.pipeline.ingest(cap_cn(), source="t")
        await app.dispatcher.drain()
        rows = await _loudspeaker_rows(app, alert.alert_id)
        assert {r["status"] for r in rows} == {"sent"} and len(rows) == len(TERMINALS)
        commands = dict([await term.next() for _ in range(3)])
    assert set(commands) == TERMINALS
    assert {c["msg_id"] for c in commands.values()} == {r["provider_message_id"] for r in rows}
    assert all(c["repeat"] == 3 and c["severity"] == 1 and c["interrupt"] for c in commands.values())


# --- a broker restart (a private Mosquitto on a free port, so the shared one is never touched) ---------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    def __init__(self, workdir: Path):
        self.port = _free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\n"
            f"user {getpass.getuser()}\n"  # started as root, mosquitto would drop to a user who cannot write here
        )
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "mosquitto",
            "-c",
            str(self.conf),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=0.2):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("private mosquitto did not start")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()  # SIGTERM: mosquitto saves its persistence file
            await self.process.wait()
        self.process = None


@pytest.mark.skipif(not shutil.which("mosquitto"), reason="no mosquitto binary")
async def test_broker_restart_loses_no_command(tmp_path: Path, clock: FakeClock, prefix: str) -> None:
    broker = PrivateBroker(tmp_path / "broker")
    await broker.start()
    ch = channel_for(prefix, clock, port=broker.port, reconnect_min=0.1, reconnect_max=0.2, timeout=2)
    topic = f"{prefix}/terminal/LS-1/cmd"
    terminal_id = f"term-{uuid.uuid4().hex[:8]}"
    try:
        # the terminal's persistent session: subscribed, then away
        async with aiomqtt.Client(HOST, broker.port, identifier=terminal_id, clean_session=False) as term:
            await term.subscribe(topic, qos=1)
        await ch.start()
        assert await ch.wait_connected(5)

        await broker.stop()
        [down] = await ch.send([message(1)])
        assert down.outcome is Outcome.RETRY

        await broker.start()
        assert await ch.wait_connected(5)
        [up] = await ch.send([message(1)])  # the outbox's retry, same msg_id
        assert up.outcome is Outcome.ACCEPTED

        await broker.stop()  # acknowledged, then the broker restarts before the terminal is back
        await broker.start()
        async with aiomqtt.Client(HOST, broker.port, identifier=terminal_id, clean_session=False) as term:
            got = await asyncio.wait_for(anext(aiter(term.messages)), 5)
        assert json.loads(got.payload)["msg_id"] == "7:1:loudspeaker"  # type: ignore[arg-type]
    finally:
        await ch.close()
        await broker.stop()


async def test_slow_and_failing_terminals_report_back_as_feedback(mqtt_app: App, prefix: str) -> None:
    """One terminal plays at once, one answers only after the others (slow), one reports a failed play (e.g. a
    dead amplifier): every report lands on its own delivery, in order; success makes the delivery delivered, a
    failed play makes it failed (issue 5: docs/feedback.md)."""
    async with FakeTerminal(prefix) as term:
        [alert] = await mqtt_app.pipeline.ingest(cap_cn(), source="t")
        await mqtt_app.dispatcher.drain()
        commands = dict([await term.next() for _ in range(3)])
        fast, slow, failing = "LS-500228001201-01", "LS-500228101201-01", "LS-500228102201-01"
        await term.report(fast, commands[fast]["msg_id"], "playing")
        await term.report(failing, commands[failing]["msg_id"], "playing")
        await term.report(fast, commands[fast]["msg_id"], "success", play_count=3)
        await term.report(failing, commands[failing]["msg_id"], 4, play_count=1)  # GY/T 4: failed (partial)
        await term.report(slow, commands[slow]["msg_id"], "waiting")  # queued behind a local programme
        await term.report(slow, commands[slow]["msg_id"], "success", play_count=3)
        rows = {r["provider_message_id"]: r for r in await _loudspeaker_rows(mqtt_app, alert.alert_id)}

        async def states() -> dict[str, list[str]]:
            out = {}
            for terminal, cmd in commands.items():
                row = rows[cmd["msg_id"]]
                events = (await mqtt_app.store.delivery_events([row["id"]]))[row["id"]]
                out[terminal] = [e["detail"]["state"] for e in events if e["kind"] == "feedback"]
            return out

        async def all_in() -> bool:
            return sum(len(v) for v in (await states()).values()) == 6

        await eventually(all_in)
        assert await states() == {
            fast: ["playing", "success"],
            slow: ["waiting", "success"],
            failing: ["playing", "failed"],
        }
    after = {r["provider_message_id"]: r for r in await _loudspeaker_rows(mqtt_app, alert.alert_id)}
    status = {t: after[c["msg_id"]]["status"] for t, c in commands.items()}
    assert status == {fast: "delivered", slow: "delivered", failing: "failed"}
    assert after[commands[fast]["msg_id"]]["delivered_at"] is not None
    assert after[commands[failing]["msg_id"]]["error"] == "receipt: failed"
