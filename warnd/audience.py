"""Who is inside an alert's area.

A CAP area may name admin codes (geocode), shapes (polygon, circle), or both. For each ``<area>``:

* a recipient with known coordinates is inside when a shape of that area contains it;
* a recipient without coordinates (or an area without shapes) is inside when its 12-digit admin code falls
  under one of the area's geocodes (``500228000000`` covers every township and village of 梁平区);
* a recipient registered at a level *above* a geocode is inside too: the district's flood-control office
  (``500228000000``) is responsible for every township in it, and a resident known only by district cannot be
  ruled out.

So shapes are precise where we know where people are, and nobody without coordinates is left out when the
issuer also gave admin codes. CAP writes points as ``lat,lon``; shapely wants (x=lon, y=lat).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shapely import Polygon, contains_xy, prepare

from warnd.config import area_prefix

_ADMIN_NAMES = re.compile(r"gb|admin|行政|区划|geocode|code", re.IGNORECASE)
EARTH_RADIUS_KM = 6371.0088


def admin_prefixes(geocodes: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Admin-code prefixes among an area's geocodes: any 12-digit value, or 6/9-digit values whose
    valueName says they are admin codes (US SAME/FIPS codes are 6 digits too and are ignored)."""
    out: list[str] = []
    for name, value in geocodes:
        for code in str(value).replace("，", ",").split(","):
            code = code.strip()
            if code.isdigit() and (
                len(code) == 12
                or (
                    len(code) in (6, 9)
                    and _ADMIN_NAMES.search(name)
                    and name.upper() not in ("SAME", "FIPS6", "UGC")
                )
            ):
                out.append(area_prefix(code))
    return tuple(dict.fromkeys(out))


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass
class _Area:
    prefixes: tuple[str, ...]
    polygons: list[Polygon]
    circles: list[tuple[float, float, float]]  # lat, lon, radius km

    @property
    def has_shapes(self) -> bool:
        return bool(self.polygons or self.circles)

    def shape_contains(self, lat: float, lon: float) -> bool:
        if any(contains_xy(p, lon, lat) for p in self.polygons):
            return True
        return any(haversine_km(lat, lon, clat, clon) <= radius for clat, clon, radius in self.circles)


class AlertArea:
    def __init__(self, areas: list[Mapping[str, Any]]):
        """``areas``: the parsed CAP areas as JSON (``Area`` dataclass fields)."""
        self._areas: list[_Area] = []
        for area in areas:
            polygons = []
            for ring in area.get("polygons", ()):
                if len(ring) >= 4:
                    polygon = Polygon([(lon, lat) for lat, lon in ring])
                    if not polygon.is_valid:
                        polygon = polygon.buffer(0)
                    prepare(polygon)
                    polygons.append(polygon)
            circles = [(c["lat"], c["lon"], c["radius_km"]) for c in area.get("circles", ())]
            self._areas.append(_Area(admin_prefixes(area.get("geocodes", ())), polygons, circles))

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for a in self._areas for p in a.prefixes))

    @property
    def ancestors(self) -> tuple[str, ...]:
        """12-digit codes of the levels above each geocode (500228101 -> 500228000000, 500200000000, …)."""
        out: list[str] = []
        for prefix in self.prefixes:
            for cut in (2, 4, 6, 9):
                if cut < len(prefix):
                    out.append(prefix[:cut].ljust(12, "0"))
        return tuple(dict.fromkeys(out))

    @property
    def has_geometry(self) -> bool:
        return any(a.has_shapes for a in self._areas)

    def bbox(self) -> tuple[float, float, float, float] | None:
        """(min_lat, min_lon, max_lat, max_lon) around every shape, or None without shapes."""
        lats: list[float] = []
        lons: list[float] = []
        for area in self._areas:
            for polygon in area.polygons:
                min_lon, min_lat, max_lon, max_lat = polygon.bounds
                lats += [min_lat, max_lat]
                lons += [min_lon, max_lon]
            for lat, lon, radius in area.circles:
                dlat = radius / 111.0
                dlon = radius / (111.0 * max(0.01, math.cos(math.radians(lat))))
                lats += [lat - dlat, lat + dlat]
                lons += [lon - dlon, lon + dlon]
        if not lats:
            return None
        return min(lats), min(lons), max(lats), max(lons)

    def contains(self, area_code: str, lat: float | None, lon: float | None) -> bool:
        if area_code in self.ancestors:
            return True
        located = lat is not None and lon is not None
        for area in self._areas:
            if area.has_shapes and located:
                assert lat is not None and lon is not None
                if area.shape_contains(lat, lon):
                    return True
                continue
            if any(area_code.startswith(p) for p in area.prefixes):
                return True
        return False
