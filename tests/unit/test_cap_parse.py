"""OASIS CAP parsing and validation, hardened XML loading, and build_cap_xml round trips."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from warnd.cap import (
    Area,
    Circle,
    InvalidDocument,
    Reference,
    build_cap_xml,
    parse,
    parse_alert,
)

NS12 = "urn:oasis:names:tc:emergency:cap:1.2"


def cap12(
    *,
    alert_extra: str = "",
    info: str | None = None,
    sent: str = "2024-07-12T05:30:00+08:00",
    scope: str = "<scope>Public</scope>",
    msg_type: str = "Alert",
    identifier: str = "KSTO1055887203",
    header: str = '<?xml version="1.0" encoding="UTF-8"?>\n',
) -> bytes:
    if info is None:
        info = """<info>
    <category>Met</category>
    <event>SEVERE THUNDERSTORM</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <area><areaDesc>Somewhere</areaDesc></area>
  </info>"""
    return (
        f"""{header}<alert xmlns="{NS12}">
  <identifier>{identifier}</identifier>
  <sender>KSTO@NWS.NOAA.GOV</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>{msg_type}</msgType>
  {scope}
  {alert_extra}
  {info}
</alert>"""
    ).encode()


def issues_of(data: bytes) -> list[str]:
    with pytest.raises(InvalidDocument) as exc:
        parse(data)
    return [str(i) for i in exc.value.issues]


def paths_of(data: bytes) -> list[str]:
    with pytest.raises(InvalidDocument) as exc:
        parse(data)
    return [i.path for i in exc.value.issues]


# --- happy path -------------------------------------------------------------------------------------------


def test_minimal_cap12_fields_and_aware_datetimes() -> None:
    data = cap12()
    result = parse(data)
    assert result.kind == "cap"
    assert len(result.alerts) == 1
    parsed = result.alerts[0]
    assert parsed.xml is data  # a lone CAP keeps its original bytes
    a = parsed.alert
    assert a.profile == "cap1.2"
    assert a.identifier == "KSTO1055887203"
    assert a.sent == datetime(2024, 7, 12, 5, 30, tzinfo=timezone(timedelta(hours=8)))
    assert a.sent.tzinfo is not None
    assert a.key == ("KSTO@NWS.NOAA.GOV", "KSTO1055887203", "2024-07-12T05:30:00+08:00")
    info = a.infos[0]
    assert info.language == "en-US"
    assert info.categories == ("Met",)
    assert (info.urgency, info.severity, info.certainty) == ("Immediate", "Severe", "Observed")
    assert info.areas[0].desc == "Somewhere"
    assert a.warnings == ()


def test_parse_alert_returns_the_alert() -> None:
    assert parse_alert(cap12()).identifier == "KSTO1055887203"


def test_full_info_polygon_circle_geocode_resource_parameters() -> None:
    info = """<info>
    <language>en-US</language>
    <category>Met</category><category>Safety</category>
    <event>Flood</event>
    <responseType>Evacuate</responseType><responseType>AllClear</responseType>
    <urgency>Expected</urgency><severity>Moderate</severity><certainty>Likely</certainty>
    <eventCode><valueName>SAME</valueName><value>FLW</value></eventCode>
    <effective>2024-07-12T05:30:00-05:00</effective>
    <expires>2024-07-12T17:30:00-05:00</expires>
    <headline>Flood Warning</headline>
    <parameter><valueName>WMOHEADER</valueName><value></value></parameter>
    <parameter><valueName>VTEC</valueName><value>/O.NEW/</value></parameter>
    <resource><resourceDesc>map</resourceDesc><mimeType>image/png</mimeType><size>123</size>
      <uri>http://example.org/map.png</uri></resource>
    <area>
      <areaDesc>County</areaDesc>
      <polygon>38.47,-120.14 38.34,-119.95 38.52,-119.74
         38.62,-119.89 38.47,-120.14</polygon>
      <circle>32.9525,-115.5527 0</circle>
      <geocode><valueName>SAME</valueName><value>006109</value></geocode>
      <altitude>100</altitude><ceiling>200.5</ceiling>
    </area>
  </info>"""
    a = parse_alert(cap12(info=info))
    i = a.infos[0]
    assert i.categories == ("Met", "Safety")
    assert i.response_types == ("Evacuate", "AllClear")
    assert i.event_codes == (("SAME", "FLW"),)
    assert i.parameters == (("WMOHEADER", ""), ("VTEC", "/O.NEW/"))
    assert i.resources[0].size == 123 and i.resources[0].mime_type == "image/png"
    area = i.areas[0]
    assert area.polygons[0][0] == (38.47, -120.14)
    assert area.polygons[0][0] == area.polygons[0][-1]
    assert area.circles == (Circle(32.9525, -115.5527, 0.0),)
    assert area.geocodes == (("SAME", "006109"),)
    assert (area.altitude, area.ceiling) == (100.0, 200.5)
    assert i.expires is not None and i.expires.utcoffset() == timedelta(hours=-5)


def test_update_references_parsed() -> None:
    refs = (
        "<references>a@b.c,ID-1,2024-07-12T05:00:00+08:00 a@b.c,ID-2,2024-07-12T05:10:00+08:00</references>"
    )
    a = parse_alert(cap12(alert_extra=refs, msg_type="Update"))
    assert [r.identifier for r in a.references] == ["ID-1", "ID-2"]
    assert a.references[0].sender == "a@b.c"
    assert a.references[0].sent == datetime(2024, 7, 11, 21, 0, tzinfo=UTC)


def test_signature_element_allowed() -> None:
    sig = '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo/></Signature>'
    data = cap12().replace(b"</alert>", sig.encode() + b"</alert>")
    assert parse(data).alerts[0].alert.warnings == ()


def test_cap10_legacy_pairs_and_very_likely() -> None:
    data = b"""<alert xmlns="http://www.incident.com/cap/1.0">
  <identifier>TRI13970876.1</identifier><sender>trinet@caltech.edu</sender>
  <sent>2003-06-11T20:56:00-07:00</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
  <info><category>Geo</category><event>Earthquake</event><urgency>Past</urgency><severity>Minor</severity>
    <certainty>Very Likely</certainty><eventCode>same=EQW</eventCode><parameter>Magnitude=3.4 Ml</parameter>
    <area><areaDesc>Brawley</areaDesc><geocode>fips6=006025</geocode></area></info></alert>"""
    a = parse_alert(data)
    assert a.profile == "cap1.0"
    i = a.infos[0]
    assert i.certainty == "Very Likely"
    assert i.event_codes == (("same", "EQW"),)
    assert i.parameters == (("Magnitude", "3.4 Ml"),)
    assert i.areas[0].geocodes == (("fips6", "006025"),)


# --- validation errors ------------------------------------------------------------------------------------


def test_missing_scope_names_element_and_line() -> None:
    with pytest.raises(InvalidDocument) as exc:
        parse(cap12(scope=""))
    issue = exc.value.issues[0]
    assert issue.path == "alert/scope"
    assert issue.message == "required element missing"
    assert issue.line == 2
    assert str(issue) == "alert/scope (line 2): required element missing"


def test_no_time_zone_is_an_error() -> None:
    msgs = issues_of(cap12(sent="2003-06-17T14:57:00"))
    assert any("alert/sent" in m and "'2003-06-17T14:57:00' has no time zone" in m for m in msgs)


def test_space_separated_datetime_rejected_in_oasis() -> None:
    assert "alert/sent" in paths_of(cap12(sent="2003-06-17 14:57:00-07:00"))


def test_z_time_zone_accepted_with_warning() -> None:
    a = parse_alert(cap12(sent="2024-07-12T05:30:00Z"))
    assert a.sent == datetime(2024, 7, 12, 5, 30, tzinfo=UTC)
    assert any(w.path == "alert/sent" and "'Z'" in w.message for w in a.warnings)


@pytest.mark.parametrize("ident", ["INVALID,", "has space", "a&amp;b", "a&lt;b"])
def test_identifier_restricted_characters(ident: str) -> None:
    assert "alert/identifier" in paths_of(cap12(identifier=ident))


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "Real"), ("msgType", "Alarm"), ("scope", "Everyone")],
)
def test_alert_enumerations(field: str, value: str) -> None:
    data = cap12().replace(f"<{field}>".encode(), f"<{field}>{value}<!--".encode(), 1)
    data = data.replace(f"</{field}>".encode(), f"--></{field}>".encode(), 1)
    msgs = issues_of(data)
    assert any(m.startswith(f"alert/{field}") and repr(value) in m for m in msgs)


def test_info_enumerations_and_empty_values_name_the_info() -> None:
    info = """<info><category>Weather</category><event>x</event><responseType>Run</responseType>
      <urgency></urgency><severity>Bad</severity><certainty/></info>"""
    second = (
        "<info><category>Met</category><event>y</event><urgency>Past</urgency>"
        "<severity>Minor</severity><certainty>Observed</certainty></info>"
    )
    paths = paths_of(cap12(info=second + info))
    for p in ("category", "responseType[1]", "urgency", "severity", "certainty"):
        assert f"alert/info[2]/{p}" in paths
    assert not any(p.startswith("alert/info[1]") for p in paths)


def test_update_without_references_is_an_error() -> None:
    assert "alert/references" in paths_of(cap12(msg_type="Update"))
    assert "alert/references" in paths_of(cap12(msg_type="Cancel", alert_extra="<references/>"))


def test_empty_references_on_alert_is_a_warning() -> None:
    a = parse_alert(cap12(alert_extra="<references/>"))
    assert a.references == ()
    assert [w.path for w in a.warnings] == ["alert/references"]


def test_bad_reference_triple() -> None:
    msgs = issues_of(cap12(msg_type="Update", alert_extra="<references>sender,only-two</references>"))
    assert any("alert/references" in m and "triple" in m for m in msgs)


def test_restricted_and_private_need_their_elements() -> None:
    assert "alert/restriction" in paths_of(cap12(scope="<scope>Restricted</scope>"))
    assert "alert/addresses" in paths_of(cap12(scope="<scope>Private</scope>"))
    ok = parse_alert(cap12(scope="<scope>Private</scope><addresses>ops@example.org</addresses>"))
    assert ok.addresses == "ops@example.org"


def _area_info(area: str) -> str:
    return f"""<info><category>Met</category><event>x</event><urgency>Past</urgency><severity>Minor</severity>
      <certainty>Observed</certainty><area><areaDesc>d</areaDesc>{area}</area></info>"""


def test_polygon_not_closed_message() -> None:
    msgs = issues_of(cap12(info=_area_info("<polygon>32.1,106.2 32.5,106.2 32.5,106.6 32.2,106.3</polygon>")))
    assert any(
        m.startswith("alert/info[1]/area[1]/polygon[1]")
        and "ring not closed (first point 32.1,106.2 != last 32.2,106.3)" in m
        for m in msgs
    )


@pytest.mark.parametrize(
    ("polygon", "needle"),
    [
        ("32.1,106.2 32.5,106.2 32.1,106.2", "at least 4"),
        ("95.0,106.2 32.5,106.2 32.5,106.6 95.0,106.2", "out of range"),
        ("32.1,186.2 32.5,106.2 32.5,106.6 32.1,186.2", "out of range"),
        ("32.1;106.2 32.5,106.2 32.5,106.6 32.1;106.2", "not a lat,lon pair"),
        ("+40.85,-118.09, +40.86,-118.09, +41.12,-117.61 +40.85,-118.09,", "not a lat,lon pair"),
    ],
)
def test_polygon_errors(polygon: str, needle: str) -> None:
    msgs = issues_of(cap12(info=_area_info(f"<polygon>{polygon}</polygon>")))
    assert any(m.startswith("alert/info[1]/area[1]/polygon[1]") and needle in m for m in msgs), msgs


def test_empty_polygon_is_treated_as_absent_with_warning() -> None:
    a = parse_alert(cap12(info=_area_info("<polygon></polygon>")))
    assert a.infos[0].areas[0].polygons == ()
    assert any(w.path == "alert/info[1]/area[1]/polygon[1]" for w in a.warnings)


@pytest.mark.parametrize("circle", ["32.1,106.2", "32.1 106.2 5", "32.1,106.2 -5", "99,106.2 5"])
def test_circle_errors(circle: str) -> None:
    assert "alert/info[1]/area[1]/circle[1]" in paths_of(cap12(info=_area_info(f"<circle>{circle}</circle>")))


def test_empty_event_code_value_is_an_error_but_empty_parameter_is_not() -> None:
    info = """<info><category>Met</category><event>x</event><urgency>Past</urgency><severity>Minor</severity>
      <certainty>Observed</certainty><eventCode><valueName>SAME</valueName><value></value></eventCode></info>"""
    assert "alert/info[1]/eventCode[1]/value" in paths_of(cap12(info=info))


def test_geocode_needs_value_name_and_value() -> None:
    paths = paths_of(cap12(info=_area_info("<geocode><value>1</value></geocode>")))
    assert "alert/info[1]/area[1]/geocode[1]/valueName" in paths


def test_unknown_cap_element_is_named() -> None:
    info = _area_info("<Point><coordinates>1,2</coordinates></Point>")
    msgs = issues_of(cap12(info=info, alert_extra="<foo>bar</foo>"))
    assert any(m.startswith("alert/foo") and "unknown element" in m for m in msgs)
    assert any(m.startswith("alert/info[1]/area[1]/Point") for m in msgs)


def test_foreign_namespace_element_is_ignored_with_warning() -> None:
    a = parse_alert(cap12(alert_extra='<y xmlns="http://a.b/">a</y>'))
    assert any(w.path == "alert/y" for w in a.warnings)


def test_repeated_single_element_is_an_error() -> None:
    assert "alert/note" in paths_of(cap12(alert_extra="<note>a</note><note>b</note>"))


def test_element_order_warns_but_accepts() -> None:
    data = cap12().replace(
        b"<status>Actual</status>\n  <msgType>Alert</msgType>",
        b"<msgType>Alert</msgType><status>Actual</status>",
    )
    a = parse_alert(data)
    assert any("order" in w.message and w.path == "alert" for w in a.warnings)


def test_mime_type_required_in_cap12_resource() -> None:
    info = """<info><category>Met</category><event>x</event><urgency>Past</urgency><severity>Minor</severity>
      <certainty>Observed</certainty><resource><resourceDesc>map</resourceDesc></resource></info>"""
    assert "alert/info[1]/resource[1]/mimeType" in paths_of(cap12(info=info))


# --- hardened XML -----------------------------------------------------------------------------------------


def test_doctype_rejected_before_entities() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol2;</identifier></alert>"""
    with pytest.raises(InvalidDocument) as exc:
        parse(bomb)
    assert "DOCTYPE" in str(exc.value)
    assert exc.value.issues[0].line == 2


