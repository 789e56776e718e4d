"""Generated Chinese CAP-CN (GB/T 35965.1-shaped) warnings: the typical message warnd ingests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
HAZARDS = [("11B03", "暴雨"), ("11B01", "台风"), ("11B06", "大风"), ("11B09", "高温"), ("11B14", "雷电")]
COLOURS = {"Red": "红色", "Orange": "橙色", "Yellow": "黄色", "Blue": "蓝色"}
GEOCODES = ["500228000000", "500228101000", "500228102000", "500228001000", "500228101201"]


def cn_time(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S+08:00")


def cap_cn(
    identifier: str,
    *,
    event_code: str = "11B03",
    event: str = "暴雨",
    severity: str = "Red",
    geocode: str = "500228000000",
    sent: datetime | None = None,
    polygon: str | None = None,
) -> bytes:
    """One CAP-CN alert (the shape of tests/conftest.py ``cap_cn``), live from ``sent`` for six hours."""
    start = sent or datetime.now(SHANGHAI)
    colour = COLOURS[severity]
    area = f"<geocode>{geocode}</geocode>" + (f"<polygon>{polygon}</polygon>" if polygon else "")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert>
  <identifier>{identifier}</identifier>
  <sender>梁平区气象台</sender>
  <senderCode>50022841600000</senderCode>
  <sendTime>{cn_time(start)}</sendTime>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <references></references>
  <note></note>
  <info>
    <language>zh-CN</language>
    <eventType>{event_code}</eventType>
    <event>{event}</event>
    <urgency>Immediate</urgency>
    <severity>{severity}</severity>
    <certainty>Likely</certainty>
    <effective>{cn_time(start)}</effective>
    <expires>{cn_time(start + timedelta(hours=6))}</expires>
    <senderName>值班预报员</senderName>
    <headline>梁平区气象台发布{event}{colour}预警</headline>
    <description>梁平区气象台发布{event}{colour}预警信号：预计未来3小时梁平区大部将出现100毫米以上降雨，\
请注意防范山洪、滑坡、泥石流和城乡积涝。</description>
    <area><areaDesc>重庆市梁平区</areaDesc>{area}</area>
  </info>
</alert>""".encode()


def generated(n: int, seed: int = 7) -> list[bytes]:
    """``n`` distinct, varied CAP-CN alerts (hazard, colour, area; one in four with a polygon)."""
    rng = random.Random(seed)
    now = datetime.now(SHANGHAI)
    out = []
    for i in range(n):
        code, event = rng.choice(HAZARDS)
        lat, lon = 30.6 + rng.random() * 0.2, 107.7 + rng.random() * 0.2
        polygon = (
            f"{lat:.4f},{lon:.4f} {lat + 0.05:.4f},{lon:.4f} {lat + 0.05:.4f},{lon + 0.05:.4f} {lat:.4f},{lon:.4f}"
            if i % 4 == 0
            else None
        )
        out.append(
            cap_cn(
                f"50022841600000_{i:014d}",
                event_code=code,
                event=event,
                severity=rng.choice(list(COLOURS)),
                geocode=rng.choice(GEOCODES),
                sent=now,
                polygon=polygon,
            )
        )
    return out
