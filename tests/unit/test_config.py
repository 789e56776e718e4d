"""Config directory loading: the example config, error reporting (file + key path + reason), ${ENV}, CSV
subscribers beside the YAML, and the shared value parsers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, edit_yaml

from channels import REGISTRY
from warnd.config import (
    ConfigError,
    ConfigInvalid,
    area_prefix,
    load_config,
    normalise_phone,
    parse_duration,
)

CSV_HEADER = "name,phone,role,area_code,lat,lon,language,groups\n"


def load_errors(config_dir: Path) -> list[ConfigError]:
    with pytest.raises(ConfigInvalid) as info:
        load_config(config_dir)
    errors = info.value.errors
    assert errors, "ConfigInvalid without errors"
    # the exception message lists every error
    for error in errors:
        assert str(error) in str(info.value)
    return errors


def only_error(config_dir: Path) -> ConfigError:
    errors = load_errors(config_dir)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# rule positions in the example rules.yaml (read once; the copies in config_dir start identical)
_RULES = yaml.safe_load((ROOT / "config" / "rules.yaml").read_text(encoding="utf-8"))["rules"]
RULE_INDEX = {rule["name"]: i for i, rule in enumerate(_RULES)}


def rule_index(name: str) -> int:
    return RULE_INDEX[name]


def own_rule(data: dict[str, Any], index: int) -> dict[str, Any]:
    """rules.yaml shares its targets through YAML anchors: give one rule its own copy before editing it."""
    data["rules"][index] = copy.deepcopy(data["rules"][index])
    rule: dict[str, Any] = data["rules"][index]
    return rule


# --- the example config ----------------------------------------------------------------------------------


def test_example_config_loads(config_dir: Path, tmp_path: Path) -> None:
    config = load_config(config_dir)
    assert set(config.channels) == {"sms", "sms_backup", "loudspeaker", "push"}
    assert set(config.groups) == {
        "public",
        "grid_workers",
        "duty_persons",
        "township_leaders",
        "county_leaders",
        "loudspeakers",
    }
    assert len(config.rules) == 19
    assert len(config.subscribers) == 24
    assert len(config.terminals) == 3
    assert len(config.areas) == 12
    assert config.areas["500228000000"] == "梁平区"
    assert config.areas["500228101000"] == "屏锦镇"
    assert config.data_dir == (tmp_path / "data").resolve()
    assert config.templates == (tmp_path / "templates").resolve()  # tests edit a copy
    assert config.directory == config_dir.resolve()
    assert config.organisation == "梁平区应急管理局"
    assert config.database_url == f"sqlite+aiosqlite:///{config.data_dir / 'warnd.db'}"
    # values went through their parsers
    red = config.rules[RULE_INDEX["rainstorm-red"]]
    assert (red.name, red.level, red.colours, red.areas) == ("rainstorm-red", 1, ["red"], ["500228"])
    assert red.targets[0].ack_within == 300.0
    assert red.targets[3].repeat == 3
    assert config.rules[RULE_INDEX["heat-yellow"]].level == 3
    assert (config.dispatch.lease, config.dispatch.poll_interval) == (60.0, 1.0)
    assert config.alert_default_ttl == 24 * 3600.0
    assert config.feeds[0].interval == 60.0 and config.feeds[0].enabled is False
    assert config.groups["county_leaders"].drill is True and config.groups["public"].drill is False
    assert config.subscribers[0].phone == "13800230001"
    assert config.channel_settings("sms").rate_per_second == 200
    assert config.area_name("500228101201") == "万年村"


def test_relative_data_dir_and_database_from_the_environment(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.update(data_dir="../state"))
    monkeypatch.setenv("WARND_DATABASE_URL", "sqlite+aiosqlite:////tmp/other.db")
    config = load_config(config_dir)
    assert config.data_dir == (config_dir / ".." / "state").resolve()
    assert config.data_dir.is_absolute()
    assert config.database_url == "sqlite+aiosqlite:////tmp/other.db"
    explicit = load_config(
        config_dir, database="sqlite+aiosqlite:///x.db"
    )  # --database beats the environment
    assert explicit.database_url == "sqlite+aiosqlite:///x.db"


def test_not_a_directory(tmp_path: Path) -> None:
    error = only_error(tmp_path / "missing")
    assert error.reason == "not a directory"


# --- reference (cross-check) errors ----------------------------------------------------------------------


def test_rule_reference_errors(config_dir: Path) -> None:
    """Unknown channel / group / hazard, a colour not on the hazard's ladder, a duplicate rule name."""
    red = rule_index("rainstorm-red")
    gale = rule_index("gale-yellow")
    heat = rule_index("heat-red")
    flood = rule_index("flood-red")
    flash = rule_index("flash-flood-blue")

    def change(data: dict[str, Any]) -> None:
        own_rule(data, red)["targets"][1]["channels"] = ["sms", "wechat"]
        own_rule(data, gale)["targets"][2]["groups"] = ["everyone"]
        data["rules"][heat]["colours"] = [
            "红色",
            "蓝",
        ]  # written in Chinese, still checked against the ladder
        data["rules"][flood]["hazards"] = ["陨石"]
        data["rules"][flash]["name"] = "flood-blue"

    edit_yaml(config_dir / "rules.yaml", change)
    errors = {e.path: e for e in load_errors(config_dir)}
    assert set(errors) == {
        f"rules[{red}].targets[1].channels[1]",
        f"rules[{gale}].targets[2].groups[0]",
        f"rules[{heat}].colours[1]",
        f"rules[{flood}].hazards[0]",
        f"rules[{flash}].name",
    }
    assert all(e.file == str(config_dir / "rules.yaml") for e in errors.values())
    channel = errors[f"rules[{red}].targets[1].channels[1]"].reason
    assert channel == "unknown channel 'wechat' (known: loudspeaker, push, sms, sms_backup)"
    assert errors[f"rules[{gale}].targets[2].groups[0]"].reason == "unknown group 'everyone'"
    assert (
        errors[f"rules[{heat}].colours[1]"].reason
        == "高温 has no blue signal (its ladder: yellow, orange, red)"
    )
    assert errors[f"rules[{flood}].hazards[0]"].reason.startswith("unknown hazard '陨石'")
    assert errors[f"rules[{flash}].name"].reason == "duplicate rule name 'flood-blue'"


