"""The Chinese national CAP profile (GB/T 35965.1) — fixtures under tests/fixtures/cap/."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from warnd.cap import ChannelText, Circle, InvalidDocument, Reference, parse, parse_alert

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cap"
CST = timezone(timedelta(hours=8))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def alert_red() -> bytes:
    return fixture("cn_liangping_rainstorm_red_alert.xml")


def edit(data: bytes, old: str, new: str) -> bytes:
    text = data.decode()
    assert old in text
    return text.replace(old, new, 1).encode()


def test_red_alert_fields() -> None:
    result = parse(alert_red())
    assert result.kind == "cap"
    a = result.alerts[0].alert
    assert result.alerts[0].xml == alert_red()
    assert a.profile == "cap-cn"
    assert a.identifier == "50022841600000_20240712053000"
    assert a.sender == "重庆市梁平区气象局"
    assert a.sender_code == "50022841600000"
    assert a.sent == datetime(2024, 7, 12, 5, 30, tzinfo=CST)
    assert (a.status, a.msg_type, a.scope) == ("Actual", "Alert", "Public")
    assert a.references == ()
    assert a.note is None
    info = a.infos[0]
    assert info.language == "zh-CN"
    assert info.event == "暴雨"
    assert info.event_codes == (("eventType", "11B03"),)
    assert (info.urgency, info.severity, info.certainty) == ("Immediate", "Red", "Likely")
    assert info.expires == datetime(2024, 7, 12, 17, 30, tzinfo=CST)
    assert info.sender_name == "张明"
    assert info.headline == "梁平区气象台发布暴雨红色预警[Ⅰ级/特别严重]"
    assert info.web == "http://cq.cma.gov.cn/"
    assert info.areas[0].desc == "重庆市梁平区"
    assert info.areas[0].geocodes == (("geocode", "500228000000"),)
    assert [c.method for c in a.channel_texts] == ["SMS", "SPEAKER", "WEB"]
    sms = a.channel_texts[0]
    assert sms.audience_groups == ("1001", "1002", "1005")
    assert sms.audience_persons == ("13800000001", "13800000002")
    assert sms.message is not None and sms.message.startswith("【梁平区气象局】")
    assert a.channel_texts[2] == ChannelText("WEB", None)  # empty message -> use the description
    # empty <references></references> on an Alert: accepted with a warning
    assert [w.path for w in a.warnings] == ["alert/references"]


def test_update_references_first_issue_and_multiple_geocodes() -> None:
    a = parse_alert(fixture("cn_liangping_rainstorm_red_update.xml"))
    assert a.msg_type == "Update"
    assert a.references == (Reference(identifier="50022841600000_20240712053000"),)
    codes = [code for name, code in a.infos[0].areas[0].geocodes if name == "geocode"]
    assert codes == ["500228104000", "500228105000", "500228003000", "500228108000", "500228102000"]
    assert a.warnings == ()


def test_cancel_with_note_and_iso_t_times() -> None:
    a = parse_alert(fixture("cn_liangping_rainstorm_red_cancel.xml"))
    assert a.msg_type == "Cancel"
    assert a.note is not None and "解除预警" in a.note
    assert a.references[0].identifier == "50022841600000_20240712053000"
    assert a.sent == datetime(2024, 7, 12, 14, 30, tzinfo=CST)


def test_exercise_without_event_uses_event_type() -> None:
    a = parse_alert(fixture("cn_exercise_typhoon.xml"))
    assert a.status == "Exercise"
    assert a.infos[0].event == "11B01"
    assert a.infos[0].severity == "Orange"
    assert a.channel_texts[0].method == "BROADCAST"


def test_audenceprt_spelling_and_missing_scope() -> None:
    a = parse_alert(fixture("cn_test_audenceprt.xml"))
    assert a.status == "Test"
    assert a.scope == "Public"
    assert a.channel_texts[0].audience_persons == ("13900000001", "13900000002", "13900000003")
    assert any(w.path == "alert/scope" and "Public" in w.message for w in a.warnings)


@pytest.mark.parametrize("tag", ["audiencePrt", "AudiencePrt", "audienceprt", "audenceprt", "AUDENCEPRT"])
def test_audience_prt_case_variants(tag: str) -> None:
    data = edit(alert_red(), "<audiencePrt>13800000001,13800000002</audiencePrt>", f"<{tag}>139</{tag}>")
    assert parse_alert(data).channel_texts[0].audience_persons == ("139",)


def test_polygon_circle_and_oasis_style_geocode() -> None:
    a = parse_alert(fixture("cn_polygon_flashflood.xml"))
    area = a.infos[0].areas[0]
    assert area.polygons[0][0] == (30.612, 107.641) == area.polygons[0][-1]
    assert len(area.polygons[0]) == 5
    assert area.circles == (Circle(30.62, 107.665, 3.5),)
    assert area.geocodes == (("行政区划代码", "500228104000"),)
    assert a.channel_texts[0].audience_persons == ("LS-500228104-001", "LS-500228104-002")


def test_gbk_encoded_document() -> None:
    text = alert_red().decode().replace('encoding="UTF-8"', 'encoding="GBK"')
    a = parse_alert(text.encode("gbk"))
    assert a.sender == "重庆市梁平区气象局"


def test_cn_alert_inside_atom() -> None:
    body = (
        alert_red().split(b"?>", 1)[1].decode().replace("<alert>", '<alert xmlns="">', 1)
    )  # undo Atom default ns
    feed = f"""<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:cq</id><title>重庆预警</title>
