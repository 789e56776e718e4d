"""The configuration directory: loading, ${ENV} substitution, validation with file + key path errors.

A config directory holds YAML files, each optional, each owning some top-level keys:

================  =====================================================================
``warnd.yaml``    organisation, timezone, language, data_dir, database, templates, api, dispatch, roles
``areas.yaml``    ``areas``: admin code -> name (the district's township/village tree)
``channels.yaml`` ``channels``: name -> adapter settings
``groups.yaml``   ``groups``: name -> label, roles, drill, priority
``rules.yaml``    ``rules``: the graded response rules
``subscribers.yaml`` ``subscribers`` (people) and ``terminals`` (loudspeakers); ``*.csv`` beside it too
``feeds.yaml``    ``feeds``: ATOM/RSS/CAP URLs polled on a schedule
``hazards.yaml``  ``hazards``: additions/overrides to the built-in hazard catalogue
``hydrology.yaml`` ``hydrology``: river gauges (thresholds) and flash-flood danger zones (rain thresholds)
================  =====================================================================

Secrets never live in these files: write ``${WARND_SMS_TOKEN}`` (or ``${VAR:-default}``) and the value comes
from the environment at load time. Every error names the file, the key path and the reason.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from channels import adapter_class
from channels.base import Address, ChannelSettings
from warnd.hazards import Catalogue, parse_colour, parse_level
from warnd.render import style_for

FILES = {
    "warnd.yaml": (
        "organisation",
        "timezone",
        "language",
        "alert_default_ttl",
        "data_dir",
        "database",
        "templates",
        "api",
        "audio",
        "dispatch",
        "lifecycle",
        "feedback",
        "roles",
    ),
    "areas.yaml": ("areas",),
    "channels.yaml": ("channels",),
    "groups.yaml": ("groups",),
    "rules.yaml": ("rules",),
    "subscribers.yaml": ("subscribers", "terminals"),
    "feeds.yaml": ("feeds",),
    "hydrology.yaml": ("hydrology",),
    "hazards.yaml": ("hazards",),
}
SUBSCRIBER_CSV_COLUMNS = (
    "name",
    "phone",
    "role",
    "area_code",
    "lat",
    "lon",
    "language",
    "groups",
    "address",
    "household",
    "vulnerable",
    "superior",
)
# who the door-knock list puts first (敲门行动: the elderly living alone, the disabled, children left alone ...)
VULNERABLE = ("elderly_alone", "disabled", "child", "bedridden", "pregnant")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ADMIN_CODE = re.compile(r"^\d{12}$")
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")


# --- value parsers shared by config, CSV import and the API ---------------------------------------------------


def parse_duration(value: object) -> float:
    """'5m' / '30s' / '1h' / 90 -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (e.g. 30s, 5m, 1h)")
    factor = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor


def parse_when(value: str | None, now: datetime, tz: tzinfo) -> datetime | None:
    """A time as the CLI and the API take it: ``30d`` / ``1h`` (that long ago) or ISO 8601, read in ``tz`` (the
    district's time zone, ``timezone``) when it has no offset. None or empty stays None."""
    if not value:
        return None
    try:
        return now - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def normalise_phone(value: object) -> str:
    """A Chinese mobile number as 11 digits (+86/0086 and separators dropped), or another number as E.164."""
    text = re.sub(r"[\s\-()]", "", str(value))
    if text.startswith("+86"):
        text = text[3:]
    elif text.startswith("0086"):
        text = text[4:]
    if _CN_MOBILE.match(text) or _E164.match(text):
        return text
    raise ValueError(f"not a mobile number: {value!r} (11-digit Chinese mobile or +E.164)")


def admin_code(value: object) -> str:
    text = str(value).strip()
    if not _ADMIN_CODE.match(text):
        raise ValueError(f"admin code must be 12 digits (统计用区划代码), got {value!r}")
    return text


def area_prefix(code: str) -> str:
    """The prefix a 12-digit admin code stands for: 500228000000 -> '500228', 500228101000 -> '500228101'.

    Codes are 2 province + 2 city + 2 county + 3 township + 3 village digits; trailing zero groups mean "all of".
    A shorter code given in config (e.g. '500228') is already a prefix.
    """
    code = code.strip()
    if len(code) != 12:
        return code
    for cut in (2, 4, 6, 9):
        if code[cut:] == "0" * (12 - cut):
            return code[:cut]
    return code


