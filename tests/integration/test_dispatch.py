"""The dispatcher against a real HTTP SMS gateway (an aiohttp server in the test), on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import cap_cn, edit_yaml
from support.gateway import FakeSmsGateway

from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config
from warnd.dispatch import Dispatcher, TokenBucket


def use_gateway(config_dir: Path, url: str, **extra: object) -> None:
    def change(data: dict) -> None:
        data["channels"]["sms"] = {
            "adapter": "sms_http",
            "url": url,
            "signature": "梁平区应急管理局",
            "max_recipients_per_request": 100,
            "max_attempts": 3,
            "backoff_initial": 2,
            "timeout": 5,
            **extra,
        }

    edit_yaml(config_dir / "channels.yaml", change)


@pytest.fixture
async def sms_app(config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock) -> AsyncIterator[App]:
    use_gateway(config_dir, gateway.url)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    yield app
    await app.close()


async def sms_rows(app: App, alert_id: int) -> list[dict]:
    return await app.store.deliveries_page({"alert_id": alert_id, "channel": "sms"}, limit=10_000)


async def test_identical_content_goes_in_one_request(sms_app: App, gateway: FakeSmsGateway) -> None:
    [result] = await sms_app.pipeline.ingest(cap_cn(), source="t")
    await sms_app.dispatcher.drain()
    rows = await sms_rows(sms_app, result.alert_id)
    assert len(rows) == 24 and {r["status"] for r in rows} == {"sent"}
    # the 9 Chinese-speaking leaders and duty persons each get a text of their own (it asks for 叫应 with their
    # own one-tap link), the 14 other Chinese speakers share one, the English-speaking one a third: 11 requests
    assert gateway.request_count == 11
    assert sorted(len(r.json["messages"]) for r in gateway.requests) == [1] * 10 + [14]
    keys = {f"{result.alert_id}:{r['recipient_key']}" for r in rows}
    assert len(gateway.accepted_keys) == 24 and set(gateway.accepted_keys.values()) == {1}
    assert all(r["provider_message_id"].startswith("msg-") for r in rows)
    assert len(keys) == 24
    sent = {s.phone: s for s in gateway.sent}
    assert (
        sent["13800230041"].content.startswith("梁平区气象台")
        and sent["13800230041"].signature == "梁平区应急管理局"
    )


async def test_503_is_retried_with_backoff(sms_app: App, gateway: FakeSmsGateway, clock: FakeClock) -> None:
    # blue: one text for everyone, so one request per attempt (red's eleven failing requests would open the
    # circuit breaker and fail over to sms_backup: test_failover.py)
    gateway.fail_next(1, status=503)
    [result] = await sms_app.pipeline.ingest(cap_cn(severity="Blue"), source="t")
    await sms_app.dispatcher.drain()
    rows = await sms_rows(sms_app, result.alert_id)
    assert {r["status"] for r in rows} == {"queued"} and all(r["error"] for r in rows)
    assert await sms_app.dispatcher.drain() == 0  # nothing is due before the backoff ends
    clock.advance(10)
    await sms_app.dispatcher.drain()
    rows = await sms_rows(sms_app, result.alert_id)
    assert {r["status"] for r in rows} == {"sent"} and {r["attempts"] for r in rows} == {2}
    events = await sms_app.store.delivery_events([rows[0]["id"]])
    assert [e["kind"] for e in events[rows[0]["id"]]] == ["retry", "accepted"]
    assert events[rows[0]["id"]][0]["detail"]["status"] == 503


async def test_429_honours_retry_after(sms_app: App, gateway: FakeSmsGateway, clock: FakeClock) -> None:
    gateway.throttle_next(2, retry_after=7)
    [result] = await sms_app.pipeline.ingest(cap_cn(), source="t")
    await sms_app.dispatcher.drain()
    due = await sms_app.store.next_due("sms")
    assert due == clock.now() + timedelta(seconds=7)
    clock.advance(6.9)
    assert await sms_app.dispatcher.drain() == 0
    clock.advance(0.2)
    await sms_app.dispatcher.drain()
    assert {r["status"] for r in await sms_rows(sms_app, result.alert_id)} == {"sent"}


async def test_permanent_failure_keeps_the_providers_reason(sms_app: App, gateway: FakeSmsGateway) -> None:
    gateway.fail_phones("13800230043")
    [result] = await sms_app.pipeline.ingest(cap_cn(), source="t")
    await sms_app.dispatcher.drain()
    rows = {r["recipient"]: r for r in await sms_rows(sms_app, result.alert_id)}
    assert rows["谢芳"]["status"] == "failed" and "invalid number" in rows["谢芳"]["error"]
    assert rows["谢芳"]["attempts"] == 1
    assert sum(1 for r in rows.values() if r["status"] == "sent") == 23


async def test_gives_up_after_max_attempts(sms_app: App, gateway: FakeSmsGateway, clock: FakeClock) -> None:
    gateway.fail_next(100, status=500)
    # blue: the example's blue rules name no failover (red would go to sms_backup: test_failover.py)
    [result] = await sms_app.pipeline.ingest(cap_cn(severity="Blue"), source="t")
    for _ in range(5):
        await sms_app.dispatcher.drain()
        clock.advance(60)
    rows = await sms_rows(sms_app, result.alert_id)
    assert {r["status"] for r in rows} == {"failed"} and {r["attempts"] for r in rows} == {3}
    assert all("gave up after 3 attempts" in r["error"] for r in rows)


async def test_unsent_deliveries_of_an_expired_alert_are_not_sent(
    sms_app: App, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    gateway.fail_next(1, status=503)  # blue: the one request of the first attempt (see the 503 test)
    [result] = await sms_app.pipeline.ingest(cap_cn(severity="Blue"), source="t")
    await sms_app.dispatcher.drain()
    clock.advance(13 * 3600)  # past <expires>
    await sms_app.dispatcher.drain()
    rows = await sms_rows(sms_app, result.alert_id)
    assert {r["status"] for r in rows} == {"expired"}
    assert gateway.accepted_keys == {}


async def test_restart_after_a_crash_mid_batch_sends_each_once(
    sms_app: App, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    """A worker claimed a batch and died before recording anything; after restart every delivery goes out,
    the gateway accepts each idempotency key once, and the dead worker's late results cannot land."""
    [result] = await sms_app.pipeline.ingest(cap_cn(), source="t")
    token, claimed = await sms_app.store.claim("sms", 10, clock.now(), 60)
    assert len(claimed) == 10
    # the dead worker had already sent part of its batch
    first = [c for c in claimed[:5]]
    channel = sms_app.channels["sms"]
    from warnd.dispatch import _outgoing

    await channel.send([_outgoing(c, c.recipient["phone"]) for c in first])
    assert len(gateway.accepted_keys) == 5
    # restart: the single SQLite daemon releases every lease at start-up
    assert await sms_app.store.release_leases(clock.now()) == 10
    restarted = Dispatcher(
        store=sms_app.store, channels=sms_app.channels, settings=sms_app.config.dispatch, clock=clock
    )
    await restarted.drain()
    rows = await sms_rows(sms_app, result.alert_id)
    assert {r["status"] for r in rows} == {"sent"}
    assert len(gateway.accepted_keys) == 24 and set(gateway.accepted_keys.values()) == {1}
    # fencing: the old claim's results no longer apply
    stale = [
        {"delivery_id": c.delivery["id"], "status": "failed", "event": "failed", "error": "late"}
        for c in claimed
    ]
    assert await sms_app.store.record_results(token, stale, clock.now()) == 0


