"""Readings in, warnings out: the hydrology stage in front of the normal pipeline.

Every reading is kept (``gauge_readings``). Each river station's readings run through the SL 758 ladder and
each danger zone's rain gauge through its rainfall windows; a change of colour or step becomes a CAP message
that this service writes and hands to :meth:`Pipeline.accept`, so rules, audience, rendering, inhibition and
dispatch are exactly those of any other warning:

    first colour        → Alert
    upgrade / downgrade → Update referencing the previous revision (the pipeline words it 升级 / 降级)
    lift                → Cancel (解除) to everyone who received the chain

One batch of readings (a poll or a POST) yields at most one message per station or zone: the net change from
where the batch started to where it ended. A backlog that arrives after a communications gap therefore says
where the river is now instead of replaying every step of the night.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from warnd.cap import parse_alert
from warnd.cap.build import build_cap_xml
from warnd.cap.model import ParsedAlert
from warnd.clock import Clock
from warnd.config import Config, DangerZone, Station, parse_duration
from warnd.hazards import COLOUR_LABELS, OASIS_SEVERITY
from warnd.hydro.ladder import LadderState, Thresholds, severity, step
from warnd.hydro.rainfall import STEP_LABELS, WindowThreshold, ZoneState, step_zone
from warnd.hydro.readings import Reading
from warnd.pipeline import Pipeline
from warnd.store import Store

log = logging.getLogger("warnd.hydro")

FLOOD = ("11A01", "洪水")
FLASH_FLOOD = ("11A51", "山洪")
CLOCK_SKEW = timedelta(minutes=10)  # readings further in the future are kept, marked, and not used
GAP_FACTOR = 3  # a station whose newest usable reading is older than this many expected intervals has a gap
INSTRUCTIONS = {
    "blue": "沿河群众注意水位变化，做好转移准备，不要在河道内逗留。",
    "yellow": "沿河低洼地带群众做好转移准备，远离河道，不要涉水过河。",
    "orange": "沿河低洼地带群众立即转移到安全地带，听从村（社区）干部指挥。",
    "red": "危险区群众立即撤离到安全地带，切勿返回，听从当地政府统一指挥。",
}


@dataclass(frozen=True)
class Emitted:
    """One warning message the service generated."""

    key: str  # "station:longxi" / "zone:wannian-3"
    kind: str  # issue | upgrade | downgrade | lift
    colour: str | None
    alert_id: int | None
    identifier: str


class HydroService:
    def __init__(self, *, config: Config, store: Store, pipeline: Pipeline, clock: Clock):
        self.config = config
        self.hydro = config.hydrology
        self.store = store
        self.pipeline = pipeline
        self.clock = clock
        self.zone = ZoneInfo(config.timezone)
        self.station_of: dict[str, str] = {}
        for key, station in self.hydro.stations.items():
            for gauge in (key, *station.source_ids):
                self.station_of[gauge] = key
        self.zones_of: dict[str, list[str]] = defaultdict(list)
        for key, zone in self.hydro.danger_zones.items():
            self.zones_of[zone.rain_gauge].append(key)
        self._lock = asyncio.Lock()  # one batch at a time: state is read, stepped and written back

    @property
    def gauges(self) -> list[str]:
        return sorted(set(self.station_of) | set(self.zones_of))

    # --- the entry point ---------------------------------------------------------------------------------------

    async def ingest(self, readings: Sequence[Reading], *, source: str) -> dict[str, Any]:
        """Keep the readings, step every station and zone they concern, and emit the resulting warnings."""
        now = self.clock.now()
        readings = [
            replace(r, problem=f"time is in the future (now {now.isoformat()})")
            if r.time > now + CLOCK_SKEW and not r.problem
            else r
            for r in readings
        ]
        gauges = {r.station for r in readings}
        known = [
            r
            for r in readings
            if (r.station in self.station_of or r.station in self.zones_of) and r.time <= now + CLOCK_SKEW
        ]
        unknown = sorted(g for g in gauges if g not in self.station_of and g not in self.zones_of)
        new = await self.store.save_readings([_row(r, source, now) for r in readings])
        summary: dict[str, Any] = {
            "received": len(readings),
            "new": new,
            "problems": [_problem(r) for r in readings if r.problem],
            "unknown_gauges": unknown,
            "warnings": [],
        }
        if unknown:
            log.warning(
                "readings from %s for unknown gauge(s) %s kept but not used", source, ", ".join(unknown)
            )
        by_gauge: dict[str, list[Reading]] = defaultdict(list)
        for r in sorted(known, key=lambda r: r.time):
            by_gauge[r.station].append(r)
        async with self._lock:
            for gauge, items in by_gauge.items():
                emitted: list[Emitted | None] = []
                if gauge in self.station_of:
                    emitted.append(await self._river(self.station_of[gauge], items))
                for zone_key in self.zones_of.get(gauge, ()):
                    emitted.append(await self._rain(zone_key, [r.time for r in items]))
                summary["warnings"] += [asdict(e) for e in emitted if e is not None]
        return summary

    # --- river stations -----------------------------------------------------------------------------------------

    async def _river(self, key: str, readings: Iterable[Reading]) -> Emitted | None:
        station = self.hydro.stations[key]
        thresholds = Thresholds(
            warning=station.warning,
            guaranteed=station.guaranteed,
            historical_max=station.historical_max,
            approaching=station.approaching,
            hysteresis=station.hysteresis,
            downgrade_after=station.downgrade_after,
            lift_after=station.lift_after,
        )
        state_key = f"station:{key}"
        saved = await self.store.load_hydro_state(state_key)
        state = _ladder_state(saved[0]) if saved else LadderState()
        alert_ref = saved[1] if saved else None
        start = state.colour
        deciding: Reading | None = None
        for reading in readings:
            if step(thresholds, state, reading) is not None:
                deciding = reading
        emitted = None
        if deciding is not None and state.colour != start:
            emitted, alert_ref = await self._emit_river(
                key, station, start, state.colour, deciding, alert_ref
            )
        await self.store.save_hydro_state(state_key, _ladder_json(state), alert_ref, self.clock.now())
        return emitted

    async def _emit_river(
        self, key: str, station: Station, start: str | None, colour: str | None, r: Reading, ref: str | None
    ) -> tuple[Emitted, str | None]:
        assert r.level is not None
        level = r.level
        place = station.river or station.name
        when = r.time.astimezone(self.zone)
        if colour is None:
            headline = f"{self._issuer}解除{place}洪水预警"
            description = f"{_clock_time(when)}，{station.name}水位{level:.2f}米，已回落至警戒水位以下。"
        else:
            headline = f"{self._issuer}发布{place}洪水{COLOUR_LABELS[colour]}预警"
            description = (
                f"{_clock_time(when)}，{station.name}水位{level:.2f}米，{_relation(station, level)}。"
            )
        parameters = [("station", key), ("waterLevel", f"{level:.2f}")]
        if r.flow is not None:
            parameters.append(("flow", f"{r.flow:.1f}"))
        if r.provisional:
            parameters.append(("provisional", "true"))
        areas = [
            {
                "area_desc": "、".join(self.config.area_name(c) or c for c in station.areas),
                "geocodes": [("geocode", c) for c in station.areas],
            }
        ]
        return await self._emit(
            f"station:{key}", FLOOD, start, colour, ref, headline, description, parameters, areas
        )

    # --- flash-flood danger zones ---------------------------------------------------------------------------

    async def _rain(self, key: str, times: Sequence[datetime]) -> Emitted | None:
        zone = self.hydro.danger_zones[key]
        windows = tuple(
            WindowThreshold(parse_duration(name), t.prepare, t.evacuate)
            for name, t in zone.thresholds.items()
        )
        longest = max(w.seconds for w in windows)
        state_key = f"zone:{key}"
        saved = await self.store.load_hydro_state(state_key)
        state = _zone_state(saved[0]) if saved else ZoneState()
        alert_ref = saved[1] if saved else None
        start = state.step
        rain = await self.store.rain_since(zone.rain_gauge, times[0] - timedelta(seconds=longest), times[-1])
        change = None
        for at in times:  # every reading time, so a burst inside a backlog is not missed
            change = step_zone(windows, state, at, rain, zone.lift_after) or change
        if state.step == start:
            change = None
        emitted = None
        if change is not None:
            colours = {"prepare": zone.prepare_colour, "evacuate": zone.evacuate_colour, None: None}
            label = STEP_LABELS[change.step] if change.step else None
            when = change.time.astimezone(self.zone)
            if label is None:
                headline = f"{self._issuer}解除{zone.name}山洪灾害预警"
                description = f"{_clock_time(when)}，{zone.name}降雨已减弱，解除山洪灾害预警。"
            else:
                hours = _hours(change.window or 0)
                headline = f"{self._issuer}发布{zone.name}山洪灾害{label}预警"
                description = (
                    f"{_clock_time(when)}，{zone.name}{hours}累计雨量{change.rainfall:g}毫米，"
                    f"已达{label}指标。危险区{zone.households}户{zone.population}人请{label}"
                    + ("，立即撤离到安全地带" if change.step == "evacuate" else "，做好随时撤离的准备")
                    + "。"
                )
            parameters = [("dangerZone", key), ("step", change.step or "lift")]
            if change.rainfall is not None:
                parameters.append(("rainfall", f"{change.rainfall:g}"))
            emitted, alert_ref = await self._emit(
                state_key,
                FLASH_FLOOD,
                colours[start],
                colours[state.step],
                alert_ref,
                headline,
                description,
                parameters,
                [_zone_area(zone, self.config.area_name(zone.area_code))],
            )
        await self.store.save_hydro_state(state_key, _zone_json(state), alert_ref, self.clock.now())
        return emitted

    # --- writing the CAP message ------------------------------------------------------------------------------

    @property
    def _issuer(self) -> str:
        return self.hydro.sender_name or self.config.organisation

    async def _emit(
        self,
        key: str,
        hazard: tuple[str, str],
        start: str | None,
        colour: str | None,
        ref: str | None,
        headline: str,
        description: str,
        parameters: list[tuple[str, str]],
        areas: Sequence[Mapping[str, Any]],
    ) -> tuple[Emitted, str | None]:
        """Write and ingest one CAP message; returns what was emitted and the chain's new reference."""
        sent = self.clock.now().astimezone(self.zone).replace(microsecond=0)
        msg_type = "Alert" if ref is None else "Cancel" if colour is None else "Update"
        kind = (
            "issue"
            if ref is None
            else "lift"
            if colour is None
            else "upgrade"
            if severity(colour) > severity(start)
            else "downgrade"
        )
        identifier = f"{self.hydro.sender}-{key.replace(':', '-')}-{sent:%Y%m%d%H%M%S}-{kind}"
        shown = colour or start or "blue"
        xml = build_cap_xml(
            identifier=identifier,
            sender=self.hydro.sender,
            sent=sent,
            msg_type=msg_type,
            references=[ref] if ref else (),
            language=self.config.language,
            category="Met" if hazard is FLASH_FLOOD else "Env",
            event=hazard[1],
            event_codes=[("GB/T 35561", hazard[0])],
            urgency="Immediate" if colour in ("orange", "red") else "Expected",
            severity=OASIS_SEVERITY[shown],
            certainty="Observed",
            sender_name=self._issuer,
            headline=headline,
            description=description,
            instruction=INSTRUCTIONS.get(colour or "", None) if hazard is FLOOD else None,
            expires=sent + timedelta(seconds=self.hydro.alert_ttl) if colour else None,
            parameters=parameters,
            areas=areas,
        )
        result = await self.pipeline.accept(
            ParsedAlert(parse_alert(xml), xml), source=f"hydro:{key}", content_type="application/cap+xml"
        )
        log.info("%s: %s %s → alert %s (%s)", key, kind, colour or "解除", result.alert_id, identifier)
        new_ref = None if colour is None else f"{self.hydro.sender},{identifier},{sent.isoformat()}"
        return Emitted(key, kind, colour, result.alert_id, identifier), new_ref

    # --- status for the API -----------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """Every station and zone: its warning now, the latest reading, and whether data are missing."""
        now = self.clock.now()
        summaries = await self.store.gauge_summary(self.gauges, now - timedelta(hours=24), now + CLOCK_SKEW)
        states = {row["key"]: row for row in await self.store.hydro_states()}
        stations = []
        for key, station in self.hydro.stations.items():
            gauges = [key, *station.source_ids]
            latest = _newest(summaries[g]["latest_usable"] for g in gauges)
            gap = (
                latest is None or (now - latest["time"]).total_seconds() > GAP_FACTOR * station.expected_every
            )
            state = states.get(f"station:{key}", {}).get("state") or {}
            stations.append(
                {
                    "station": key,
                    "name": station.name,
                    "colour": state.get("colour"),
                    "thresholds": {
                        "warning": station.warning,
                        "guaranteed": station.guaranteed,
                        "historical_max": station.historical_max,
                        "approaching": station.approaching,
                    },
                    "latest": _reading_json(_newest(summaries[g]["latest"] for g in gauges)),
                    "latest_usable": _reading_json(latest),
                    "gap": gap,
                    "readings_24h": sum(summaries[g]["readings"] for g in gauges),
                    "problems_24h": sum(summaries[g]["with_problems"] for g in gauges),
                }
            )
        zones = []
        for key, zone in self.hydro.danger_zones.items():
            state = states.get(f"zone:{key}", {}).get("state") or {}
            zones.append(
                {
                    "zone": key,
                    "name": zone.name,
                    "area_code": zone.area_code,
                    "rain_gauge": zone.rain_gauge,
                    "step": state.get("step"),
                    "latest": _reading_json(summaries[zone.rain_gauge]["latest"]),
                }
            )
        return {"stations": stations, "danger_zones": zones}