def test_heat_with_blue_is_refused(config_dir: Path) -> None:
    index = rule_index("heat-yellow")
    edit_yaml(
        config_dir / "rules.yaml", lambda d: d["rules"][index].update(hazards=["11B09"], colours=["blue"])
    )
    error = only_error(config_dir)
    assert error.file == str(config_dir / "rules.yaml")
    assert error.path == f"rules[{index}].colours[0]"
    assert "高温 has no blue signal" in error.reason  # the hazard named by its code


def test_subscriber_and_terminal_errors(config_dir: Path) -> None:
    """Unknown role / group, a non-mobile phone, a 10-digit area code, duplicate phone / terminal id."""

    def change(data: dict[str, Any]) -> None:
        people, terminals = data["subscribers"], data["terminals"]
        people[2]["groups"] = ["public", "vips"]
        people[3]["phone"] = "023-4567-8901"  # a landline
        people[4]["role"] = "mayor"
        people[5]["area_code"] = "5002281012"
        people[7]["phone"] = "+86 138-0023-0001"  # subscribers[0]'s number written differently
        terminals[1]["area_code"] = "5002281012"
        terminals[2]["id"] = "LS-500228001201-01"

    edit_yaml(config_dir / "subscribers.yaml", change)
    errors = {e.path: e for e in load_errors(config_dir)}
    assert set(errors) == {
        "subscribers[2].groups[1]",
        "subscribers[3].phone",
        "subscribers[4].role",
        "subscribers[5].area_code",
        "subscribers[7].phone",
        "terminals[1].area_code",
        "terminals[2].id",
    }
    assert all(e.file == str(config_dir / "subscribers.yaml") for e in errors.values())
    assert errors["subscribers[2].groups[1]"].reason == "unknown group 'vips'"
    assert "not a mobile number: '023-4567-8901'" in errors["subscribers[3].phone"].reason
    role = errors["subscribers[4].role"].reason
    assert role.startswith("unknown role 'mayor' (known: ") and "duty_person" in role
    assert "admin code must be 12 digits" in errors["subscribers[5].area_code"].reason
    assert "5002281012" in errors["subscribers[5].area_code"].reason
    assert "duplicate phone number" in errors["subscribers[7].phone"].reason
    assert "12 digits" in errors["terminals[1].area_code"].reason
    assert errors["terminals[2].id"].reason == "duplicate terminal id 'LS-500228001201-01'"


