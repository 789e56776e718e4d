"""Subscriber CSV import checks: rows as plain strings, bad rows reported by line, all or nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest

from warnd.config import DEFAULT_ROLES, SUBSCRIBER_CSV_COLUMNS
from warnd.subscribers import ImportRejected, ImportReport, RowChecker, validated_chunks

GROUPS = {"public": {}, "grid_workers": {}, "duty_persons": {}}
HEADER = ",".join(SUBSCRIBER_CSV_COLUMNS[:8]) + "\n"  # the original columns; the door-knock ones are optional


def run(text: str) -> tuple[list[dict[str, Any]], ImportReport]:
    report = ImportReport()
    rows = [
        row
        for chunk in validated_chunks(io.StringIO(text), report, groups=GROUPS, roles=DEFAULT_ROLES)
        for row in chunk
    ]
    return rows, report


def rejected(text: str) -> ImportReport:
    report = ImportReport()
    with pytest.raises(ImportRejected) as info:
        for _chunk in validated_chunks(io.StringIO(text), report, groups=GROUPS, roles=DEFAULT_ROLES):
            pass
    assert info.value.report is report
    assert "nothing imported" in str(info.value)
    return report


# --- RowChecker ------------------------------------------------------------------------------------------


def checker() -> RowChecker:
    return RowChecker(groups=GROUPS, roles=DEFAULT_ROLES)


def test_good_row_becomes_a_recipient_record() -> None:
    record, errors = checker().check(
        {
            "name": " 李秀英 ",
            "phone": "+86 138-0023-0022",
            "role": "duty_person",
            "area_code": "500228101201",
            "lat": "30.65",
            "lon": "107.80",
            "language": "zh-CN",
            "groups": "public| duty_persons",
        }
    )
    assert errors == []
    assert record == {
        "key": "13800230022",
        "kind": "person",
        "name": "李秀英",
        "phone": "13800230022",
        "role": "duty_person",
        "area_code": "500228101201",
        "lat": 30.65,
        "lon": 107.80,
        "language": "zh-CN",
        "push_tokens": None,
        "terminal_id": None,
        "address": None,
        "household": None,
        "vulnerable": None,
        "superior": None,
        "groups": "public|duty_persons",
    }


def test_defaults_for_empty_cells() -> None:
    record, errors = checker().check({"name": "谢芳", "phone": "13800230043", "area_code": "500228101201"})
    assert errors == []
    assert record is not None
    assert (record["role"], record["language"], record["groups"], record["lat"], record["lon"]) == (
        "public",
        "zh-CN",
        "",
        None,
        None,
    )


def test_bad_cells_are_all_reported() -> None:
    record, errors = checker().check(
        {
            "name": "",
            "phone": "12345",
            "role": "mayor",
            "area_code": "5002281012",
            "lat": "91",
            "lon": "-181",
            "language": "中文",
            "groups": "public|vips",
        }
    )
    assert record is None
    fields = [e.split(":")[0] for e in errors]
    assert fields == ["name", "phone", "role", "area_code", "lat", "lon", "language", "groups"]
    assert "unknown role 'mayor'" in errors[2]
    assert "must be 12 digits" in errors[3]
    assert "out of range" in errors[4] and "out of range" in errors[5]
    assert "unknown group 'vips'" in errors[7]


def test_group_and_language_caches_do_not_hide_errors() -> None:
    rows = checker()
    assert (
        rows.check(
            {
                "name": "a",
                "phone": "13900000001",
                "area_code": "500228101201",
                "groups": "public",
                "language": "en",
            }
        )[1]
        == []
    )
    # the same bad groups string twice is reported twice
    for _ in range(2):
        assert rows.check(
            {"name": "b", "phone": "13900000002", "area_code": "500228101201", "groups": "nobody"}
        )[1] == ["groups: unknown group 'nobody'"]
    assert (
        rows.check({"name": "c", "phone": "13900000003", "area_code": "500228101201", "language": "en"})[1]
        == []
    )


# --- validated_chunks ------------------------------------------------------------------------------------


def test_good_rows_produce_records() -> None:
    rows, report = run(
        HEADER
        + "李秀英,13800230022,duty_person,500228101201,,,,duty_persons\n"
        + "彭海涛,+86 138 0023 0047,public,500228103201,30.61,107.75,en,\n"
        + "\n"  # blank lines are skipped
        + "谢芳,13800230043,,500228101201,,,,\n"
    )
    assert report.errors == []
    assert report.rows == 3
    assert [r["phone"] for r in rows] == ["13800230022", "13800230047", "13800230043"]
    assert rows[1]["lat"] == 30.61 and rows[1]["lon"] == 107.75 and rows[1]["language"] == "en"
    assert rows[2]["role"] == "public"
    assert rows[0]["groups"] == "duty_persons"


def test_header_with_only_the_required_columns() -> None:
    rows, report = run("name,phone,area_code\n王五,13900000005,500228001201\n")
    assert report.errors == []
    assert rows[0]["name"] == "王五" and rows[0]["role"] == "public"


def test_bad_rows_are_reported_with_their_line_numbers() -> None:
    report = rejected(
        HEADER
        + "好人,13900000001,public,500228101201,,,,\n"  # line 2
        + "坏号码,139,public,500228101201,,,,\n"  # line 3
        + "未知组,13900000003,public,500228101201,,,,vips\n"  # line 4
        + "重复,139-0000-0001,public,500228101201,,,,\n"  # line 5: same number as line 2
        + "只有纬度,13900000005,public,500228101201,30.6,,,\n"  # line 6
        + "字段太少,13900000006,public\n"  # line 7
        + "另一个好人,13900000007,public,500228101201,,,,\n"  # line 8
    )
    assert report.rows == 6  # the wrong-width row is not counted as a checked row
    by_line: dict[str, list[str]] = {}
    for error in report.errors:
        line, _, message = error.partition(": ")
        by_line.setdefault(line, []).append(message)
    assert set(by_line) == {"line 3", "line 4", "line 5", "line 6", "line 7"}
    assert by_line["line 3"][0].startswith("phone: not a mobile number")
    assert by_line["line 4"] == ["groups: unknown group 'vips'"]
    assert by_line["line 5"] == ["phone: 139****0001 already on line 2"]
    assert by_line["line 6"] == ["lat/lon: give both or neither"]
    assert by_line["line 7"] == ["3 fields, header has 8"]
    assert "13900000001" not in " ".join(report.errors)  # the duplicate is reported masked


def test_nothing_is_yielded_once_a_row_is_bad() -> None:
    report = ImportReport()
    chunks: list[list[dict[str, Any]]] = []
    text = (
        HEADER
        + "坏,139,public,500228101201,,,,\n"
        + "".join(f"人{i},139{i:08d},public,500228101201,,,,\n" for i in range(10))
    )
    with pytest.raises(ImportRejected):
        for chunk in validated_chunks(io.StringIO(text), report, groups=GROUPS, roles=DEFAULT_ROLES):
            chunks.append(chunk)
    assert chunks == []
    assert report.rows == 11
    assert len(report.errors) == 1


def test_lon_without_lat_and_unparsable_coordinates() -> None:
    report = rejected(
        HEADER
        + "甲,13900000001,public,500228101201,,107.8,,\n"
        + "乙,13900000002,public,500228101201,北纬,东经,,\n"
    )
    assert report.errors == [
        "line 2: lat/lon: give both or neither",
        "line 3: lat: not a number: '北纬'",
        "line 3: lon: not a number: '东经'",
    ]


def test_missing_phone_column_is_a_header_error() -> None:
    report = rejected("name,mobile,area_code\n张三,13900000001,500228101201\n")
    assert len(report.errors) == 1
    assert report.errors[0].startswith("line 1: header lacks column(s) phone")
    assert report.rows == 0


def test_unknown_column_is_a_header_error() -> None:
    report = rejected("name,phone,area_code,email\n张三,13900000001,500228101201,a@b.c\n")
    assert report.errors[0].startswith("line 1: unknown column(s) email")


def test_empty_input_is_a_header_error() -> None:
    report = rejected("")
    assert report.errors[0].startswith("line 1: header lacks column(s) name, phone, area_code")


def test_quoted_fields_with_commas() -> None:
    rows, report = run(
        HEADER
        + '"孙,悟空",13900000002,public,500228101201,"30.5","107.6",en,"public|grid_workers"\n'
        + '"王 ""大"" 山",13900000003,public,500228101201,,,,\n'
    )
    assert report.errors == []
    assert rows[0]["name"] == "孙,悟空"
    assert rows[0]["lat"] == 30.5 and rows[0]["lon"] == 107.6
    assert rows[0]["groups"] == "public|grid_workers"
    assert rows[1]["name"] == '王 "大" 山'


def test_line_numbers_count_physical_lines_of_multiline_fields() -> None:
    report = rejected(
        HEADER
        + '"两行\n名字",13900000001,public,500228101201,,,,\n'  # lines 2-3
        + "坏,139,public,500228101201,,,,\n"  # line 4
    )
    assert [e.split(":")[0] for e in report.errors] == ["line 4"]


def test_chunks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnd.subscribers

    monkeypatch.setattr(warnd.subscribers, "CHUNK", 4)
    text = HEADER + "".join(f"人{i},139{i:08d},public,500228101201,,,,\n" for i in range(10))
    report = ImportReport()
    sizes = [len(c) for c in validated_chunks(io.StringIO(text), report, groups=GROUPS, roles=DEFAULT_ROLES)]
    assert sizes == [4, 4, 2]
    assert report.rows == 10


def test_error_list_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnd.subscribers

    monkeypatch.setattr(warnd.subscribers, "MAX_ERRORS", 3)
    report = rejected(HEADER + "".join(f"人{i},1,public,500228101201,,,,\n" for i in range(5)))
    assert len(report.errors) == 3
    assert report.more_errors == 2
    assert "5 bad row(s)" in str(ImportRejected(report))


def test_door_knock_columns_are_checked() -> None:
    record, errors = checker().check(
        {
            "name": "王婆婆",
            "phone": "13800239001",
            "area_code": "500228101201",
            "address": "万年村三组12号",
            "household": "wn-3-12",
            "vulnerable": "elderly_alone| disabled",
            "superior": "+86 13800230022",
        }
    )
    assert errors == []
    assert record is not None
    assert (record["address"], record["household"], record["vulnerable"], record["superior"]) == (
        "万年村三组12号",
        "wn-3-12",
        ["elderly_alone", "disabled"],
        "13800230022",
    )
    _, errors = checker().check(
        {
            "name": "x",
            "phone": "13800239002",
            "area_code": "500228101201",
            "vulnerable": "old",
            "superior": "12",
        }
    )
    assert [e.split(":")[0] for e in errors] == ["vulnerable", "superior"]


def test_reserved_phones_are_refused_by_line() -> None:
    """The API's import passes the phones of people defined in config: such a row is refused, with the reason."""
    report = ImportReport()
    text = (
        HEADER
        + "好人,13900000001,public,500228101201,,,,\n"
        + "配置里的人,+86 139 0000 0002,public,500228101201,,,,\n"
    )
    reserved = {"13900000002": "is defined in config/subscribers.yaml"}
    with pytest.raises(ImportRejected):
        for _chunk in validated_chunks(
            io.StringIO(text), report, groups=GROUPS, roles=DEFAULT_ROLES, reserved=reserved
        ):
            pass
    assert report.errors == ["line 3: phone: 139****0002 is defined in config/subscribers.yaml"]


def test_a_line_the_csv_module_cannot_read_is_reported() -> None:
    huge = "x" * 200_000  # over csv.field_size_limit(): the csv module refuses the line
    report = rejected(HEADER + "好人,13900000001,public,500228101201,,,,\n" + f'"{huge}",1,public,1,,,,\n')
    assert len(report.errors) == 1 and report.errors[0].startswith("line 3: not valid CSV: field larger")


def test_control_characters_are_refused_in_text_cells() -> None:
    cells = {"name": "坏\x00名", "phone": "13900000001", "area_code": "500228101201"}
    _, errors = checker().check({**cells, "address": "一组\x1b3号", "household": "h\x7f"})
    assert errors == [
        "name: contains control characters",
        "address: contains control characters",
        "household: contains control characters",
    ]
