"""End-to-end tests of the ``warnd`` command line, each command run as a real subprocess.

Every test works on a temp copy of config/ (data_dir in the temp dir). CAP-CN messages are dated relative to
now, except where an alert that ended before it arrived is the point of the test. Tests sharing a module-scoped
fixture (``scenario``, ``exercise``, ``imported``) are in one ``xdist_group``: pytest-xdist runs them on one worker,
so the fixture is built once. How long a large import takes is measured by bench/import_csv.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from conftest import CORPUS, ROOT, cap_cn, edit_yaml, make_config_copy

# every command is a new Python process (~2 s of CPU): on a loaded machine a test of several takes minutes
pytestmark = pytest.mark.timeout(300)

LOG_COLUMNS = [
    "id",
    "alert_id",
    "created_at",
    "channel",
    "status",
    "recipient",
    "phone",
    "area_code",
    "segments",
    "attempts",
    "sent_at",
    "error",
    "body",
]
IMPORT_COLUMNS = ["name", "phone", "role", "area_code", "lat", "lon", "language", "groups"]
# export writes the door-knock columns too (empty unless set)
CSV_COLUMNS = [*IMPORT_COLUMNS, "address", "household", "vulnerable", "superior"]
MASKED = re.compile(r"^1\d{2}\*{4}\d{4}$")
SIGNATURE = "【梁平区应急管理局】"
CST = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S+08:00"
# an orange rainstorm for 屏锦镇 (township 500228101) by SMS
TOWNSHIP_BROADCAST = ("--channel", "sms", "--area", "500228101000", "--hazard", "暴雨", "--colour", "orange")


# --- helpers ----------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARND_")}
    env["WARND_LOG_LEVEL"] = "WARNING"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def warnd(config_dir: Path, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m warnd COMMAND -c config_dir ARGS…``; COMMAND is two words for db and subscribers."""
    words = [str(a) for a in args]
    split = 2 if words[0] in ("db", "subscribers") else 1
    command = [sys.executable, "-m", "warnd", *words[:split], "-c", str(config_dir), *words[split:]]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=config_dir.parent,
        encoding="utf-8",
    )


def make_config(root: Path) -> Path:
    """Like the ``config_dir`` fixture, for module-scoped scenarios."""
    return make_config_copy(root)


def data_dir(config_dir: Path) -> Path:
    settings = yaml.safe_load((config_dir / "warnd.yaml").read_text(encoding="utf-8"))
    return Path(settings["data_dir"])


def database(config_dir: Path) -> Path:
    return data_dir(config_dir) / "warnd.db"


def query(config_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database(config_dir)) as conn:
        return conn.execute(sql, params).fetchall()


def outbox(config_dir: Path, channel: str) -> list[dict[str, Any]]:
    path = data_dir(config_dir) / "outbox" / f"{channel}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def subscribers(config_dir: Path) -> list[dict[str, Any]]:
    return yaml.safe_load((config_dir / "subscribers.yaml").read_text(encoding="utf-8"))["subscribers"]


def current_cap(tmp: Path, name: str, **fields: Any) -> Path:
    """A CAP-CN file sent a minute ago and expiring in six hours."""
    now = datetime.now(CST)
    fields.setdefault("identifier", f"50022841600000_{now:%Y%m%d%H%M%S}_{name}")
    data = cap_cn(
        sent=(now - timedelta(minutes=1)).strftime(TIME_FORMAT),
        expires=(now + timedelta(hours=6)).strftime(TIME_FORMAT),
        **fields,
    )
    path = tmp / f"{name}.xml"
    path.write_bytes(data)
    return path


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- check-config -----------------------------------------------------------------------------------------


def test_check_config_accepts_the_example(config_dir: Path) -> None:
    result = warnd(config_dir, "check-config")
    assert result.returncode == 0, result.stderr
    people = len(subscribers(config_dir))
    assert re.search(
        rf"^config OK: .*: 4 channels, 6 groups, \d+ rules, {people} subscribers, 3 terminals, "
        r"\d+ feeds$",
        result.stdout,
        re.M,
    ), result.stdout