def test_unknown_role_in_a_group(config_dir: Path) -> None:
    edit_yaml(config_dir / "groups.yaml", lambda d: d["groups"]["public"].update(roles=["public", "tourist"]))
    error = only_error(config_dir)
    assert error.file == str(config_dir / "groups.yaml")
    assert error.path == "groups.public.roles[1]"
    assert error.reason.startswith("unknown role 'tourist'")


def test_custom_roles_are_known(config_dir: Path) -> None:
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.update(roles={"public": "公众", "mayor": "区长"}))
    edit_yaml(
        config_dir / "groups.yaml",
        lambda d: d.update(groups={"public": {"label": "公众", "roles": ["public"]}}),
    )
    edit_yaml(config_dir / "rules.yaml", lambda d: d.update(rules=[]))
    (config_dir / "hydrology.yaml").unlink()  # its danger zone names a subscriber removed below
    edit_yaml(
        config_dir / "subscribers.yaml",
        lambda d: d.update(
            subscribers=[
                {"name": "区长", "phone": "13800230001", "role": "mayor", "area_code": "500228000000"}
            ],
            terminals=[],
        ),
    )
    config = load_config(config_dir)
    assert config.subscribers[0].role == "mayor"


def test_bad_colour_level_and_area_words(config_dir: Path) -> None:
    index = rule_index("gale-red")
    edit_yaml(
        config_dir / "rules.yaml",
        lambda d: d["rules"][index].update(colours=["purple"], level="Ⅴ", areas=["5002x8"]),
    )
    errors = {e.path: e for e in load_errors(config_dir)}
    assert set(errors) == {f"rules[{index}].colours[0]", f"rules[{index}].level", f"rules[{index}].areas"}
    assert "'5002x8' is not an admin code or prefix" in errors[f"rules[{index}].areas"].reason
    assert errors[f"rules[{index}].colours[0]"].reason.startswith("unknown colour 'purple'")
    assert errors[f"rules[{index}].level"].reason.startswith("unknown response level 'Ⅴ'")
    assert all(e.file == str(config_dir / "rules.yaml") for e in errors.values())


def test_area_keys_must_be_twelve_digits(config_dir: Path) -> None:
    edit_yaml(config_dir / "areas.yaml", lambda d: d["areas"].update({"500228": "梁平"}))
    error = only_error(config_dir)
    assert error.file == str(config_dir / "areas.yaml")
    assert error.path == "areas.500228"


# --- structural errors -----------------------------------------------------------------------------------


def test_unknown_keys_and_bad_settings(config_dir: Path) -> None:
    edit_yaml(config_dir / "groups.yaml", lambda d: d.update(feeds=[]))  # belongs in feeds.yaml
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.update(organization="typo"))  # belongs nowhere
    edit_yaml(config_dir / "warnd.yaml", lambda d: d["dispatch"].update(batchsize=10, lease="a minute"))
    errors = {(Path(e.file).name, e.path): e.reason for e in load_errors(config_dir)}
    assert set(errors) == {
        ("groups.yaml", "feeds"),
        ("warnd.yaml", "organization"),
        ("warnd.yaml", "dispatch.batchsize"),
        ("warnd.yaml", "dispatch.lease"),
    }
    assert errors["warnd.yaml", "dispatch.lease"].startswith("not a duration: 'a minute'")
    assert errors["groups.yaml", "feeds"] == "unknown key (it belongs in feeds.yaml)"
    assert errors["warnd.yaml", "organization"].startswith("unknown key (allowed here: organisation, ")
    assert "not permitted" in errors["warnd.yaml", "dispatch.batchsize"].lower()


