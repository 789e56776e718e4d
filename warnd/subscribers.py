"""Subscriber CSV import and export.

Columns: ``name,phone,role,area_code,lat,lon,language,groups`` and optionally
``address,household,vulnerable,superior`` (groups and vulnerable flags separated by ``|``; lat/lon may be
empty; the last four feed the door-knock list and the superior rung, docs/escalation.md). An import is all or nothing: every row is checked, bad rows are reported by line number, and if any is
bad nothing is imported. Rows are validated with plain string checks (not a model per row) and written in one
transaction in chunks, so a million rows take seconds and bounded memory.
"""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from warnd.config import SUBSCRIBER_CSV_COLUMNS, VULNERABLE, normalise_phone

_ADMIN_CODE = re.compile(r"^\d{12}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
# control characters (NUL, escape …; not tabs or line breaks, which a spreadsheet cell may hold) have no place in
# a name or an address that messages and lists print, and PostgreSQL refuses NUL in text
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_ERRORS = 200
CHUNK = 10_000


@dataclass
class ImportReport:
    rows: int = 0
    errors: list[str] = field(default_factory=list)
    more_errors: int = 0

    def add(self, line: int, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"line {line}: {message}")
        else:
            self.more_errors += 1


class ImportRejected(Exception):
    def __init__(self, report: ImportReport):
        self.report = report
        super().__init__(f"{len(report.errors) + report.more_errors} bad row(s); nothing imported")


class RowChecker:
    """Checks CSV rows as plain strings (a million rows must take seconds, so no model object per row);
    values seen valid once (groups strings, languages) are remembered."""

    def __init__(self, *, groups: Mapping[str, Any], roles: Mapping[str, Any]):
        self.groups = groups
        self.roles = roles
        self._good_groups: dict[str, str] = {"": ""}
        self._good_languages = {"zh-CN"}

    def check(self, cells: Mapping[str, str]) -> tuple[dict[str, Any] | None, list[str]]:
        """One CSV row -> a recipients row (key = phone, plus "groups") or the reasons it is bad."""
        errors: list[str] = []
        name = cells.get("name", "").strip()
        if not name:
            errors.append("name: empty")
        elif len(name) > 100:
            errors.append("name: longer than 100 characters")
        elif _CONTROL.search(name):
            errors.append("name: contains control characters")
        phone = cells.get("phone", "").strip()
        if not (len(phone) == 11 and phone.isdigit() and phone[0] == "1" and phone[1] in "3456789"):
            try:
                phone = normalise_phone(phone)
            except ValueError as exc:
                errors.append(f"phone: {exc}")
        role = cells.get("role", "").strip() or "public"
        if role not in self.roles:
            errors.append(f"role: unknown role {role!r}")
        area_code = cells.get("area_code", "").strip()
        if not (len(area_code) == 12 and area_code.isdigit()):
            errors.append(f"area_code: must be 12 digits, got {area_code!r}")
        lat = self._coordinate(cells.get("lat", ""), "lat", 90.0, errors)
        lon = self._coordinate(cells.get("lon", ""), "lon", 180.0, errors)
        if (lat is None) != (lon is None):
            errors.append("lat/lon: give both or neither")
        language = cells.get("language", "").strip() or "zh-CN"
        if language not in self._good_languages:
            if _LANGUAGE.match(language):
                self._good_languages.add(language)
            else:
                errors.append(f"language: not a language tag: {language!r}")
        raw_groups = cells.get("groups", "")
        groups = self._good_groups.get(raw_groups)
        if groups is None:
            names = [g.strip() for g in raw_groups.split("|") if g.strip()]
            unknown = [g for g in names if g not in self.groups]
            errors.extend(f"groups: unknown group {g!r}" for g in unknown)
            if not unknown:
                groups = self._good_groups[raw_groups] = "|".join(names)
        address = cells.get("address", "").strip() or None
        if address and len(address) > 200:
            errors.append("address: longer than 200 characters")
        elif address and _CONTROL.search(address):
            errors.append("address: contains control characters")
        household = cells.get("household", "").strip() or None
        if household and len(household) > 64:
            errors.append("household: longer than 64 characters")
        elif household and _CONTROL.search(household):
            errors.append("household: contains control characters")
        flags = [v.strip() for v in cells.get("vulnerable", "").split("|") if v.strip()]
        errors.extend(
            f"vulnerable: unknown flag {v!r} (known: {', '.join(VULNERABLE)})"
            for v in flags
            if v not in VULNERABLE
        )
        superior = cells.get("superior", "").strip() or None
        if superior:
            try:
                superior = normalise_phone(superior)
            except ValueError as exc:
                errors.append(f"superior: {exc}")
        if errors:
            return None, errors
        return {
            "key": phone,
            "kind": "person",
            "name": name,
            "phone": phone,
            "role": role,
            "area_code": area_code,
            "lat": lat,
            "lon": lon,
            "language": language,
            "push_tokens": None,
            "terminal_id": None,
            "address": address,
            "household": household,
            "vulnerable": flags or None,
            "superior": superior,
            "groups": groups,
        }, []

    @staticmethod
    def _coordinate(text: str, axis: str, limit: float, errors: list[str]) -> float | None:
        text = text.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            errors.append(f"{axis}: not a number: {text!r}")
            return None
        if not -limit <= value <= limit:
            errors.append(f"{axis}: {value} out of range ±{limit:g}")
        return value


def validated_chunks(
    handle: IO[str],
    report: ImportReport,
    *,
    groups: Mapping[str, Any],
    roles: Mapping[str, Any],
    reserved: Mapping[str, str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Chunks of good rows. Once a bad row is seen nothing more is yielded (the import will be rolled back),
    but every remaining row is still checked so the report is complete; raises ImportRejected at the end.
    ``reserved``: phone numbers no row may have, each with the reason (people defined in config)."""
    reader = csv.reader(handle)
    rows = _rows(reader, report)
    header = [h.strip() for h in next(rows, [])]
    missing = [c for c in ("name", "phone", "area_code") if c not in header]
    if missing:
        report.add(
            1, f"header lacks column(s) {', '.join(missing)}; expected {','.join(SUBSCRIBER_CSV_COLUMNS)}"
        )
        raise ImportRejected(report)
    unknown = [c for c in header if c not in SUBSCRIBER_CSV_COLUMNS]
    if unknown:
        report.add(1, f"unknown column(s) {', '.join(unknown)}; expected {','.join(SUBSCRIBER_CSV_COLUMNS)}")
        raise ImportRejected(report)
    checker = RowChecker(groups=groups, roles=roles)
    width = len(header)
    seen: dict[str, int] = {}
    chunk: list[dict[str, Any]] = []
    for values in rows:
        line = reader.line_num
        if not values:
            continue
        if len(values) != width:
            report.add(line, f"{len(values)} fields, header has {width}")
            continue
        record, errors = checker.check(dict(zip(header, values, strict=True)))
        if record is not None:
            first = seen.setdefault(record["phone"], line)
            if first != line:
                errors = [f"phone: {record['phone'][:3]}****{record['phone'][-4:]} already on line {first}"]
            elif reserved and record["phone"] in reserved:
                errors = [
                    f"phone: {record['phone'][:3]}****{record['phone'][-4:]} {reserved[record['phone']]}"
                ]
        report.rows += 1
        if errors:
            for message in errors:
                report.add(line, message)
            continue
        if report.errors:
            continue
        assert record is not None
        chunk.append(record)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if report.errors:
        raise ImportRejected(report)
    if chunk:
        yield chunk


def _rows(reader: Any, report: ImportReport) -> Iterator[list[str]]:
    """The reader's rows; a line the csv module cannot read (a field over its size limit) is reported and ends
    the import."""
    try:
        yield from reader
    except csv.Error as exc:
        report.add(reader.line_num, f"not valid CSV: {exc}")
        raise ImportRejected(report) from None


def open_csv(path: Path) -> IO[str]:
    return path.open(encoding="utf-8-sig", newline="")


async def write_csv(rows: AsyncIterator[Mapping[str, Any]], out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(SUBSCRIBER_CSV_COLUMNS)
    count = 0
    async for row in rows:
        writer.writerow(
            [
                row["name"],
                row["phone"] or "",
                row["role"],
                row["area_code"],
                "" if row["lat"] is None else row["lat"],
                "" if row["lon"] is None else row["lon"],
                row["language"],
                row["groups"] or "",
                row["address"] or "",
                row["household"] or "",
                "|".join(row["vulnerable"] or []),
                row["superior"] or "",
            ]
        )
        count += 1
    return count
