"""NWS API alert JSON (api.weather.gov): a GeoJSON FeatureCollection or a single Feature → :class:`Alert`.

``properties`` carries the CAP fields; ``geometry`` is GeoJSON (lon, lat) and becomes CAP (lat, lon) rings.
A FeatureCollection is a container: an invalid feature is rejected on its own. A single Feature is a lone
alert: if invalid, the payload is rejected. ``ParsedAlert.xml`` holds the feature's own JSON (UTF-8).
"""

from __future__ import annotations

import json
from typing import Any

from .model import (
    MSG_TYPES,
    SCOPES,
    STATUSES,
    Alert,
    Area,
    Info,
    InvalidDocument,
    Issue,
    ParsedAlert,
    ParseResult,
    Reference,
    RejectedItem,
)
from .parse import (
    CATEGORIES,
    CERTAINTIES,
    RESPONSE_TYPES_12,
    SEVERITIES,
    URGENCIES,
    Ctx,
    check_token,
    parse_datetime,
)


def parse_nws_json(data: bytes) -> ParseResult:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidDocument([Issue("document", f"not valid JSON: {exc}")]) from None
    except RecursionError:
        raise InvalidDocument([Issue("document", "JSON nested too deeply")]) from None
    if not isinstance(doc, dict):
        raise InvalidDocument(
            [Issue("document", "JSON document is not an NWS alert Feature or FeatureCollection")]
        )
    kind = doc.get("type")
    result = ParseResult(kind="nws-json")
    if kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise InvalidDocument([Issue("features", "FeatureCollection without a features list")])
        for i, feature in enumerate(features, 1):
            path = f"features[{i}]"
            alert, ctx = convert_feature(feature, path)
            raw = _dump(feature)
            if alert is None:
                ident = feature.get("properties", {}).get("id") if isinstance(feature, dict) else None
                result.rejected.append(
                    RejectedItem(tuple(ctx.errors), raw, ident if isinstance(ident, str) else None)
                )
            else:
                result.alerts.append(ParsedAlert(alert, raw))
        return result
    if kind == "Feature":
        alert, ctx = convert_feature(doc, "feature")
        if alert is None:
            raise InvalidDocument(ctx.errors)
        result.alerts.append(ParsedAlert(alert, _dump(doc)))
        return result
    raise InvalidDocument(
        [Issue("type", f"JSON type {kind!r} is not an NWS alert Feature or FeatureCollection")]
    )


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _str(ctx: Ctx, props: dict[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    value = props.get(key)
    if value is None or value == "":
        if required:
            ctx.err(f"{path}/{key}", "required property missing")
        return None
    if not isinstance(value, str):
        ctx.err(f"{path}/{key}", f"expected a string, got {type(value).__name__}")
        return None
    return value.strip() or None


def _enum(ctx: Ctx, props: dict[str, Any], key: str, path: str, allowed: tuple[str, ...]) -> str | None:
    value = _str(ctx, props, key, path, required=True)
    if value is None:
        return None
    if value not in allowed:
        ctx.err(f"{path}/{key}", f"{value!r} is not one of {', '.join(allowed)}")
        return None
    return value


def _dt(ctx: Ctx, props: dict[str, Any], key: str, path: str, *, required: bool = False) -> Any:
    raw = _str(ctx, props, key, path, required=required)
    if raw is None:
        return None
    return parse_datetime(ctx, raw, f"{path}/{key}", None)


def _code_lists(ctx: Ctx, value: Any, path: str) -> list[tuple[str, str]]:
    """{"SAME": ["041007", ...], "UGC": [...]} → [("SAME", "041007"), ...]."""
    out: list[tuple[str, str]] = []
    if value is None:
        return out
    if not isinstance(value, dict):
        ctx.err(path, "expected an object of code lists")
        return out
    for name, codes in value.items():
        if isinstance(codes, str):
            codes = [codes]
        if not isinstance(codes, list):
            ctx.err(f"{path}/{name}", "expected a list of codes")
            continue
        out.extend((str(name), str(c)) for c in codes if c is not None and str(c) != "")
    return out


def _rings(ctx: Ctx, geometry: Any, path: str) -> list[tuple[tuple[float, float], ...]]:
    if geometry is None:
        return []
    if not isinstance(geometry, dict):
        ctx.err(path, "geometry must be an object or null")
        return []
    gtype = geometry.get("type")
    coords = geometry.get("coordinates")
    if gtype == "Polygon":
        polygons = [coords]
    elif gtype == "MultiPolygon":
        polygons = coords if isinstance(coords, list) else []
    elif gtype == "GeometryCollection":
        out: list[tuple[tuple[float, float], ...]] = []
        for j, g in enumerate(geometry.get("geometries") or [], 1):
            out.extend(_rings(ctx, g, f"{path}/geometries[{j}]"))
        return out
    else:
        ctx.warn(path, f"geometry type {gtype!r} ignored (areas use geocodes)")
        return []
    rings: list[tuple[tuple[float, float], ...]] = []
    for pi, poly in enumerate(polygons, 1):
        if not isinstance(poly, list):
            ctx.err(f"{path}/coordinates", "malformed polygon")
            continue
        for ri, ring in enumerate(poly, 1):
            rpath = (
                f"{path}/coordinates[{pi}][{ri}]" if gtype == "MultiPolygon" else f"{path}/coordinates[{ri}]"
            )
            pts: list[tuple[float, float]] = []
            try:
                for pos in ring:
                    lon, lat = float(pos[0]), float(pos[1])
                    if not (-90.0 <= lat <= 90.0) or not (-180.0 <= lon <= 180.0):
                        raise ValueError(f"position {pos} out of range")
                    pts.append((lat, lon))
            except (TypeError, ValueError, IndexError) as exc:
                ctx.err(rpath, f"bad position: {exc}")
                continue
            if len(pts) < 4:
                ctx.err(rpath, f"{len(pts)} positions; a ring needs at least 4")
            elif pts[0] != pts[-1]:
                ctx.err(rpath, "ring not closed")
            elif ri == 1:
                rings.append(tuple(pts))  # outer ring; holes cannot be expressed in CAP
    return rings


def _references(ctx: Ctx, value: Any, path: str) -> list[Reference]:
    refs: list[Reference] = []
    if value is None:
        return refs
    if not isinstance(value, list):
        ctx.err(path, "expected a list of references")
        return refs
    for i, ref in enumerate(value, 1):
        rpath = f"{path}[{i}]"
        if not isinstance(ref, dict):
            ctx.err(rpath, "expected an object with identifier, sender, sent")
            continue
        ident = _str(ctx, ref, "identifier", rpath, required=True)
        sender = _str(ctx, ref, "sender", rpath, required=True)
        sent = _dt(ctx, ref, "sent", rpath, required=True)
        if ident and sender and sent:
            refs.append(Reference(identifier=ident, sender=sender, sent=sent))
    return refs


def convert_feature(feature: Any, path: str) -> tuple[Alert | None, Ctx]:
    ctx = Ctx()
    if not isinstance(feature, dict) or not isinstance(feature.get("properties"), dict):
        ctx.err(path, "not a GeoJSON Feature with properties")
        return None, ctx
    props: dict[str, Any] = feature["properties"]
    pp = f"{path}/properties"
    identifier = _str(ctx, props, "id", pp, required=True)
    check_token(ctx, identifier, f"{pp}/id", None)
    sender = _str(ctx, props, "sender", pp, required=True)
    check_token(ctx, sender, f"{pp}/sender", None)
    sent = _dt(ctx, props, "sent", pp, required=True)
    status = _enum(ctx, props, "status", pp, STATUSES)
    msg_type = _enum(ctx, props, "messageType", pp, MSG_TYPES)
    scope = _str(ctx, props, "scope", pp)
    if scope is None:
        ctx.warn(f"{pp}/scope", "missing; assumed Public")
        scope = "Public"
    elif scope not in SCOPES:
        ctx.err(f"{pp}/scope", f"{scope!r} is not one of {', '.join(SCOPES)}")
    refs = _references(ctx, props.get("references"), f"{pp}/references")
    if msg_type in ("Update", "Cancel") and not refs and not ctx.errors:
        ctx.err(f"{pp}/references", f"empty; an {msg_type} must reference the message(s) it replaces")
    category = _str(ctx, props, "category", pp)
    categories: tuple[str, ...] = ()
    if category is not None:
        if category in CATEGORIES:
            categories = (category,)
        else:
            ctx.err(f"{pp}/category", f"{category!r} is not one of {', '.join(CATEGORIES)}")
    response = _str(ctx, props, "response", pp)
    responses: tuple[str, ...] = ()
    if response is not None:
        if response in RESPONSE_TYPES_12:
            responses = (response,)
        else:
            ctx.err(f"{pp}/response", f"{response!r} is not one of {', '.join(RESPONSE_TYPES_12)}")
    event = _str(ctx, props, "event", pp, required=True)
    urgency = _enum(ctx, props, "urgency", pp, URGENCIES)
    severity = _enum(ctx, props, "severity", pp, SEVERITIES)
    certainty = _enum(ctx, props, "certainty", pp, CERTAINTIES)
    effective = _dt(ctx, props, "effective", pp)
    onset = _dt(ctx, props, "onset", pp)
    expires = _dt(ctx, props, "expires", pp)
    geocodes = _code_lists(ctx, props.get("geocode"), f"{pp}/geocode")
    event_codes = _code_lists(ctx, props.get("eventCode"), f"{pp}/eventCode")
    parameters = _code_lists(ctx, props.get("parameters"), f"{pp}/parameters")
    polygons = _rings(ctx, feature.get("geometry"), f"{path}/geometry")
    area_desc = _str(ctx, props, "areaDesc", pp)
    code = _str(ctx, props, "code", pp)
    if ctx.errors:
        return None, ctx
    assert identifier and sender and sent and status and msg_type and event
    areas: tuple[Area, ...] = ()
    if area_desc or geocodes or polygons:
        areas = (Area(desc=area_desc or "", polygons=tuple(polygons), geocodes=tuple(geocodes)),)
    info = Info(
        language=_str(ctx, props, "language", pp) or "en-US",
        event=event,
        categories=categories,
        event_codes=tuple(event_codes),
        urgency=urgency or "Unknown",
        severity=severity or "Unknown",
        certainty=certainty or "Unknown",
        response_types=responses,
        effective=effective,
        onset=onset,
        expires=expires,
        sender_name=_str(ctx, props, "senderName", pp),
        headline=_str(ctx, props, "headline", pp),
        description=_str(ctx, props, "description", pp),
        instruction=_str(ctx, props, "instruction", pp),
        web=_str(ctx, props, "web", pp),
        parameters=tuple(parameters),
        areas=areas,
    )
    alert = Alert(
        profile="nws-json",
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=status,
        msg_type=msg_type,
        scope=scope,
        codes=(code,) if code else (),
        note=_str(ctx, props, "note", pp),
        references=tuple(refs),
        infos=(info,),
        warnings=tuple(ctx.warnings),
    )
    return alert, ctx