async def test_red_is_claimed_before_blue(sms_app: App, clock: FakeClock) -> None:
    await sms_app.pipeline.ingest(
        cap_cn(identifier="blue-1", event_code="11B06", event="大风", severity="Blue"), source="t"
    )
    await sms_app.pipeline.ingest(cap_cn(identifier="red-1"), source="t")
    _token, claimed = await sms_app.store.claim("sms", 5, clock.now(), 60)
    assert {c.alert["colour"] for c in claimed} == {"red"}


async def test_rate_limit_spaces_requests(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    use_gateway(config_dir, gateway.url, rate_per_second=5, max_recipients_per_request=1)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    try:
        started = clock.now()
        await app.pipeline.ingest(cap_cn(), source="t")
        await app.dispatcher.drain()
        assert gateway.request_count == 24
        # a bucket of 5 starts full: the other 19 messages need 19 / 5 s of (fake) time
        assert (clock.now() - started).total_seconds() >= 19 / 5 - 0.01
    finally:
        await app.close()


async def test_requests_per_second_limits_requests_not_numbers(
    config_dir: Path, gateway: FakeSmsGateway, clock: FakeClock
) -> None:
    # 10 numbers per request, 2 requests/s, no message limit: 24 numbers in eleven texts (9 ask for 叫应, each
    # with its own link; 14 share one; 1 in English) are 12 requests; a bucket of 2 starts full, so the third
    # request waits ½ s ... the twelfth 5 s (were numbers limited, 24 numbers at 20/s would take ~½ s)
    use_gateway(config_dir, gateway.url, requests_per_second=2, max_recipients_per_request=10, concurrency=1)
    app = App(load_config(config_dir), clock=clock)
    await app.start(channels=True)
    try:
        started = clock.now()
        await app.pipeline.ingest(cap_cn(), source="t")
        await app.dispatcher.drain()
        assert gateway.request_count == 12 and len(gateway.accepted_keys) == 24
        waited = (clock.now() - started).total_seconds()
        assert 5.0 - 0.01 <= waited <= 5.5
    finally:
        await app.close()


async def test_token_bucket_pays_large_requests_in_parts(clock: FakeClock) -> None:
    bucket = TokenBucket(10, 10, clock)
    start = clock.now()
    await bucket.take(35)
    assert (clock.now() - start).total_seconds() == pytest.approx(2.5)
