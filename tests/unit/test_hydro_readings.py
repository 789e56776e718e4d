"""Gauge reading parsers (warnd.hydro.readings): USGS IV JSON / WaterML 1.1, the Chinese JSON / CSV shape, the
POST /api/v1/readings body, and dispatch. The corpus files are checked when ../shared/corpus is present."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from warnd.hydro.readings import (
    MAX_PUSHED_ITEMS,
    Reading,
    ReadingsError,
    is_sentinel,
    parse_cn_csv,
    parse_cn_json,
    parse_pushed,
    parse_readings,
    parse_usgs_iv,
    parse_waterml1,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
HYDRO = CORPUS / "hydrology"
EST = timezone(timedelta(hours=-5))
SHANGHAI = ZoneInfo("Asia/Shanghai")
needs_corpus = pytest.mark.skipif(not HYDRO.is_dir(), reason=f"corpus not present at {CORPUS}")


def usgs(
    *series: dict[str, Any], query_url: str = "https://waterservices.usgs.gov/nwis/iv/?format=json"
) -> bytes:
    return json.dumps({"value": {"queryInfo": {"queryURL": query_url}, "timeSeries": list(series)}}).encode()


def series(
    code: str,
    unit: str,
    points: list[tuple[str, str, list[str]]],
    *,
    site: str = "01646500",
    statistic: str = "00000",
) -> dict[str, Any]:
    return {
        "name": f"USGS:{site}:{code}:{statistic}",
        "sourceInfo": {"siteCode": [{"value": site, "network": "NWIS", "agencyCode": "USGS"}]},
        "variable": {
            "variableCode": [{"value": code}],
            "unit": {"unitCode": unit},
            "noDataValue": -999999.0,
            "options": {"option": [{"name": "Statistic", "optionCode": statistic}]},
        },
        "values": [{"value": [{"value": v, "dateTime": t, "qualifiers": q} for t, v, q in points]}],
    }


T0 = "2024-07-11T08:00:00.000-05:00"
T1 = "2024-07-11T08:15:00.000-05:00"


# --- USGS IV JSON -----------------------------------------------------------------------------------------


def test_usgs_level_and_flow_merge_and_convert() -> None:
    data = usgs(
        series("00060", "ft3/s", [(T0, "974", ["A"]), (T1, "1000", ["P"])]),
        series("00065", "ft", [(T0, "6.48", ["A"]), (T1, "-999999", ["P", "Eqp"])]),
    )
    first, second = parse_usgs_iv(data)
    assert first.station == "USGS:01646500"
    assert first.time == datetime(2024, 7, 11, 8, 0, tzinfo=EST)
    assert first.level == pytest.approx(6.48 * 0.3048) and first.level == 1.975104
    assert first.flow == pytest.approx(974 * 0.3048**3, abs=1e-6)
    assert first.qualifiers == ("A",) and first.problem is None and not first.provisional
    assert second.level is None and second.flow == pytest.approx(28.316847, abs=1e-6)
    assert second.qualifiers == ("P", "Eqp") and second.provisional
    assert second.problem == "level: no data (-999999)"


def test_usgs_no_data_alone_and_precipitation_in_mm() -> None:
    data = usgs(
        series("00065", "ft", [(T0, "-999999", ["Ice"])]),
        series("00045", "in", [(T0, "0.50", ["P"])], site="01646000"),
    )
    rain, level = parse_usgs_iv(data)
    assert rain.station == "USGS:01646000" and rain.rainfall == 12.7 and rain.level is None
    assert level.level is None and level.problem == "no data (-999999)" and level.qualifiers == ("Ice",)


def test_usgs_metric_units_pass_through_and_unknown_parameters_are_skipped() -> None:
    data = usgs(
        series("00010", "deg C", [(T0, "12.5", ["P"])]),
        series("30207", "m", [(T0, "2.50", ["P"])]),
        series("30208", "m3/s", [(T0, "12.0", ["P"])]),
    )
    [reading] = parse_usgs_iv(data)
    assert (reading.level, reading.flow) == (2.5, 12.0)


def test_usgs_one_level_parameter_per_station() -> None:
    """Gage height and a reservoir elevation are on different datums: only gage height is used."""
    data = usgs(series("62614", "ft", [(T0, "560.1", ["P"])]), series("00065", "ft", [(T0, "6.48", ["P"])]))
    [reading] = parse_usgs_iv(data)
    assert reading.level == 1.975104
    only = parse_usgs_iv(usgs(series("62614", "ft", [(T0, "100", ["P"])])))
    assert only[0].level == 30.48


def test_usgs_output_sorted_by_station_then_time() -> None:
    data = usgs(
        series("00065", "ft", [(T1, "2", []), (T0, "1", [])], site="B"),
        series("00065", "ft", [(T1, "2", []), (T0, "1", [])], site="A"),
    )
    assert [(r.station, r.time.minute) for r in parse_usgs_iv(data)] == [
        ("USGS:A", 0),
        ("USGS:A", 15),
        ("USGS:B", 0),
        ("USGS:B", 15),
    ]


def test_usgs_daily_values_are_refused() -> None:
    data = usgs(series("00060", "ft3/s", [("2020-02-14T00:00:00.000", "466", ["P"])], statistic="00003"))
    with pytest.raises(ReadingsError, match=r"timeSeries\[0\].*daily values.*00003"):
        parse_usgs_iv(data)
    with pytest.raises(ReadingsError, match="daily values"):
        parse_usgs_iv(usgs(query_url="http://waterservices.usgs.gov/nwis/dv/?format=json"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"value": {}}', r"value\.timeSeries: missing"),
        (usgs({"variable": {}}), r"timeSeries\[0\]\.sourceInfo\.siteCode\[0\]\.value: missing"),
        (usgs(series("00065", "ft", [(T0, "abc", [])])), r"value\[0\]\.value: not a number: 'abc'"),
        (usgs(series("00065", "ft", [(T0, "NaN", [])])), "not a finite number"),
        (usgs(series("00065", "ft", [("2024-07-11T08:00:00", "1", [])])), r"dateTime: no timezone"),
        (usgs(series("00065", "furlong", [(T0, "1", [])])), r"unit 'furlong' of parameter 00065"),
        (usgs(series("00065", "ft", [(T0, "1", [7])])), r"qualifiers: not a list of strings"),
    ],
)
def test_usgs_malformed_input_names_the_element(data: bytes, message: str) -> None:
    with pytest.raises(ReadingsError, match=message):
        parse_usgs_iv(data)


def test_usgs_same_station_and_time_twice_with_different_values_is_an_error() -> None:
    data = usgs(series("00065", "ft", [(T0, "1", []), (T0, "2", [])]))
    with pytest.raises(ReadingsError, match="already has level"):
        parse_usgs_iv(data)


def test_waterml1_same_rules_as_json() -> None:
    doc = f"""<?xml version="1.0" encoding="UTF-8"?>