# --- helpers ------------------------------------------------------------------------------------------------


def _row(r: Reading, source: str, now: datetime) -> dict[str, Any]:
    return {
        "gauge": r.station,
        "time": r.time,
        "level": r.level,
        "flow": r.flow,
        "rainfall": r.rainfall,
        "qualifiers": ",".join(r.qualifiers) or None,
        "problem": r.problem,
        "source": source[:500],
        "received_at": now,
    }


def _problem(r: Reading) -> dict[str, Any]:
    return {"gauge": r.station, "time": r.time, "problem": r.problem}


def _clock_time(when: datetime) -> str:
    """7月12日5时30分, as Chinese warnings write it (no leading zeros)."""
    return f"{when.month}月{when.day}日{when.hour}时{when.minute}分"


def _relation(station: Station, level: float) -> str:
    if level >= station.historical_max:
        return f"超过历史最高水位{level - station.historical_max:.2f}米"
    if level >= station.guaranteed:
        return f"超过保证水位{level - station.guaranteed:.2f}米"
    if level >= station.warning:
        return f"超过警戒水位{level - station.warning:.2f}米"
    return f"距警戒水位{station.warning - level:.2f}米，仍在上涨"


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g}小时" if hours >= 1 else f"{seconds / 60:g}分钟"


def _zone_area(zone: DangerZone, village: str | None) -> dict[str, Any]:
    area: dict[str, Any] = {
        "area_desc": f"{village}{zone.name}" if village and village not in zone.name else zone.name,
        "geocodes": [("geocode", zone.area_code)],
    }
    if zone.polygon:
        ring = list(zone.polygon)
        area["polygons"] = [ring if ring[0] == ring[-1] else [*ring, ring[0]]]
    return area