def test_doctype_after_comment_and_in_utf16_rejected() -> None:
    doc = (
        '<?xml version="1.0" encoding="UTF-16"?><!-- c --><!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><a/>'
    )
    for data in (doc.replace("UTF-16", "UTF-8").encode(), doc.encode("utf-16")):
        with pytest.raises(InvalidDocument, match="DOCTYPE"):
            parse(data)


def test_cdata_doctype_text_is_not_a_doctype() -> None:
    info = (
        _area_info("")
        .replace("<event>x</event>", "<event>x</event>")
        .replace("<areaDesc>d</areaDesc>", "<areaDesc><![CDATA[<!DOCTYPE html> d]]></areaDesc>")
    )
    assert parse_alert(cap12(info=info)).infos[0].areas[0].desc == "<!DOCTYPE html> d"


def test_size_limit_checked_first() -> None:
    with pytest.raises(InvalidDocument) as exc:
        parse(b"x" * 101, max_bytes=100)
    assert exc.value.issues[0].message == "payload is 101 bytes, limit 100"


@pytest.mark.parametrize("data", [b"", b"hello", b"  \n", b"\x00\x01\x02"])
def test_not_xml(data: bytes) -> None:
    with pytest.raises(InvalidDocument):
        parse(data)


def test_malformed_xml_has_line() -> None:
    with pytest.raises(InvalidDocument) as exc:
        parse(b"<alert>\n<identifier>x</alert>")
    assert exc.value.issues[0].line == 2