<entry><id>urn:1</id><title>暴雨红色预警</title>
<content type="application/xml">{body}</content></entry></feed>"""
    result = parse(feed.encode())
    assert result.alerts[0].alert.profile == "cap-cn"
    assert parse_alert(result.alerts[0].xml).identifier == "50022841600000_20240712053000"


# --- errors and warnings ----------------------------------------------------------------------------------


def paths(data: bytes) -> list[str]:
    with pytest.raises(InvalidDocument) as exc:
        parse(data)
    return [i.path for i in exc.value.issues]


def test_bad_admin_code() -> None:
    data = edit(alert_red(), "<geocode>500228000000</geocode>", "<geocode>500228000000,5002281</geocode>")
    with pytest.raises(InvalidDocument) as exc:
        parse(data)
    issue = exc.value.issues[0]
    assert issue.path == "alert/info[1]/area[1]/geocode[1]"
    assert "'5002281' is not a 12-digit" in issue.message


def test_bad_severity() -> None:
    data = edit(alert_red(), "<severity>Red</severity>", "<severity>红色</severity>")
    assert "alert/info[1]/severity" in paths(data)


def test_oasis_severity_word_accepted_with_warning() -> None:
    a = parse_alert(edit(alert_red(), "<severity>Red</severity>", "<severity>Extreme</severity>"))
    assert a.infos[0].severity == "Extreme"
    assert any(w.path == "alert/info[1]/severity" for w in a.warnings)


def test_send_time_without_zone() -> None:
    data = edit(
        alert_red(),
        "<sendTime>2024-07-12 05:30:00+08:00</sendTime>",
        "<sendTime>2024-07-12 05:30:00</sendTime>",
    )
    with pytest.raises(InvalidDocument) as exc:
        parse(data)
    assert str(exc.value.issues[0]).startswith(
        "alert/sendTime (line 6): '2024-07-12 05:30:00' has no time zone"
    )


def test_update_with_empty_references_is_an_error() -> None:
    data = edit(
        fixture("cn_liangping_rainstorm_red_update.xml"),
        "<references>50022841600000_20240712053000</references>",
        "<references/>",
    )
    assert "alert/references" in paths(data)


def test_sender_code_not_14_digits_warns() -> None:
    a = parse_alert(
        edit(alert_red(), "<senderCode>50022841600000</senderCode>", "<senderCode>500228416</senderCode>")
    )
    assert a.sender_code == "500228416"
    assert any(w.path == "alert/senderCode" for w in a.warnings)


def test_cn_is_strict_about_other_element_names() -> None:
    data = edit(alert_red(), "<headline>", "<Headline>").replace(b"</headline>", b"</Headline>")
    assert "alert/info[1]/Headline" in paths(data)


def test_cn_msg_type_limited() -> None:
    assert "alert/msgType" in paths(edit(alert_red(), "<msgType>Alert</msgType>", "<msgType>Ack</msgType>"))


def test_cn_missing_event_type_and_event() -> None:
    assert "alert/info[1]/eventType" in paths(
        edit(edit(alert_red(), "<eventType>11B03</eventType>", ""), "<event>暴雨</event>", "")
    )


def test_cn_missing_required() -> None:
    p = paths(edit(alert_red(), "<identifier>50022841600000_20240712053000</identifier>", ""))
    assert p == ["alert/identifier"]
