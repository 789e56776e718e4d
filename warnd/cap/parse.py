"""CAP element → :class:`~warnd.cap.model.Alert`, with validation; and the format-detecting entry points.

Supported: OASIS CAP 1.0, 1.1 and 1.2 (by namespace) and the Chinese national profile GB/T 35965.1 ("CAP-CN":
root ``alert`` without a namespace). Validation is declarative: each element kind has a table of allowed
children (in CAP order, with repeatability); the tree is walked once, and every problem becomes an
:class:`Issue` naming the element path (``alert/info[1]/area[2]/polygon[1]``) and line.

Errors reject the alert; warnings are recorded on ``Alert.warnings`` and the alert is accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import TypeAlias

from lxml import etree

from .model import (
    MSG_TYPES,
    SCOPES,
    STATUSES,
    Alert,
    Area,
    ChannelText,
    Circle,
    Info,
    InvalidDocument,
    Issue,
    ParsedAlert,
    ParseResult,
    Reference,
    Resource,
)
from .xml import DEFAULT_MAX_BYTES, check_size, load_xml

Element: TypeAlias = etree._Element

CAP10_NS = "http://www.incident.com/cap/1.0"
CAP11_NS = "urn:oasis:names:tc:emergency:cap:1.1"
CAP12_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_PROFILES = {CAP10_NS: "cap1.0", CAP11_NS: "cap1.1", CAP12_NS: "cap1.2"}
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

CATEGORIES_10 = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "Other",
)
CATEGORIES = (*CATEGORIES_10[:-1], "CBRNE", "Other")
RESPONSE_TYPES_11 = ("Shelter", "Evacuate", "Prepare", "Execute", "Monitor", "Assess", "None")
RESPONSE_TYPES_12 = (
    "Shelter",
    "Evacuate",
    "Prepare",
    "Execute",
    "Avoid",
    "Monitor",
    "Assess",
    "AllClear",
    "None",
)
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CN_SEVERITIES = ("Red", "Orange", "Yellow", "Blue", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
CERTAINTIES_10 = ("Very Likely", "Likely", "Possible", "Unlikely", "Unknown")
STATUSES_10 = ("Actual", "Exercise", "System", "Test")
CN_MSG_TYPES = ("Alert", "Update", "Cancel")


class Spec(dict[str, tuple[int, bool]]):
    """Allowed children: local name -> (CAP order position, repeatable); plus per-namespace full-tag maps."""

    def __init__(self, items: dict[str, tuple[int, bool]]) -> None:
        super().__init__(items)
        self.by_tag: dict[str, dict[str, tuple[str, int, bool]]] = {}

    def full(self, ns: str) -> dict[str, tuple[str, int, bool]]:
        """The spec keyed by the full lxml tag ('{ns}local' or 'local')."""
        full = self.by_tag.get(ns)
        if full is None:
            prefix = "{" + ns + "}" if ns else ""
            full = {prefix + name: (name, idx, rep) for name, (idx, rep) in self.items()}
            self.by_tag[ns] = full
        return full


def _spec(*names: str) -> Spec:
    return Spec({n.rstrip("*"): (i, n.endswith("*")) for i, n in enumerate(names)})


_ALERT_TAIL = (
    "source",
    "scope",
    "restriction",
    "addresses",
    "code*",
    "note",
    "references",
    "incidents",
    "info*",
)
ALERT_SPECS: dict[str, Spec] = {
    "cap1.0": _spec("identifier", "sender", "sent", "status", "msgType", "password", *_ALERT_TAIL),
    "cap1.1": _spec("identifier", "sender", "sent", "status", "msgType", *_ALERT_TAIL),
    "cap1.2": _spec("identifier", "sender", "sent", "status", "msgType", *_ALERT_TAIL),
}
_INFO_TAIL = (
    "urgency",
    "severity",
    "certainty",
    "audience",
    "eventCode*",
    "effective",
    "onset",
    "expires",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "contact",
    "parameter*",
    "resource*",
    "area*",
)
INFO_SPECS: dict[str, Spec] = {
    "cap1.0": _spec("language", "category*", "event", *_INFO_TAIL),
    "cap1.1": _spec("language", "category*", "event", "responseType*", *_INFO_TAIL),
    "cap1.2": _spec("language", "category*", "event", "responseType*", *_INFO_TAIL),
}
RESOURCE_SPECS: dict[str, Spec] = {
    "cap1.0": _spec("resourceDesc", "mimeType", "size", "uri", "digest"),
    "cap1.1": _spec("resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"),
    "cap1.2": _spec("resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"),
}
AREA_SPEC = _spec("areaDesc", "polygon*", "circle*", "geocode*", "altitude", "ceiling")
PAIR_SPEC = _spec("valueName", "value")

# CAP-CN (GB/T 35965.1). Element order is not checked for this profile.
CN_ALERT_SPEC = _spec(
    "identifier",
    "sender",
    "senderCode",
    "sendTime",
    "status",
    "msgType",
    "scope",
    "restriction",
    "addresses",
    "code*",
    "references",
    "note",
    "info*",
)
CN_INFO_SPEC = _spec(
    "language",
    "eventType",
    "event",
    "category*",
    "urgency",
    "severity",
    "certainty",
    "effective",
    "onset",
    "expires",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "contact",
    "parameter*",
    "area*",
)
CN_CODE_SPEC = _spec("method*")
CN_METHOD_SPEC = _spec(
    "methodName", "message", "audienceGrp", "audiencePrt*"
)  # audiencePrt + audenceprt merge
# methodName / message / audienceGrp / audiencePrt are matched case-insensitively (real feeds: `audenceprt`).
CN_METHOD_NAMES = {
    "methodname": "methodName",
    "message": "message",
    "audiencegrp": "audienceGrp",
    "audienceprt": "audiencePrt",
    "audenceprt": "audiencePrt",
}

_DT_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)([T ])(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?\Z")
_TZ_CACHE: dict[str, timezone] = {}
_SPLIT_LIST = re.compile(r"[,，;；\s]+")
_ADMIN_CODE = re.compile(r"\d{12}\Z")
_SENDER_CODE = re.compile(r"\d{14}\Z")
_RESTRICTED_CHARS = (" ", ",", "<", "&", "\t", "\n", "\r")


class Ctx:
    """Collects the issues found while converting one alert."""

    __slots__ = ("errors", "warnings")

    def __init__(self) -> None:
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def err(self, path: str, message: str, el: Element | None = None) -> None:
        self.errors.append(Issue(path, message, el.sourceline if el is not None else None))

    def warn(self, path: str, message: str, el: Element | None = None) -> None:
        self.warnings.append(Issue(path, message, el.sourceline if el is not None else None))


def local_name(tag: object) -> str:
    if not isinstance(tag, str):
        return str(tag)
    return tag.rsplit("}", 1)[1] if tag.startswith("{") else tag


def namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


# --- generic walking --------------------------------------------------------------------------------------


def group_children(
    ctx: Ctx,
    el: Element,
    path: str,
    spec: Spec,
    ns: str,
    *,
    allow_signature: bool = False,
    check_order: bool = True,
    rename: Callable[[str], str | None] | None = None,
) -> dict[str, list[Element]]:
    """Sort ``el``'s children by local name, reporting unknown, misplaced and repeated elements."""
    groups: dict[str, list[Element]] = {}
    full = spec.full(ns)
    last = -1
    disorder: tuple[str, str, Element] | None = None
    last_name = ""
    repeated = False
    for child in el:
        tag = child.tag
        entry = full.get(tag)
        if entry is None:
            if not isinstance(tag, str):
                continue  # comment / PI (normally removed by the parser)
            if ns:
                if not tag.startswith("{" + ns + "}"):
                    _foreign(ctx, child, path, tag, allow_signature)
                    continue
                local = tag[len(ns) + 2 :]
            else:
                if tag[0] == "{":
                    _foreign(ctx, child, path, tag, allow_signature)
                    continue
                local = tag
            renamed = rename(local) if rename is not None else None
            spec_entry = spec.get(renamed) if renamed is not None else None
            if renamed is None or spec_entry is None:
                ctx.err(f"{path}/{local}", "unknown element", child)
                continue
            entry = (renamed, *spec_entry)
        local, idx, _rep = entry
        if check_order:
            if idx < last:
                if disorder is None:
                    disorder = (local, last_name, child)
            else:
                last = idx
                last_name = local
        lst = groups.get(local)
        if lst is None:
            groups[local] = [child]
        else:
            lst.append(child)
            repeated = True
    if repeated:
        for name, lst in groups.items():
            if len(lst) > 1 and not spec[name][1]:
                ctx.err(f"{path}/{name}", f"appears {len(lst)} times, allowed once", lst[1])
    if disorder is not None:
        ctx.warn(
            path,
            f"element order differs from CAP: <{disorder[0]}> after <{disorder[1]}> (accepted)",
            disorder[2],
        )
    return groups


