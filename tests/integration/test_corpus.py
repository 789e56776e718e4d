"""Every labelled file of ../shared/corpus through ``parse``: valid ones accepted, invalid ones rejected."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from warnd.cap import InvalidDocument, ParseResult, parse, parse_alert

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CORPUS = PROJECT_ROOT.parent / "shared" / "corpus"

if not (CORPUS / "manifest.jsonl").is_file():
    pytest.skip(f"corpus not present at {CORPUS} (CI always has it)", allow_module_level=True)

pytestmark = pytest.mark.corpus

RECORDS: list[dict[str, Any]] = [
    json.loads(line)
    for line in (CORPUS / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def by_label(label: str) -> list[Any]:
    return [pytest.param(r, id=r["dest"]) for r in RECORDS if r["label"] == label]


def read(rec: dict[str, Any]) -> bytes:
    return (CORPUS / rec["dest"]).read_bytes()


ZERO_ENTRY_FEEDS = {"google-cap-library/valid/empty_weather_index.atom"}


@pytest.mark.parametrize("rec", by_label("valid"))
def test_valid_file_is_accepted(rec: dict[str, Any]) -> None:
    result = parse(read(rec))
    assert result.rejected == [], [str(i) for r in result.rejected for i in r.issues]
    if rec["dest"] in ZERO_ENTRY_FEEDS:
        assert result.alerts == [] and result.links == []
    else:
        assert result.alerts or result.links
    for parsed in result.alerts:
        assert parsed.alert.sent.tzinfo is not None
        for info in parsed.alert.infos:
            for when in (info.effective, info.onset, info.expires):
                assert when is None or when.tzinfo is not None
    _check_manifest_counts(rec, result)


def _check_manifest_counts(rec: dict[str, Any], result: ParseResult) -> None:
    if result.kind == "nws-json":
        doc = json.loads(read(rec))
        assert len(result.alerts) == len(doc.get("features", [doc]))
        return
    if result.kind == "rss":
        assert len(result.links) + len(result.alerts) == rec["n_item"]
        return
    if result.kind == "atom":
        assert len(result.links) + len(result.alerts) == rec["n_entry"]
        if not result.alerts:
            return  # thin index: counts in the manifest are of the cap: index extension elements
    assert len(result.alerts) == rec["n_alert"]
    infos = [i for a in result.alerts for i in a.alert.infos]
    areas = [area for i in infos for area in i.areas]
    assert len(infos) == rec["n_info"]
    assert len(areas) == rec["n_area"]
    empty_polygons = sum(
        1 for a in result.alerts for w in a.alert.warnings if w.message == "empty polygon treated as absent"
    )
    assert sum(len(a.polygons) for a in areas) + empty_polygons == rec["n_polygon"]
    assert sum(len(a.circles) for a in areas) == rec["n_circle"]
    assert sum(len(a.geocodes) for a in areas) == rec["n_geocode"]
    assert sum(len(i.resources) for i in infos) == rec["n_resource"]
    assert sum(len(i.parameters) for i in infos) == rec["n_parameter"]
    assert sum(len(i.event_codes) for i in infos) == rec["n_eventCode"]
    assert any(a.alert.references for a in result.alerts) == rec["has_references"]


@pytest.mark.parametrize("rec", by_label("valid"))
def test_valid_alert_bytes_stand_alone(rec: dict[str, Any]) -> None:
    result = parse(read(rec))
    for parsed in result.alerts:
        if result.kind == "nws-json":
            assert parse(parsed.xml).alerts[0].alert == parsed.alert
        else:
            assert parse_alert(parsed.xml) == parsed.alert


@pytest.mark.parametrize("rec", by_label("invalid"))
def test_invalid_file_is_rejected(rec: dict[str, Any]) -> None:
    try:
        result = parse(read(rec))
    except InvalidDocument as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.path and issue.message
        if "xee" in rec["dest"]:
            assert "DOCTYPE" in str(exc)
        return
    assert result.rejected, "an invalid file must raise or reject at least one item"
    for item in result.rejected:
        assert item.issues
        for issue in item.issues:
            assert "alert" in issue.path and issue.message  # names the element inside the alert


DATE_PROPERTIES = {"sent", "effective", "onset", "expires"}


@pytest.mark.parametrize("rec", by_label("templated"))
def test_templated_nws_rejects_only_for_bad_dates(rec: dict[str, Any]) -> None:
    result = parse(read(rec))
    doc = json.loads(read(rec))
    assert len(result.alerts) + len(result.rejected) == len(doc["features"])
    for item in result.rejected:
        # every reason is a placeholder date such as 'date:now -44 seconds', named with its property path
        assert all("'date:" in i.message and "is not a dateTime" in i.message for i in item.issues), (
            item.issues
        )
        assert all(i.path.split("/")[-1] in DATE_PROPERTIES for i in item.issues), item.issues


def test_invalid_counts_match_known_errors() -> None:
    """bushfire_invalid.edxlde: 7 alerts, 2 with errors (lines 94 and 115 in the validator's report)."""
    rec = next(r for r in RECORDS if r["dest"].endswith("bushfire_invalid.edxlde"))
    result = parse(read(rec))
    assert len(result.alerts) == 5
    assert len(result.rejected) == 2
    assert {i.line for r in result.rejected for i in r.issues} >= {94, 115}


# --- XXE: nothing is fetched ------------------------------------------------------------------------------

XEE = [r for r in RECORDS if Path(r["dest"]).name in ("xee.cap", "xee.atom")]


@pytest.mark.parametrize("rec", [pytest.param(r, id=r["dest"]) for r in XEE])
def test_xee_rejected_before_any_parser_runs(rec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import warnd.cap.xml as hardened

    def no_parse(*_a: object, **_k: object) -> None:
        raise AssertionError("the XML parser must not see a document with a DOCTYPE")

    monkeypatch.setattr(hardened.etree, "fromstring", no_parse)
    with pytest.raises(InvalidDocument, match="DOCTYPE"):
        parse(read(rec))
    with pytest.raises(InvalidDocument, match="DOCTYPE"):
        parse_alert(read(rec))


def test_xee_cap_makes_no_connection_to_localhost_8080() -> None:
    rec = next(r for r in XEE if r["dest"].endswith("xee.cap"))
    data = read(rec)
    assert b"localhost:8080" in data
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(("127.0.0.1", 8080))
    except OSError:
        srv.close()
        pytest.skip("127.0.0.1:8080 is in use; test_xee_rejected_before_any_parser_runs covers this")
    srv.listen(5)
    srv.settimeout(0.1)
    hits: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            hits.append("connection")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for _ in range(3):
            with pytest.raises(InvalidDocument, match="DOCTYPE"):
                parse(data)
        # also a version without the DOCTYPE: XInclude and schemaLocation must not be followed either
        stripped = data.split(b"]>", 1)[1].replace(b"&xxe;", b"")
        with pytest.raises(InvalidDocument):
            parse(stripped)
        stop.wait(0.3)
        assert hits == []
    finally:
        stop.set()
        thread.join(timeout=2)
        srv.close()


# --- hydrology (label "sample"): gauge data for warnd.hydro.readings ----------------------------------------

HYDROLOGY = [r for r in RECORDS if r["source"] == "hydrology"]
# what parse_readings does with each file: how many readings, or the words its refusal must contain
HYDROLOGY_EXPECTED: dict[str, int | str] = {
    "hydrology/usgs-iv/waterservices_iv.json": 10,  # 2 sites x 5 times, level and flow merged
    "hydrology/usgs-iv/nwis_iv_mock.json": 2,
    "hydrology/usgs-iv/nwis_iv_empty_mock.json": 0,
    "hydrology/usgs-iv/waterservices_dv.json": "daily values",
    "hydrology/usgs-waterml/WaterML1Example.xml": 192,  # WaterML 1.1 IV: parsed like the JSON
    "hydrology/usgs-waterml/WaterML2Example.xml": "WaterML 2.0 is not supported",
    "hydrology/usgs-rdb/RDB1Example.rdb": "daily values",
    "hydrology/usgs-rdb/waterservices_site.rdb": "holds no readings",
    "hydrology/usgs-ogc/waterdata_ogc_fixtures.json": "GeoJSON",
}


def test_every_hydrology_file_has_an_expectation() -> None:
    assert {r["dest"] for r in HYDROLOGY} == set(HYDROLOGY_EXPECTED)
    assert {r["label"] for r in HYDROLOGY} == {"sample"}


@pytest.mark.parametrize("rec", [pytest.param(r, id=r["dest"]) for r in HYDROLOGY])
def test_hydrology_file_parsed_or_refused_with_a_reason(rec: dict[str, Any]) -> None:
    from warnd.hydro.readings import ReadingsError, parse_readings, parse_usgs_iv

    expected = HYDROLOGY_EXPECTED[rec["dest"]]
    if isinstance(expected, str):
        with pytest.raises(ReadingsError, match=expected):
            parse_readings(read(rec), None)
        return
    readings = parse_readings(read(rec), None)
    assert len(readings) == expected
    if "/usgs-iv/" in rec["dest"]:
        assert readings == parse_usgs_iv(read(rec))
    for r in readings:
        assert r.time.tzinfo is not None and r.station.startswith("USGS:")
        assert r.level is not None or r.flow is not None or r.rainfall is not None or r.problem
