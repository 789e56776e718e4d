"""The parsed form of a warning message, independent of the format it arrived in.

OASIS CAP 1.0–1.2, the Chinese national profile (GB/T 35965.1), and the formats that wrap them all become an
:class:`Alert`. The parser keeps what the document says (raw severity words, raw codes); interpreting it as a
hazard and a colour is the rule engine's job (``warnd.hazards``).

Coordinates stay in CAP order: ``(lat, lon)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

MSG_TYPES = ("Alert", "Update", "Cancel", "Ack", "Error")
STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
SCOPES = ("Public", "Restricted", "Private")

# CAP <status> values of drills and tests (演练/测试): only drill groups get them, and their reports are kept apart
DRILL_STATUSES = ("Exercise", "Test")


@dataclass(frozen=True)
class Issue:
    """One problem found in a document: where (an element path such as ``alert/info[1]/severity``) and why."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path} (line {self.line})" if self.line else self.path
        return f"{where}: {self.message}"


class InvalidDocument(Exception):
    """The payload was rejected; ``issues`` names every element at fault."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues))


@dataclass(frozen=True)
class Circle:
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class Area:
    desc: str
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()  # rings of (lat, lon), closed
    circles: tuple[Circle, ...] = ()
    geocodes: tuple[tuple[str, str], ...] = ()  # (valueName, value); CAP-CN: one entry per admin code
    altitude: float | None = None
    ceiling: float | None = None


@dataclass(frozen=True)
class Resource:
    desc: str
    mime_type: str | None = None
    size: int | None = None
    uri: str | None = None
    digest: str | None = None


@dataclass(frozen=True)
class Info:
    language: str  # as given, default "en-US" (OASIS) / "zh-CN" (CAP-CN)
    event: str
    categories: tuple[str, ...] = ()
    event_codes: tuple[tuple[str, str], ...] = ()  # CAP-CN eventType becomes ("eventType", "11B03")
    urgency: str = "Unknown"
    severity: str = "Unknown"  # raw: Extreme/Severe/Moderate/Minor/Unknown or CN Red/Orange/Yellow/Blue
    certainty: str = "Unknown"
    response_types: tuple[str, ...] = ()
    audience: str | None = None
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    contact: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    resources: tuple[Resource, ...] = ()
    areas: tuple[Area, ...] = ()


@dataclass(frozen=True)
class Reference:
    """An earlier message this one refers to. CAP-CN references carry only the identifier."""

    identifier: str
    sender: str | None = None
    sent: datetime | None = None


@dataclass(frozen=True)
class ChannelText:
    """CAP-CN ``code/method``: the text the issuer wrote for one dissemination channel."""

    method: str  # SMS, SPEAKER, BROADCAST, LED, WEB, ...
    message: str | None = None  # empty -> use the description
    audience_groups: tuple[str, ...] = ()
    audience_persons: tuple[str, ...] = ()  # from audiencePrt or the real-world spelling audenceprt


@dataclass(frozen=True)
class Alert:
    profile: str  # "cap1.0" | "cap1.1" | "cap1.2" | "cap-cn" | "nws-json"
    identifier: str
    sender: str
    sent: datetime  # timezone-aware
    status: str
    msg_type: str
    scope: str
    sender_code: str | None = None  # CAP-CN 14-digit issuing-organisation code
    source: str | None = None
    restriction: str | None = None
    addresses: str | None = None
    codes: tuple[str, ...] = ()
    note: str | None = None
    references: tuple[Reference, ...] = ()
    incidents: str | None = None
    infos: tuple[Info, ...] = ()
    channel_texts: tuple[ChannelText, ...] = ()
    warnings: tuple[Issue, ...] = field(default=(), compare=False)  # accepted-with-warning findings

    @property
    def key(self) -> tuple[str, str, str]:
        """The identity CAP defines: the same (sender, identifier, sent) is the same message."""
        return (self.sender, self.identifier, self.sent.isoformat())


# --- what a parser hands back for a payload that may hold several messages (feeds, EDXL-DE) ---------------


@dataclass(frozen=True)
class ParsedAlert:
    alert: Alert
    xml: bytes  # this alert's own bytes, kept as its raw payload


@dataclass(frozen=True)
class FeedLink:
    """A thin-feed entry pointing at a CAP document to fetch."""

    url: str
    entry_id: str | None = None
    updated: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class RejectedItem:
    """One message inside a container that failed validation; the rest of the container still counts."""

    issues: tuple[Issue, ...]
    xml: bytes | None = None
    identifier: str | None = None


@dataclass
class ParseResult:
    kind: str  # "cap" | "atom" | "rss" | "edxl-de" | "nws-json"
    alerts: list[ParsedAlert] = field(default_factory=list)
    links: list[FeedLink] = field(default_factory=list)
    rejected: list[RejectedItem] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
