"""Generated Chinese CAP-CN (GB/T 35965.1-shaped) warnings: the typical message warnd ingests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.cap import cap_cn as test_cap_cn

SHANGHAI = ZoneInfo("Asia/Shanghai")
HAZARDS = [("11B03", "暴雨"), ("11B01", "台风"), ("11B06", "大风"), ("11B09", "高温"), ("11B14", "雷电")]
SEVERITIES = ["Red", "Orange", "Yellow", "Blue"]
GEOCODES = ["500228000000", "500228101000", "500228102000", "500228001000", "500228101201"]


def cn_time(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S+08:00")


def cap_cn(identifier: str, *, sent: datetime | None = None, **fields: Any) -> bytes:
    """tests/support/cap.py ``cap_cn`` (``fields`` as there), live from ``sent`` (now) for six hours."""
    start = sent or datetime.now(SHANGHAI)
    return test_cap_cn(
        identifier=identifier, sent=cn_time(start), expires=cn_time(start + timedelta(hours=6)), **fields
    )


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
                severity=rng.choice(SEVERITIES),
                geocode=rng.choice(GEOCODES),
                sent=now,
                polygon=polygon,
            )
        )
    return out
