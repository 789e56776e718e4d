"""Shared set-up of the escalation and door-knock tests: the example config with SMS through a real fake gateway
(sms_http: only a delivery receipt counts as reached), loudspeakers and push through the file adapter, and one
red rainstorm rule with an escalation ladder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import edit_yaml
from warnd.app import App

PUBLIC_URL = "https://warn.example.cn"
WANNIAN = "500228101201"
# the people of 万年村三组 in the example (config/subscribers.yaml)
CHEN, LIU, WANG = "陈玉兰", "刘大伟", "王春燕"
LI_XIUYING_PHONE, WU_QIANG_PHONE = "13800230022", "13800230032"  # 万年村's duty person and grid worker


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
