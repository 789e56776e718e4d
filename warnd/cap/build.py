"""Write an OASIS CAP 1.2 document — for operator-made (manual) broadcasts, so they are stored as real CAP and
go through the same parser as everything else. The output is checked with :func:`parse_alert` before it is
returned, so an invalid combination raises :class:`InvalidDocument` here rather than downstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from .model import Area, Circle, Reference
from .parse import CAP12_NS, parse_alert

_NS = "{" + CAP12_NS + "}"


def _fmt_dt(value: datetime, name: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    off = value.utcoffset()
    assert off is not None
    total = int(off.total_seconds())
    sign = "-" if total < 0 else "+"
    total = abs(total)
    local = value.replace(microsecond=0, tzinfo=None).isoformat()
    return f"{local}{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def _fmt_num(x: float) -> str:
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _sub(parent: etree._Element, name: str, text: str | None) -> etree._Element | None:
    if text is None:
        return None
    el = etree.SubElement(parent, _NS + name)
    el.text = text
    return el


def _pair(parent: etree._Element, name: str, key: str, value: str) -> None:
    el = etree.SubElement(parent, _NS + name)
    _sub(el, "valueName", key)
    _sub(el, "value", value)


def _reference(ref: Reference | str) -> str:
    if isinstance(ref, str):
        return ref
    if ref.sender is None or ref.sent is None:
        raise ValueError(f"reference {ref.identifier!r} needs sender and sent to be written as CAP 1.2")
    return f"{ref.sender},{ref.identifier},{_fmt_dt(ref.sent, 'reference sent')}"


def _area_fields(area: Area | Mapping[str, Any]) -> tuple[str, Sequence[Any], Sequence[Any], Sequence[Any]]:
    if isinstance(area, Area):
        return area.desc, area.polygons, area.circles, area.geocodes
    desc = area.get("area_desc", area.get("desc"))
    if not desc:
        raise ValueError("area needs area_desc")
    return str(desc), area.get("polygons", ()), area.get("circles", ()), area.get("geocodes", ())


def build_cap_xml(
    *,
    identifier: str,
    sender: str,
    sent: datetime | None = None,
    status: str = "Actual",
    msg_type: str = "Alert",
    scope: str = "Public",
    source: str | None = None,
    restriction: str | None = None,
    addresses: str | None = None,
    codes: Iterable[str] = (),
    references: Iterable[Reference | str] = (),
    note: str | None = None,
    incidents: str | None = None,
    language: str = "zh-CN",
    category: str | Sequence[str] = "Other",
    event: str,
    response_types: Iterable[str] = (),
    urgency: str = "Unknown",
    severity: str = "Unknown",
    certainty: str = "Unknown",
    audience: str | None = None,
    event_codes: Iterable[tuple[str, str]] = (),
    effective: datetime | None = None,
    onset: datetime | None = None,
    expires: datetime | None = None,
    sender_name: str | None = None,
    headline: str | None = None,
    description: str | None = None,
    instruction: str | None = None,
    web: str | None = None,
    contact: str | None = None,
    parameters: Iterable[tuple[str, str]] = (),
    areas: Iterable[Area | Mapping[str, Any]] = (),
    validate: bool = True,
) -> bytes:
    """Return a CAP 1.2 ``alert`` with one ``info`` as UTF-8 bytes.

    ``areas`` takes :class:`Area` objects or mappings with ``area_desc``, ``polygons`` (rings of (lat, lon)),
    ``circles`` (:class:`Circle` or (lat, lon, radius_km)) and ``geocodes`` ((valueName, value) pairs).
    ``references`` takes :class:`Reference` objects (with sender and sent) or ready ``sender,identifier,sent``
    strings. Severity must be an OASIS word (Extreme/Severe/Moderate/Minor/Unknown).
    """
    if sent is None:
        sent = datetime.now(UTC)
    root = etree.Element(_NS + "alert", nsmap={None: CAP12_NS})
    _sub(root, "identifier", identifier)
    _sub(root, "sender", sender)
    _sub(root, "sent", _fmt_dt(sent, "sent"))
    _sub(root, "status", status)
    _sub(root, "msgType", msg_type)
    _sub(root, "source", source)
    _sub(root, "scope", scope)
    _sub(root, "restriction", restriction)
    _sub(root, "addresses", addresses)
    for code in codes:
        _sub(root, "code", code)
    _sub(root, "note", note)
    refs = " ".join(_reference(r) for r in references)
    if refs:
        _sub(root, "references", refs)
    _sub(root, "incidents", incidents)

    info = etree.SubElement(root, _NS + "info")
    _sub(info, "language", language)
    for cat in [category] if isinstance(category, str) else category:
        _sub(info, "category", cat)
    _sub(info, "event", event)
    for rt in response_types:
        _sub(info, "responseType", rt)
    _sub(info, "urgency", urgency)
    _sub(info, "severity", severity)
    _sub(info, "certainty", certainty)
    _sub(info, "audience", audience)
    for key, value in event_codes:
        _pair(info, "eventCode", key, value)
    for name, when in (("effective", effective), ("onset", onset), ("expires", expires)):
        if when is not None:
            _sub(info, name, _fmt_dt(when, name))
    _sub(info, "senderName", sender_name)
    _sub(info, "headline", headline)
    _sub(info, "description", description)
    _sub(info, "instruction", instruction)
    _sub(info, "web", web)
    _sub(info, "contact", contact)
    for key, value in parameters:
        _pair(info, "parameter", key, value)
    for area in areas:
        desc, polygons, circles, geocodes = _area_fields(area)
        ael = etree.SubElement(info, _NS + "area")
        _sub(ael, "areaDesc", desc)
        for ring in polygons:
            pts = [(float(lat), float(lon)) for lat, lon in ring]
            if pts and pts[0] != pts[-1]:
                pts.append(pts[0])  # close the ring
            _sub(ael, "polygon", " ".join(f"{_fmt_num(lat)},{_fmt_num(lon)}" for lat, lon in pts))
        for circle in circles:
            c = circle if isinstance(circle, Circle) else Circle(*(float(v) for v in circle))
            _sub(ael, "circle", f"{_fmt_num(c.lat)},{_fmt_num(c.lon)} {_fmt_num(c.radius_km)}")
        for key, value in geocodes:
            _pair(ael, "geocode", key, value)

    data: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    if validate:
        parse_alert(data)  # raises InvalidDocument naming the offending element
    return data
