"""Who is inside an alert's area: admin-code prefixes, ancestors, polygons (CAP lat,lon), circles, bbox."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import pytest

from warnd.audience import AlertArea, admin_prefixes, haversine_km
from warnd.cap.model import Area, Circle

# A rectangle around 梁平 (lat 30.6–30.7, lon 107.7–107.9) as CAP writes it: "lat,lon" pairs, closed.
RING = ((30.6, 107.7), (30.6, 107.9), (30.7, 107.9), (30.7, 107.7), (30.6, 107.7))
INSIDE = (30.65, 107.8)
OUTSIDE = (30.75, 107.8)
R_KM = 6371.0088


def stored(*areas: Area) -> list[dict[str, Any]]:
    """Areas as the pipeline stores them (JSON)."""
    data: list[dict[str, Any]] = json.loads(json.dumps([asdict(a) for a in areas]))
    return data


def destination(lat: float, lon: float, bearing_deg: float, km: float) -> tuple[float, float]:
    """The point ``km`` from (lat, lon) along ``bearing_deg`` on a sphere (the standard direct formula)."""
    phi1, lam1, theta = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    delta = km / R_KM
    phi2 = math.asin(math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta))
    lam2 = lam1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1), math.cos(delta) - math.sin(phi1) * math.sin(phi2)
    )
    return math.degrees(phi2), math.degrees(lam2)


# --- admin_prefixes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "anything", "SAME", "UGC", "areaCode"])
def test_twelve_digit_codes_count_whatever_the_value_name(name: str) -> None:
    assert admin_prefixes([(name, "500228101000")]) == ("500228101",)
    assert admin_prefixes([(name, "500228000000")]) == ("500228",)
    assert admin_prefixes([(name, "500228101201")]) == ("500228101201",)


@pytest.mark.parametrize("name", ["行政区划代码", "GB/T 2260", "admin_code", "AREA_CODE", "geocode", "区划"])
def test_six_and_nine_digit_codes_need_an_admin_value_name(name: str) -> None:
    assert admin_prefixes([(name, "500228")]) == ("500228",)
    assert admin_prefixes([(name, "500228101")]) == ("500228101",)


@pytest.mark.parametrize("name", ["SAME", "FIPS6", "UGC", "zone", ""])
def test_six_digit_codes_without_an_admin_value_name_are_ignored(name: str) -> None:
    assert admin_prefixes([(name, "006037")]) == ()
    assert admin_prefixes([(name, "500228")]) == ()


def test_other_lengths_and_non_digits_are_ignored() -> None:
    assert admin_prefixes([("行政区划代码", "5002281010")]) == ()  # 10 digits
    assert admin_prefixes([("行政区划代码", "50022810100a")]) == ()
    assert admin_prefixes([("areaCode", "")]) == ()


def test_comma_separated_lists() -> None:
    assert admin_prefixes([("areaCode", "500228101000,500228102000")]) == ("500228101", "500228102")
    assert admin_prefixes([("areaCode", "500228101000，500228102000， 500228103201")]) == (
        "500228101",
        "500228102",
        "500228103201",
    )
    # duplicates collapse, first occurrence first
    assert admin_prefixes([("a", "500228000000"), ("b", "500228000000, 500101000000")]) == (
        "500228",
        "500101",
    )


# --- contains: admin codes -------------------------------------------------------------------------------


def test_contains_by_prefix() -> None:
    area = AlertArea(stored(Area(desc="屏锦镇", geocodes=(("areaCode", "500228101000"),))))
    assert area.prefixes == ("500228101",)
    assert area.has_geometry is False
    assert area.bbox() is None
    assert area.contains("500228101000", None, None)
    assert area.contains("500228101201", None, None)
    assert area.contains("500228101202", 30.0, 107.0)  # no shapes: coordinates do not matter
    assert not area.contains("500228102201", None, None)
    assert not area.contains("500228001201", None, None)


def test_ancestors_are_inside() -> None:
    area = AlertArea(stored(Area(desc="屏锦镇", geocodes=(("areaCode", "500228101000"),))))
    assert set(area.ancestors) == {"500228000000", "500200000000", "500000000000"}
    assert area.contains("500228000000", None, None)  # the district office is responsible for the township
    assert area.contains("500200000000", None, None)
    assert not area.contains("500228102000", None, None)  # a sibling township is not
    assert not area.contains("500101000000", None, None)  # nor another district


def test_district_wide_area() -> None:
    area = AlertArea(stored(Area(desc="梁平区", geocodes=(("areaCode", "500228000000"),))))
    for code in ("500228000000", "500228001201", "500228103201", "500200000000"):
        assert area.contains(code, None, None), code
    assert not area.contains("500229001000", None, None)


# --- contains: shapes ------------------------------------------------------------------------------------


def test_polygon_in_lat_lon_order() -> None:
    area = AlertArea(stored(Area(desc="box", polygons=(RING,))))
    assert area.has_geometry
    assert area.contains("999999999999", *INSIDE)
    assert not area.contains("999999999999", *OUTSIDE)
    assert not area.contains("999999999999", INSIDE[1], INSIDE[0])  # the point with lat/lon swapped


def test_polygon_written_lon_lat_does_not_contain_the_point() -> None:
    swapped = tuple((lon, lat) for lat, lon in RING)
    area = AlertArea(stored(Area(desc="swapped", polygons=(swapped,))))
    assert not area.contains("999999999999", *INSIDE)


def test_non_rectangular_polygon() -> None:
    # a triangle with its right angle at the south-west corner: only the half below the diagonal is inside
    triangle = ((30.0, 107.0), (30.0, 108.0), (31.0, 107.0), (30.0, 107.0))
    area = AlertArea(stored(Area(desc="triangle", polygons=(triangle,))))
    assert area.contains("x", 30.2, 107.2)
    assert not area.contains("x", 30.8, 107.8)
    assert area.contains("x", 30.7, 107.1)  # lat 30.7 lon 107.1: inside; the swapped reading would be outside
    assert not area.contains("x", 30.1, 107.95)


def test_circle_uses_great_circle_distance() -> None:
    centre = (30.0, 107.0)
    area = AlertArea(
        stored(Area(desc="circle", circles=(Circle(lat=centre[0], lon=centre[1], radius_km=10.0),)))
    )
    inside_east = destination(*centre, 90.0, 9.9)
    outside_east = destination(*centre, 90.0, 10.1)
    assert area.contains("x", *inside_east)
    assert not area.contains("x", *outside_east)
    for bearing in (0.0, 45.0, 180.0, 270.0):
        assert area.contains("x", *destination(*centre, bearing, 9.9)), bearing
        assert not area.contains("x", *destination(*centre, bearing, 10.1)), bearing
    # 0.1° of longitude at 30°N is ~9.6 km (cos 30° shrinks it); 0.1° of latitude is ~11.1 km
    assert area.contains("x", 30.0, 107.1)
    assert not area.contains("x", 30.1, 107.0)


def test_haversine_known_distances() -> None:
    assert haversine_km(30.0, 107.0, 30.0, 107.0) == 0.0
    assert haversine_km(0.0, 0.0, 0.0, 1.0) == pytest.approx(R_KM * math.pi / 180, rel=1e-9)
    assert haversine_km(*(30.0, 107.0), *destination(30.0, 107.0, 63.0, 42.0)) == pytest.approx(
        42.0, rel=1e-9
    )
    # 北京 (39.9042, 116.4074) to 上海 (31.2304, 121.4737): about 1067 km
    assert haversine_km(39.9042, 116.4074, 31.2304, 121.4737) == pytest.approx(1067, abs=3)


def test_located_recipient_outside_the_shape_is_outside_even_if_the_admin_code_matches() -> None:
    area = AlertArea(
        stored(Area(desc="屏锦镇 part", polygons=(RING,), geocodes=(("areaCode", "500228101000"),)))
    )
    assert not area.contains("500228101201", *OUTSIDE)  # shapes win for located recipients
    assert area.contains("500228101201", *INSIDE)
    assert area.contains("500228999201", *INSIDE)  # inside the shape, whatever the code


def test_unlocated_recipient_falls_back_to_the_geocode() -> None:
    area = AlertArea(
        stored(Area(desc="屏锦镇 part", polygons=(RING,), geocodes=(("areaCode", "500228101000"),)))
    )
    assert area.contains("500228101201", None, None)
    assert area.contains("500228101201", 30.65, None)  # half a location is no location
    assert not area.contains("500228102201", None, None)


def test_shape_only_area_leaves_out_unlocated_recipients() -> None:
    area = AlertArea(stored(Area(desc="box", polygons=(RING,))))
    assert area.prefixes == ()
    assert not area.contains("500228101201", None, None)


def test_several_areas_each_decide() -> None:
    area = AlertArea(
        stored(
            Area(desc="box", polygons=(RING,), geocodes=(("areaCode", "500228101000"),)),
            Area(desc="礼让镇", geocodes=(("areaCode", "500228102000"),)),
        )
    )
    assert area.prefixes == ("500228101", "500228102")
    assert area.has_geometry
    assert area.contains("500228102201", *OUTSIDE)  # the second area has no shape: its geocode decides
    assert not area.contains("500228101201", *OUTSIDE)
    assert not area.contains("500228103201", None, None)


def test_degenerate_polygon_is_ignored() -> None:
    area = AlertArea(
        stored(
            Area(
                desc="line",
                polygons=(((30.6, 107.7), (30.7, 107.9), (30.6, 107.7)),),
                geocodes=(("areaCode", "500228101000"),),
            )
        )
    )
    assert area.has_geometry is False
    assert area.contains("500228101201", *OUTSIDE)


# --- bbox ------------------------------------------------------------------------------------------------


def test_bbox_of_a_polygon_is_lat_lon() -> None:
    area = AlertArea(stored(Area(desc="box", polygons=(RING,))))
    assert area.bbox() == pytest.approx((30.6, 107.7, 30.7, 107.9))


def test_bbox_covers_polygons_and_circles() -> None:
    centre = (29.0, 106.5)
    area = AlertArea(
        stored(
            Area(desc="box", polygons=(RING,)),
            Area(desc="circle", circles=(Circle(lat=centre[0], lon=centre[1], radius_km=10.0),)),
        )
    )
    box = area.bbox()
    assert box is not None
    min_lat, min_lon, max_lat, max_lon = box
    points = [RING[0], RING[2]] + [destination(*centre, bearing, 10.0) for bearing in range(0, 360, 15)]
    for lat, lon in points:
        assert min_lat <= lat <= max_lat
        assert min_lon <= lon <= max_lon
    # and it is not absurdly large: within ~1 km of the circle's extent
    assert min_lat == pytest.approx(centre[0] - 10.0 / 111.195, abs=0.01)
    assert max_lat == pytest.approx(30.7)
    assert max_lon == pytest.approx(107.9)
