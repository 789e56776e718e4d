"""Gauge readings: one model, several source formats.

A :class:`Reading` is one observation at one station and time. ``level`` (water level Z, metres) and
``rainfall`` (millimetres in the interval ending at ``time``) are None when the source had no usable value; then
``problem`` says why (e.g. the USGS no-data value -999999), so gaps stay visible instead of being dropped.

Parsers (each returns ``list[Reading]`` sorted by (station, time), every time timezone-aware, or raises
:class:`ReadingsError` naming the element, line or field at fault):

``parse_usgs_iv``
    USGS NWIS instantaneous values, WaterML-JSON (``value.timeSeries[]``). Station ``"{agencyCode}:{siteCode}"``
    (agency USGS when absent). Units converted by ``variable.unit.unitCode`` (ft → m, ft3/s → m³/s, in → mm);
    level and flow of one station and time are merged into one Reading. Parameters used: level 00065 (gage
    height), then 62614/62615/63160/00062 (water-surface elevations), 30207 (gage height, m) — only the first of
    these present for a station, so two datums are never mixed; flow 00060/00061/30208; rainfall 00045. Other
    parameters (temperature, conductance, …) are skipped. A value equal to ``noDataValue`` or a -9999/-999999
    sentinel gives None with ``problem="no data (-999999)"`` (``"level: no data (-999999)"`` when the Reading
    also carries another field); qualifiers are kept as given (("A",), ("P",), ("Eqp",) …).
    **Daily values are refused** (``ReadingsError`` saying "daily values"): a daily mean flattens the peak a
    warning ladder must see, and its dates carry no time zone. DV is recognised by a Statistic option other
    than 00000 or a ``/nwis/dv`` query URL.
``parse_waterml1``
    The same series as WaterML 1.1 XML (USGS IV ``format=waterml``), loaded with the hardened XML loader of
    :mod:`warnd.cap.xml` (no DOCTYPE, no entities, no network). Same rules as ``parse_usgs_iv``.
``parse_cn_json`` / ``parse_cn_csv``
    The Chinese water-data shape (水情): station ``stcd``/``station``, time ``tm``/``time`` (no zone →
    Asia/Shanghai), level ``z``/``zl``/``level`` (m), flow ``q``/``flow`` (m³/s), rainfall ``drp``/``p``/
    ``rainfall`` (mm); names case-insensitive, other fields ignored, two names for one field an error. Empty
    values and -9999/-999999 sentinels are None with a ``problem``. CSV: UTF-8 (BOM tolerated), header row,
    errors by line number.
``parse_pushed``
    The decoded JSON body of ``POST /api/v1/readings``: a list (≤ 10,000) of ``{"station", "time" (ISO 8601
    with zone), "level", "flow", "rainfall", "qualifiers"}``; at least one of level/flow/rainfall must be given
    (a rain gauge has no level). Strict: unknown keys, naive times, strings/NaN/inf for numbers and negative
    rainfall are refused with the item index (``items[3].time: no timezone``). Sentinels are no-data here too.
``parse_readings``
    Dispatch by content type, else by sniffing: USGS JSON (``timeSeries``), WaterML 1.1, Chinese JSON, CSV.

Decided for the other USGS shapes (the corpus's ``hydrology`` "sample" files): WaterML 1.1 is parsed (above);
WaterML 2.0, USGS RDB (tab-separated) and the Water Data OGC API (GeoJSON) are refused by ``parse_readings``
with a reason — the corpus copies are daily values or site/metadata listings, not instantaneous readings, and a
format we cannot check against a real IV sample is better refused than half-read.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Reading:
    station: str  # the station's id as the source names it (config maps it to a station)
    time: datetime  # timezone-aware
    level: float | None = None  # water level Z, metres
    flow: float | None = None  # discharge Q, m³/s
    rainfall: float | None = None  # mm fallen in the interval ending at ``time`` (rain gauges)
    qualifiers: tuple[str, ...] = ()  # source qualifiers, e.g. ("P",) provisional, ("A",) approved
    problem: str | None = None  # why a value is missing or doubtful ("no data (-999999)", "provisional")

    @property
    def provisional(self) -> bool:
        return "P" in self.qualifiers


class ReadingsError(ValueError):
    """Malformed gauge data; the message names the element, line or field at fault."""


MAX_PUSHED_ITEMS = 10_000
CHINA_TZ = ZoneInfo("Asia/Shanghai")

# --- values -----------------------------------------------------------------------------------------------


def is_sentinel(value: float) -> bool:
    """-9999, -99999, -999999 … : the no-data markers gauge systems write instead of leaving a gap."""
    value = float(value)
    if value > -9999 or not value.is_integer():
        return False
    return set(str(int(-value))) == {"9"}


def _fmt(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _number(raw: object, where: str, *, strings: bool = True) -> float | None:
    """A finite number, None for an empty value; ReadingsError otherwise."""
    if raw is None or (strings and isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise ReadingsError(f"{where}: not a number: {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    elif strings and isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ReadingsError(f"{where}: not a number: {raw!r}") from None
    else:
        raise ReadingsError(f"{where}: not a number: {raw!r}")
    if not math.isfinite(value):
        raise ReadingsError(f"{where}: not a finite number: {raw!r}")
    return value


def _time(raw: object, where: str, default_tz: tzinfo | None = None) -> datetime:
    if not isinstance(raw, str) or not raw.strip():
        raise ReadingsError(f"{where}: missing or not a string: {raw!r}")
    text = raw.strip()
    slashed = re.match(r"^(\d{4})/(\d{1,2})/(\d{1,2})(.*)$", text)
    if slashed:  # 2024/07/11 08:00:00, as some Chinese systems write it
        y, m, d, rest = slashed.groups()
        text = f"{y}-{int(m):02d}-{int(d):02d}{rest}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ReadingsError(f"{where}: not an ISO 8601 time: {raw!r}") from None
    if when.tzinfo is None:
        if default_tz is None:
            raise ReadingsError(f"{where}: no timezone in {raw!r}")
        when = when.replace(tzinfo=default_tz)
    return when


# --- merging values of one station and time into one Reading --------------------------------------------


@dataclass
class _Slot:
    values: dict[str, float | None] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    qualifiers: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)


class _Collector:
    def __init__(self) -> None:
        self._slots: dict[tuple[str, datetime], _Slot] = {}

    def add(
        self,
        station: str,
        when: datetime,
        name: str,
        value: float | None,
        where: str,
        *,
        qualifiers: Iterable[str] = (),
        problem: str | None = None,
    ) -> None:
        slot = self._slots.setdefault((station, when), _Slot())
        if name in slot.values:
            if slot.values[name] != value:
                raise ReadingsError(
                    f"{where}: {station} at {when.isoformat()} already has {name} "
                    f"{slot.values[name]} (from {slot.where[name]}), now {value}"
                )
        slot.values[name] = value
        slot.where.setdefault(name, where)
        if value is None:
            slot.problems.setdefault(name, problem or "no value")
        for q in qualifiers:
            if q not in slot.qualifiers:
                slot.qualifiers.append(q)

    def readings(self) -> list[Reading]:
        out = []
        for (station, when), slot in self._slots.items():
            many = len(slot.values) > 1
            problems = [f"{n}: {p}" if many else p for n, p in slot.problems.items()]
            out.append(
                Reading(
                    station=station,
                    time=when,
                    level=slot.values.get("level"),
                    flow=slot.values.get("flow"),
                    rainfall=slot.values.get("rainfall"),
                    qualifiers=tuple(slot.qualifiers),
                    problem="; ".join(problems) or None,
                )
            )
        out.sort(key=lambda r: (r.station, r.time))
        return out


# --- USGS NWIS instantaneous values ----------------------------------------------------------------------

# parameter code → (field, unit when the response names none); level codes in order of preference
_USGS_PARAMETERS: dict[str, tuple[str, str]] = {
    "00065": ("level", "ft"),  # gage height
    "62614": ("level", "ft"),  # lake/reservoir water-surface elevation above NGVD 1929
    "62615": ("level", "ft"),  # … above NAVD 1988
    "63160": ("level", "ft"),  # stream water-level elevation above NAVD 1988
    "00062": ("level", "ft"),  # reservoir water-surface elevation above datum
    "30207": ("level", "m"),  # gage height, metres
    "00060": ("flow", "ft3/s"),  # discharge
    "00061": ("flow", "ft3/s"),  # discharge, instantaneous (field measurement)
    "30208": ("flow", "m3/s"),  # discharge, m³/s
    "00045": ("rainfall", "in"),  # precipitation, total
}
_LEVEL_PREFERENCE = [code for code, (name, _unit) in _USGS_PARAMETERS.items() if name == "level"]
_UNITS: dict[str, dict[str, float]] = {
    "level": {"ft": 0.3048, "m": 1.0, "cm": 0.01},
    "flow": {"ft3/s": 0.3048**3, "cfs": 0.3048**3, "m3/s": 1.0},
    "rainfall": {"in": 25.4, "mm": 1.0},
}
_USGS_NO_DATA = -999999.0


def parse_usgs_iv(data: bytes) -> list[Reading]:
    """USGS NWIS instantaneous values as WaterML-JSON (``https://waterservices.usgs.gov/nwis/iv/?format=json``)."""
    doc = _json(data)
    value = doc.get("value") if isinstance(doc, dict) else None
    if not isinstance(value, dict) or not isinstance(value.get("timeSeries"), list):
        raise ReadingsError("value.timeSeries: missing — not a USGS NWIS WaterML-JSON response")
    _refuse_daily_url(_get(value, "queryInfo", "queryURL"))
    return _usgs_series(value["timeSeries"], "value.timeSeries")


def _get(obj: object, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(key, int):
            obj = obj[key] if isinstance(obj, list) and len(obj) > key else None
        else:
            obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _refuse_daily_url(url: object) -> None:
    if isinstance(url, str) and "/nwis/dv" in url:
        raise ReadingsError(
            f"queryInfo.queryURL {url[:80]!r}: USGS daily values, not instantaneous readings; "
            "request the IV service (/nwis/iv)"
        )


def _usgs_series(series: list[Any], base: str) -> list[Reading]:
    parsed = []
    for i, ts in enumerate(series):
        where = f"{base}[{i}]"
        if not isinstance(ts, dict):
            raise ReadingsError(f"{where}: not an object")
        site = _get(ts, "sourceInfo", "siteCode", 0)
        if not isinstance(site, dict) or not isinstance(site.get("value"), str) or not site["value"].strip():
            raise ReadingsError(f"{where}.sourceInfo.siteCode[0].value: missing")
        station = f"{site.get('agencyCode') or 'USGS'}:{site['value'].strip()}"
        code = _get(ts, "variable", "variableCode", 0, "value")
        if not isinstance(code, str):
            raise ReadingsError(f"{where}.variable.variableCode[0].value: missing")
        options = _get(ts, "variable", "options", "option") or []
        for option in options if isinstance(options, list) else []:
            if (
                isinstance(option, dict)
                and option.get("name") == "Statistic"
                and option.get("optionCode") not in (None, "00000")
            ):
                raise ReadingsError(
                    f"{where} ({station} parameter {code}): daily values (statistic "
                    f"{option.get('value') or ''} {option['optionCode']}), not instantaneous readings; "
                    "request the IV service (/nwis/iv)"
                )
        parsed.append((where, station, code, ts))
    # one level parameter per station, so two datums are never mixed
    level_code: dict[str, str] = {}
    for _where, station, code, _ts in parsed:
        if code in _LEVEL_PREFERENCE:
            current = level_code.get(station)
            if current is None or _LEVEL_PREFERENCE.index(code) < _LEVEL_PREFERENCE.index(current):
                level_code[station] = code
    out = _Collector()
    for where, station, code, ts in parsed:
        if code not in _USGS_PARAMETERS:
            continue  # temperature, conductance, …: not used for warnings
        name, default_unit = _USGS_PARAMETERS[code]
        if name == "level" and level_code.get(station) != code:
            continue
        unit = _get(ts, "variable", "unit", "unitCode") or default_unit
        factor = _UNITS[name].get(str(unit).strip().lower().replace(" ", ""))
        if factor is None:
            raise ReadingsError(
                f"{where}.variable.unit.unitCode: unit {unit!r} of parameter {code} ({name}) is not known; "
                f"expected one of {', '.join(_UNITS[name])}"
            )
        no_data = _number(_get(ts, "variable", "noDataValue"), f"{where}.variable.noDataValue")
        blocks = ts.get("values") or []
        if not isinstance(blocks, list):
            raise ReadingsError(f"{where}.values: not a list")
        for j, block in enumerate(blocks):
            points = _get(block, "value") or []
            if not isinstance(points, list):
                raise ReadingsError(f"{where}.values[{j}].value: not a list")
            for k, point in enumerate(points):
                at = f"{where}.values[{j}].value[{k}]"
                if not isinstance(point, dict):
                    raise ReadingsError(f"{at}: not an object")
                when = _time(point.get("dateTime"), f"{at}.dateTime")
                raw = _number(point.get("value"), f"{at}.value")
                qualifiers = _qualifiers(point.get("qualifiers"), f"{at}.qualifiers")
                if raw is None:
                    out.add(station, when, name, None, at, qualifiers=qualifiers, problem="no value")
                elif raw == no_data or raw == _USGS_NO_DATA or is_sentinel(raw):
                    out.add(
                        station, when, name, None, at, qualifiers=qualifiers, problem=f"no data ({_fmt(raw)})"
                    )
                else:
                    converted = raw if factor == 1.0 else round(raw * factor, 6)
                    out.add(station, when, name, converted, at, qualifiers=qualifiers)
    return out.readings()


def _qualifiers(raw: object, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = re.split(r"[,\s]+", raw)
    if not isinstance(raw, list) or not all(isinstance(q, str) for q in raw):
        raise ReadingsError(f"{where}: not a list of strings")
    return tuple(q.strip() for q in raw if q.strip())


WATERML11_NS = "http://www.cuahsi.org/waterML/1.1/"
WATERML20_NS = "http://www.opengis.net/waterml/2.0"


def parse_waterml1(data: bytes) -> list[Reading]:
    """USGS NWIS instantaneous values as WaterML 1.1 XML (``format=waterml,1.1``)."""
    from warnd.cap.model import InvalidDocument
    from warnd.cap.xml import load_xml

    try:
        root = load_xml(data)
    except InvalidDocument as exc:
        raise ReadingsError(f"WaterML: {exc}") from None
    ns = {"w": WATERML11_NS}
    if root.tag != f"{{{WATERML11_NS}}}timeSeriesResponse":
        raise ReadingsError(f"root element {root.tag!r}: not a WaterML 1.1 timeSeriesResponse")
    _refuse_daily_url(root.findtext("w:queryInfo/w:queryURL", namespaces=ns))

    def text(el: Any, path: str) -> str | None:
        found = el.find(path, ns)
        return None if found is None or found.text is None else found.text.strip()

    series: list[dict[str, Any]] = []
    for ts in root.iterfind("w:timeSeries", ns):
        site = ts.find("w:sourceInfo/w:siteCode", ns)
        series.append(
            {
                "sourceInfo": {
                    "siteCode": []
                    if site is None
                    else [{"value": (site.text or "").strip(), "agencyCode": site.get("agencyCode")}]
                },
                "variable": {
                    "variableCode": [{"value": text(ts, "w:variable/w:variableCode")}],
                    "unit": {"unitCode": text(ts, "w:variable/w:unit/w:unitCode")},
                    "noDataValue": text(ts, "w:variable/w:noDataValue"),
                    "options": {
                        "option": [
                            {"name": o.get("name"), "optionCode": o.get("optionCode"), "value": o.text}
                            for o in ts.iterfind("w:variable/w:options/w:option", ns)
                        ]
                    },
                },
                "values": [
                    {
                        "value": [
                            {
                                "value": v.text,
                                "dateTime": v.get("dateTime"),
                                "qualifiers": v.get("qualifiers"),
                            }
                            for v in block.iterfind("w:value", ns)
                        ]
                    }
                    for block in ts.iterfind("w:values", ns)
                ],
            }
        )
    return _usgs_series(series, "timeSeries")


# --- the Chinese water-data shape (水情 JSON / CSV) -------------------------------------------------------

_CN_FIELDS: dict[str, tuple[str, ...]] = {
    "station": ("stcd", "station"),
    "time": ("tm", "time"),
    "level": ("z", "zl", "level"),
    "flow": ("q", "flow"),
    "rainfall": ("drp", "p", "rainfall"),
}


def _cn_columns(names: Iterable[str], where: str) -> dict[str, str]:
    """field → the source's own key for it (names compared case-insensitively)."""
    lowered: dict[str, str] = {}
    for name in names:
        key = name.strip().lower()
        if key in lowered:
            raise ReadingsError(f"{where}: {lowered[key]!r} and {name!r} are the same field")
        lowered[key] = name
    columns = {}
    for field_name, aliases in _CN_FIELDS.items():
        present = [lowered[a] for a in aliases if a in lowered]
        if len(present) > 1:
            raise ReadingsError(f"{where}: {' and '.join(map(repr, present))} both give the {field_name}")
        if present:
            columns[field_name] = present[0]
    return columns


def _cn_row(out: _Collector, row: Mapping[str, object], columns: dict[str, str], where: str) -> None:
    raw_station = row.get(columns["station"]) if "station" in columns else None
    if isinstance(raw_station, int) and not isinstance(raw_station, bool):
        raw_station = str(raw_station)
    if not isinstance(raw_station, str) or not raw_station.strip():
        raise ReadingsError(f"{where}: station code (stcd / station) missing")
    station = raw_station.strip()
    if "time" not in columns:
        raise ReadingsError(f"{where}: time (tm / time) missing")
    when = _time(row.get(columns["time"]), f"{where}: {columns['time']}", CHINA_TZ)
    given = [n for n in ("level", "flow", "rainfall") if n in columns]
    if not given:
        raise ReadingsError(
            f"{where}: no water level (z / level), flow (q / flow) or rainfall (drp / p / rainfall)"
        )
    for name in given:
        key = columns[name]
        value = _number(row.get(key), f"{where}: {key}")
        if value is None:
            out.add(station, when, name, None, where, problem="empty")
        elif is_sentinel(value):
            out.add(station, when, name, None, where, problem=f"no data ({_fmt(value)})")
        else:
            if name == "rainfall" and value < 0:
                raise ReadingsError(f"{where}: {key}: negative rainfall {value}")
            out.add(station, when, name, value, where)


def parse_cn_json(data: bytes) -> list[Reading]:
    """A JSON list (or ``{"data": [...]}``) of ``{"stcd", "tm", "z", "q", "drp"}``-style objects."""
    doc = _json(data)
    return _cn_items(doc)


def _cn_items(doc: object) -> list[Reading]:
    if isinstance(doc, dict):
        keys = {k.lower(): k for k in doc}
        if "data" not in keys:
            raise ReadingsError('expected a JSON list of readings or {"data": [...]}')
        doc = doc[keys["data"]]
    if not isinstance(doc, list):
        raise ReadingsError("data: expected a list of readings")
    out = _Collector()
    for i, item in enumerate(doc):
        where = f"[{i}]"
        if not isinstance(item, dict):
            raise ReadingsError(f"{where}: not an object")
        _cn_row(out, item, _cn_columns(item, where), where)
    return out.readings()


def parse_cn_csv(data: bytes) -> list[Reading]:
    """The same fields as CSV with a header row (UTF-8, BOM tolerated)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReadingsError(f"line {line}: not UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    columns: dict[str, str] = {}
    out = _Collector()
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                columns = _cn_columns(header, f"line {reader.line_num} (header)")
                for required, names in (("station", "stcd / station"), ("time", "tm / time")):
                    if required not in columns:
                        raise ReadingsError(
                            f"line {reader.line_num} (header): no {required} column ({names})"
                        )
                continue
            where = f"line {reader.line_num}"
            if len(cells) > len(header):
                raise ReadingsError(f"{where}: {len(cells)} fields, the header has {len(header)}")
            _cn_row(out, dict(zip(header, cells, strict=False)), columns, where)
    except csv.Error as exc:
        raise ReadingsError(f"line {reader.line_num}: {exc}") from None
    if header is None:
        raise ReadingsError("line 1: no header row")
    return out.readings()


# --- POST /api/v1/readings -------------------------------------------------------------------------------

_PUSHED_KEYS = {"station", "time", "level", "flow", "rainfall", "qualifiers"}


def parse_pushed(items: object) -> list[Reading]:
    """The decoded JSON body of ``POST /api/v1/readings``."""
    if not isinstance(items, list):
        raise ReadingsError("items: expected a JSON list of readings")
    if len(items) > MAX_PUSHED_ITEMS:
        raise ReadingsError(f"items: {len(items)} readings, at most {MAX_PUSHED_ITEMS} per request")
    out = _Collector()
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            raise ReadingsError(f"{where}: not an object")
        unknown = sorted(str(k) for k in set(item) - _PUSHED_KEYS)
        if unknown:
            raise ReadingsError(
                f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_PUSHED_KEYS))})"
            )
        station = item.get("station")
        if not isinstance(station, str) or not station.strip():
            raise ReadingsError(f"{where}.station: missing or not a string")
        when = _time(item.get("time"), f"{where}.time")
        qualifiers = _qualifiers(item.get("qualifiers"), f"{where}.qualifiers")
        if isinstance(item.get("qualifiers"), str):
            raise ReadingsError(f"{where}.qualifiers: not a list of strings")
        given = [n for n in ("level", "flow", "rainfall") if item.get(n) is not None]
        if not given:
            raise ReadingsError(f"{where}: none of level, flow, rainfall given")
        for name in given:
            value = _number(item[name], f"{where}.{name}", strings=False)
            assert value is not None
            if is_sentinel(value):
                out.add(
                    station.strip(),
                    when,
                    name,
                    None,
                    where,
                    qualifiers=qualifiers,
                    problem=f"no data ({_fmt(value)})",
                )
                continue
            if name == "rainfall" and value < 0:
                raise ReadingsError(f"{where}.rainfall: negative ({value})")
            out.add(station.strip(), when, name, value, where, qualifiers=qualifiers)
    return out.readings()


# --- dispatch ---------------------------------------------------------------------------------------------


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ReadingsError("body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ReadingsError(f"not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _is_ogc(doc: object) -> bool:
    if not isinstance(doc, dict):
        return False
    if doc.get("type") == "FeatureCollection" or "features" in doc:
        return True
    return bool(doc) and all(
        isinstance(v, dict) and v.get("type") == "FeatureCollection" for v in doc.values()
    )


def _refuse_rdb(text: str) -> None:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    header = lines[0].split("\t") if lines else []
    if any(re.fullmatch(r"\d+_\d{5}_\d{5}", c) for c in header):
        raise ReadingsError(
            "USGS RDB with daily values (statistic columns such as 01_00060_00003), not instantaneous "
            "readings; request the IV service as JSON (/nwis/iv/?format=json)"
        )
    if "datetime" not in header:
        raise ReadingsError("USGS RDB without a datetime column (a site listing?): it holds no readings")
    raise ReadingsError("USGS RDB (tab-separated) is not supported: request the IV service with format=json")


def parse_readings(data: bytes, content_type: str | None) -> list[Reading]:
    """Any supported shape: by content type (CSV, XML, JSON), else by sniffing the body."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not body:
        raise ReadingsError("empty body")
    first_line = body.split(b"\n", 1)[0]
    if (
        ctype in ("text/tab-separated-values", "text/rdb")
        or body.startswith(b"#")
        or b"agency_cd\t" in first_line
    ):
        _refuse_rdb(body.decode("utf-8", "replace"))
    if ctype.endswith("csv"):
        return parse_cn_csv(data)
    if ctype.endswith("xml") or body.startswith(b"<"):
        if WATERML20_NS.encode() in body[:2000]:
            daily = b"/nwis/dv" in body[:4000]
            raise ReadingsError(
                "WaterML 2.0 is not supported"
                + (" (and this is USGS daily values, not instantaneous readings)" if daily else "")
                + ": request USGS IV as JSON or WaterML 1.1"
            )
        return parse_waterml1(data)
    if ctype.endswith("json") or body[:1] in (b"{", b"["):
        doc = _json(data)
        if isinstance(doc, dict) and isinstance(doc.get("value"), dict) and "timeSeries" in doc["value"]:
            return parse_usgs_iv(data)
        if _is_ogc(doc):
            raise ReadingsError(
                "GeoJSON (USGS Water Data OGC API) is not supported: request the NWIS IV service as JSON"
            )
        return _cn_items(doc)
    return parse_cn_csv(data)
