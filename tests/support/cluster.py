"""Configs and crowds for cluster-mode tests: warnd on one PostgreSQL database, SMS to a local gateway stub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

VILLAGE = "500228101201"  # 梁平区 (example config); the public there get the rainstorm-red rule's SMS
IMPORT_CHUNK = 5000


def cluster_config(root: Path, gateway_url: str, database_url: str, **sms: Any) -> Path:
    """The tests' copy of the example config on ``database_url``, ``sms`` sent to the stub at ``gateway_url``
    (100 numbers per request), loudspeakers and push through the file adapter (no broker needed)."""
    from tests.conftest import edit_yaml, file_loudspeaker, file_push, make_config_copy, use_postgres

    target = make_config_copy(root)
    file_loudspeaker(target)
    file_push(target, tokens={})
    edit_yaml(target / "warnd.yaml", use_postgres(database_url))

    def channels(data: dict[str, Any]) -> None:
        data["channels"]["sms"] = {
            "adapter": "sms_http",
            "url": gateway_url,
            "signature": "梁平区应急管理局",
            "max_recipients_per_request": 100,
            "timeout": 30,
            **sms,
        }

    edit_yaml(target / "channels.yaml", channels)
    return target


def person(i: int) -> dict[str, Any]:
    """An imported member of the public in one village (the recipients row ``Store.upsert_recipients`` takes)."""
    return {
        "key": f"139{i:08d}",
        "kind": "person",
        "name": f"居民{i}",
        "phone": f"139{i:08d}",
        "role": "public",
        "area_code": VILLAGE,
        "lat": None,
        "lon": None,
        "language": "zh-CN",
        "push_tokens": None,
        "terminal_id": None,
        "address": None,
        "household": None,
        "vulnerable": None,
        "superior": None,
        "groups": "public",
    }


def crowd(n: int) -> Iterator[list[dict[str, Any]]]:
    """``n`` people in chunks, for ``Store.upsert_recipients``."""
    for start in range(0, n, IMPORT_CHUNK):
        yield [person(i) for i in range(start, min(start + IMPORT_CHUNK, n))]