def _unknown_channel(config_dir: Path) -> tuple[str, str]:
    def change(data: dict[str, Any]) -> None:
        # a new targets list: the example's rules share theirs through YAML anchors
        data["rules"][0]["targets"] = [{"groups": ["county_leaders"], "channels": ["fax"]}]

    edit_yaml(config_dir / "rules.yaml", change)
    return (
        "rules.yaml",
        r"rules\[0\]\.targets\[0\]\.channels\[0\]: unknown channel 'fax' \(known: .*\bsms\b.*\)",
    )


def _blue_heat(config_dir: Path) -> tuple[str, str]:
    def change(data: dict[str, Any]) -> None:
        data["rules"].append(
            {
                "name": "heat-blue",
                "hazards": ["高温"],
                "colours": ["blue"],
                "level": "Ⅳ",
                "areas": ["500228"],
                "targets": [{"groups": ["public"], "channels": ["sms"]}],
            }
        )

    edit_yaml(config_dir / "rules.yaml", change)
    index = len(yaml.safe_load((config_dir / "rules.yaml").read_text(encoding="utf-8"))["rules"]) - 1
    return "rules.yaml", rf"rules\[{index}\]\.colours\[0\]: 高温 has no blue signal"


def _bad_phone(config_dir: Path) -> tuple[str, str]:
    index = len(subscribers(config_dir))
    edit_yaml(
        config_dir / "subscribers.yaml",
        lambda d: d["subscribers"].append(
            {"name": "坏号码", "phone": "12345678901", "role": "public", "area_code": "500228101201"}
        ),
    )
    return "subscribers.yaml", rf"subscribers\[{index}\]\.phone: not a mobile number: '12345678901'"


def _short_area(config_dir: Path) -> tuple[str, str]:
    index = len(subscribers(config_dir))
    edit_yaml(
        config_dir / "subscribers.yaml",
        lambda d: d["subscribers"].append(
            {"name": "短区划", "phone": "13900000999", "role": "public", "area_code": "5002281012"}
        ),
    )
    return (
        "subscribers.yaml",
        rf"subscribers\[{index}\]\.area_code: admin code must be 12 digits.*'5002281012'",
    )


def _missing_secret(config_dir: Path) -> tuple[str, str]:
    def change(data: dict[str, Any]) -> None:
        data["channels"]["gateway"] = {
            "adapter": "sms_http",
            "url": "http://127.0.0.1:9/send",
            "headers": {"Authorization": "Bearer ${WARND_TEST_MISSING_TOKEN}"},
        }

    edit_yaml(config_dir / "channels.yaml", change)
    return (
        "channels.yaml",
        r"channels\.gateway\.headers\.Authorization: "
        r"environment variable WARND_TEST_MISSING_TOKEN is not set",
    )


def _unknown_key(config_dir: Path) -> tuple[str, str]:
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.__setitem__("colour_scheme", "dark"))
    return "warnd.yaml", r"colour_scheme: unknown key"


def _invalid_yaml(config_dir: Path) -> tuple[str, str]:
    (config_dir / "feeds.yaml").write_text(
        "feeds:\n  - name: x\n    url: http://x\n     interval: 5m\n", encoding="utf-8"
    )
    return "feeds.yaml", r"line 4: not valid YAML: mapping values are not allowed here"