<ns1:timeSeriesResponse xmlns:ns1="http://www.cuahsi.org/waterML/1.1/">
  <ns1:queryInfo><ns1:queryURL>http://waterservices.usgs.gov/nwis/iv/</ns1:queryURL></ns1:queryInfo>
  <ns1:timeSeries name="USGS:01646500:00065:00000">
    <ns1:sourceInfo><ns1:siteCode network="NWIS" agencyCode="USGS">01646500</ns1:siteCode></ns1:sourceInfo>
    <ns1:variable>
      <ns1:variableCode>00065</ns1:variableCode><ns1:unit><ns1:unitCode>ft</ns1:unitCode></ns1:unit>
      <ns1:options><ns1:option name="Statistic" optionCode="00000"/></ns1:options>
      <ns1:noDataValue>-999999.0</ns1:noDataValue>
    </ns1:variable>
    <ns1:values>
      <ns1:value qualifiers="P" dateTime="{T0}">6.48</ns1:value>
      <ns1:value qualifiers="P Eqp" dateTime="{T1}">-999999</ns1:value>
    </ns1:values>
  </ns1:timeSeries>
</ns1:timeSeriesResponse>""".encode()
    first, second = parse_waterml1(doc)
    assert first.level == 1.975104 and first.qualifiers == ("P",)
    assert (
        second.level is None and second.problem == "no data (-999999)" and second.qualifiers == ("P", "Eqp")
    )
    assert parse_readings(doc, "application/xml") == [first, second]
    with pytest.raises(ReadingsError, match="DOCTYPE"):
        parse_waterml1(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')


# --- the Chinese JSON / CSV shape ----------------------------------------------------------------------------


def test_cn_json_fields_case_insensitive_and_local_time() -> None:
    data = json.dumps(
        {
            "data": [
                {"STCD": "60105400", "TM": "2024-07-11 08:00:00", "Z": "182.35", "Q": 1250, "stnm": "梁平"},
                {"stcd": "60105400", "tm": "2024-07-11T09:00:00+08:00", "z": 182.61},
                {"station": "50228101", "time": "2024/07/11 08:00:00", "DRP": 35.5},
                {"stcd": 50228102, "tm": "2024-07-11 08:00:00", "p": -9999},
            ]
        },
        ensure_ascii=False,
    ).encode()
    rain, dry, level8, level9 = parse_cn_json(data)
    assert rain == Reading("50228101", datetime(2024, 7, 11, 8, tzinfo=SHANGHAI), rainfall=35.5)
    assert dry.station == "50228102" and dry.rainfall is None and dry.problem == "no data (-9999)"
    assert level8.time == datetime(2024, 7, 11, 0, tzinfo=UTC)
    assert (level8.level, level8.flow) == (182.35, 1250.0)
    assert level9.level == 182.61 and level9.time.utcoffset() == timedelta(hours=8)
    assert parse_cn_json(json.dumps(json.loads(data)["data"]).encode()) == [rain, dry, level8, level9]


def test_cn_sentinels_and_empty_values_are_visible_problems() -> None:
    data = b'[{"stcd": "A", "tm": "2024-07-11 08:00", "z": -999999, "q": 12.5}, {"stcd": "B", "tm": "2024-07-11 08:00", "z": null}]'
    a, b = parse_cn_json(data)
    assert a.level is None and a.flow == 12.5 and a.problem == "level: no data (-999999)"
    assert b.level is None and b.problem == "empty"
    assert is_sentinel(-9999) and is_sentinel(-999999.0) and not is_sentinel(-9998) and not is_sentinel(-3.5)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"rows": []}, r'\{"data": \[\.\.\.\]\}'),
        ([{"tm": "2024-07-11 08:00", "z": 1}], r"\[0\]: station code"),
        ([{"stcd": "A", "z": 1}], r"\[0\]: time"),
        ([{"stcd": "A", "tm": "yesterday", "z": 1}], r"\[0\]: tm: not an ISO 8601 time"),
        ([{"stcd": "A", "tm": "2024-07-11 08:00"}], r"\[0\]: no water level"),
        ([{"stcd": "A", "tm": "2024-07-11 08:00", "z": "high"}], r"\[0\]: z: not a number"),
        ([{"stcd": "A", "tm": "2024-07-11 08:00", "z": 1, "Z": 2}], r"'z' and 'Z' are the same field"),
        (
            [{"stcd": "A", "tm": "2024-07-11 08:00", "z": 1, "level": 2}],
            r"'z' and 'level' both give the level",
        ),
        ([{"stcd": "A", "tm": "2024-07-11 08:00", "drp": -3}], "negative rainfall"),
        (
            [
                {"stcd": "A", "tm": "2024-07-11 08:00", "z": 1},
                {"stcd": "A", "tm": "2024-07-11 08:00", "z": 2},
            ],
            r"\[1\].*already has level",
        ),
    ],
)
def test_cn_json_errors(items: object, message: str) -> None:
    with pytest.raises(ReadingsError, match=message):
        parse_cn_json(json.dumps(items).encode())


def test_cn_csv_with_bom_and_line_numbers() -> None:
    data = "\ufeffSTCD,TM,Z,Q,DRP\n60105400,2024-07-11 08:00:00,182.35,1250,\n\n60105400,2024-07-11 09:00:00,182.61,,\n50228101,2024-07-11 08:00:00,,,12\n"
    readings = parse_cn_csv(data.encode())
    assert [(r.station, r.time.hour, r.level, r.flow, r.rainfall) for r in readings] == [
        ("50228101", 8, None, None, 12.0),
        ("60105400", 8, 182.35, 1250.0, None),
        ("60105400", 9, 182.61, None, None),
    ]
    assert readings[0].problem == "level: empty; flow: empty"
    assert readings[1].problem == "rainfall: empty"
    assert readings[0].time.tzinfo == SHANGHAI
    assert parse_readings(data.encode(), "text/csv; charset=utf-8") == readings
    assert parse_readings(data.encode(), None) == readings


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("stcd,tm,z\nA,2024-07-11 08:00,1\nB,2024-07-11 08:00,x\n", r"^line 3: z: not a number"),
        ("stcd,z\nA,1\n", r"line 1 \(header\): no time column"),
        ("stcd,tm,z\nA,2024-07-11 08:00,1,5\n", r"line 2: 4 fields, the header has 3"),
        ("", "no header row"),
    ],
)
def test_cn_csv_errors(data: str, message: str) -> None:
    with pytest.raises(ReadingsError, match=message):
        parse_cn_csv(data.encode())
    with pytest.raises(ReadingsError, match="line 2: not UTF-8"):
        parse_cn_csv(b"stcd,tm,z\nA,2024-07-11 08:00,\xff\n")


# --- POST /api/v1/readings -----------------------------------------------------------------------------------


def test_pushed_readings() -> None:
    items = [
        {"station": "LP-01", "time": "2024-07-11T08:00:00+08:00", "level": 182.35, "qualifiers": ["P"]},
        {"station": "LP-01", "time": "2024-07-11T00:00:00Z", "flow": 1250},
        {"station": "LP-R1", "time": "2024-07-11T08:00:00+08:00", "rainfall": 0, "level": None},
        {"station": "LP-02", "time": "2024-07-11T08:00:00+08:00", "level": -999999},
    ]
    lp1, lp2, rain = parse_pushed(items)
    assert lp1 == Reading(
        "LP-01", datetime(2024, 7, 11, 0, tzinfo=UTC), level=182.35, flow=1250.0, qualifiers=("P",)
    )
    assert lp2.level is None and lp2.problem == "no data (-999999)"
    assert rain.rainfall == 0.0 and rain.level is None and rain.problem is None
    assert parse_pushed([]) == []


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"station": "x"}, "items: expected a JSON list"),
        ([{"station": "A", "time": "2024-07-11T08:00:00", "level": 1}], r"^items\[0\]\.time: no timezone"),
        ([{"time": "2024-07-11T08:00:00Z", "level": 1}], r"items\[0\]\.station: missing"),
        ([{"station": "A", "time": "2024-07-11T08:00:00Z"}], r"items\[0\]: none of level, flow, rainfall"),
        (
            [{"station": "A", "time": "2024-07-11T08:00:00Z", "level": "1.5"}],
            r"items\[0\]\.level: not a number",
        ),
        (
            [{"station": "A", "time": "2024-07-11T08:00:00Z", "level": True}],
            r"items\[0\]\.level: not a number",
        ),
        ([{"station": "A", "time": "2024-07-11T08:00:00Z", "level": math.nan}], "not a finite number"),
        (
            [{"station": "A", "time": "2024-07-11T08:00:00Z", "flow": math.inf}],
            r"items\[0\]\.flow: not a finite",
        ),
        (
            [{"station": "A", "time": "2024-07-11T08:00:00Z", "rainfall": -1}],
            r"items\[0\]\.rainfall: negative",
        ),
        (
            [{"station": "A", "time": "2024-07-11T08:00:00Z", "level": 1, "z": 1}],
            r"items\[0\]: unknown key\(s\) z",
        ),
        (
            [{"station": "A", "time": "2024-07-11T08:00:00Z", "level": 1, "qualifiers": "P"}],
            r"qualifiers: not a list",
        ),
        ([1], r"items\[0\]: not an object"),
    ],
)
def test_pushed_errors_name_the_item(items: object, message: str) -> None:
    with pytest.raises(ReadingsError, match=message):
        parse_pushed(items)


def test_pushed_too_many_items() -> None:
    item = {"station": "A", "time": "2024-07-11T08:00:00Z", "level": 1}
    assert len(parse_pushed([item] * MAX_PUSHED_ITEMS)) == 1  # identical repeats merge
    with pytest.raises(ReadingsError, match=f"at most {MAX_PUSHED_ITEMS}"):
        parse_pushed([item] * (MAX_PUSHED_ITEMS + 1))


# --- dispatch -----------------------------------------------------------------------------------------------


def test_parse_readings_dispatch() -> None:
    assert parse_readings(usgs(series("00065", "ft", [(T0, "1", [])])), None)[0].level == 0.3048
    assert (
        parse_readings(b'[{"stcd": "A", "tm": "2024-07-11 08:00", "z": 1}]', "application/json")[0].level == 1
    )
    with pytest.raises(ReadingsError, match="empty body"):
        parse_readings(b"  \n", None)
    with pytest.raises(ReadingsError, match="GeoJSON"):
        parse_readings(b'{"type": "FeatureCollection", "features": []}', "application/geo+json")
    with pytest.raises(ReadingsError, match=r"not a WaterML 1\.1"):
        parse_readings(b"<alert/>", None)
    with pytest.raises(ReadingsError, match="RDB"):
        parse_readings(b"agency_cd\tsite_no\tdatetime\ttz_cd\t01_00065\n5s\t15s\t20d\t6s\t14n\n", None)


# --- the corpus (hydrology/*, label "sample") ---------------------------------------------------------------

IV_FILES = sorted(p.name for p in (HYDRO / "usgs-iv").glob("*.json")) if HYDRO.is_dir() else []


@needs_corpus
def test_corpus_waterservices_iv() -> None:
    readings = parse_usgs_iv((HYDRO / "usgs-iv" / "waterservices_iv.json").read_bytes())
    assert len(readings) == 10 and {r.station for r in readings} == {"USGS:01491000", "USGS:01645000"}
    first = readings[0]
    # CHOPTANK RIVER NEAR GREENSBORO, MD: 6.48 ft and 974 ft³/s at 2019-02-14 00:00 EST
    assert first.station == "USGS:01491000" and first.time == datetime(2019, 2, 14, tzinfo=EST)
    assert first.level == 1.975104 and first.flow == pytest.approx(27.580609, abs=1e-6)
    assert first.qualifiers == ("A",) and first.problem is None
    seneca = [r for r in readings if r.station == "USGS:01645000"]
    assert [round(r.level or 0, 4) for r in seneca] == [0.954, 0.954, 0.951, 0.954, 0.954]
    assert all(r.level is not None and r.flow is not None and r.time.tzinfo for r in readings)


@needs_corpus
def test_corpus_mocks() -> None:
    assert parse_usgs_iv((HYDRO / "usgs-iv" / "nwis_iv_empty_mock.json").read_bytes()) == []
    a, b = parse_usgs_iv((HYDRO / "usgs-iv" / "nwis_iv_mock.json").read_bytes())
    assert (a.station, a.flow, a.qualifiers) == ("USGS:03339000", 0.028317, ("A",))
    assert (b.station, b.flow, b.time) == ("USGS:05447500", 0.056634, datetime(2018, 1, 24, tzinfo=UTC))


@needs_corpus
def test_corpus_daily_values_refused() -> None:
    with pytest.raises(ReadingsError, match="daily values"):
        parse_usgs_iv((HYDRO / "usgs-iv" / "waterservices_dv.json").read_bytes())


@needs_corpus
@pytest.mark.parametrize("name", IV_FILES)
def test_every_usgs_iv_corpus_file_is_handled(name: str) -> None:
    data = (HYDRO / "usgs-iv" / name).read_bytes()
    if "_dv" in name:
        with pytest.raises(ReadingsError, match="daily values"):
            parse_readings(data, "application/json")
        return
    readings = parse_readings(data, "application/json")
    assert readings == parse_usgs_iv(data)
    assert readings == sorted(readings, key=lambda r: (r.station, r.time))
    assert all(r.time.tzinfo is not None for r in readings)