def test_unknown_root() -> None:
    with pytest.raises(InvalidDocument, match="unknown root element <html>"):
        parse(b"<html><body/></html>")


def test_parse_alert_rejects_feeds() -> None:
    with pytest.raises(InvalidDocument, match="expected a CAP <alert>"):
        parse_alert(b'<feed xmlns="http://www.w3.org/2005/Atom"/>')


def test_undefined_entity_is_rejected() -> None:
    data = cap12().replace(b"<sender>KSTO@NWS.NOAA.GOV</sender>", b"<sender>a&xxe;</sender>")
    with pytest.raises(InvalidDocument, match="entit"):
        parse(data)


def test_declared_latin1_is_honoured() -> None:
    data = (
        cap12(header='<?xml version="1.0" encoding="ISO-8859-1"?>\n').decode().replace("Somewhere", "Cañada")
    )
    a = parse_alert(data.encode("iso-8859-1"))
    assert a.infos[0].areas[0].desc == "Cañada"


def test_gb2312_declared_encoding_is_honoured() -> None:
    text = cap12(header='<?xml version="1.0" encoding="GB2312"?>\n').decode().replace("Somewhere", "梁平区")
    assert parse_alert(text.encode("gb2312")).infos[0].areas[0].desc == "梁平区"


def test_wrong_declared_encoding_gets_clear_error() -> None:
    data = cap12().decode().replace("Somewhere", "Cañada").encode("iso-8859-1")  # declared UTF-8
    with pytest.raises(InvalidDocument) as exc:
        parse(data)
    issue = exc.value.issues[0]
    assert "do not decode as the declared encoding UTF-8" in issue.message
    assert issue.line is not None