def _foreign(ctx: Ctx, child: Element, path: str, tag: str, allow_signature: bool) -> None:
    cns = namespace(tag)
    name = local_name(tag)
    if cns == DSIG_NS and name == "Signature" and allow_signature:
        return  # XML-Signature: allowed, not verified
    if cns == "" or cns in CAP_PROFILES:
        ctx.err(f"{path}/{name}", f"unknown element (namespace {cns or 'none'})", child)
    else:
        ctx.warn(f"{path}/{name}", f"element in foreign namespace {cns} ignored", child)


def text_of(ctx: Ctx, el: Element, path: str) -> str:
    if len(el):
        ctx.err(path, f"unexpected child element <{local_name(el[0].tag)}>", el[0])
    t = el.text
    return t.strip() if t else ""


def optional(ctx: Ctx, groups: dict[str, list[Element]], name: str, path: str) -> str | None:
    els = groups.get(name)
    if not els:
        return None
    el = els[0]
    if len(el):
        ctx.err(f"{path}/{name}", f"unexpected child element <{local_name(el[0].tag)}>", el[0])
    t = el.text
    if t:
        t = t.strip()
        if t:
            return t
    return None


def required(ctx: Ctx, groups: dict[str, list[Element]], name: str, path: str, parent: Element) -> str | None:
    els = groups.get(name)
    if not els:
        ctx.err(f"{path}/{name}", "required element missing", parent)
        return None
    value = optional(ctx, groups, name, path)
    if value is None:
        ctx.err(f"{path}/{name}", "empty value", els[0])
    return value


