"""The CAP-CN builder of the tests (tests/conftest.py re-exports it) and of the benchmarks (bench/cap_cn.py):
a module of its own so that a benchmark process does not load pytest with the fixtures."""

from __future__ import annotations


def cap_cn(
    *,
    identifier: str = "50022841600000_20240712053000",
    msg_type: str = "Alert",
    status: str = "Actual",
    event_code: str = "11B03",
    event: str = "暴雨",
    severity: str = "Red",
    geocode: str = "500228000000",
    references: str = "",
    sent: str = "2024-07-12 05:30:00+08:00",
    expires: str = "2024-07-12 17:30:00+08:00",
    description: str | None = None,
    polygon: str | None = None,
    sms_text: str | None = None,
    note: str = "",
) -> bytes:
    """A CAP-CN (GB/T 35965.1-shaped) message."""
    colour = {"Red": "红色", "Orange": "橙色", "Yellow": "黄色", "Blue": "蓝色"}.get(severity, "")
    description = description or (
        f"梁平区气象台发布{event}{colour}预警信号：预计未来3小时梁平区大部将出现"
        "100毫米以上降雨，请注意防范山洪、滑坡、泥石流和城乡积涝。"
    )
    method = (
        f"<code><method><methodName>SMS</methodName><message>{sms_text}</message></method></code>"
        if sms_text
        else ""
    )
    area = f"<geocode>{geocode}</geocode>" if geocode else ""
    if polygon:
        area += f"<polygon>{polygon}</polygon>"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert>
  <identifier>{identifier}</identifier>
  <sender>梁平区气象台</sender>
  <senderCode>50022841600000</senderCode>
  <sendTime>{sent}</sendTime>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {method}
  <references>{references}</references>
  <note>{note}</note>
  <info>
    <language>zh-CN</language>
    <eventType>{event_code}</eventType>
    <event>{event}</event>
    <urgency>Immediate</urgency>
    <severity>{severity}</severity>
    <certainty>Likely</certainty>
    <effective>{sent}</effective>
    <expires>{expires}</expires>
    <senderName>值班预报员</senderName>
    <headline>梁平区气象台发布{event}{colour}预警</headline>
    <description>{description}</description>
    <area><areaDesc>重庆市梁平区</areaDesc>{area}</area>
  </info>
</alert>""".encode()