def test_invalid_yaml_reports_the_line(config_dir: Path) -> None:
    (config_dir / "groups.yaml").write_text(
        "groups:\n  public: {label: 社会公众, roles: [public]}\n  broken: [unclosed\n  other: {label: x}\n",
        encoding="utf-8",
    )
    (config_dir / "feeds.yaml").write_text("feeds:\n  - name: a\n\turl: x\n", encoding="utf-8")
    (config_dir / "areas.yaml").write_text("- a\n- b\n", encoding="utf-8")
    errors = load_errors(config_dir)
    by_file = {
        Path(e.file).name: e
        for e in errors
        if Path(e.file).name in ("groups.yaml", "feeds.yaml", "areas.yaml")
    }
    assert len(by_file) == 3
    groups = by_file["groups.yaml"]
    assert groups.path.startswith("line ")
    assert int(groups.path.removeprefix("line ")) in (3, 4)  # opened on line 3, noticed on line 4
    assert groups.reason.startswith("not valid YAML")
    assert by_file["feeds.yaml"].path == "line 3"  # the tab
    assert by_file["feeds.yaml"].reason.startswith("not valid YAML")
    assert (by_file["areas.yaml"].path, by_file["areas.yaml"].reason) == ("", "top level must be a mapping")


def test_channel_errors(config_dir: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["channels"]["push"]["adapter"] = "carrier_pigeon"
        del data["channels"]["loudspeaker"]["adapter"]
        data["channels"]["sms"]["rate_per_second"] = "fast"
        data["channels"]["sms"]["rate_per_minute"] = 10

    edit_yaml(config_dir / "channels.yaml", change)
    errors = {e.path: e for e in load_errors(config_dir)}
    assert set(errors) == {
        "channels.push.adapter",
        "channels.loudspeaker.adapter",
        "channels.sms.rate_per_second",
        "channels.sms.rate_per_minute",
    }
    assert all(e.file == str(config_dir / "channels.yaml") for e in errors.values())
    assert (
        errors["channels.push.adapter"].reason
        == f"unknown adapter 'carrier_pigeon' (known: {', '.join(sorted(REGISTRY))})"
    )
    assert errors["channels.loudspeaker.adapter"].reason.startswith("required")
    assert "valid number" in errors["channels.sms.rate_per_second"].reason
    assert "not permitted" in errors["channels.sms.rate_per_minute"].reason.lower()


# --- ${ENV} substitution ---------------------------------------------------------------------------------


def test_missing_environment_variable(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WARND_TEST_ORG", "WARND_TEST_SIGNATURE", "WARND_TEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.update(organisation="${WARND_TEST_ORG}"))
    edit_yaml(
        config_dir / "warnd.yaml", lambda d: d["api"]["tokens"][0].update(token="Bearer ${WARND_TEST_TOKEN}")
    )
    edit_yaml(
        config_dir / "channels.yaml",
        lambda d: d["channels"]["sms"].update(signature="${WARND_TEST_SIGNATURE}"),
    )
    errors = {e.path: e for e in load_errors(config_dir)}
    assert set(errors) == {"organisation", "api.tokens[0].token", "channels.sms.signature"}
    assert errors["organisation"].file == str(config_dir / "warnd.yaml")
    assert errors["organisation"].reason == "environment variable WARND_TEST_ORG is not set"
    assert errors["api.tokens[0].token"].file == str(config_dir / "warnd.yaml")
    assert errors["api.tokens[0].token"].reason == "environment variable WARND_TEST_TOKEN is not set"
    assert errors["channels.sms.signature"].file == str(config_dir / "channels.yaml")
    assert errors["channels.sms.signature"].reason == "environment variable WARND_TEST_SIGNATURE is not set"


def test_environment_variable_default_and_set_values(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WARND_TEST_UNSET", raising=False)
    monkeypatch.delenv("WARND_API_TOKEN", raising=False)  # the example writes ${WARND_API_TOKEN:-}
    monkeypatch.setenv("WARND_TEST_ORG", "綦江区应急管理局")
    monkeypatch.setenv("WARND_TEST_PORT", "9000")
    monkeypatch.setenv("WARND_TEST_EMPTY", "")

    def change(data: dict[str, Any]) -> None:
        data["organisation"] = "${WARND_TEST_ORG:-默认局}"  # set: the default is not used
        data["language"] = "${WARND_TEST_UNSET:-zh-CN}"  # unset: the default is used
        data["timezone"] = "Asia/${WARND_TEST_EMPTY}Shanghai"  # set but empty: substituted as ""
        data["api"]["port"] = "${WARND_TEST_PORT}"

    edit_yaml(config_dir / "warnd.yaml", change)
    edit_yaml(
        config_dir / "channels.yaml", lambda d: d["channels"]["sms"].update(signature="【${WARND_TEST_ORG}】")
    )
    config = load_config(config_dir)
    assert config.organisation == "綦江区应急管理局"
    assert config.language == "zh-CN"
    assert config.timezone == "Asia/Shanghai"
    assert config.api.port == 9000
    assert config.api.tokens[0].token == ""
    assert config.channels["sms"]["signature"] == "【綦江区应急管理局】"
    monkeypatch.setenv("WARND_API_TOKEN", "s3cret")
    assert load_config(config_dir).api.tokens[0].token == "s3cret"


# --- several errors, x- keys, CSV subscribers ------------------------------------------------------------


def test_several_errors_are_reported_together(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARND_TEST_MISSING", raising=False)
    edit_yaml(config_dir / "subscribers.yaml", lambda d: d["subscribers"][0].update(phone="12345"))
    edit_yaml(config_dir / "subscribers.yaml", lambda d: d["terminals"][0].update(area_code="500228"))
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.update(organisation="${WARND_TEST_MISSING}"))
    edit_yaml(config_dir / "feeds.yaml", lambda d: d.update(bogus=1))
    (config_dir / "areas.yaml").write_text("areas: [\n", encoding="utf-8")
    errors = load_errors(config_dir)
    by_file: dict[str, list[str]] = {}
    for error in errors:
        by_file.setdefault(Path(error.file).name, []).append(error.path)
    assert "subscribers[0].phone" in by_file["subscribers.yaml"]
    assert "terminals[0].area_code" in by_file["subscribers.yaml"]
    assert by_file["warnd.yaml"] == ["organisation"]
    assert by_file["feeds.yaml"] == ["bogus"]
    assert by_file["areas.yaml"][0].startswith("line ")


def test_validation_and_cross_check_errors_are_reported_together(config_dir: Path) -> None:
    """A bad item does not hide reference errors elsewhere, and later items keep their original index."""
    edit_yaml(config_dir / "subscribers.yaml", lambda d: d["subscribers"][0].update(phone="12345"))
    edit_yaml(config_dir / "subscribers.yaml", lambda d: d["subscribers"][6].update(role="mayor"))
    edit_yaml(config_dir / "subscribers.yaml", lambda d: d["subscribers"][9].update(phone="13800230011"))
    index = rule_index("heat-red")
    edit_yaml(config_dir / "rules.yaml", lambda d: d["rules"][index].update(colours=["blue"]))
    errors = {e.path: e for e in load_errors(config_dir)}
    assert set(errors) == {
        "subscribers[0].phone",
        "subscribers[6].role",
        "subscribers[9].phone",
        f"rules[{index}].colours[0]",
    }
    assert "not a mobile number" in errors["subscribers[0].phone"].reason
    assert "duplicate phone" in errors["subscribers[9].phone"].reason
    assert errors[f"rules[{index}].colours[0]"].file == str(config_dir / "rules.yaml")


def test_one_bad_group_setting_is_one_error(config_dir: Path) -> None:
    """An invalid group must be reported once, not again as "unknown group" in every rule that uses it."""
    edit_yaml(config_dir / "groups.yaml", lambda d: d["groups"]["public"].update(priority=99))
    errors = load_errors(config_dir)
    assert [(Path(e.file).name, e.path) for e in errors] == [("groups.yaml", "groups.public.priority")], [
        str(e) for e in errors
    ]


def test_x_keys_are_ignored_and_empty_files_are_fine(config_dir: Path) -> None:
    (config_dir / "feeds.yaml").write_text("# nothing yet\n", encoding="utf-8")
    edit_yaml(config_dir / "warnd.yaml", lambda d: d.update({"x-notes": {"anything": [1, 2]}}))
    edit_yaml(config_dir / "channels.yaml", lambda d: d.update({"x-sms-gateway": {"adapter": "nope"}}))
    config = load_config(config_dir)
    assert set(config.channels) == {"sms", "sms_backup", "loudspeaker", "push"}
    assert "x-notes" not in config.model_dump()
    assert config.feeds == []


def test_subscribers_csv_in_the_config_dir_is_loaded(config_dir: Path) -> None:
    (config_dir / "subscribers.csv").write_text(
        CSV_HEADER
        + "钱多多,13900000001,public,500228103201,,,,\n"
        + '"孙,悟空",+86 139-0000-0002,grid_worker,500228101201,30.5,107.6,en,public|grid_workers\n',
        encoding="utf-8",
    )
    config = load_config(config_dir)
    assert len(config.subscribers) == 26
    first, second = config.subscribers[-2:]
    assert (first.name, first.phone, first.role, first.lat) == ("钱多多", "13900000001", "public", None)
    assert (second.name, second.phone, second.lat, second.lon) == ("孙,悟空", "13900000002", 30.5, 107.6)
    assert second.language == "en"
    assert second.groups == ["public", "grid_workers"]


def test_subscribers_csv_bad_row_reports_its_line(config_dir: Path) -> None:
    (config_dir / "subscribers.csv").write_text(
        CSV_HEADER
        + "钱多多,13900000001,public,500228103201,,,,\n"
        + "钱少少,139,public,500228103201,,,,\n"
        + "赵四,13900000003,public,5002281032,,,,\n",
        encoding="utf-8",
    )
    errors = load_errors(config_dir)
    assert all(e.file == str(config_dir / "subscribers.csv") for e in errors)
    paths = {e.path: e.reason for e in errors}
    assert set(paths) == {"line 3: phone", "line 4: area_code"}
    assert "not a mobile number" in paths["line 3: phone"]
    assert "12 digits" in paths["line 4: area_code"]


def test_subscribers_csv_header_error(config_dir: Path) -> None:
    (config_dir / "people.csv").write_text(
        "name,mobile,area_code\n张三,13900000001,500228103201\n", encoding="utf-8"
    )
    error = only_error(config_dir)
    assert error.file == str(config_dir / "people.csv")
    assert "phone" in error.reason and "header" in error.reason


def test_subscribers_csv_unknown_role_reports_the_csv_line(config_dir: Path) -> None:
    """A cross-check error on a CSV row must point at the CSV file and line, not at subscribers.yaml."""
    (config_dir / "subscribers.csv").write_text(
        CSV_HEADER
        + "钱多多,13900000001,public,500228103201,,,,\n"
        + "钱少少,13900000002,mayor,500228103201,,,,\n",
        encoding="utf-8",
    )
    error = only_error(config_dir)
    assert "unknown role 'mayor'" in error.reason
    assert error.file == str(config_dir / "subscribers.csv")
    assert "line 3" in error.path


def test_subscribers_csv_duplicate_of_a_yaml_phone_reports_the_csv_line(config_dir: Path) -> None:
    (config_dir / "subscribers.csv").write_text(
        CSV_HEADER + "周建国二号,13800230001,public,500228103201,,,,\n", encoding="utf-8"
    )
    error = only_error(config_dir)
    assert "duplicate phone" in error.reason
    assert error.file == str(config_dir / "subscribers.csv")
    assert "line 2" in error.path


# --- value parsers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        (90, 90.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
        ("10min", 600.0),
        (" 45 ", 45.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "fast", "5 minutes", "1h30m", "-5m", "m", "5x", None])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+86 138-0023-0001", "13800230001"),
        ("008613800230001", "13800230001"),
        ("+8613800230001", "13800230001"),
        ("138 0023 0001", "13800230001"),
        ("(138)00230001", "13800230001"),
        (13800230001, "13800230001"),
        ("+447700900123", "+447700900123"),
        ("+1 (202) 555-0143", "+12025550143"),
    ],
)
def test_normalise_phone(value: object, expected: str) -> None:
    assert normalise_phone(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "12345",
        "023-6123-4567",
        "12800230001",
        "1380023000",
        "138002300011",
        "+86 023 6123 4567",
        "447700900123",
        "+0447700900",
        "abc",
        "",
    ],
)
def test_normalise_phone_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="not a mobile number"):
        normalise_phone(value)