def enum_value(
    ctx: Ctx,
    groups: dict[str, list[Element]],
    name: str,
    path: str,
    parent: Element,
    allowed: tuple[str, ...],
) -> str | None:
    els = groups.get(name)
    if not els:
        ctx.err(f"{path}/{name}", "required element missing", parent)
        return None
    value = text_of(ctx, els[0], f"{path}/{name}")
    if value in allowed:
        return value
    if not value:
        ctx.err(f"{path}/{name}", f"empty value, expected one of {', '.join(allowed)}", els[0])
    else:
        ctx.err(f"{path}/{name}", f"{value!r} is not one of {', '.join(allowed)}", els[0])
    return None


def _tz(spec: str) -> timezone:
    tz = _TZ_CACHE.get(spec)
    if tz is None:
        sign = -1 if spec[0] == "-" else 1
        hours, minutes = int(spec[1:3]), int(spec[-2:])
        if minutes >= 60:
            raise ValueError("bad offset minutes")
        tz = UTC if hours == 0 and minutes == 0 else timezone(sign * timedelta(hours=hours, minutes=minutes))
        _TZ_CACHE[spec] = tz
    return tz


@lru_cache(maxsize=4096)
def _datetime_from(raw: str, allow_space: bool) -> tuple[datetime | None, str | None, str | None]:
    """(value, error, warning) for one dateTime string; cached because the same stamps recur."""
    m = _DT_RE.match(raw)
    if m is None:
        return None, f"{raw!r} is not a dateTime (expected YYYY-MM-DDThh:mm:ss+hh:mm)", None
    if m.group(4) == " " and not allow_space:
        return None, f"{raw!r}: date and time must be separated by 'T'", None
    zone = m.group(9)
    if zone is None:
        return None, f"{raw!r} has no time zone", None
    warning = None
    try:
        if zone == "Z":
            warning = f"{raw!r} uses 'Z'; CAP 1.2 requires a numeric offset such as +00:00 (accepted)"
            tz: timezone = UTC
        else:
            tz = _tz(zone)
            if len(zone) == 5:
                warning = f"{raw!r}: time zone offset without a colon; CAP requires +hh:mm (accepted)"
        frac = m.group(8)
        micro = int((frac + "000000")[:6]) if frac else 0
        value = datetime(
            int(m.group(1)),
            int(m.group(2)),
            int(m.group(3)),
            int(m.group(5)),
            int(m.group(6)),
            int(m.group(7)),
            micro,
            tzinfo=tz,
        )
    except ValueError:
        return None, f"{raw!r} is not a valid date and time", None
    return value, None, warning


def parse_datetime(
    ctx: Ctx, raw: str, path: str, el: Element | None, *, allow_space: bool = False
) -> datetime | None:
    """A CAP dateTime → aware datetime; 'Z' accepted with a warning; no zone → error."""
    value, error, warning = _datetime_from(raw, allow_space)
    if error is not None:
        ctx.err(path, error, el)
    elif warning is not None:
        ctx.warn(path, warning, el)
    return value


def _opt_datetime(
    ctx: Ctx, groups: dict[str, list[Element]], name: str, path: str, *, allow_space: bool = False
) -> datetime | None:
    raw = optional(ctx, groups, name, path)
    if raw is None:
        return None
    return parse_datetime(ctx, raw, f"{path}/{name}", groups[name][0], allow_space=allow_space)


def check_token(ctx: Ctx, value: str | None, path: str, el: Element | None, *, strict: bool = True) -> None:
    """identifier / sender: no spaces, commas or restricted characters (< &)."""
    if value is None:
        return
    bad = [c for c in _RESTRICTED_CHARS if c in value]
    if bad:
        names = ", ".join(
            {" ": "space", ",": "comma", "\t": "tab", "\n": "newline", "\r": "newline"}.get(c, c) for c in bad
        )
        msg = f"{value!r} contains {names} (not allowed)"
        if strict:
            ctx.err(path, msg, el)
        else:
            ctx.warn(path, msg + "; accepted", el)


def parse_references(ctx: Ctx, raw: str, path: str, el: Element) -> list[Reference]:
    refs: list[Reference] = []
    for tok in raw.split():
        parts = tok.split(",")
        if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
            ctx.err(path, f"{tok!r} is not a sender,identifier,sent triple", el)
            continue
        sent = parse_datetime(ctx, parts[2], path, el)
        if sent is not None:
            refs.append(Reference(identifier=parts[1], sender=parts[0], sent=sent))
    return refs


