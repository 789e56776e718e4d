"""Editing config sections and templates on disk (warnd/editing.py): a section is checked by loading the whole
config from a temporary copy, errors name the real file and key path, the file is replaced atomically with a
.bak, the other keys of the file stay, and an edit that started from an older file is refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from warnd.config import load_config
from warnd.editing import (
    EditRefused,
    StaleEdit,
    differs_from_running,
    read_section,
    save_section,
    save_template,
    section_file,
    sha256_text,
    write_atomically,
)


def test_sections_live_in_their_files(config_dir: Path) -> None:
    assert section_file(config_dir, "rules") == config_dir / "rules.yaml"
    assert section_file(config_dir, "groups") == config_dir / "groups.yaml"
    assert section_file(config_dir, "terminals") == config_dir / "subscribers.yaml"
    path, value, digest = read_section(config_dir, "terminals")
    assert (
        path == config_dir / "subscribers.yaml" and value and digest == sha256_text(path.read_text("utf-8"))
    )
    groups_digest = read_section(config_dir, "groups")[2]
    (config_dir / "groups.yaml").unlink()
    assert read_section(config_dir, "groups")[1:] == ({}, None)
    with pytest.raises(StaleEdit):  # the file is gone: an edit of what it held is stale
        save_section(config_dir, "groups", {}, groups_digest)


def test_an_unknown_channel_is_refused_naming_the_real_file(config_dir: Path) -> None:
    rules_file = config_dir / "rules.yaml"
    before = rules_file.read_text(encoding="utf-8")
    _, rules, digest = read_section(config_dir, "rules")
    rules[1]["targets"][0]["channels"] = ["sms", "carrier_pigeon"]
    with pytest.raises(EditRefused) as caught:
        save_section(config_dir, "rules", rules, digest)
    errors = caught.value.errors
    assert {"file": str(rules_file), "path": "rules[1].targets[0].channels[1]"} in [
        {"file": e["file"], "path": e["path"]} for e in errors
    ]
    assert "carrier_pigeon" in str(caught.value) and str(rules_file) in str(caught.value)
    assert rules_file.read_text(encoding="utf-8") == before
    assert not rules_file.with_name("rules.yaml.bak").exists()
    assert sorted(p.name for p in config_dir.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_a_group_the_rules_name_cannot_go(config_dir: Path) -> None:
    _, groups, digest = read_section(config_dir, "groups")
    del groups["grid_workers"]
    with pytest.raises(EditRefused) as caught:
        save_section(config_dir, "groups", groups, digest)
    assert any("grid_workers" in e["reason"] for e in caught.value.errors)  # rules name it


def test_a_saved_section_loads_and_keeps_the_rest_of_its_file(config_dir: Path) -> None:
    path = config_dir / "subscribers.yaml"
    path.chmod(0o640)
    old_text = path.read_text(encoding="utf-8")
    config = load_config(config_dir)
    _, terminals, digest = read_section(config_dir, "terminals")
    terminals[0]["name"] = "新名字的大喇叭"
    saved, previous = save_section(config_dir, "terminals", terminals, digest)
    assert previous[0]["name"] != "新名字的大喇叭"
    assert saved.backup == config_dir / "subscribers.yaml.bak"
    assert saved.backup.read_text(encoding="utf-8") == old_text  # comments and all
    assert saved.previous_sha256 == digest and saved.sha256 == sha256_text(path.read_text(encoding="utf-8"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    reloaded = load_config(config_dir)
    assert reloaded.terminals[0].name == "新名字的大喇叭"
    assert reloaded.subscribers == config.subscribers
    assert differs_from_running(config, "terminals", terminals)
    assert not differs_from_running(reloaded, "terminals", terminals)
    assert differs_from_running(config, "rules", [{"name": "not a rule"}])  # invalid: not what runs
    with pytest.raises(StaleEdit):  # started from the file as it was before this save
        save_section(config_dir, "terminals", terminals, digest)


def test_env_references_in_the_file_are_kept(config_dir: Path) -> None:
    path = config_dir / "groups.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["x-note"] = "${WARND_SOMETHING:-x}"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    _, groups, digest = read_section(config_dir, "groups")
    save_section(config_dir, "groups", groups, digest)
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["x-note"] == "${WARND_SOMETHING:-x}"


def test_write_atomically_and_templates(tmp_path: Path) -> None:
    target = tmp_path / "sms.j2"
    assert write_atomically(target, "一") is None and target.read_text(encoding="utf-8") == "一"
    saved, previous = save_template(target, "二", sha256_text("一"))
    assert previous == "一" and saved.backup is not None and saved.backup.read_text(encoding="utf-8") == "一"
    assert target.read_text(encoding="utf-8") == "二"
    with pytest.raises(StaleEdit):
        save_template(target, "三", sha256_text("一"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sms.j2", "sms.j2.bak"]