@pytest.mark.parametrize(
    ("code", "prefix"),
    [
        ("500228000000", "500228"),
        ("500228101000", "500228101"),
        ("500228101201", "500228101201"),
        ("500000000000", "50"),
        ("500200000000", "5002"),
        ("500228", "500228"),
        (" 500228000000 ", "500228"),
    ],
)
def test_area_prefix(code: str, prefix: str) -> None:
    assert area_prefix(code) == prefix


def test_rule_areas_are_stored_as_prefixes(config_dir: Path) -> None:
    index = rule_index("gale-red")
    edit_yaml(config_dir / "rules.yaml", lambda d: d["rules"][index].update(areas=["500228101000", "500228"]))
    assert load_config(config_dir).rules[index].areas == ["500228101", "500228"]


def test_feed_stale_after_defaults_to_three_intervals_and_must_not_be_shorter(config_dir: Path) -> None:
    def feeds(data: dict[str, Any]) -> None:
        data["feeds"] = [
            {"name": "a", "url": "http://127.0.0.1:1/a.atom", "interval": "2m"},
            {"name": "b", "url": "http://127.0.0.1:1/b.atom", "interval": "1m", "stale_after": "15m"},
        ]

    edit_yaml(config_dir / "feeds.yaml", feeds)
    a, b = load_config(config_dir).feeds
    assert (a.stale_after, a.stale_seconds) == (360.0, 360.0)
    assert b.stale_after == 900.0
    edit_yaml(config_dir / "feeds.yaml", lambda d: d["feeds"][1].update(stale_after="30s"))
    error = only_error(config_dir)
    assert error.file.endswith("feeds.yaml") and error.path == "feeds[1]"
    assert "stale_after (30s) must be at least interval (60s)" in str(error)