def parse_polygon(ctx: Ctx, raw: str, path: str, el: Element) -> tuple[tuple[float, float], ...] | None:
    tokens = raw.split()
    pts: list[tuple[float, float]] = []
    ok = True
    for tok in tokens:
        a, sep, b = tok.partition(",")
        try:
            if not sep or "_" in tok:
                raise ValueError
            lat = float(a)
            lon = float(b)
        except ValueError:
            ctx.err(path, f"{tok!r} is not a lat,lon pair", el)
            ok = False
            break
        if not (-90.0 <= lat <= 90.0) or not (-180.0 <= lon <= 180.0):
            ctx.err(path, f"point {tok} out of range (lat -90..90, lon -180..180)", el)
            ok = False
            break
        pts.append((lat, lon))
    if not ok:
        return None
    if len(pts) < 4:
        ctx.err(path, f"{len(pts)} points; a polygon needs at least 4 with the first repeated last", el)
        return None
    if pts[0] != pts[-1]:
        ctx.err(path, f"ring not closed (first point {tokens[0]} != last {tokens[-1]})", el)
        return None
    return tuple(pts)


def parse_circle(ctx: Ctx, raw: str, path: str, el: Element) -> Circle | None:
    parts = raw.split()
    try:
        if len(parts) != 2:
            raise ValueError
        a, sep, b = parts[0].partition(",")
        if not sep:
            raise ValueError
        lat, lon, radius = float(a), float(b), float(parts[1])
    except ValueError:
        ctx.err(path, f"{raw!r} is not 'lat,lon radius'", el)
        return None
    if not (-90.0 <= lat <= 90.0) or not (-180.0 <= lon <= 180.0):
        ctx.err(path, f"centre {parts[0]} out of range (lat -90..90, lon -180..180)", el)
        return None
    if not (radius >= 0.0) or math.isinf(radius):
        ctx.err(path, f"radius {parts[1]} must be a non-negative number of km", el)
        return None
    return Circle(lat, lon, radius)


def _number(ctx: Ctx, groups: dict[str, list[Element]], name: str, path: str) -> float | None:
    raw = optional(ctx, groups, name, path)
    if raw is None:
        return None
    try:
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError
        return value
    except ValueError:
        ctx.err(f"{path}/{name}", f"{raw!r} is not a number", groups[name][0])
        return None


def _pairs(
    ctx: Ctx,
    els: list[Element] | None,
    path: str,
    name: str,
    ns: str,
    *,
    value_required: bool,
    legacy: bool,
) -> list[tuple[str, str]]:
    """eventCode / geocode / parameter: valueName + value children (CAP 1.0: 'valueName=value' text)."""
    out: list[tuple[str, str]] = []
    if not els:
        return out
    for i, el in enumerate(els, 1):
        p = f"{path}/{name}[{i}]"
        if legacy:
            raw = text_of(ctx, el, p)
            key, sep, value = raw.partition("=")
            if not sep:
                ctx.warn(p, f"{raw!r} is not in valueName=value form (kept with empty valueName)", el)
                key, value = "", raw
            if not raw or (value_required and not value.strip()):
                ctx.err(p, "empty value", el)
                continue
            out.append((key.strip(), value.strip()))
            continue
        pair = value_pair(ctx, el, p, ns, value_required=value_required)
        if pair is not None:
            out.append(pair)
    return out


def value_pair(ctx: Ctx, el: Element, p: str, ns: str, *, value_required: bool) -> tuple[str, str] | None:
    g = group_children(ctx, el, p, PAIR_SPEC, ns)
    vn = required(ctx, g, "valueName", p, el)
    v: str | None
    if value_required:
        v = required(ctx, g, "value", p, el)
    else:
        v_els = g.get("value")
        if not v_els:
            ctx.err(f"{p}/value", "required element missing", el)
            v = None
        else:
            v = text_of(ctx, v_els[0], f"{p}/value")
    if vn is None or v is None:
        return None
    return (vn, v)


# --- OASIS CAP --------------------------------------------------------------------------------------------


def _area(ctx: Ctx, el: Element, path: str, ns: str, legacy: bool, *, cn: bool = False) -> Area | None:
    g = group_children(ctx, el, path, AREA_SPEC, ns, check_order=not cn)
    desc = required(ctx, g, "areaDesc", path, el)
    polygons: list[tuple[tuple[float, float], ...]] = []
    for i, pel in enumerate(g.get("polygon", ()), 1):
        p = f"{path}/polygon[{i}]"
        raw = text_of(ctx, pel, p)
        if not raw:
            ctx.warn(p, "empty polygon treated as absent", pel)
            continue
        ring = parse_polygon(ctx, raw, p, pel)
        if ring is not None:
            polygons.append(ring)
    circles: list[Circle] = []
    for i, cel in enumerate(g.get("circle", ()), 1):
        p = f"{path}/circle[{i}]"
        raw = text_of(ctx, cel, p)
        if not raw:
            ctx.warn(p, "empty circle treated as absent", cel)
            continue
        c = parse_circle(ctx, raw, p, cel)
        if c is not None:
            circles.append(c)
    if cn:
        geocodes = _cn_geocodes(ctx, g.get("geocode"), path)
    else:
        geocodes = _pairs(ctx, g.get("geocode"), path, "geocode", ns, value_required=True, legacy=legacy)
    altitude = _number(ctx, g, "altitude", path)
    ceiling = _number(ctx, g, "ceiling", path)
    if ceiling is not None and altitude is None:
        ctx.err(f"{path}/ceiling", "ceiling given without altitude", g["ceiling"][0])
    if desc is None:
        return None
    return Area(desc, tuple(polygons), tuple(circles), tuple(geocodes), altitude, ceiling)


