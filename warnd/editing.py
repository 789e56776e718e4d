"""Editing files the daemon reads at start: config sections (groups, terminals, rules) and templates
(docs/admin.md).

A config section is checked the way ``warnd check-config`` checks it: the whole configuration is loaded
(:func:`warnd.config.load_config`: the same models, the same cross-checks) from a temporary copy of the config
directory in which the section's file has the new text. Only then is the real file replaced — written beside
it and renamed over it (``os.replace``: a reader sees the old file or the new one, never half of one), the old
one kept as ``<file>.bak``. The file is written with PyYAML, which keeps no comments: the ``.bak`` has them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from warnd.config import FILES, Config, ConfigError, ConfigInvalid, load_config

# the sections the API edits, and the JSON type of each
SECTIONS: dict[str, type] = {"groups": dict, "terminals": list, "rules": list}
BACKUP_SUFFIX = ".bak"
_WRITING = threading.Lock()  # one config save at a time (each runs in a worker thread)


class EditRefused(Exception):
    """The new content is invalid; ``errors`` says where (config sections: file, path, reason)."""

    def __init__(self, message: str, errors: list[dict[str, Any]]):
        super().__init__(message)
        self.errors = errors


class StaleEdit(Exception):
    """The file changed since the editor read it (its sha256 is not the one the edit started from)."""


@dataclass(frozen=True)
class Saved:
    path: Path
    backup: Path | None  # the previous version (None when there was no file)
    sha256: str
    previous_sha256: str | None


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def section_file(directory: Path, section: str) -> Path:
    """The file of the config directory that holds ``section`` (config.FILES)."""
    owner = next(name for name, keys in FILES.items() if section in keys)
    return directory / owner


def read_section(directory: Path, section: str) -> tuple[Path, Any, str | None]:
    """(file, the section as written — ``${ENV}`` references kept —, the file's sha256 or None if absent)."""
    path = section_file(directory, section)
    if not path.exists():
        return path, SECTIONS[section](), None
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    value = data.get(section) if isinstance(data, dict) else None
    return path, SECTIONS[section]() if value is None else value, sha256_text(text)


def differs_from_running(config: Config, section: str, value: Any) -> bool:
    """Whether the section as written is not what the daemon runs with (it reads config at start only)."""
    annotation = Config.model_fields[section].annotation
    assert annotation is not None
    try:
        written = TypeAdapter(annotation).validate_python(value)
    except (ValidationError, TypeError, ValueError):
        return True
    return bool(written != getattr(config, section))


def save_section(directory: Path, section: str, value: Any, expected_sha256: str | None) -> tuple[Saved, Any]:
    """Replace ``section`` in its file with ``value`` once the whole config loads with it; returns what was
    saved and the section's previous value. ``expected_sha256``: the file's as the edit started from it (None:
    there was no file); StaleEdit when it is not. Raises EditRefused with every error (file paths as in the
    real directory). Blocking: run it in a thread."""
    with _WRITING:
        path = section_file(directory, section)
        old_text = path.read_text(encoding="utf-8") if path.exists() else None
        old_sha = sha256_text(old_text) if old_text is not None else None
        if expected_sha256 != old_sha:
            raise StaleEdit(f"{path} changed since it was read")
        data: Any = yaml.safe_load(old_text) if old_text else {}
        data = data or {}
        if not isinstance(data, dict):
            raise EditRefused(
                f"{path}: 顶层不是映射，无法替换 {section} (top level is not a mapping)",
                [{"file": str(path), "path": "", "reason": "top level must be a mapping"}],
            )
        previous = data.get(section)
        data[section] = value
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=False, width=110)
        check_config_with(directory, path.name, text)
        backup = write_atomically(path, text)
        return Saved(path, backup, sha256_text(text), old_sha), previous


def check_config_with(directory: Path, file_name: str, text: str) -> None:
    """Load the config directory as if ``file_name`` held ``text`` (in a temporary copy; subscriber CSVs are
    linked, not copied). Raises EditRefused naming the real files."""
    with tempfile.TemporaryDirectory(prefix="warnd-config-") as tmp:
        copy = Path(tmp) / directory.name
        copy.mkdir()
        for name in FILES:
            if name != file_name and (directory / name).exists():
                shutil.copy2(directory / name, copy / name)
        for csv_path in directory.glob("*.csv"):
            (copy / csv_path.name).symlink_to(csv_path.resolve())
        (copy / file_name).write_text(text, encoding="utf-8")
        try:
            load_config(copy)
        except ConfigInvalid as exc:
            errors = [_real(e, copy, directory) for e in exc.errors]
            first = errors[0]
            where = f"{first['file']}: {first['path']}: " if first["path"] else f"{first['file']}: "
            raise EditRefused(
                f"配置有误，未保存 (configuration invalid, nothing saved): {where}{first['reason']}", errors
            ) from None


def _real(error: ConfigError, copy: Path, directory: Path) -> dict[str, Any]:
    file = error.file
    for prefix in (str(copy.resolve()), str(copy)):
        if file.startswith(prefix):
            file = str(directory) + file[len(prefix) :]
            break
    return {"file": file, "path": error.path, "reason": error.reason}


def write_atomically(path: Path, text: str) -> Path | None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace`` (with the
    file's mode kept, and fsync before and after), keeping the old file as ``<name>.bak``. Returns the backup's
    path, None if there was no file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    backup = None
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
            backup = path.with_name(path.name + BACKUP_SUFFIX)
            shutil.copy2(path, backup)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return backup


def save_template(path: Path, source: str, expected_sha256: str | None) -> tuple[Saved, str | None]:
    """Write a template file atomically with a backup, if it is still the one the edit started from
    (``expected_sha256``; StaleEdit otherwise); returns what was saved and the previous source."""
    with _WRITING:
        previous = path.read_text(encoding="utf-8") if path.exists() else None
        previous_sha = sha256_text(previous) if previous is not None else None
        if expected_sha256 != previous_sha:
            raise StaleEdit(f"{path} changed since it was read")
        backup = write_atomically(path, source)
        return Saved(path, backup, sha256_text(source), previous_sha), previous
