"""CAP ingest: parse and validate warning messages in every format warnd accepts.

``parse(data)`` detects the format — OASIS CAP 1.0/1.1/1.2, the Chinese national profile (GB/T 35965.1),
ATOM (fat and thin), RSS 2.0, EDXL-DE 1.0, NWS API JSON — and returns a :class:`ParseResult`.
``parse_alert(data)`` takes exactly one CAP XML alert. Both raise :class:`InvalidDocument` for an unusable
payload; every :class:`Issue` names the element path and, where known, the line.
``build_cap_xml(...)`` writes an OASIS CAP 1.2 document for operator-made messages.
"""

from .build import build_cap_xml
from .model import (
    MSG_TYPES,
    SCOPES,
    STATUSES,
    Alert,
    Area,
    ChannelText,
    Circle,
    FeedLink,
    Info,
    InvalidDocument,
    Issue,
    ParsedAlert,
    ParseResult,
    Reference,
    RejectedItem,
    Resource,
)
from .parse import parse, parse_alert

__all__ = [
    "MSG_TYPES",
    "SCOPES",
    "STATUSES",
    "Alert",
    "Area",
    "ChannelText",
    "Circle",
    "FeedLink",
    "Info",
    "InvalidDocument",
    "Issue",
    "ParseResult",
    "ParsedAlert",
    "Reference",
    "RejectedItem",
    "Resource",
    "build_cap_xml",
    "parse",
    "parse_alert",
]