def _resource(ctx: Ctx, el: Element, path: str, ns: str, profile: str) -> Resource | None:
    g = group_children(ctx, el, path, RESOURCE_SPECS[profile], ns)
    desc = required(ctx, g, "resourceDesc", path, el)
    if (
        profile != "cap1.2"
    ):  # optional in the 1.0 and 1.1 schemas (the CAP 1.1 spec's own A.1 example omits it)
        mime = optional(ctx, g, "mimeType", path)
    else:
        mime = required(ctx, g, "mimeType", path, el)
    size: int | None = None
    raw_size = optional(ctx, g, "size", path)
    if raw_size is not None:
        try:
            size = int(raw_size)
            if size < 0:
                raise ValueError
        except ValueError:
            ctx.err(f"{path}/size", f"{raw_size!r} is not a non-negative integer", g["size"][0])
    uri = optional(ctx, g, "uri", path)
    digest = optional(ctx, g, "digest", path)
    if desc is None:
        return None
    return Resource(desc, mime, size, uri, digest)


def _info(ctx: Ctx, el: Element, path: str, ns: str, profile: str) -> Info | None:
    g = group_children(ctx, el, path, INFO_SPECS[profile], ns)
    legacy = profile == "cap1.0"
    language = optional(ctx, g, "language", path) or "en-US"
    categories: list[str] = []
    cat_allowed = CATEGORIES_10 if legacy else CATEGORIES
    cat_els = g.get("category")
    if not cat_els:
        if not legacy:
            ctx.err(f"{path}/category", "required element missing", el)
    else:
        for i, cel in enumerate(cat_els, 1):
            p = f"{path}/category[{i}]" if len(cat_els) > 1 else f"{path}/category"
            v = text_of(ctx, cel, p)
            if v in cat_allowed:
                categories.append(v)
            elif not v:
                ctx.err(p, f"empty value, expected one of {', '.join(cat_allowed)}", cel)
            else:
                ctx.err(p, f"{v!r} is not one of {', '.join(cat_allowed)}", cel)
    event = required(ctx, g, "event", path, el)
    responses: list[str] = []
    rt_allowed = RESPONSE_TYPES_12 if profile == "cap1.2" else RESPONSE_TYPES_11
    for i, rel in enumerate(g.get("responseType", ()), 1):
        p = f"{path}/responseType[{i}]"
        v = text_of(ctx, rel, p)
        if v in rt_allowed:
            responses.append(v)
        else:
            ctx.err(p, f"{v!r} is not one of {', '.join(rt_allowed)}", rel)
    urgency = enum_value(ctx, g, "urgency", path, el, URGENCIES)
    severity = enum_value(ctx, g, "severity", path, el, SEVERITIES)
    certainty: str | None
    if legacy:
        certainty = enum_value(ctx, g, "certainty", path, el, CERTAINTIES_10)
    else:
        c_els = g.get("certainty")
        if c_els and text_of(ctx, c_els[0], f"{path}/certainty") == "Very Likely":
            ctx.warn(
                f"{path}/certainty",
                "'Very Likely' is deprecated since CAP 1.1 (means Likely); accepted",
                c_els[0],
            )
            certainty = "Very Likely"
        else:
            certainty = enum_value(ctx, g, "certainty", path, el, CERTAINTIES)
    event_codes = _pairs(ctx, g.get("eventCode"), path, "eventCode", ns, value_required=True, legacy=legacy)
    parameters = _pairs(ctx, g.get("parameter"), path, "parameter", ns, value_required=False, legacy=legacy)
    resources = [
        _resource(ctx, rel, f"{path}/resource[{i}]", ns, profile)
        for i, rel in enumerate(g.get("resource", ()), 1)
    ]
    areas = [_area(ctx, ael, f"{path}/area[{i}]", ns, legacy) for i, ael in enumerate(g.get("area", ()), 1)]
    info = Info(
        language=language,
        event=event or "",
        categories=tuple(categories),
        event_codes=tuple(event_codes),
        urgency=urgency or "Unknown",
        severity=severity or "Unknown",
        certainty=certainty or "Unknown",
        response_types=tuple(responses),
        audience=optional(ctx, g, "audience", path),
        effective=_opt_datetime(ctx, g, "effective", path),
        onset=_opt_datetime(ctx, g, "onset", path),
        expires=_opt_datetime(ctx, g, "expires", path),
        sender_name=optional(ctx, g, "senderName", path),
        headline=optional(ctx, g, "headline", path),
        description=optional(ctx, g, "description", path),
        instruction=optional(ctx, g, "instruction", path),
        web=optional(ctx, g, "web", path),
        contact=optional(ctx, g, "contact", path),
        parameters=tuple(parameters),
        resources=tuple(r for r in resources if r is not None),
        areas=tuple(a for a in areas if a is not None),
    )
    return info