# --- hydrology -------------------------------------------------------------------------------------------


def test_example_hydrology_station_and_zone(config_dir: Path) -> None:
    hydro = load_config(config_dir).hydrology
    longxi = hydro.stations["longxi"]
    assert (longxi.warning, longxi.guaranteed, longxi.historical_max, longxi.approaching) == (
        100.0,
        102.0,
        103.5,
        0.5,
    )
    assert longxi.downgrade_after == 1800 and longxi.lift_after == 3600
    assert all(code.startswith("500228") for code in longxi.areas)
    zone = hydro.danger_zones["chuanxi-gully"]
    assert zone.duty_person == "赵春梅" and zone.thresholds["1h"].evacuate == 45


def test_hydrology_errors_name_file_and_key(config_dir: Path) -> None:
    def break_it(d: dict[str, Any]) -> None:
        d["hydrology"]["stations"]["longxi"]["guaranteed"] = 99.0  # below the warning stage
        d["hydrology"]["danger_zones"]["chuanxi-gully"]["thresholds"]["1h"] = {"prepare": 50, "evacuate": 40}

    edit_yaml(config_dir / "hydrology.yaml", break_it)
    errors = {e.path: e.reason for e in load_errors(config_dir)}
    assert all(e.file == str(config_dir / "hydrology.yaml") for e in load_errors(config_dir))
    assert "thresholds must rise" in errors["hydrology.stations.longxi"]
    assert (
        "prepare (50.0 mm) must be below evacuate"
        in errors["hydrology.danger_zones.chuanxi-gully.thresholds.1h"]
    )


def test_hydrology_cross_checks(config_dir: Path) -> None:
    def break_it(d: dict[str, Any]) -> None:
        d["hydrology"]["danger_zones"]["chuanxi-gully"]["duty_person"] = "无此人"
        d["hydrology"]["stations"]["upstream"] = {
            **d["hydrology"]["stations"]["longxi"],
            "name": "上游站",
            "source_ids": ["longxi"],
        }

    edit_yaml(config_dir / "hydrology.yaml", break_it)
    errors = {e.path: e.reason for e in load_errors(config_dir)}
    assert errors["hydrology.danger_zones.chuanxi-gully.duty_person"] == "no subscriber named '无此人'"
    assert "already belongs to station 'longxi'" in errors["hydrology.stations.upstream.source_ids"]