def test_unknown_declared_encoding() -> None:
    with pytest.raises(InvalidDocument, match="not supported"):
        parse(cap12(header='<?xml version="1.0" encoding="X-NOPE"?>\n'))


def _listener(port: int) -> tuple[socket.socket, list[object], threading.Thread] | None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(("127.0.0.1", port))
    except OSError:
        srv.close()
        return None
    srv.listen(5)
    srv.settimeout(0.2)
    hits: list[object] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            hits.append(conn)
            conn.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.stop = stop  # type: ignore[attr-defined]
    return srv, hits, t


XXE_INLINE = b"""<?xml version="1.0" encoding="utf-8"?>
<?xml-stylesheet type="text/xsl" href="http://127.0.0.1:PORT/x.xsl"?>
<!DOCTYPE alert PUBLIC "-//A/B/EN" "http://127.0.0.1:PORT/payload1.dtd" [
  <!ENTITY % remote SYSTEM "http://127.0.0.1:PORT/payload2">
  <!ENTITY xxe SYSTEM "http://127.0.0.1:PORT/payload3">
  %remote;
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <x xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="http://127.0.0.1:PORT/1"/></x>
  <identifier>&xxe;</identifier>
</alert>"""

NO_DOCTYPE_XINCLUDE = b"""<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="urn:x http://127.0.0.1:PORT/a.xsd">
  <xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="http://127.0.0.1:PORT/1"/>
  <identifier>x</identifier></alert>"""