def _newest(rows: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    present = [r for r in rows if r is not None]
    return max(present, key=lambda r: r["time"]) if present else None


def _reading_json(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "gauge": row["gauge"],
        "time": row["time"],
        "level": row["level"],
        "flow": row["flow"],
        "rainfall": row["rainfall"],
        "qualifiers": row["qualifiers"].split(",") if row["qualifiers"] else [],
        "problem": row["problem"],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _ladder_json(s: LadderState) -> dict[str, Any]:
    return {
        "colour": s.colour,
        "last_time": _iso(s.last_time),
        "last_level": s.last_level,
        "lower_since": _iso(s.lower_since),
        "lower_peak": s.lower_peak,
    }


def _ladder_state(d: Mapping[str, Any]) -> LadderState:
    return LadderState(
        colour=d.get("colour"),
        last_time=_dt(d.get("last_time")),
        last_level=d.get("last_level"),
        lower_since=_dt(d.get("lower_since")),
        lower_peak=d.get("lower_peak"),
    )


def _zone_json(s: ZoneState) -> dict[str, Any]:
    return {"step": s.step, "last_time": _iso(s.last_time), "quiet_since": _iso(s.quiet_since)}


def _zone_state(d: Mapping[str, Any]) -> ZoneState:
    return ZoneState(
        step=d.get("step"), last_time=_dt(d.get("last_time")), quiet_since=_dt(d.get("quiet_since"))
    )