def _references(
    ctx: Ctx, g: dict[str, list[Element]], path: str, msg_type: str | None, el: Element, *, cn: bool
) -> list[Reference]:
    p = f"{path}/references"
    ref_els = g.get("references")
    raw = text_of(ctx, ref_els[0], p) if ref_els else ""
    refs: list[Reference] = []
    if raw:
        if cn:
            refs = _cn_references(ctx, raw, p, ref_els[0] if ref_els else el)
        else:
            refs = parse_references(ctx, raw, p, ref_els[0] if ref_els else el)
    needs = msg_type in ("Update", "Cancel")
    if not raw:
        if needs:
            if ref_els:
                ctx.err(p, f"empty; an {msg_type} must reference the message(s) it replaces", ref_els[0])
            else:
                ctx.err(p, f"required element missing (msgType {msg_type})", el)
        elif ref_els:
            ctx.warn(p, "empty element ignored", ref_els[0])
        elif msg_type in ("Ack", "Error"):
            ctx.warn(p, f"msgType {msg_type} without references", el)
    return refs


def _scope_checks(
    ctx: Ctx, scope: str | None, restriction: str | None, addresses: str | None, path: str, el: Element
) -> None:
    if scope == "Restricted" and not restriction:
        ctx.err(f"{path}/restriction", "required when scope is Restricted", el)
    if scope == "Private" and not addresses:
        ctx.err(f"{path}/addresses", "required when scope is Private", el)


def convert_oasis(ctx: Ctx, el: Element, path: str, ns: str) -> Alert | None:
    profile = CAP_PROFILES[ns]
    g = group_children(ctx, el, path, ALERT_SPECS[profile], ns, allow_signature=True)
    identifier = required(ctx, g, "identifier", path, el)
    check_token(ctx, identifier, f"{path}/identifier", g["identifier"][0] if identifier else None)
    sender = required(ctx, g, "sender", path, el)
    check_token(ctx, sender, f"{path}/sender", g["sender"][0] if sender else None)
    raw_sent = required(ctx, g, "sent", path, el)
    sent = parse_datetime(ctx, raw_sent, f"{path}/sent", g["sent"][0]) if raw_sent else None
    status = enum_value(ctx, g, "status", path, el, STATUSES_10 if profile == "cap1.0" else STATUSES)
    msg_type = enum_value(ctx, g, "msgType", path, el, MSG_TYPES)
    scope = enum_value(ctx, g, "scope", path, el, SCOPES)
    restriction = optional(ctx, g, "restriction", path)
    addresses = optional(ctx, g, "addresses", path)
    _scope_checks(ctx, scope, restriction, addresses, path, el)
    if "password" in g:
        ctx.warn(f"{path}/password", "deprecated CAP 1.0 element ignored", g["password"][0])
    codes = []
    for i, cel in enumerate(g.get("code", ()), 1):
        v = text_of(ctx, cel, f"{path}/code[{i}]")
        if v:
            codes.append(v)
    refs = _references(ctx, g, path, msg_type, el, cn=False)
    infos = [_info(ctx, iel, f"{path}/info[{i}]", ns, profile) for i, iel in enumerate(g.get("info", ()), 1)]
    if ctx.errors:
        return None
    assert identifier and sender and sent and status and msg_type and scope
    return Alert(
        profile=profile,
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=status,
        msg_type=msg_type,
        scope=scope,
        source=optional(ctx, g, "source", path),
        restriction=restriction,
        addresses=addresses,
        codes=tuple(codes),
        note=optional(ctx, g, "note", path),
        references=tuple(refs),
        incidents=optional(ctx, g, "incidents", path),
        infos=tuple(i for i in infos if i is not None),
        warnings=tuple(ctx.warnings),
    )


# --- CAP-CN (GB/T 35965.1) --------------------------------------------------------------------------------


def _cn_references(ctx: Ctx, raw: str, path: str, el: Element) -> list[Reference]:
    """CAP-CN: the identifier(s) of the first issue; an OASIS triple is also understood."""
    refs: list[Reference] = []
    for tok in raw.split():
        parts = tok.split(",")
        if len(parts) == 3 and all(parts):
            sent = parse_datetime(ctx, parts[2], path, el, allow_space=True)
            if sent is not None:
                refs.append(Reference(identifier=parts[1], sender=parts[0], sent=sent))
            continue
        for ident in _SPLIT_LIST.split(tok):
            if ident:
                check_token(ctx, ident, path, el)
                refs.append(Reference(identifier=ident))
    return refs


