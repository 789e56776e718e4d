"""`warnd run` as a real process: the README walkthrough, a clean SIGTERM stop, and SIGKILL mid-batch."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from conftest import AUTH, cap_cn, edit_yaml
from e2e.daemon import Daemon, cn_time, free_port, query
from support.gateway import FakeSmsGateway

pytestmark = pytest.mark.timeout(240)


def current_alert(identifier: str, **kwargs: object) -> bytes:
    return cap_cn(identifier=identifier, sent=cn_time(), expires=cn_time(timedelta(hours=6)), **kwargs)


async def wait_for(predicate, timeout: float = 60, interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError("condition not reached in time")


async def test_walkthrough_post_watch_cancel_reject_and_stop(config_dir: Path) -> None:
    daemon = Daemon(config_dir, free_port())
    db = config_dir.parent / "data" / "warnd.db"
    await daemon.start()
    try:
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(f"{daemon.url}/api/v1/alerts", data=current_alert("wt-1")) as resp:
                assert resp.status == 201
                alert = await resp.json()
            assert (alert["colour"], alert["level"], alert["msg_type"]) == ("red", 1, "Alert")
            # README step 1: 24 SMS and 3 loudspeakers (over the local MQTT broker); no push subscriptions yet
            assert sum(alert["deliveries"].values()) == 27

            def all_sent() -> bool:
                return (
                    query(
                        db, "SELECT count(*) FROM deliveries WHERE alert_id=? AND status='sent'", alert["id"]
                    )[0][0]
                    == 27
                )

            await wait_for(all_sent)
            async with http.get(f"{daemon.url}/api/v1/alerts/{alert['id']}/deliveries") as resp:
                items = (await resp.json())["deliveries"]
            assert Counter(i["channel"] for i in items) == {"sms": 24, "loudspeaker": 3}
            assert all(i["status"] == "sent" and i["attempts"] == 1 for i in items)
            async with http.get(f"{daemon.url}/api/v1/push/vapid-public-key") as resp:
                assert resp.status == 200
                key = (await resp.json())["channels"]["push"]
            assert len(key) == 87 and key.startswith("B")  # base64url of an uncompressed P-256 point
            assert (config_dir.parent / "data" / "vapid_private.pem").stat().st_mode & 0o777 == 0o600

            cancel = current_alert("wt-2", msg_type="Cancel", references="wt-1", note="雨势减弱")
            async with http.post(f"{daemon.url}/api/v1/alerts", data=cancel) as resp:
                assert resp.status == 201
                lifted = await resp.json()
            assert lifted["previous_id"] == alert["id"] and sum(lifted["deliveries"].values()) == 27

            async with http.post(
                f"{daemon.url}/api/v1/alerts", data=b"<alert><identifier>x</identifier></alert>"
            ) as r:
                assert r.status == 400
                error = await r.json()
            assert "sender" in error["error"] and error["quarantine_id"]

        logs = subprocess.run(
            [
                sys.executable,
                "-m",
                "warnd",
                "logs",
                "-c",
                str(config_dir),
                "--alert",
                str(lifted["id"]),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert logs.returncode == 0
        rows = [json.loads(line) for line in logs.stdout.splitlines()]
        assert len(rows) == 27 and all("解除" in r["body"] for r in rows if r["recipient"] != "彭海涛")
        assert all("****" in r["phone"] for r in rows if r["phone"])
    finally:
        code = daemon.terminate()
        daemon.stop_quietly()
    assert code == 0, daemon.log.read_text()
    assert "stopped" in daemon.log.read_text()


async def test_second_daemon_on_the_same_sqlite_file_is_refused(config_dir: Path) -> None:
    first = Daemon(config_dir, free_port())
    await first.start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "warnd", "run", "-c", str(config_dir), "--port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1 and "already running" in second.stderr
    finally:
        first.terminate()


async def test_sigkill_mid_batch_loses_nothing(
    config_dir: Path, gateway: FakeSmsGateway, tmp_path: Path
) -> None:
    """Kill the daemon while a fan-out of 1,000 SMS is being sent — one batch's results recorded, the next batch's
    requests taken by the gateway but not yet answered — and restart it: every delivery ends accepted exactly once
    by the gateway (counted by idempotency key) or failed with the provider's reason."""
    failing = {"13900000007", "13900000777"}
    gateway.fail_phones(*failing)

    def to_gateway(data: dict) -> None:
        data["channels"]["sms"] = {
            "adapter": "sms_http",
            "url": gateway.url,
            "signature": "梁平区应急管理局",
            "max_recipients_per_request": 50,
            "concurrency": 2,
            "timeout": 10,
        }

    edit_yaml(config_dir / "channels.yaml", to_gateway)
    edit_yaml(config_dir / "warnd.yaml", lambda d: d["dispatch"].update(batch_size=200, lease="30s"))
    csv_file = tmp_path / "public.csv"
    rows = ["name,phone,role,area_code,lat,lon,language,groups"]
    rows += [f"居民{i},139{i:08d},public,500228101201,,,zh-CN,public" for i in range(1000)]
    csv_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    imported = subprocess.run(
        [sys.executable, "-m", "warnd", "subscribers", "import", str(csv_file), "-c", str(config_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr

    db = config_dir.parent / "data" / "warnd.db"

    def recorded() -> int:
        """SMS whose result the daemon recorded (there is only the one alert)."""
        return query(db, "SELECT count(*) FROM deliveries WHERE channel='sms' AND status!='queued'")[0][0]

    # a channel's batches go one after another: the first batch is answered and its results recorded; every
    # request after that (the second batch's) is taken by the gateway, which holds back its answer
    gateway.hold_answers(when=lambda: recorded() > 0)
    daemon = Daemon(config_dir, free_port())
    await daemon.start()
    try:
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(f"{daemon.url}/api/v1/alerts", data=current_alert("kill-1")) as resp:
                assert resp.status == 201
                alert_id = (await resp.json())["id"]
        await wait_for(lambda: gateway.held > 0)
        daemon.kill()  # SIGKILL: requests were in flight, results unrecorded
    finally:
        daemon.stop_quietly()
    gateway.answer()
    total = query(db, "SELECT count(*) FROM deliveries WHERE alert_id=? AND channel='sms'", alert_id)[0][0]
    assert total == 1024
    done_before = recorded()
    assert 0 < done_before < total  # it really was killed mid-way

    restarted = Daemon(config_dir, free_port())
    await restarted.start()
    try:

        def finished() -> bool:
            return (
                query(
                    db,
                    "SELECT count(*) FROM deliveries WHERE alert_id=? AND channel='sms' AND status='queued'",
                    alert_id,
                )[0][0]
                == 0
            )

        await wait_for(finished, timeout=120)
    finally:
        restarted.terminate()
    final = query(
        db,
        "SELECT idempotency_key, status, error, phone FROM deliveries d JOIN recipients r "
        "ON r.id = d.recipient_id WHERE alert_id=? AND channel='sms'",
        alert_id,
    )
    sent = {key for key, status, _e, _p in final if status == "sent"}
    failed = {(key, error, phone) for key, status, error, phone in final if status == "failed"}
    assert len(sent) + len(failed) == total  # none lost, none stuck
    assert {phone for _k, _e, phone in failed} == failing
    assert all("invalid number" in error for _k, error, _p in failed)
    assert set(gateway.accepted_keys) == sent
    assert set(gateway.accepted_keys.values()) == {1}  # exactly once per idempotency key
    raw_keys = [m["key"] for r in gateway.requests if r.json for m in r.json.get("messages", [])]
    print(
        f"gateway saw {len(raw_keys)} numbers for {len(set(raw_keys))} keys "
        f"({len(raw_keys) - len(set(raw_keys))} re-sent after the kill, deduplicated by idempotency key)"
    )


@pytest.mark.file_loudspeaker
async def test_daemon_climbs_the_escalation_ladder_on_its_own_schedule(
    config_dir: Path, gateway: FakeSmsGateway
) -> None:
    """The running daemon's scheduler sweeps escalations by itself: with seconds instead of minutes, duty persons
    who do not answer have their township leader told by SMS, with no test clock and no manual sweep."""

    def sms_to_gateway(data: dict) -> None:
        data["channels"]["sms"] = {"adapter": "sms_http", "url": gateway.url, "signature": "梁平区应急管理局"}

    def fast_rules(data: dict) -> None:
        data["rules"] = [
            {
                "name": "rainstorm-red",
                "hazards": ["暴雨"],
                "colours": ["red"],
                "level": "Ⅰ",
                "targets": [
                    {
                        "groups": ["duty_persons"],
                        "channels": ["sms"],
                        "ack_required": True,
                        "ack_within": "1s",
                    }
                ],
                "escalation": {"step_after": "1s", "steps": ["superior"]},
            }
        ]

    edit_yaml(config_dir / "channels.yaml", sms_to_gateway)
    edit_yaml(config_dir / "rules.yaml", fast_rules)
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.setdefault("feedback", {}).update(sweep_every="1s"))
    daemon = Daemon(config_dir, free_port())
    await daemon.start()
    try:
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(f"{daemon.url}/api/v1/alerts", data=current_alert("ladder-1")) as resp:
                assert resp.status == 201
                alert_id = (await resp.json())["id"]
            # 王大山 (龙溪村) answers at once; the other duty persons do not
            async with http.post(
                f"{daemon.url}/api/v1/alerts/{alert_id}/acks",
                json={"recipient": "13800230021", "note": "电话"},
            ) as resp:
                assert resp.status == 201, await resp.text()

            def notices() -> list[str]:
                return [s.content or "" for s in gateway.sent if ":notice:" in s.key]

            await wait_for(lambda: len(notices()) >= 4, timeout=120)
            async with http.get(f"{daemon.url}/api/v1/alerts/{alert_id}/escalations") as resp:
                ladders = (await resp.json())["escalations"]
        told = " ".join(notices())
        for name in ("李秀英", "张永福", "赵春梅", "孙长林"):
            assert name in told
        assert "王大山" not in told
        assert {e["recipient"]["name"] for e in ladders} == {"李秀英", "张永福", "赵春梅", "孙长林"}
        assert all(e["reason"] == "unacknowledged" for e in ladders)
        assert all([ev["step"] for ev in e["events"]][:2] == ["opened", "superior"] for e in ladders)
    finally:
        daemon.terminate()
        daemon.stop_quietly()
