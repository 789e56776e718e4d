"""ATOM, RSS, EDXL-DE and NWS JSON containers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from warnd.cap import InvalidDocument, parse, parse_alert

CAP11 = "urn:oasis:names:tc:emergency:cap:1.1"


def cap_alert(
    identifier: str = "ID-1", *, ns: str = CAP11, prefix: str = "", urgency: str = "Expected"
) -> str:
    p = f"{prefix}:" if prefix else ""
    decl = f'xmlns:{prefix}="{ns}"' if prefix else f'xmlns="{ns}"'
    return f"""<{p}alert {decl}>
  <{p}identifier>{identifier}</{p}identifier><{p}sender>w-nws.webmaster@noaa.gov</{p}sender>
  <{p}sent>2012-08-30T04:07:00-06:00</{p}sent><{p}status>Actual</{p}status><{p}msgType>Alert</{p}msgType>
  <{p}scope>Public</{p}scope>
  <{p}info><{p}category>Met</{p}category><{p}event>Flash Flood Watch</{p}event>
    <{p}urgency>{urgency}</{p}urgency><{p}severity>Severe</{p}severity><{p}certainty>Possible</{p}certainty>
    <{p}area><{p}areaDesc>Lewis and Clark</{p}areaDesc></{p}area></{p}info>
</{p}alert>"""


def atom(entries: str, *, feed_extra: str = "", feed_id: str = "<id>urn:feed</id>") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:cap="{CAP11}">
  {feed_id}<title>Warnings</title><updated>2012-08-30T14:37:00-00:00</updated>
  {feed_extra}
  {entries}
</feed>""".encode()


def entry(body: str, *, eid: str = "<id>urn:e1</id>", title: str = "<title>t</title>") -> str:
    return f"<entry>{eid}{title}<updated>2012-08-30T04:07:00-06:00</updated>{body}</entry>"


# --- ATOM -------------------------------------------------------------------------------------------------


def test_fat_atom_embedded_alert_and_own_bytes() -> None:
    result = parse(atom(entry(f'<content type="text/xml">{cap_alert()}</content>')))
    assert result.kind == "atom"
    assert len(result.alerts) == 1 and not result.links and not result.rejected
    parsed = result.alerts[0]
    assert parsed.alert.identifier == "ID-1" and parsed.alert.profile == "cap1.1"
    assert b"<feed" not in parsed.xml
    assert parse_alert(parsed.xml) == parsed.alert  # the serialized element stands alone


def test_fat_atom_with_prefixed_cap() -> None:
    result = parse(atom(entry(f"<content>{cap_alert(prefix='cap')}</content>")))
    assert result.alerts[0].alert.identifier == "ID-1"


def test_fat_atom_invalid_alert_is_rejected_others_kept() -> None:
    entries = entry(f"<content>{cap_alert('GOOD')}</content>") + entry(
        f"<content>{cap_alert('BAD', urgency='Soon')}</content>", eid="<id>urn:e2</id>"
    )
    result = parse(atom(entries))
    assert [a.alert.identifier for a in result.alerts] == ["GOOD"]
    assert len(result.rejected) == 1
    rej = result.rejected[0]
    assert rej.identifier == "BAD"
    assert rej.issues[0].path == "feed/entry[2]/content/alert/info[1]/urgency"
    assert rej.xml is not None and b"BAD" in rej.xml


def test_thin_atom_links() -> None:
    entries = (
        entry(
            '<link rel="alternate" type="text/html" href="http://x/1.html"/>'
            '<link rel="related" type="application/cap+xml" href="http://x/cap/1"/>'
        )
        + entry('<link href="http://x/wwacapget.php?x=2"/>', eid="<id>urn:e2</id>")
        + entry('<link rel="alternate" href="http://x/3.cap"/>', eid="<id>urn:e3</id>")
    )
    result = parse(atom(entries))
    assert [link.url for link in result.links] == [
        "http://x/cap/1",
        "http://x/wwacapget.php?x=2",
        "http://x/3.cap",
    ]
    assert result.links[0].entry_id == "urn:e1"
    assert result.links[0].title == "t"
    assert result.links[0].updated == "2012-08-30T04:07:00-06:00"


def test_atom_with_zero_entries_is_valid() -> None:
    result = parse(atom(""))
    assert result.alerts == [] and result.links == [] and result.rejected == []