def township_code(code: str) -> str:
    """The township (乡镇/街道) a 12-digit admin code lies in: 500228101201 → 500228101000."""
    return code[:9] + "000" if len(code) == 12 else code


def county_code(code: str) -> str:
    """The county (区县) a 12-digit admin code lies in: 500228101201 → 500228000000."""
    return code[:6] + "000000" if len(code) == 12 else code


def is_village(code: str) -> bool:
    """A village / community (村/社区) code, not a township's or county's office."""
    return len(code) == 12 and not code.endswith("000")


Colour = Annotated[str, BeforeValidator(parse_colour)]
Level = Annotated[int, BeforeValidator(parse_level)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Phone = Annotated[str, BeforeValidator(normalise_phone)]
AdminCode = Annotated[str, BeforeValidator(admin_code)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections ----------------------------------------------------------------------------------------------


class ApiToken(_Model):
    name: str
    token: str  # write as ${ENV}; an empty value disables the entry
    # what it may do (warnd/auth.py, docs/security.md): viewer < operator < approver < admin
    role: Literal["viewer", "operator", "approver", "admin"] = "admin"


class AudioSettings(_Model):
    """Offline TTS for loudspeaker scripts (warnd/audio.py); used only when ``command`` is installed."""

    enabled: bool = True
    command: str = "espeak-ng"
    voices: dict[str, str] = {"zh": "cmn", "en": "en"}  # language (or its primary tag) → voice
    speed: int = Field(150, ge=80, le=450)  # words per minute; slower than speech, for loudspeakers
    timeout: Duration = 20.0


class ApiSettings(_Model):
    host: str = "127.0.0.1"
    port: int = 8470
    max_body_bytes: int = 2_000_000
    tokens: list[ApiToken] = []
    # receipt webhooks POST /api/v1/feedback/{kind}: HMAC secret per kind (sms, push, loudspeaker), written as
    # ${ENV}; an empty or missing secret turns that kind's webhook off (docs/feedback.md)
    feedback_secrets: dict[str, str] = {}
    # the live board (GET /api/v1/board, the event stream GET /api/v1/events) is computed at most this often
    # however many people watch it (docs/board.md)
    live_every: Duration = Field(2.0, gt=0)
    # a draft waiting for a second person's approval (warnd/broadcasts.py) is sent by SMS on this channel to
    # every approver and admin with a phone on file (`warnd users add … --phone`); unset: the console only
    approval_notify_channel: str | None = None


class DispatchSettings(_Model):
    lease: Duration = 60.0  # a claimed batch is this worker's for this long
    batch_size: int = Field(500, ge=1, le=10_000)
    poll_interval: Duration = 1.0  # fallback when no wake-up arrives
    fanout_chunk: int = Field(5000, ge=100, le=100_000)
    # batches of one channel in flight at once: one is being claimed or recorded while another is being sent
    workers_per_channel: int = Field(2, ge=1, le=16)
    # cluster mode: an alert's fan-out is one node's for this long, renewed while it works (docs/cluster.md)
    fanout_lease: Duration = Field(30.0, gt=0)
    shutdown_grace: Duration = 20.0  # how long SIGTERM waits for in-flight sends


class LifecycleSettings(_Model):
    # an Update/Cancel whose original has not arrived waits this long for it, then is treated as new
    hold_for: Duration = Field(300.0, ge=0)


class FeedbackSettings(_Model):
    """The feedback loop: 叫应 links and replies, escalation sweeps, door-knock lists, coverage
    (docs/acknowledgement.md, docs/escalation.md, docs/reports.md)."""

    # base URL of the one-tap links in messages (https://warn.example.gov.cn); none: acknowledge by reply only
    public_url: str | None = None
    # HMAC key of those links, written as ${ENV}; default: 32 random bytes generated once into data_dir
    link_secret: str | None = None
    # a reply SMS acknowledges when it is (or starts with) one of these; the first is the one messages advertise
    ack_keywords: list[str] = Field(["1", "收到", "确认", "已收到", "好的", "OK"], min_length=1)
    coverage_target: float = Field(0.9, gt=0, le=1)  # a village below it is flagged while the alert is active
    sweep_every: Duration = Field(30.0, gt=0)  # how often the escalation sweep runs
    # whose superior is who: a role → the roles to tell, looked for in the enclosing township, then the county
    superiors: dict[str, list[str]] = {
        "duty_person": ["township_leader", "county_leader"],
        "village_cadre": ["township_leader", "county_leader"],
        "grid_worker": ["township_leader", "county_leader"],
        "township_leader": ["county_leader"],
    }
    notice_channels: list[str] = [
        "sms"
    ]  # how superiors and grid workers get their notices, first that can reach
    doorknock_roles: list[str] = ["grid_worker"]  # who door-knocks a village (else its duty persons)
    doorknock_grace: Duration = 12 * 3600.0  # check-off links keep working this long after the alert ends
    # use the channel order learned from history (warnd optimise) for resend rungs; otherwise only shown
    learn_channel_order: bool = False


class Escalation(_Model):
    """A rule's escalation ladder (docs/escalation.md): resend on the next channel → tell the superior → put
    the household on the door-knock list, one rung every ``step_after`` while the person is still not reached
    (no confirmed delivery by ``deliver_within``) or has not acknowledged (by the target's ``ack_within``)."""

    deliver_within: Duration | None = None  # None: only acknowledgement deadlines open the ladder
    step_after: Duration = Field(300.0, gt=0)
    steps: list[Literal["resend", "superior", "doorknock"]] = Field(
        ["resend", "superior", "doorknock"], min_length=1
    )
    resend: list[str] = []  # channels for the resend rung, in order; "loudspeaker"-style channels reach the
    # terminals of the person's village


class Target(_Model):
    groups: list[str] = Field(min_length=1)
    channels: list[str] = Field(min_length=1)
    ack_required: bool = False
    ack_within: Duration | None = None  # used by the acknowledgement (叫应) sweep
    repeat: int = Field(1, ge=1, le=10)
    # failover (docs/failover.md): when a channel of this target is down (circuit open, retries exhausted),
    # send on the first available of these channels instead ...
    failover: list[str] = []
    # ... and when a terminal (village loudspeaker) is unreachable, tell these groups in the terminal's
    # village (its admin code) on ``failover_channels``
    failover_groups: list[str] = []
    failover_channels: list[str] = []

    @model_validator(mode="after")
    def _failover_pairs(self) -> Target:
        if self.failover_groups and not self.failover_channels:
            raise ValueError("failover_groups needs failover_channels (how to reach those groups)")
        if self.failover_channels and not self.failover_groups:
            raise ValueError("failover_channels needs failover_groups (whom to reach)")
        return self


class Rule(_Model):
    name: str
    hazards: list[str] = []  # names or codes; empty = any hazard
    colours: list[Colour] = []  # empty = any colour
    statuses: list[str] = ["Actual", "Exercise", "Test"]
    msg_types: list[str] = ["Alert", "Update", "Cancel"]
    areas: list[str] = []  # admin codes or prefixes; empty = anywhere
    level: Level
    targets: list[Target] = Field(min_length=1)
    inhibit: bool = True  # an active same-or-higher warning of the same hazard family suppresses this one
    notify_on_expiry: bool = False  # when the alert expires, everyone who received it gets a 解除 note
    escalation: Escalation | None = None  # the ladder for people not reached or not acknowledging
    enabled: bool = True

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, value: list[str]) -> list[str]:
        for status in value:
            if status not in ("Actual", "Exercise", "System", "Test", "Draft"):
                raise ValueError(f"unknown status {status!r}")
        return value

    @field_validator("msg_types")
    @classmethod
    def _msg_types(cls, value: list[str]) -> list[str]:
        for msg_type in value:
            if msg_type not in ("Alert", "Update", "Cancel"):
                raise ValueError(f"unknown msgType {msg_type!r}")
        return value

    @field_validator("areas")
    @classmethod
    def _areas(cls, value: list[str]) -> list[str]:
        for code in value:
            if not code.isdigit() or len(code) > 12:
                raise ValueError(f"area {code!r} is not an admin code or prefix")
        return [area_prefix(code) for code in value]


class Group(_Model):
    label: str
    roles: list[str] = []  # everyone with one of these roles belongs, besides members who name the group
    drill: bool = False  # takes part in drills: receives Test/Exercise alerts
    priority: int = Field(5, ge=1, le=9)  # lower goes first (duty persons before the public)


class Subscriber(_Model):
    name: str
    phone: Phone | None = None
    role: str = "public"
    area_code: AdminCode
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    language: str = "zh-CN"
    groups: list[str] = []
    push_tokens: list[str] = []
    address: str | None = Field(None, max_length=200)  # for the door-knock list
    household: str | None = Field(None, max_length=64)  # people sharing a household id are knocked once
    vulnerable: list[Literal["elderly_alone", "disabled", "child", "bedridden", "pregnant"]] = []
    superior: Phone | None = None  # who is told when this person does not answer (default: by role and area)


class Terminal(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    name: str
    area_code: AdminCode
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    role: str = "loudspeaker"
    language: str = "zh-CN"
    groups: list[str] = []


class Station(_Model):
    """A river gauge with its SL 758-2018 thresholds (see warnd/hydro/ladder.py)."""

    name: str  # 龙溪河梁平站
    river: str | None = None
    source_ids: list[str] = []  # other ids the gauge data uses for it (a 测站编码 stcd, "USGS:01646500")
    warning: float  # 警戒水位, m
    guaranteed: float  # 保证水位, m
    historical_max: float  # 历史最高水位, m
    approaching: float = Field(0.5, ge=0)  # blue band below the warning stage, m
    hysteresis: float = Field(0.1, ge=0)  # m below a threshold before a reading counts as below it
    downgrade_after: Duration = 1800.0
    lift_after: Duration = 3600.0
    expected_every: Duration = 900.0  # readings normally arrive this often; a gap over 3x is flagged
    areas: list[AdminCode] = Field(min_length=1)  # the villages along the river that its warnings go to

    @model_validator(mode="after")
    def _ordered(self) -> Station:
        if not self.warning < self.guaranteed < self.historical_max:
            raise ValueError(
                f"thresholds must rise: warning {self.warning} < guaranteed {self.guaranteed} "
                f"< historical_max {self.historical_max}"
            )
        return self


class RainThreshold(_Model):
    prepare: float = Field(gt=0)  # 准备转移, mm in the window
    evacuate: float = Field(gt=0)  # 立即转移, mm in the window

    @model_validator(mode="after")
    def _ordered(self) -> RainThreshold:
        if not self.prepare < self.evacuate:
            raise ValueError(f"prepare ({self.prepare} mm) must be below evacuate ({self.evacuate} mm)")
        return self


class DangerZone(_Model):
    """A flash-flood danger zone (山洪危险区) with its rainfall thresholds (see warnd/hydro/rainfall.py)."""

    name: str  # 万年村三组山洪危险区
    area_code: AdminCode  # the village it lies in
    rain_gauge: str  # the rain gauge's id in the readings
    households: int = Field(0, ge=0)
    population: int = Field(0, ge=0)
    duty_person: str | None = None  # a subscriber's name: the zone's 山洪预警员 / 责任人
    polygon: list[tuple[float, float]] = []  # (lat, lon) vertices; people with coordinates must be inside
    thresholds: dict[str, RainThreshold] = Field(min_length=1)  # window ("1h", "3h", "6h") → thresholds
    prepare_colour: Colour = "orange"
    evacuate_colour: Colour = "red"
    lift_after: Duration = 3 * 3600.0

    @field_validator("thresholds")
    @classmethod
    def _windows(cls, value: dict[str, RainThreshold]) -> dict[str, RainThreshold]:
        for window in value:
            if parse_duration(window) <= 0:
                raise ValueError(f"window {window!r} must be a positive duration such as 1h")
        return value

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if value and len(value) < 3:
            raise ValueError("a polygon needs at least 3 (lat, lon) vertices")
        for lat, lon in value:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"({lat}, {lon}) is not a (lat, lon) pair")
        return value


class Hydrology(_Model):
    sender: str = Field("warnd.hydro", pattern=r"^[^\s,<&]+$")  # CAP sender of generated warnings
    sender_name: str | None = None  # shown as the issuer; default: the organisation
    alert_ttl: Duration = 48 * 3600.0  # expires of generated warnings (each change issues a fresh revision)
    stations: dict[str, Station] = {}
    danger_zones: dict[str, DangerZone] = {}


class Feed(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str
    kind: Literal["cap", "readings"] = "cap"  # CAP / ATOM / RSS alerts, or gauge readings (docs/hydrology.md)
    interval: Duration = 60.0
    timeout: Duration = 20.0
    headers: dict[str, str] = {}
    enabled: bool = True
    max_bytes: int = 5_000_000
    # no successful poll for this long → the feed is stale (an operator alarm); default 3 × interval
    stale_after: Duration | None = None

    @model_validator(mode="after")
    def _stale_after(self) -> Feed:
        if self.stale_after is None:
            object.__setattr__(self, "stale_after", 3 * self.interval)  # frozen model: filled in once
        elif self.stale_after < self.interval:
            raise ValueError(
                f"stale_after ({self.stale_after:g}s) must be at least interval ({self.interval:g}s)"
            )
        return self

    @property
    def stale_seconds(self) -> float:
        return self.stale_after if self.stale_after is not None else 3 * self.interval


class HazardEntry(_Model):
    name: str
    colours: list[Colour] = ["blue", "yellow", "orange", "red"]
    aliases: list[str] = []
    family: str | None = None  # e.g. rain-flood: one event per recipient with the family's other hazards


DEFAULT_ROLES = {
    "public": "社会公众",
    "grid_worker": "网格员",
    "duty_person": "村防汛责任人",
    "village_cadre": "村干部",
    "township_leader": "乡镇责任人",
    "county_leader": "区县责任人",
    "loudspeaker": "应急广播终端",
}


class Config(_Model):
    """The whole configuration, after loading and cross-checking."""

    directory: Path
    organisation: str = "应急管理局"
    timezone: str = "Asia/Shanghai"
    language: str = "zh-CN"
    alert_default_ttl: Duration = 24 * 3600.0  # an alert without <expires> stays active this long
    data_dir: Path
    database: str | None = None
    templates: Path
    api: ApiSettings = ApiSettings()
    audio: AudioSettings = AudioSettings()
    dispatch: DispatchSettings = DispatchSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    roles: dict[str, str] = DEFAULT_ROLES
    areas: dict[str, str] = {}
    channels: dict[str, dict[str, Any]] = {}
    groups: dict[str, Group] = {}
    rules: list[Rule] = []
    subscribers: list[Subscriber] = []
    terminals: list[Terminal] = []
    feeds: list[Feed] = []
    hazards: dict[str, HazardEntry] = {}
    hydrology: Hydrology = Hydrology()

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite+aiosqlite:///{self.data_dir / 'warnd.db'}"

    @cached_property
    def _validated_channels(self) -> dict[str, ChannelSettings]:
        return {}

    def channel_settings(self, name: str) -> ChannelSettings:
        """A channel's settings, validated by its adapter once (fan-out asks per delivery: ~13 µs a validation)."""
        cache = self._validated_channels
        if name not in cache:
            settings = self.channels[name]
            cache[name] = adapter_class(settings["adapter"]).Settings.model_validate(settings)
        return cache[name]

    def channel_address(self, name: str) -> str:
        """What a channel sends to: phone | push | terminal | any (its ``address`` setting, else its adapter's)."""
        settings = self.channel_settings(name)
        address = getattr(settings, "address", None) or adapter_class(settings.adapter).address
        return str(address.value if isinstance(address, Address) else address)

    def channel_style(self, name: str) -> str:
        """How a channel's messages are shaped: its ``style`` setting, else what its template's name implies."""
        settings = self.channel_settings(name)
        return settings.style or style_for(settings.template or name)

    def catalogue(self) -> Catalogue:
        return Catalogue.load(
            {code: entry.model_dump(exclude_unset=True) for code, entry in self.hazards.items()}
        )

    def area_name(self, code: str) -> str | None:
        """The most specific configured name for an admin code (its own, else its township's, else county's)."""
        if code in self.areas:
            return self.areas[code]
        prefix = area_prefix(code)
        for known, name in self.areas.items():
            if area_prefix(known) == prefix:
                return name
        return None


# --- loading -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigError:
    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.reason}" if self.path else f"{self.file}: {self.reason}"


class ConfigInvalid(Exception):
    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _substitute_env(value: Any, path: str, file: str, errors: list[ConfigError]) -> Any:
    if isinstance(value, dict):
        return {
            k: _substitute_env(v, f"{path}.{k}" if path else str(k), file, errors) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute_env(v, f"{path}[{i}]", file, errors) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            errors.append(ConfigError(file, path, f"environment variable {name} is not set"))
            return ""

        return _ENV.sub(replace, value)
    return value


def _read_yaml(path: Path, errors: list[ConfigError]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        errors.append(ConfigError(str(path), where, f"not valid YAML: {getattr(exc, 'problem', exc)}"))
        return {}
    except OSError as exc:
        errors.append(ConfigError(str(path), "", f"cannot read: {exc.strerror}"))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.append(ConfigError(str(path), "", "top level must be a mapping"))
        return {}
    return data


def read_subscriber_csv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a subscriber CSV as (line number, row). The header must name the documented columns."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("name", "phone", "area_code") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"header lacks column(s) {', '.join(missing)} (columns: {','.join(SUBSCRIBER_CSV_COLUMNS)})"
            )
        for row in reader:
            yield reader.line_num, row


def subscriber_from_csv(row: dict[str, str]) -> Subscriber:
    def blank(key: str) -> str | None:
        value = (row.get(key) or "").strip()
        return value or None

    return Subscriber.model_validate(
        {
            "name": blank("name"),
            "phone": blank("phone"),
            "role": blank("role") or "public",
            "area_code": blank("area_code"),
            "lat": blank("lat"),
            "lon": blank("lon"),
            "language": blank("language") or "zh-CN",
            "groups": [g.strip() for g in (row.get("groups") or "").split("|") if g.strip()],
            "address": blank("address"),
            "household": blank("household"),
            "vulnerable": [v.strip() for v in (row.get("vulnerable") or "").split("|") if v.strip()],
            "superior": blank("superior"),
        }
    )


def load_config(directory: str | Path, *, database: str | None = None) -> Config:
    """Load and validate a config directory. Raises ConfigInvalid listing every error found."""
    root = Path(directory)
    errors: list[ConfigError] = []
    if not root.is_dir():
        raise ConfigInvalid([ConfigError(str(root), "", "not a directory")])
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for filename, keys in FILES.items():
        path = root / filename
        if not path.exists():
            continue
        data = _substitute_env(_read_yaml(path, errors), "", str(path), errors)
        for key, value in data.items():
            if key.startswith("x-"):  # YAML anchor holders, as in docker-compose
                continue
            if key not in keys:
                owner = next((f for f, ks in FILES.items() if key in ks), None)
                hint = f" (it belongs in {owner})" if owner else f" (allowed here: {', '.join(keys)})"
                errors.append(ConfigError(str(path), key, f"unknown key{hint}"))
                continue
            raw[key] = value
            origin[key] = str(path)
    csv_rows: dict[int, tuple[str, int]] = {}  # index in subscribers -> (csv file, line)
    for csv_path in sorted(root.glob("*.csv")):
        try:
            for line, row in read_subscriber_csv(csv_path):
                try:
                    subscriber = subscriber_from_csv(row).model_dump()
                    csv_rows[len(raw.setdefault("subscribers", []))] = (str(csv_path), line)
                    raw["subscribers"].append(subscriber)
                except ValidationError as exc:
                    for err in exc.errors():
                        errors.append(
                            ConfigError(str(csv_path), f"line {line}: {_key_path(err['loc'])}", err["msg"])
                        )
        except ValueError as exc:
            errors.append(ConfigError(str(csv_path), "", str(exc)))

    base = root.resolve()
    raw["directory"] = base
    raw["data_dir"] = (base / str(raw.get("data_dir", "data"))).resolve()
    raw["templates"] = (base / str(raw.get("templates", "../templates"))).resolve()
    if database:
        raw["database"] = database
    elif os.environ.get("WARND_DATABASE_URL"):
        raw["database"] = os.environ["WARND_DATABASE_URL"]
    if raw.get("database") and isinstance(raw["database"], dict):
        raw["database"] = raw["database"].get("url")

    config: Config | None = None
    positions: dict[str, list[int]] = {}
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            file = origin.get(str(loc[0]), str(root / "warnd.yaml")) if loc else str(root)
            errors.append(ConfigError(file, _key_path(loc), err["msg"].removeprefix("Value error, ")))
        # cross-check what did validate, so one run reports every problem
        cleaned, positions = _without_invalid_items(raw, [e["loc"] for e in exc.errors()])
        try:
            partial = Config.model_validate(cleaned)
        except ValidationError:
            partial = None
        if partial is not None:
            errors.extend(_cross_check(partial, _Where(origin, positions, csv_rows, raw)))
    if config is not None:
        errors.extend(_cross_check(config, _Where(origin, positions, csv_rows, raw)))
    if errors:
        raise ConfigInvalid(errors)
    assert config is not None
    return config


SETTINGS_SECTIONS = ("api", "audio", "dispatch", "feedback")


def _without_invalid_items(
    raw: dict[str, Any], locations: list[tuple[Any, ...]]
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """``raw`` minus the list items / mapping entries / settings that failed validation, and for each list
    section the original positions of the items kept (so later errors still name the right index)."""
    cleaned = dict(raw)
    bad: dict[str, set[Any]] = {}
    for loc in locations:
        section = str(loc[0]) if loc else ""
        value = raw.get(section)
        if len(loc) >= 2 and isinstance(value, list | dict) and section not in SETTINGS_SECTIONS:
            bad.setdefault(section, set()).add(loc[1])
        else:
            cleaned.pop(section, None)
    positions: dict[str, list[int]] = {}
    for section, items in bad.items():
        value = raw[section]
        if isinstance(value, list):
            positions[section] = [i for i in range(len(value)) if i not in items]
            cleaned[section] = [value[i] for i in positions[section]]
        else:
            cleaned[section] = {k: v for k, v in value.items() if k not in items}
    return cleaned, positions


@dataclass(frozen=True)
class _Where:
    """Where each checked item came from, so cross-check errors name the place the user wrote it."""

    origin: dict[str, str]  # section -> file
    positions: dict[str, list[int]]  # list section -> original index of each item kept after validation
    csv_rows: dict[int, tuple[str, int]]  # subscribers index -> (csv file, line)
    raw: dict[str, Any]  # names that exist, even if their settings failed validation, are not "unknown"

    def names(self, section: str) -> set[str]:
        value = self.raw.get(section)
        return {str(k) for k in value} if isinstance(value, dict) else set()


def _cross_check(config: Config, where: _Where) -> list[ConfigError]:
    """References between sections: channels, groups, roles, hazards, colours on each hazard's ladder."""
    errors: list[ConfigError] = []
    positions = where.positions
    known_groups = set(config.groups) | where.names("groups")
    known_channels = set(config.channels) | where.names("channels")

    def at(section: str, index: int) -> int:
        return positions[section][index] if section in positions else index

    def err(section: str, path: str, reason: str) -> None:
        errors.append(ConfigError(where.origin.get(section, str(config.directory)), path, reason))

    def person_err(section: str, index: int, tail: str, reason: str) -> None:
        original = at(section, index)
        if section == "subscribers" and original in where.csv_rows:
            file, line = where.csv_rows[original]
            errors.append(ConfigError(file, f"line {line}: {tail}", reason))
        else:
            err(section, f"{section}[{original}].{tail}", reason)

    for name, settings in config.channels.items():
        if not isinstance(settings, dict) or "adapter" not in settings:
            err("channels", f"channels.{name}.adapter", "required: which adapter sends this channel")
            continue
        try:
            cls = adapter_class(str(settings["adapter"]))
            cls.Settings.model_validate(settings)
        except KeyError as exc:
            err("channels", f"channels.{name}.adapter", str(exc.args[0]))
        except ValidationError as exc:
            for e in exc.errors():
                err(
                    "channels",
                    f"channels.{name}.{_key_path(e['loc'])}",
                    e["msg"].removeprefix("Value error, "),
                )

    known_roles = set(config.roles) | where.names("roles")
    for name, group in config.groups.items():
        for i, role in enumerate(group.roles):
            if role not in known_roles:
                err(
                    "groups",
                    f"groups.{name}.roles[{i}]",
                    f"unknown role {role!r} (known: {', '.join(sorted(known_roles))})",
                )

    catalogue = config.catalogue()
    for r, rule in enumerate(config.rules):
        ladders: list[tuple[str, tuple[str, ...]]] = []
        for h, word in enumerate(rule.hazards):
            hazard = catalogue.find(word)
            if hazard is None:
                err(
                    "rules",
                    f"rules[{at('rules', r)}].hazards[{h}]",
                    f"unknown hazard {word!r} (add it to hazards.yaml)",
                )
            else:
                ladders.append((hazard.name, hazard.colours))
        for c, colour in enumerate(rule.colours):
            for hazard_name, ladder in ladders:
                if colour not in ladder:
                    err(
                        "rules",
                        f"rules[{at('rules', r)}].colours[{c}]",
                        f"{hazard_name} has no {colour} signal (its ladder: {', '.join(ladder)})",
                    )
        for t, target in enumerate(rule.targets):
            for g, group_name in enumerate(target.groups):
                if group_name not in known_groups:
                    err(
                        "rules",
                        f"rules[{at('rules', r)}].targets[{t}].groups[{g}]",
                        f"unknown group {group_name!r}",
                    )
            for c, channel in enumerate(target.channels):
                if channel not in known_channels:
                    known = ", ".join(sorted(known_channels)) or "none configured"
                    err(
                        "rules",
                        f"rules[{at('rules', r)}].targets[{t}].channels[{c}]",
                        f"unknown channel {channel!r} (known: {known})",
                    )
            for key in ("failover", "failover_channels"):
                for c, channel in enumerate(getattr(target, key)):
                    if channel not in known_channels:
                        known = ", ".join(sorted(known_channels)) or "none configured"
                        err(
                            "rules",
                            f"rules[{at('rules', r)}].targets[{t}].{key}[{c}]",
                            f"unknown channel {channel!r} (known: {known})",
                        )
                    elif key == "failover" and channel in target.channels:
                        err(
                            "rules",
                            f"rules[{at('rules', r)}].targets[{t}].failover[{c}]",
                            f"{channel!r} is already one of the target's channels; failover names alternates",
                        )
            for g, group_name in enumerate(target.failover_groups):
                if group_name not in known_groups:
                    err(
                        "rules",
                        f"rules[{at('rules', r)}].targets[{t}].failover_groups[{g}]",
                        f"unknown group {group_name!r}",
                    )
        if rule.escalation is not None:
            for c, channel in enumerate(rule.escalation.resend):
                if channel not in known_channels:
                    err(
                        "rules",
                        f"rules[{at('rules', r)}].escalation.resend[{c}]",
                        f"unknown channel {channel!r}",
                    )
    notify = config.api.approval_notify_channel
    if notify is not None and notify not in known_channels:
        err("api", "api.approval_notify_channel", f"unknown channel {notify!r}")
    if any(rule.escalation for rule in config.rules):
        for c, channel in enumerate(config.feedback.notice_channels):
            if channel not in known_channels:
                err("feedback", f"feedback.notice_channels[{c}]", f"unknown channel {channel!r}")
    # the built-in superiors name the built-in roles; a config with its own roles writes its own superiors
    explicit = "superiors" in config.feedback.model_fields_set
    for role, bosses in config.feedback.superiors.items() if explicit else ():
        for role_name in (role, *bosses):
            if role_name not in known_roles:
                err("feedback", f"feedback.superiors.{role}", f"unknown role {role_name!r}")
    names = [rule.name for rule in config.rules]
    for r, name in enumerate(names):
        if names.index(name) != r:
            err("rules", f"rules[{at('rules', r)}].name", f"duplicate rule name {name!r}")

    people: list[tuple[str, int, Subscriber | Terminal]] = [
        *(("subscribers", i, s) for i, s in enumerate(config.subscribers)),
        *(("terminals", i, t) for i, t in enumerate(config.terminals)),
    ]
    for section, i, person in people:
        if person.role not in known_roles:
            known = ", ".join(sorted(known_roles))
            person_err(section, i, "role", f"unknown role {person.role!r} (known: {known})")
        for g, member_of in enumerate(person.groups):
            if member_of not in known_groups:
                person_err(section, i, f"groups[{g}]", f"unknown group {member_of!r}")
    seen: set[str] = set()
    for i, s in enumerate(config.subscribers):
        if s.phone and s.phone in seen:
            person_err("subscribers", i, "phone", "duplicate phone number (one subscriber per number)")
        if s.phone:
            seen.add(s.phone)
    ids = [t.id for t in config.terminals]
    for i, tid in enumerate(ids):
        if ids.index(tid) != i:
            err("terminals", f"terminals[{at('terminals', i)}].id", f"duplicate terminal id {tid!r}")
    for code in config.areas:
        if not _ADMIN_CODE.match(str(code)):
            err("areas", f"areas.{code}", "admin code must be 12 digits")
    _check_hydrology(config, err)
    return errors


def _check_hydrology(config: Config, err: Callable[[str, str, str], None]) -> None:
    """Zone duty persons are subscribers; a gauge id belongs to one station; hydrology needs flood rules."""
    hydro = config.hydrology
    names = {s.name for s in config.subscribers}
    for key, zone in hydro.danger_zones.items():
        if zone.duty_person and zone.duty_person not in names:
            err(
                "hydrology",
                f"hydrology.danger_zones.{key}.duty_person",
                f"no subscriber named {zone.duty_person!r}",
            )
    owner: dict[str, str] = {}
    for key, station in hydro.stations.items():
        for gauge_id in (key, *station.source_ids):
            if gauge_id in owner and owner[gauge_id] != key:
                err(
                    "hydrology",
                    f"hydrology.stations.{key}.source_ids",
                    f"gauge id {gauge_id!r} already belongs to station {owner[gauge_id]!r}",
                )
            owner[gauge_id] = key