def _cn_geocodes(ctx: Ctx, els: list[Element] | None, path: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not els:
        return out
    for i, el in enumerate(els, 1):
        p = f"{path}/geocode[{i}]"
        if len(el):  # OASIS style <geocode><valueName/><value/></geocode>
            pair = value_pair(ctx, el, p, "", value_required=True)
            if pair is not None:
                out.append(pair)
            continue
        raw = text_of(ctx, el, p)
        if not raw:
            ctx.err(p, "empty value", el)
            continue
        for code in _SPLIT_LIST.split(raw):
            if not code:
                continue
            if _ADMIN_CODE.match(code) is None:
                ctx.err(p, f"{code!r} is not a 12-digit administrative division code", el)
                continue
            out.append(("geocode", code))
    return out


def _cn_method_rename(name: str) -> str | None:
    return CN_METHOD_NAMES.get(name.lower())


def _cn_channel_texts(
    ctx: Ctx, code_els: list[Element] | None, path: str, codes: list[str]
) -> list[ChannelText]:
    out: list[ChannelText] = []
    if not code_els:
        return out
    for ci, cel in enumerate(code_els, 1):
        cpath = f"{path}/code[{ci}]"
        if not len(cel):
            v = (cel.text or "").strip()
            if v:
                codes.append(v)
            continue
        g = group_children(ctx, cel, cpath, CN_CODE_SPEC, "", check_order=False)
        for mi, mel in enumerate(g.get("method", ()), 1):
            mpath = f"{cpath}/method[{mi}]"
            mg = group_children(
                ctx, mel, mpath, CN_METHOD_SPEC, "", check_order=False, rename=_cn_method_rename
            )
            name = required(ctx, mg, "methodName", mpath, mel)
            message = optional(ctx, mg, "message", mpath)
            groups = _split_ids(optional(ctx, mg, "audienceGrp", mpath))
            persons: list[str] = []
            for pel in mg.get("audiencePrt", ()):
                persons.extend(_split_ids(text_of(ctx, pel, f"{mpath}/audiencePrt")))
            if name is not None:
                out.append(ChannelText(name, message, tuple(groups), tuple(persons)))
    return out


def _split_ids(raw: str | None) -> list[str]:
    if not raw:
        return []
    return [s for s in _SPLIT_LIST.split(raw) if s]


def _cn_info(ctx: Ctx, el: Element, path: str) -> Info | None:
    g = group_children(ctx, el, path, CN_INFO_SPEC, "", check_order=False)
    language = optional(ctx, g, "language", path) or "zh-CN"
    event_type = optional(ctx, g, "eventType", path)
    event_name = optional(ctx, g, "event", path)
    if event_type is None and event_name is None:
        ctx.err(f"{path}/eventType", "required element missing", el)
    elif event_type is not None and any(c.isspace() or c == "," for c in event_type):
        ctx.err(f"{path}/eventType", f"{event_type!r} is not an event type code", g["eventType"][0])
    categories: list[str] = []
    for i, cel in enumerate(g.get("category", ()), 1):
        v = text_of(ctx, cel, f"{path}/category[{i}]")
        if v in CATEGORIES:
            categories.append(v)
        else:
            ctx.err(f"{path}/category[{i}]", f"{v!r} is not one of {', '.join(CATEGORIES)}", cel)
    urgency = enum_value(ctx, g, "urgency", path, el, URGENCIES)
    sev_els = g.get("severity")
    severity: str | None
    if sev_els and text_of(ctx, sev_els[0], f"{path}/severity") in SEVERITIES[:-1]:
        severity = text_of(ctx, sev_els[0], f"{path}/severity")
        ctx.warn(
            f"{path}/severity",
            f"OASIS severity {severity!r} in CAP-CN (expected a colour); accepted",
            sev_els[0],
        )
    else:
        severity = enum_value(ctx, g, "severity", path, el, CN_SEVERITIES)
    certainty = enum_value(ctx, g, "certainty", path, el, CERTAINTIES)
    parameters = _pairs(ctx, g.get("parameter"), path, "parameter", "", value_required=False, legacy=False)
    areas = [
        _area(ctx, ael, f"{path}/area[{i}]", "", False, cn=True) for i, ael in enumerate(g.get("area", ()), 1)
    ]
    return Info(
        language=language,
        event=event_name or event_type or "",
        categories=tuple(categories),
        event_codes=(("eventType", event_type),) if event_type else (),
        urgency=urgency or "Unknown",
        severity=severity or "Unknown",
        certainty=certainty or "Unknown",
        effective=_opt_datetime(ctx, g, "effective", path, allow_space=True),
        onset=_opt_datetime(ctx, g, "onset", path, allow_space=True),
        expires=_opt_datetime(ctx, g, "expires", path, allow_space=True),
        sender_name=optional(ctx, g, "senderName", path),
        headline=optional(ctx, g, "headline", path),
        description=optional(ctx, g, "description", path),
        instruction=optional(ctx, g, "instruction", path),
        web=optional(ctx, g, "web", path),
        contact=optional(ctx, g, "contact", path),
        parameters=tuple(parameters),
        areas=tuple(a for a in areas if a is not None),
    )


def convert_cn(ctx: Ctx, el: Element, path: str) -> Alert | None:
    g = group_children(ctx, el, path, CN_ALERT_SPEC, "", check_order=False)
    identifier = required(ctx, g, "identifier", path, el)
    check_token(ctx, identifier, f"{path}/identifier", g["identifier"][0] if identifier else None)
    sender = required(ctx, g, "sender", path, el)
    check_token(ctx, sender, f"{path}/sender", g["sender"][0] if sender else None, strict=False)
    sender_code = optional(ctx, g, "senderCode", path)
    if sender_code is not None and _SENDER_CODE.match(sender_code) is None:
        ctx.warn(
            f"{path}/senderCode", f"{sender_code!r} is not a 14-digit organisation code", g["senderCode"][0]
        )
    raw_sent = required(ctx, g, "sendTime", path, el)
    sent = (
        parse_datetime(ctx, raw_sent, f"{path}/sendTime", g["sendTime"][0], allow_space=True)
        if raw_sent
        else None
    )
    status = enum_value(ctx, g, "status", path, el, STATUSES)
    msg_type = enum_value(ctx, g, "msgType", path, el, CN_MSG_TYPES)
    if "scope" in g:
        scope = enum_value(ctx, g, "scope", path, el, SCOPES)
    else:
        ctx.warn(f"{path}/scope", "missing; assumed Public", el)
        scope = "Public"
    restriction = optional(ctx, g, "restriction", path)
    addresses = optional(ctx, g, "addresses", path)
    _scope_checks(ctx, scope, restriction, addresses, path, el)
    codes: list[str] = []
    channel_texts = _cn_channel_texts(ctx, g.get("code"), path, codes)
    refs = _references(ctx, g, path, msg_type, el, cn=True)
    infos = [_cn_info(ctx, iel, f"{path}/info[{i}]") for i, iel in enumerate(g.get("info", ()), 1)]
    if ctx.errors:
        return None
    assert identifier and sender and sent and status and msg_type and scope
    return Alert(
        profile="cap-cn",
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=status,
        msg_type=msg_type,
        scope=scope,
        sender_code=sender_code,
        restriction=restriction,
        addresses=addresses,
        codes=tuple(codes),
        note=optional(ctx, g, "note", path),
        references=tuple(refs),
        infos=tuple(i for i in infos if i is not None),
        channel_texts=tuple(channel_texts),
        warnings=tuple(ctx.warnings),
    )


# --- entry points -----------------------------------------------------------------------------------------


def is_cap_alert(el: Element) -> bool:
    tag = el.tag
    if not isinstance(tag, str):
        return False
    if tag == "alert":
        return True
    return tag.endswith("}alert") and namespace(tag) in CAP_PROFILES


def convert_alert(el: Element, path: str = "alert") -> tuple[Alert | None, list[Issue], list[Issue]]:
    """Convert one CAP ``alert`` element: (alert or None, errors, warnings)."""
    ctx = Ctx()
    tag = el.tag
    assert isinstance(tag, str)
    if tag == "alert":
        alert = convert_cn(ctx, el, path)
    else:
        ns = namespace(tag)
        if ns not in CAP_PROFILES or local_name(tag) != "alert":
            ctx.err(path, f"not a CAP alert element: <{local_name(tag)}> in namespace {ns or 'none'}", el)
            return None, ctx.errors, ctx.warnings
        alert = convert_oasis(ctx, el, path, ns)
    return alert, ctx.errors, ctx.warnings


def serialize(el: Element) -> bytes:
    """An embedded alert's own bytes: a standalone UTF-8 document."""
    return etree.tostring(el, encoding="UTF-8", xml_declaration=True, with_tail=False)


def parse_alert(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Alert:
    """Exactly one CAP alert (XML, any supported version/profile), or raise :class:`InvalidDocument`."""
    root = load_xml(data, max_bytes=max_bytes)
    if not is_cap_alert(root):
        tag = root.tag if isinstance(root.tag, str) else "?"
        raise InvalidDocument(
            [
                Issue(
                    local_name(tag),
                    f"expected a CAP <alert>, found <{local_name(tag)}> "
                    f"(namespace {namespace(tag) or 'none'})",
                    root.sourceline,
                )
            ]
        )
    alert, errors, _ = convert_alert(root, local_name(root.tag))
    if alert is None:
        raise InvalidDocument(errors)
    return alert


def parse(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParseResult:
    """Detect the format (CAP XML, ATOM, RSS, EDXL-DE, NWS JSON) and parse it; see the package docstring."""
    from . import feeds, nws

    check_size(data, max_bytes)
    first = _first_significant_byte(data)
    if first in (b"{", b"["):
        return nws.parse_nws_json(data)
    root = load_xml(data, max_bytes=max_bytes)
    tag = root.tag if isinstance(root.tag, str) else ""
    if is_cap_alert(root):
        alert, errors, _ = convert_alert(root, "alert")
        if alert is None:
            raise InvalidDocument(errors)
        return ParseResult(kind="cap", alerts=[ParsedAlert(alert, data)])
    handler = feeds.ROOT_HANDLERS.get(tag)
    if handler is None:
        raise InvalidDocument(
            [
                Issue(
                    local_name(tag) or "document",
                    f"unknown root element <{local_name(tag)}> (namespace {namespace(tag) or 'none'})",
                    root.sourceline,
                )
            ]
        )
    return handler(root)


def _first_significant_byte(data: bytes) -> bytes:
    view = data[:4096]
    if view.startswith(b"\xef\xbb\xbf"):
        view = view[3:]
    view = view.lstrip(b" \t\r\n")
    return view[:1]