def test_atom_nws_index_extension_elements_allowed() -> None:
    body = '<link href="http://x/1"/><cap:status>Actual</cap:status><cap:geocode><valueName>FIPS6</valueName></cap:geocode>'
    assert len(parse(atom(entry(body))).links) == 1


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (atom(entry('<link href="http://x/1"/>'), feed_id=""), "feed/id"),
        (atom(entry('<link href="http://x/1"/>', eid="")), "feed/entry[1]/id"),
        (atom(entry('<link href="http://x/1"/>', title="")), "feed/entry[1]/title"),
        (atom(entry("<content></content>")), "feed/entry[1]"),
        (atom(entry('<link href="http://x/1"/>'), feed_extra="<foo></foo>"), "feed/foo"),
        (atom(entry('<link href="http://x/1"/><bogus/>')), "feed/entry[1]/bogus"),
        (atom("", feed_extra=cap_alert()), "feed/alert"),
    ],
)
def test_atom_feed_level_violations(data: bytes, path: str) -> None:
    with pytest.raises(InvalidDocument) as exc:
        parse(data)
    assert path in [i.path for i in exc.value.issues]


# --- RSS --------------------------------------------------------------------------------------------------


def rss(items: str) -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Index</title><link>http://x/</link><description>d</description>
{items}</channel></rss>""".encode()


def test_rss_index_links() -> None:
    items = (
        "<item><title>A</title><link>http://x/GetCapAlert.aspx?capID=1</link><guid>G1</guid>"
        "<pubDate>Fri, 04 Feb 2011 20:20:00 GMT</pubDate></item>"
        "<item><description>B</description><link>http://x/b.cap</link><guid>G2</guid></item>"
        "<item><title>C</title><link>http://x/c.html</link><guid>G3</guid>"
        '<enclosure url="http://x/c.cap" type="application/cap+xml" length="1"/></item>'
    )
    result = parse(rss(items))
    assert result.kind == "rss"
    assert [(link.url, link.entry_id) for link in result.links] == [
        ("http://x/GetCapAlert.aspx?capID=1", "G1"),
        ("http://x/b.cap", "G2"),
        ("http://x/c.cap", "G3"),
    ]
    assert result.links[0].updated == "Fri, 04 Feb 2011 20:20:00 GMT"


@pytest.mark.parametrize(
    ("item", "path"),
    [
        ("<item><link>http://x/1</link><guid>G</guid></item>", "rss/channel/item[1]/title"),
        ("<item><title>A</title><link>http://x/1</link></item>", "rss/channel/item[1]/guid"),
        ("<item><title>A</title><guid>G</guid></item>", "rss/channel/item[1]/link"),
    ],
)
def test_rss_item_violations(item: str, path: str) -> None:
    with pytest.raises(InvalidDocument) as exc:
        parse(rss(item))
    assert path in [i.path for i in exc.value.issues]


# --- EDXL-DE ----------------------------------------------------------------------------------------------


def edxl(*alerts: str) -> bytes:
    objects = "".join(
        f"<de:contentObject><de:xmlContent><de:embeddedXMLContent>{a}</de:embeddedXMLContent></de:xmlContent>"
        "</de:contentObject>"
        for a in alerts
    )
    return f"""<de:EDXLDistribution xmlns:de="urn:oasis:names:tc:emergency:EDXL:DE:1.0">