BREAKAGES = {
    "unknown-channel": _unknown_channel,
    "colour-not-on-ladder": _blue_heat,
    "bad-phone": _bad_phone,
    "short-area-code": _short_area,
    "missing-secret": _missing_secret,
    "unknown-top-level-key": _unknown_key,
    "invalid-yaml": _invalid_yaml,
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_check_config_reports_file_key_path_and_reason(config_dir: Path, breakage: str) -> None:
    file, pattern = BREAKAGES[breakage](config_dir)
    result = warnd(config_dir, "check-config")
    assert result.returncode != 0
    assert "config OK" not in result.stdout
    path = re.escape(str(config_dir / file))
    assert re.search(rf"^{path}: {pattern}", result.stderr, re.M), result.stderr
    assert re.search(r"^1 configuration error\(s\) in ", result.stderr, re.M), result.stderr


def test_check_config_prints_every_error_of_a_broken_config(config_dir: Path) -> None:
    """Errors from all files at once: the cross-checks (rules) next to field errors (subscribers)."""
    expected = [breakage(config_dir) for breakage in BREAKAGES.values() if breakage is not _invalid_yaml]
    result = warnd(config_dir, "check-config")
    assert result.returncode != 0
    missing = [
        f"{file}: {pattern}"
        for file, pattern in expected
        if not re.search(rf"^{re.escape(str(config_dir / file))}: {pattern}", result.stderr, re.M)
    ]
    assert not missing, f"not reported: {missing}\nstderr:\n{result.stderr}"
    assert f"{len(expected)} configuration error(s)" in result.stderr


def test_check_config_prints_independent_errors_together(config_dir: Path) -> None:
    """Errors found in the same stage (field validation and load-time checks) are all listed in one run."""
    expected = [
        _bad_phone(config_dir),
        _short_area(config_dir),
        _missing_secret(config_dir),
        _unknown_key(config_dir),
        _invalid_yaml(config_dir),
    ]
    result = warnd(config_dir, "check-config")
    assert result.returncode != 0
    for file, pattern in expected:
        assert re.search(rf"^{re.escape(str(config_dir / file))}: {pattern}", result.stderr, re.M), (
            result.stderr
        )
    assert "5 configuration error(s)" in result.stderr


# --- db upgrade -------------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_database_and_is_idempotent(config_dir: Path) -> None:
    db = database(config_dir)
    assert not db.exists()
    first = warnd(config_dir, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "newest schema" in first.stdout
    assert db.is_file()
    tables = {name for (name,) in query(config_dir, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alerts", "deliveries", "recipients", "audit_log", "alembic_version"} <= tables
    version = query(config_dir, "SELECT version_num FROM alembic_version")

    second = warnd(config_dir, "db", "upgrade")
    assert second.returncode == 0, second.stderr
    assert query(config_dir, "SELECT version_num FROM alembic_version") == version
    assert len(version) == 1
    assert query(config_dir, "SELECT count(*) FROM audit_log WHERE action = 'db.upgrade'") == [(2,)]


# --- ingest / quarantine ----------------------------------------------------------------------------------


def test_ingest_current_red_rainstorm_then_duplicate(config_dir: Path, tmp_path: Path) -> None:
    cap = current_cap(tmp_path, "red")
    first = warnd(config_dir, "ingest", cap)
    assert first.returncode == 0, first.stderr
    match = re.search(r"^.*red\.xml: created alert (\d+) Alert 暴雨 red level 1: (.+)$", first.stdout, re.M)
    assert match, first.stdout
    alert_id = int(match.group(1))
    counts = dict(part.split(" ") for part in match.group(2).split(", "))
    in_db = dict(
        query(
            config_dir, "SELECT status, count(*) FROM deliveries WHERE alert_id = ? GROUP BY status", alert_id
        )
    )
    assert {k: int(v) for k, v in counts.items()} == in_db
    assert in_db.get("queued", 0) > 0
    # a red rainstorm over the whole district reaches every subscriber with a phone by SMS
    people = sum(1 for s in subscribers(config_dir) if s.get("phone"))
    sms = query(
        config_dir, "SELECT count(*) FROM deliveries WHERE alert_id = ? AND channel = 'sms'", alert_id
    )
    assert sms == [(people,)]

    again = warnd(config_dir, "ingest", cap)
    assert again.returncode == 0, again.stderr
    assert re.search(rf"red\.xml: duplicate alert {alert_id}\b", again.stdout), again.stdout
    assert query(config_dir, "SELECT count(*) FROM alerts") == [(1,)]
    assert query(config_dir, "SELECT count(*) FROM deliveries WHERE alert_id = ?", alert_id) == [
        (sum(in_db.values()),)
    ]


def test_ingest_of_an_alert_that_already_expired_is_recorded_not_sent(
    config_dir: Path, tmp_path: Path
) -> None:
    cap = tmp_path / "old.xml"
    cap.write_bytes(cap_cn())  # 2024-07-12, long over
    result = warnd(config_dir, "ingest", cap)
    assert result.returncode == 0, result.stderr
    assert re.search(r"old\.xml: created alert \d+ Alert 暴雨 red level 1: no deliveries", result.stdout), (
        result.stdout
    )
    assert query(config_dir, "SELECT state, fanout FROM alerts") == [("expired", "done")]
    assert query(config_dir, "SELECT count(*) FROM deliveries") == [(0,)]
    assert outbox(config_dir, "sms") == []


def test_ingest_invalid_cap_is_rejected_and_quarantined(config_dir: Path, tmp_path: Path) -> None:
    corpus_file = CORPUS / "google-cap-library" / "invalid" / "invalid.cap"
    if corpus_file.is_file():
        invalid = corpus_file
    else:
        invalid = tmp_path / "invalid.cap"
        invalid.write_bytes(cap_cn().replace(b"<scope>Public</scope>", b""))
    good = current_cap(tmp_path, "good")
    result = warnd(config_dir, "ingest", invalid, good)
    assert result.returncode != 0
    rejected = re.search(rf"^{re.escape(str(invalid))}: rejected \(quarantine #(\d+)\)$", result.stderr, re.M)
    assert rejected, result.stderr
    assert re.search(r"^  alert/scope \(line \d+\): required element missing$", result.stderr, re.M), (
        result.stderr
    )
    # the good file given with it is still ingested
    assert re.search(r"good\.xml: created alert \d+", result.stdout), result.stdout
    assert query(config_dir, "SELECT count(*) FROM alerts") == [(1,)]

    listing = warnd(config_dir, "quarantine")
    assert listing.returncode == 0, listing.stderr
    assert re.search(
        rf"^#{rejected.group(1)} \S+ \S+ file:{re.escape(str(invalid.resolve()))} \(\d+ bytes\)$",
        listing.stdout,
        re.M,
    ), listing.stdout
    assert "alert/scope" in listing.stdout and "required element missing" in listing.stdout
    assert "good.xml" not in listing.stdout


# --- broadcast --------------------------------------------------------------------------------------------


def test_broadcast_to_a_township_sends_sms_only_there(config_dir: Path) -> None:
    result = warnd(
        config_dir, "broadcast", *TOWNSHIP_BROADCAST, "--text", "屏锦镇预计出现大暴雨，请做好防范", "--send"
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"^broadcast alert (\d+): sent (\d+)$", result.stdout, re.M)
    assert match, result.stdout
    alert_id, sent = int(match.group(1)), int(match.group(2))
    expected = {
        s["name"]
        for s in subscribers(config_dir)
        if s.get("phone") and (s["area_code"].startswith("500228101") or s["area_code"] == "500228000000")
    }
    lines = [line for line in outbox(config_dir, "sms") if line["alert"]["id"] == alert_id]
    assert sent == len(lines) == len(expected)
    assert {line["recipient"]["name"] for line in lines} == expected
    assert "500228000000" in {line["recipient"]["area_code"] for line in lines}  # the county leader
    assert all(line["recipient"]["area_code"].startswith(("500228101", "500228000000")) for line in lines)
    assert all(
        line["body"].startswith(SIGNATURE) and "屏锦镇预计出现大暴雨" in line["body"] for line in lines
    )
    assert all(line["address"] == line["recipient"]["phone"] for line in lines)
    assert outbox(config_dir, "push") == [] and outbox(config_dir, "loudspeaker") == []


def test_broadcast_on_an_unknown_channel_is_refused(config_dir: Path) -> None:
    args = [("fax" if word == "sms" else word) for word in TOWNSHIP_BROADCAST]
    result = warnd(config_dir, "broadcast", *args, "--text", "x", "--send")
    assert result.returncode != 0
    assert "broadcast refused" in result.stderr and "unknown channel 'fax'" in result.stderr
    assert query(config_dir, "SELECT count(*) FROM alerts") == [(0,)]
    assert outbox(config_dir, "sms") == []


@dataclass
class Exercise:
    config_dir: Path
    alert_id: int
    stdout: str
    lines: list[dict[str, Any]]


@pytest.fixture(scope="module")
def exercise(tmp_path_factory: pytest.TempPathFactory) -> Exercise:
    config_dir = make_config(tmp_path_factory.mktemp("exercise"))
    args = [
        ("500228000000" if word == "500228101000" else word) for word in TOWNSHIP_BROADCAST
    ]  # whole district
    result = warnd(
        config_dir, "broadcast", *args, "--text", "预计全区出现大暴雨，请做好防范", "--exercise", "--send"
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"^broadcast alert (\d+): sent (\d+)$", result.stdout, re.M)
    assert match, result.stdout
    alert_id = int(match.group(1))
    lines = [line for line in outbox(config_dir, "sms") if line["alert"]["id"] == alert_id]
    return Exercise(config_dir, alert_id, result.stdout, lines)


@pytest.mark.xdist_group("cli_exercise")
def test_exercise_broadcast_reaches_only_drill_groups(exercise: Exercise) -> None:
    groups = yaml.safe_load((exercise.config_dir / "groups.yaml").read_text(encoding="utf-8"))["groups"]
    drill_roles = {role for g in groups.values() if g.get("drill") for role in g.get("roles", [])}
    expected = {
        s["name"]
        for s in subscribers(exercise.config_dir)
        if s.get("phone") and s.get("role", "public") in drill_roles
    }
    assert expected and exercise.lines
    assert {line["recipient"]["name"] for line in exercise.lines} == expected
    assert "public" not in {line["recipient"]["role"] for line in exercise.lines}
    assert f"sent {len(expected)}" in exercise.stdout
    assert all(line["alert"]["status"] == "Exercise" for line in exercise.lines)
    assert all(line["body"].startswith(SIGNATURE + "【演练】") for line in exercise.lines)


@pytest.mark.xdist_group("cli_exercise")
def test_exercise_sms_carries_the_drill_marker_once(exercise: Exercise) -> None:
    """【演练】 once at the start; no second, sanitised 〔演练〕 copy of the template's marker."""
    for line in exercise.lines:
        assert line["body"].count("演练") == 1, line["body"]
        assert "〔演练〕" not in line["data"]["content"], line["data"]["content"]


# --- logs -------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    config_dir: Path
    ingested: int  # a red rainstorm, ingested, then sent by the broadcast's --send
    broadcast: int  # an orange rainstorm for 屏锦镇, broadcast with --send
    queued: int  # a yellow gale ingested last: its deliveries stay queued (no daemon runs)
    between: datetime  # after the first ingest, before the broadcast
    rows: list[dict[str, Any]]  # `logs --format json`, unfiltered


def _created(result: subprocess.CompletedProcess[str], pattern: str) -> int:
    assert result.returncode == 0, result.stderr
    match = re.search(pattern, result.stdout, re.M)
    assert match, result.stdout
    return int(match.group(1))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    root = tmp_path_factory.mktemp("logs")
    c = make_config(root)
    ingested = _created(warnd(c, "ingest", current_cap(root, "red")), r"created alert (\d+)")
    between = datetime.now(UTC)
    broadcast = _created(
        warnd(c, "broadcast", *TOWNSHIP_BROADCAST, "--text", "屏锦镇预计出现大暴雨，请做好防范", "--send"),
        r"broadcast alert (\d+): sent \d+$",
    )
    gale = current_cap(root, "gale", event_code="11B06", event="大风", severity="Yellow")
    queued = _created(warnd(c, "ingest", gale), r"created alert (\d+) Alert 大风 yellow .*: queued \d+$")
    logs = warnd(c, "logs", "--format", "json")
    assert logs.returncode == 0, logs.stderr
    return Scenario(c, ingested, broadcast, queued, between, json_lines(logs.stdout))


@pytest.mark.xdist_group("cli_logs")
def test_logs_json_has_one_object_per_delivery_with_masked_phones(scenario: Scenario) -> None:
    rows = scenario.rows
    total = query(scenario.config_dir, "SELECT count(*) FROM deliveries")[0][0]
    assert len(rows) == total > 0
    assert {r["alert_id"] for r in rows} == {scenario.ingested, scenario.broadcast, scenario.queued}
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    for row in rows:
        assert {"channel", "status", "recipient", "phone", "segments", "body"} <= row.keys()
        # broadcast --send drained the first alert's queue too; nothing sent the last one
        assert row["status"] == ("queued" if row["alert_id"] == scenario.queued else "sent")
        if row["phone"] is not None:
            assert MASKED.match(row["phone"]), row["phone"]
            assert row["phone"][-4:] == row["recipient_key"][-4:]
        else:
            assert row["channel"] == "loudspeaker"
    sms = [r for r in rows if r["channel"] == "sms"]
    assert all(r["segments"] >= 1 and r["body"].startswith(SIGNATURE) for r in sms)
    assert "138****0041" in {r["phone"] for r in rows}
    assert not any(re.search(r"1[3-9]\d{9}", json.dumps(r["phone"])) for r in rows)


@pytest.mark.xdist_group("cli_logs")
def test_logs_csv_parses_with_the_documented_header(scenario: Scenario) -> None:
    result = warnd(scenario.config_dir, "logs", "--format", "csv")
    assert result.returncode == 0, result.stderr
    reader = csv.DictReader(io.StringIO(result.stdout))
    rows = list(reader)
    assert reader.fieldnames == LOG_COLUMNS
    assert [int(r["id"]) for r in rows] == [r["id"] for r in scenario.rows]
    assert all(MASKED.match(r["phone"]) for r in rows if r["phone"])
    assert [(r["channel"], r["status"], r["body"]) for r in rows] == [
        (r["channel"], r["status"], r["body"]) for r in scenario.rows
    ]
    assert all(datetime.fromisoformat(r["created_at"]).utcoffset() == timedelta(hours=8) for r in rows)


@pytest.mark.xdist_group("cli_logs")
def test_logs_table_prints_a_header_and_a_row_per_delivery(scenario: Scenario) -> None:
    result = warnd(scenario.config_dir, "logs", "--alert", str(scenario.broadcast))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = [r for r in scenario.rows if r["alert_id"] == scenario.broadcast]
    assert lines[0].split() == LOG_COLUMNS
    assert len(lines) == 1 + len(expected)
    for line, row in zip(lines[1:], expected, strict=True):
        assert line.split()[:2] == [str(row["id"]), str(scenario.broadcast)]
        assert row["phone"] in line and row["recipient"] in line and "sent" in line
    assert f"{len(expected)} deliveries" in result.stderr


def _ids(result: subprocess.CompletedProcess[str]) -> list[int]:
    assert result.returncode == 0, result.stderr
    return [row["id"] for row in json_lines(result.stdout)]


@pytest.mark.xdist_group("cli_logs")
def test_logs_filters_narrow_the_result(scenario: Scenario) -> None:
    rows, between = scenario.rows, scenario.between
    local = between.astimezone(CST).isoformat()  # the same instant written in +08:00
    sms_in_township = {"--status": "sent", "--channel": "sms", "--area": "500228101", "--since": "1h"}
    cases: dict[str, tuple[dict[str, str], Any]] = {
        "alert": ({"--alert": str(scenario.broadcast)}, lambda r: r["alert_id"] == scenario.broadcast),
        "channel": ({"--channel": "loudspeaker"}, lambda r: r["channel"] == "loudspeaker"),
        "status": ({"--status": "queued"}, lambda r: r["alert_id"] == scenario.queued),
        "area": ({"--area": "500228101"}, lambda r: r["area_code"].startswith("500228101")),
        "phone-suffix": ({"--phone-suffix": "0041"}, lambda r: r["recipient_key"].endswith("0041")),
        "since-utc": ({"--since": between.isoformat()}, lambda r: r["alert_id"] != scenario.ingested),
        "until-local": ({"--until": local}, lambda r: r["alert_id"] == scenario.ingested),
        "combined": (sms_in_township, lambda r: (
            r["status"] == "sent" and r["channel"] == "sms" and r["area_code"].startswith("500228101"))),
    }  # fmt: skip
    results = {
        name: warnd(scenario.config_dir, "logs", "--format", "json", *(w for kv in args.items() for w in kv))
        for name, (args, _) in cases.items()
    }
    for name, (_, keep) in cases.items():
        expected = [r["id"] for r in rows if keep(r)]
        assert 0 < len(expected) < len(rows), name  # a real narrowing
        assert _ids(results[name]) == expected, name
    combined = set(_ids(results["combined"]))
    assert combined & {r["id"] for r in rows if r["alert_id"] == scenario.ingested}
    assert combined & {r["id"] for r in rows if r["alert_id"] == scenario.broadcast}


@pytest.mark.xdist_group("cli_logs")
def test_logs_unmask_shows_full_numbers_and_is_audited(scenario: Scenario) -> None:
    c = scenario.config_dir
    before = query(c, "SELECT count(*) FROM audit_log WHERE action = 'logs.unmask'")[0][0]
    result = warnd(c, "logs", "--format", "json", "--unmask", "--phone-suffix", "0041")
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert rows and {r["phone"] for r in rows} == {"13800230041"}
    entries = query(c, "SELECT actor, detail FROM audit_log WHERE action = 'logs.unmask' ORDER BY id")
    assert len(entries) == before + 1
    actor, detail = entries[-1]
    assert actor.startswith("cli:")
    assert json.loads(detail) == {"phone_suffix": "0041"}


# --- subscribers import / export --------------------------------------------------------------------------


def _areas() -> list[str]:
    return list(yaml.safe_load((ROOT / "config" / "areas.yaml").read_text(encoding="utf-8"))["areas"])


def write_subscribers(path: Path, count: int, *, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    areas = _areas()
    rows = []
    for i in range(count):
        lat, lon = (
            ("", "")
            if i % 4 == 0
            else (f"{30.5 + rng.random() * 0.4:.5f}", f"{107.6 + rng.random() * 0.4:.5f}")
        )
        rows.append(
            [
                f"居民{i:06d}",
                f"139{i:08d}",
                "public",
                rng.choice(areas),
                lat,
                lon,
                "en" if i % 50 == 0 else "zh-CN",
                "public|grid_workers" if i % 3 == 0 else "public",
            ]
        )
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(IMPORT_COLUMNS)
        writer.writerows(rows)
    return rows


def memberships(config_dir: Path) -> list[tuple[Any, ...]]:
    """(phone key, name, comma-joined explicit groups) of every imported recipient."""
    return query(
        config_dir,
        "SELECT key, name, groups FROM recipients r LEFT JOIN (SELECT recipient_id, group_concat(group_name) "
        "AS groups FROM group_members GROUP BY recipient_id) g ON g.recipient_id = r.id "
        "WHERE r.source = 'import' ORDER BY key",
    )


def recipient_count(config_dir: Path) -> int:
    """Imported subscribers (the config's own are synchronised by every command)."""
    return query(config_dir, "SELECT count(*) FROM recipients WHERE source = 'import'")[0][0]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[list[str]], str]]:
    root = tmp_path_factory.mktemp("import")
    config_dir = make_config(root)
    rows = write_subscribers(root / "people.csv", 20_000)
    result = warnd(config_dir, "subscribers", "import", root / "people.csv")
    assert result.returncode == 0, result.stderr
    yield config_dir, rows, result.stdout


@pytest.mark.xdist_group("cli_import")
def test_import_of_20000_rows(imported: tuple[Path, list[list[str]], str]) -> None:
    config_dir, rows, stdout = imported
    assert re.search(r"^imported 20000 subscriber\(s\) from .*people\.csv in [\d.]+s$", stdout, re.M), stdout
    assert query(config_dir, "SELECT count(*) FROM recipients WHERE source = 'import'") == [(20_000,)]
    members = dict(query(config_dir, "SELECT group_name, count(*) FROM group_members GROUP BY group_name"))
    assert members == {"public": 20_000, "grid_workers": sum(1 for r in rows if "grid_workers" in r[7])}
    assert query(config_dir, "SELECT count(*) FROM recipients WHERE source = 'import' AND lat IS NULL") == [
        (sum(1 for r in rows if not r[4]),)
    ]
    audit = query(config_dir, "SELECT detail FROM audit_log WHERE action = 'subscribers.import'")
    assert [json.loads(d) for (d,) in audit] == [{"rows": 20_000}]


@pytest.mark.xdist_group("cli_import")
def test_export_round_trips_imported_rows(imported: tuple[Path, list[list[str]], str]) -> None:
    config_dir, rows, _ = imported
    out = config_dir.parent / "out.csv"
    result = warnd(config_dir, "subscribers", "export", "-o", out)
    assert result.returncode == 0, result.stderr
    with out.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        exported = {r["phone"]: r for r in reader}
        assert reader.fieldnames == CSV_COLUMNS
    active = query(config_dir, "SELECT count(*) FROM recipients WHERE kind = 'person' AND active")[0][0]
    assert f"exported {active} subscriber(s)" in result.stderr
    assert len(exported) == active >= 20_000
    for name, phone, role, area, lat, lon, language, groups in rows:
        got = exported[phone]
        assert (got["name"], got["role"], got["area_code"], got["language"]) == (name, role, area, language)
        assert set(got["groups"].split("|")) == set(groups.split("|"))
        if lat:
            assert (float(got["lat"]), float(got["lon"])) == (float(lat), float(lon))
        else:
            assert (got["lat"], got["lon"]) == ("", "")


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([IMPORT_COLUMNS, *rows])
    return path


def test_import_with_bad_rows_reports_lines_and_imports_nothing(config_dir: Path, tmp_path: Path) -> None:
    ok = ["public", "500228101201", "", "", "zh-CN", "public"]
    earlier = _write_csv(tmp_path / "earlier.csv", [["原名", "13900000004", *ok]])
    assert warnd(config_dir, "subscribers", "import", earlier).returncode == 0
    before = memberships(config_dir)
    assert before == [("13900000004", "原名", "public")]
    bad = _write_csv(tmp_path / "bad.csv", [
        ["甲", "13900000002", *ok],  # line 2
        ["乙", "1390000003", *ok],  # line 3: ten digits
        ["丙", "13900000004", "public", "500228101201", "", "", "zh-CN", "public|grid_workers"],  # line 4
        ["丁", "13900000005", "public", "500228101201", "", "", "zh-CN", "public|no_such_group"],  # line 5
        ["戊", "13900000006", *ok],  # line 6
        ["己", "13900000002", *ok],  # line 7: same phone as line 2
        ["庚", "13900000008", "public", "500228101201", "30.61", "", "zh-CN", "public"],  # line 8: no lon
    ])  # fmt: skip
    result = warnd(config_dir, "subscribers", "import", bad)
    assert result.returncode != 0
    errors = [
        line.removeprefix(f"{bad}: ") for line in result.stderr.splitlines() if line.startswith(f"{bad}: ")
    ]
    assert len(errors) == 5, result.stderr
    assert errors[0].startswith("line 3: phone:") and "1390000003" in errors[0]
    assert errors[1] == "line 5: groups: unknown group 'no_such_group'"
    assert errors[2].startswith("line 7: phone:") and "already on line 2" in errors[2]
    assert errors[3] == "line 8: lat/lon: give both or neither"
    assert errors[4] == "4 problem(s); nothing was imported"
    assert "13900000002" not in result.stderr  # numbers are masked in the report
    # nothing imported, and the row that was already there is untouched (still 原名, still only public)
    assert memberships(config_dir) == before


def test_import_rolls_back_chunks_already_written_before_a_bad_row(config_dir: Path, tmp_path: Path) -> None:
    """More good rows than one write chunk (10,000) come before the bad one; still nothing stays."""
    path = tmp_path / "late_error.csv"
    rows = write_subscribers(path, 12_000)
    with path.open("a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow(["坏行", "139123", "public", rows[0][3], "", "", "zh-CN", "public"])
    result = warnd(config_dir, "subscribers", "import", path)
    assert result.returncode != 0
    assert re.search(r"line 12002: phone: not a mobile number: '139123'", result.stderr), result.stderr
    assert "1 problem(s); nothing was imported" in result.stderr
    assert recipient_count(config_dir) == 0  # the database was new: import does not load config subscribers
    assert query(config_dir, "SELECT count(*) FROM group_members") == [(0,)]


def test_import_without_a_phone_column_is_a_header_error(config_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "no_phone.csv"
    path.write_text("name,mobile,role,area_code\n张三,13900000001,public,500228101201\n", encoding="utf-8")
    result = warnd(config_dir, "subscribers", "import", path)
    assert result.returncode != 0
    assert re.search(
        rf"^{re.escape(str(path))}: line 1: header lacks column\(s\) phone; expected "
        rf"{','.join(CSV_COLUMNS)}$",
        result.stderr,
        re.M,
    ), result.stderr
    assert "nothing was imported" in result.stderr
    assert query(config_dir, "SELECT count(*) FROM recipients WHERE phone = '13900000001'") == [(0,)]