def test_xxe_never_fetches() -> None:
    port = 8080
    lst = _listener(port)
    if lst is None:  # 8080 busy: use any free port, the payload is rewritten to point at it
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        lst = _listener(port)
    assert lst is not None
    srv, hits, thread = lst
    try:
        for payload in (XXE_INLINE, NO_DOCTYPE_XINCLUDE):
            data = payload.replace(b"PORT", str(port).encode())
            with pytest.raises(InvalidDocument):
                parse(data)
            with pytest.raises(InvalidDocument):
                parse_alert(data)
        # sanity: the listener does receive a real connection
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        for _ in range(20):
            if hits:
                break
            threading.Event().wait(0.05)
        assert len(hits) == 1, "only the sanity connection may arrive"
    finally:
        thread.stop.set()  # type: ignore[attr-defined]
        srv.close()


# --- build_cap_xml ----------------------------------------------------------------------------------------


def test_build_round_trip() -> None:
    sent = datetime(2024, 7, 12, 5, 30, tzinfo=timezone(timedelta(hours=8)))
    data = build_cap_xml(
        identifier="warnd-manual-0001",
        sender="ops@liangping.example.cn",
        sent=sent,
        status="Exercise",
        msg_type="Update",
        references=[Reference("warnd-manual-0000", "ops@liangping.example.cn", sent - timedelta(hours=1))],
        note="演练",
        language="zh-CN",
        category="Met",
        event="暴雨",
        event_codes=[("eventType", "11B03")],
        urgency="Immediate",
        severity="Extreme",
        certainty="Likely",
        sender_name="梁平区应急管理局",
        headline="梁平区发布暴雨红色预警",
        description="过去3小时降雨量已达100毫米以上。",
        instruction="请立即转移。",
        expires=sent + timedelta(hours=12),
        areas=[
            Area(desc="梁平区", geocodes=(("geocode", "500228000000"),)),
            {
                "area_desc": "礼让镇沿河",
                "polygons": [[(30.612, 107.641), (30.635, 107.652), (30.629, 107.687)]],
                "circles": [(30.62, 107.665, 3.5)],
            },
        ],
    )
    assert data.startswith(b"<?xml")
    a = parse_alert(data)
    assert a.profile == "cap1.2"
    assert a.sent == sent and a.status == "Exercise" and a.msg_type == "Update"
    assert a.references[0].identifier == "warnd-manual-0000"
    assert a.note == "演练"
    i = a.infos[0]
    assert (i.event, i.severity, i.language) == ("暴雨", "Extreme", "zh-CN")
    assert i.event_codes == (("eventType", "11B03"),)
    assert i.expires == sent + timedelta(hours=12)
    assert i.areas[0].geocodes == (("geocode", "500228000000"),)
    ring = i.areas[1].polygons[0]
    assert ring[0] == ring[-1] == (30.612, 107.641) and len(ring) == 4
    assert i.areas[1].circles == (Circle(30.62, 107.665, 3.5),)
    assert a.warnings == ()
    assert parse(data).alerts[0].xml == data


def test_build_rejects_invalid_values() -> None:
    with pytest.raises(InvalidDocument) as exc:
        build_cap_xml(identifier="x", sender="s", sent=datetime.now(UTC), event="e", severity="Red")
    assert exc.value.issues[0].path == "alert/info[1]/severity"
    with pytest.raises(ValueError, match="timezone-aware"):
        build_cap_xml(identifier="x", sender="s", sent=datetime(2024, 1, 1), event="e")
    with pytest.raises(ValueError, match="sender and sent"):
        build_cap_xml(identifier="x", sender="s", msg_type="Cancel", references=[Reference("old")], event="e")


def test_offset_without_colon_accepted_with_warning() -> None:
    a = parse_alert(cap12(sent="2024-04-29T22:00:00-0700"))
    assert a.sent.utcoffset() == timedelta(hours=-7)
    assert any(w.path == "alert/sent" and "colon" in w.message for w in a.warnings)