<de:distributionID>D1</de:distributionID><de:senderID>s@x</de:senderID>
<de:dateTimeSent>2011-10-17T11:18:00-00:00</de:dateTimeSent><de:distributionStatus>Actual</de:distributionStatus>
<de:distributionType>Report</de:distributionType><de:combinedConfidentiality>UNCLASSIFIED</de:combinedConfidentiality>
{objects}</de:EDXLDistribution>""".encode()


def test_edxl_de_each_alert_validated_separately() -> None:
    ns12 = "urn:oasis:names:tc:emergency:cap:1.2"
    bad = f'<cap:alert xmlns:cap="{ns12}"></cap:alert>'
    result = parse(edxl(cap_alert("A1", ns=ns12, prefix="cap"), bad, cap_alert("A3", ns=ns12)))
    assert result.kind == "edxl-de"
    assert [a.alert.identifier for a in result.alerts] == ["A1", "A3"]
    assert len(result.rejected) == 1
    paths = [i.path for i in result.rejected[0].issues]
    assert "EDXLDistribution/contentObject[2]/xmlContent/embeddedXMLContent/alert/identifier" in paths
    assert parse_alert(result.alerts[0].xml).identifier == "A1"


def test_edxl_de_missing_header_is_invalid() -> None:
    data = edxl(cap_alert()).replace(b"<de:distributionID>D1</de:distributionID>", b"")
    with pytest.raises(InvalidDocument, match="distributionID"):
        parse(data)


# --- NWS JSON ---------------------------------------------------------------------------------------------


def feature(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "id": "urn:oid:2.49.0.1.840.0.abc.001.1",
        "areaDesc": "Chaffee County",
        "geocode": {"SAME": ["008015"], "UGC": ["COC015"]},
        "references": [
            {
                "@id": "x",
                "identifier": "urn:oid:2.49.0.1.840.0.old.001.1",
                "sender": "w-nws.webmaster@noaa.gov",
                "sent": "2024-07-15T13:00:00-06:00",
            }
        ],
        "sent": "2024-07-15T14:00:00-06:00",
        "effective": "2024-07-15T14:00:00-06:00",
        "expires": "2024-07-15T15:15:00-06:00",
        "status": "Actual",
        "messageType": "Update",
        "category": "Met",
        "severity": "Severe",
        "certainty": "Likely",
        "urgency": "Immediate",
        "event": "Flash Flood Warning",
        "sender": "w-nws.webmaster@noaa.gov",
        "senderName": "NWS Pueblo CO",
        "headline": "Flash Flood Warning",
        "description": "d",
        "instruction": "Turn around, don't drown.",
        "response": "Avoid",
        "parameters": {"VTEC": ["/O.CON.KPUB.FF.W.0010/"]},
        "eventCode": {"SAME": ["FFW"]},
    }
    props.update(overrides)
    geometry = {
        "type": "Polygon",
        "coordinates": [[[-106.1, 38.7], [-106.0, 38.7], [-106.0, 38.8], [-106.1, 38.7]]],
    }
    return {
        "type": "Feature",
        "id": "https://api.weather.gov/alerts/x",
        "geometry": geometry,
        "properties": props,
    }


def test_nws_feature_collection() -> None:
    doc = {"type": "FeatureCollection", "features": [feature(), feature(id="second", messageType="Alert")]}
    result = parse(json.dumps(doc).encode())
    assert result.kind == "nws-json"
    assert len(result.alerts) == 2 and not result.rejected
    a = result.alerts[0].alert
    assert a.profile == "nws-json"
    assert a.msg_type == "Update"
    assert a.references[0].identifier == "urn:oid:2.49.0.1.840.0.old.001.1"
    assert a.references[0].sent is not None and a.references[0].sent.tzinfo is not None
    i = a.infos[0]
    assert i.response_types == ("Avoid",)
    assert i.event_codes == (("SAME", "FFW"),)
    area = i.areas[0]
    assert area.desc == "Chaffee County"
    assert area.geocodes == (("SAME", "008015"), ("UGC", "COC015"))
    assert area.polygons[0][0] == (38.7, -106.1)  # swapped to (lat, lon)
    assert json.loads(result.alerts[0].xml)["properties"]["id"] == a.identifier
    assert parse(result.alerts[0].xml).alerts[0].alert == a


def test_nws_bad_dates_reject_only_that_feature() -> None:
    doc = {"type": "FeatureCollection", "features": [feature(sent="date:now -44 seconds"), feature(id="ok")]}
    result = parse(json.dumps(doc).encode())
    assert [a.alert.identifier for a in result.alerts] == ["ok"]
    issue = result.rejected[0].issues[0]
    assert issue.path == "features[1]/properties/sent"
    assert "date:now -44 seconds" in issue.message


def test_nws_single_invalid_feature_raises() -> None:
    with pytest.raises(InvalidDocument) as exc:
        parse(json.dumps(feature(messageType="Update", references=[])).encode())
    assert exc.value.issues[0].path == "feature/properties/references"


def test_nws_unknown_json() -> None:
    with pytest.raises(InvalidDocument):
        parse(b'{"value": 1}')
    with pytest.raises(InvalidDocument, match="not valid JSON"):
        parse(b"{nope")


def test_deeply_nested_json_is_rejected_cleanly() -> None:
    with pytest.raises(InvalidDocument):
        parse(b"[" * 200_000 + b"]" * 200_000)
