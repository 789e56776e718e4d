"""Shared set-up of the escalation and door-knock tests: the example config with SMS through a real fake gateway
(sms_http: only a delivery receipt counts as reached), loudspeakers and push through the file adapter, and one
red rainstorm rule with an escalation ladder."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import edit_yaml
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import load_config

PUBLIC_URL = "https://warn.example.cn"
WANNIAN = "500228101201"
# the people of 万年村三组 in the example (config/subscribers.yaml)
CHEN, LIU, WANG = "陈玉兰", "刘大伟", "王春燕"
LI_XIUYING_PHONE, WU_QIANG_PHONE = "13800230022", "13800230032"  # 万年村's duty person and grid worker
CHEN_XIAOHONG_PHONE = "13800230012"  # the township leader of 万年村's township
ZHOU_JIANGUO_PHONE = "13800230001"  # the county leader


def ladder_config(config_dir: Path, gateway_url: str, *, ack: bool = False, grace: str | None = None) -> None:
    """SMS via ``gateway_url``; a single red rainstorm rule (no loudspeaker target, so the resend rung has the
    village loudspeaker to use) with ``deliver_within: 10m, step_after: 5m, resend: [push, loudspeaker]``;
    ``ack``: leaders and duty persons must acknowledge within 5 minutes."""

    def channels(data: dict[str, Any]) -> None:
        data["channels"]["sms"] = {
            "adapter": "sms_http",
            "url": gateway_url,
            "signature": "梁平区应急管理局",
            "max_recipients_per_request": 100,
            "max_attempts": 3,
            "backoff_initial": 2,
            "timeout": 5,
        }
        data["channels"]["loudspeaker"] = {
            "adapter": "file",
            "address": "terminal",
            "template": "loudspeaker",
            "max_chars": 500,
        }
        data["channels"]["push"] = {"adapter": "file", "address": "push", "template": "push"}

    def rules(data: dict[str, Any]) -> None:
        leaders: dict[str, Any] = {
            "groups": ["county_leaders", "township_leaders", "duty_persons"],
            "channels": ["sms"],
        }
        if ack:
            leaders.update(ack_required=True, ack_within="5m")
        data["rules"] = [
            {
                "name": "rainstorm-red",
                "hazards": ["暴雨"],
                "colours": ["red"],
                "areas": ["500228"],
                "level": "Ⅰ",
                "targets": [leaders, {"groups": ["grid_workers", "public"], "channels": ["sms"]}],
                "escalation": {
                    "deliver_within": "10m",
                    "step_after": "5m",
                    "resend": ["push", "loudspeaker"],
                },
            }
        ]

    def settings(data: dict[str, Any]) -> None:
        feedback = data.setdefault("feedback", {})
        feedback["public_url"] = PUBLIC_URL
        feedback["link_secret"] = "test-link-secret-0123456789abcdef"
        if grace:
            feedback["doorknock_grace"] = grace

    edit_yaml(config_dir / "channels.yaml", channels)
    edit_yaml(config_dir / "rules.yaml", rules)
    edit_yaml(config_dir / "warnd.yaml", settings)


async def deliver_all_except(app: App, alert_id: int, *names: str) -> int:
    """A DELIVRD receipt for every sent SMS of the alert except those to ``names``; returns how many."""
    rows = await app.store.deliveries_page({"alert_id": alert_id, "channel": "sms"}, limit=10_000)
    count = 0
    for row in rows:
        if row["recipient"] in names or row["status"] != "sent":
            continue
        await receipt(app, row)
        count += 1
    return count


async def receipt(app: App, row: dict[str, Any], state: str = "DELIVRD") -> None:
    result = await app.store.record_feedback(
        "sms", None, state, {}, app.clock.now(), kind="sms", provider_id=row["provider_message_id"]
    )
    assert result.outcome == "matched", result


async def sms_of(app: App, alert_id: int, name: str) -> dict[str, Any]:
    rows = await app.store.deliveries_page({"alert_id": alert_id, "channel": "sms"}, limit=10_000)
    [row] = [r for r in rows if r["recipient"] == name]
    return row


async def ack_all_except(app: App, alert_id: int, *names: str) -> None:
    """Every person asked for 叫应 on the alert acknowledges, except ``names``."""
    from warnd.store.acks import AckStore

    acks = AckStore(app.store)
    for row in await app.store.deliveries_page({"alert_id": alert_id}, limit=1000):
        if row["ack_required"] and row["recipient"] not in names:
            person = await app.escalator.db.person_by_phone(row["phone"])
            assert person is not None
            await acks.record(
                alert_id=alert_id,
                recipient_id=person["id"],
                at=app.clock.now(),
                channel="reply",
                recorded_by="t",
            )


async def acknowledge(app: App, alert_id: int, phone: str) -> None:
    from warnd.store.acks import AckStore

    person = await app.escalator.db.person_by_phone(phone)
    assert person is not None
    await AckStore(app.store).record(
        alert_id=alert_id, recipient_id=person["id"], at=app.clock.now(), channel="call", recorded_by="t"
    )


def edit_subscriber(config_dir: Path, name: str, **changes: Any) -> None:
    """Change one subscriber of the config copy (``remove=True`` takes them out)."""

    def change(data: dict[str, Any]) -> None:
        people = data["subscribers"]
        [person] = [p for p in people if p["name"] == name]
        if changes.pop("remove", False):
            people.remove(person)
        person.update(changes)

    edit_yaml(config_dir / "subscribers.yaml", change)


async def resync(config_dir: Path, clock: FakeClock) -> None:
    """What an operator's config change does: a node starts with the edited config and syncs the recipients
    (a subscriber taken out is deactivated) on the shared database."""
    other = App(load_config(config_dir), clock=clock)
    await other.start(channels=False)
    await other.close()


class TickingClock(FakeClock):
    """A fake clock that moves ``tick`` seconds every time it is read (work takes time)."""

    def __init__(self, start: datetime, tick: float):
        super().__init__(start)
        self.tick = timedelta(seconds=tick)

    def now(self) -> datetime:
        value = self._now
        self._now += self.tick
        return value
