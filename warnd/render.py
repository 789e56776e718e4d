"""The rendering stage: an alert revision's context → the text one channel sends.

Templates live in ``templates/<language>/<name>.j2`` beside ``hazards.yaml`` (per-hazard wording) and
``labels.yaml`` (colour, level and action words). Each template is compiled once and cached; a render of a
compiled template costs microseconds, compiling it costs 70× that (``design/principles.md`` §Rendering).
Templates run in Jinja2's ``ImmutableSandboxedEnvironment`` because operators edit them, made stricter
(:class:`_Sandbox`): touching an internal attribute is an error instead of printing nothing, and ``*`` / ``**``
cannot build huge values. A candidate source being edited (``overrides``) is rendered in place of its file; the
API renders candidates in a separate process with time and memory limits (:mod:`warnd.template_sandbox`).

After the template runs, the text is post-processed by *style*:

- ``sms``: content sanitised (no 【】 inside, whitespace collapsed), cut to ``max_chars`` at a sentence end,
  then signed ``【signature】content``; ``segments`` by the 70/67 rule.
- ``spoken``: rewritten for text-to-speech (:func:`warnd.spoken.to_spoken`: no Arabic digits), capped.
- ``push``: the template's ``title`` and ``body`` blocks rendered separately, whitespace collapsed.
- ``text``: stripped.

Drills and tests carry their marker (【演练】/【测试】) at the very start of every channel's text; if a
template forgets it the renderer puts it there.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from jinja2 import (
    BaseLoader,
    ChainableUndefined,
    Environment,
    FileSystemLoader,
    Template,
    TemplateSyntaxError,
    meta,
)
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from warnd import sms
from warnd.spoken import to_spoken

COLOUR_ORDER = ("blue", "yellow", "orange", "red")  # least to most severe
# expire: the 解除 note sent when an alert runs out (rule notify_on_expiry); no_longer_applies: the short note
# to someone an Update's area no longer covers (the context then has ``place``: {code, name} of their area)
ACTIONS = ("issue", "update", "upgrade", "downgrade", "cancel", "expire", "no_longer_applies")
DEFAULT_SPOKEN_MAX_CHARS = 500  # emergency-broadcast text limit (GY/T 385)
TEMPLATE_SUFFIX = ".j2"
HELPERS = ("colour_name", "level_name", "signal_word", "local_time", "spoken", "sentence")  # filters+globals

_COLOUR_WORDS = {
    "red": ("red", "红", "红色"),
    "orange": ("orange", "橙", "橙色"),
    "yellow": ("yellow", "黄", "黄色"),
    "blue": ("blue", "蓝", "蓝色"),
}
_LEVEL_WORDS = {
    1: ("1", "i", "Ⅰ", "一", "i级", "Ⅰ级", "一级"),
    2: ("2", "ii", "Ⅱ", "二", "ii级", "Ⅱ级", "二级"),
    3: ("3", "iii", "Ⅲ", "三", "iii级", "Ⅲ级", "三级"),
    4: ("4", "iv", "Ⅳ", "四", "iv级", "Ⅳ级", "四级"),
}
_DRILL_STATUSES = {"exercise": "exercise", "test": "test"}
# script/region subtags that pick a written form of Chinese
_ZH_ALIASES = {
    "zh": "zh-CN",
    "zh-hans": "zh-CN",
    "zh-hans-cn": "zh-CN",
    "zh-sg": "zh-CN",
    "zh-my": "zh-CN",
    "zh-hant": "zh-TW",
    "zh-hant-tw": "zh-TW",
    "zh-hk": "zh-TW",
    "zh-mo": "zh-TW",
}
_DEFAULT_TIME_FORMAT = "{month}月{day}日{hour}时{minute:02d}分"
# used where a language's labels.yaml says nothing (a drill must never go out unmarked)
_BUILTIN_LABELS: dict[str, Any] = {
    "colours": {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"},
    "levels": {1: "Ⅰ级", 2: "Ⅱ级", 3: "Ⅲ级", 4: "Ⅳ级"},
    "signal_words": {"red": "特别严重", "orange": "严重", "yellow": "较重", "blue": "一般"},
    "drill": {"exercise": "【演练】", "test": "【测试】"},
}
_WHITESPACE = re.compile(r"\s+")
# a space next to full-width punctuation is only a line break the template left behind
_SPACE_BY_CJK_PUNCT = re.compile(r"\s*([，。！？；：、（）“”《》【】〔〕])\s*")
_SENTENCE_END = "。！？；!?.;…"
_NOT_DISPLAY_NAME = re.compile(r"^[\w.\-:/@+]+$", re.ASCII)
# the longest string or list a template may build with ``*`` (the sandbox already caps range() at 100,000), and
# the largest integer ``**`` may make, in bits
MAX_REPEAT = 100_000
MAX_POWER_BITS = 4096


class RenderError(Exception):
    """A template could not be found or failed while rendering; ``line``: the template line, when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, stricter. Jinja2's sandbox answers ``{{ ''.__class__ }}`` with an undefined value
    that prints as nothing, so a probing template looks harmless; here it raises SecurityError on its line.
    ``*`` and ``**`` are checked before they run (``'x' * 10**9`` would take the process's memory)."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for items, times in ((left, right), (right, left)):
                if (
                    isinstance(items, str | list | tuple)
                    and isinstance(times, int)
                    and len(items) * times > MAX_REPEAT
                ):
                    raise SecurityError(f"* would build more than {MAX_REPEAT} items")
        elif (
            isinstance(left, int)
            and isinstance(right, int)
            and right > 0
            and abs(left) > 1
            and left.bit_length() * right > MAX_POWER_BITS
        ):
            raise SecurityError(f"** would make a number of more than {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


class _Loader(FileSystemLoader):
    """One language directory, with candidate sources (a template being edited) in place of their files. A
    candidate keeps its file's path as its name, so errors name the line as they would once it is saved."""

    def __init__(self, directory: Path, overrides: Mapping[str, str]):
        super().__init__(str(directory))
        self.directory = directory
        self.overrides = dict(overrides)

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        if template in self.overrides:
            return self.overrides[template], str(self.directory / template), lambda: True
        return super().get_source(environment, template)


@dataclass(frozen=True)
class Rendered:
    body: str  # what the recipient sees/hears. sms: 【signature】content; spoken: the script; push: body
    title: str | None = None  # push notification title (push style); None otherwise
    # sms: {signature, content}; push: {alert_id, colour, level, msg_type, url?}; spoken: {text}
    data: dict[str, Any] = field(default_factory=dict)
    segments: int = 1  # sms: segments(body); others 1
    truncated: bool = False


def style_for(template: str) -> str:
    """The post-processing style a template name implies: sms, spoken (loudspeaker), push, else text."""
    name = template.removesuffix(TEMPLATE_SUFFIX)
    return {"sms": "sms", "loudspeaker": "spoken", "push": "push"}.get(name, "text")


# --- helpers usable without a renderer ------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` otherwise; None when absent."""
    if obj is None or isinstance(obj, Undefined):
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def normalise_colour(value: Any) -> str | None:
    """'红色' / '红' / 'Red' / 'red' → 'red'; anything else → None."""
    if not value or isinstance(value, Undefined):
        return None
    text = str(value).strip().lower()
    for colour, words in _COLOUR_WORDS.items():
        if text in words:
            return colour
    return None


def normalise_level(value: Any) -> int | None:
    """1 / 'Ⅰ' / 'I级' / '一级' → 1; anything else → None."""
    if value is None or isinstance(value, Undefined) or isinstance(value, bool):
        return None
    text = str(value).strip().lower().replace(" ", "")
    for level, words in _LEVEL_WORDS.items():
        if text in words:
            return level
    return None


def nearest_colour(available: list[str], colour: str | None) -> str | None:
    """The colour of ``available`` closest to ``colour`` (ties go to the more severe one)."""
    if colour is None or not available:
        return None
    if colour in available:
        return colour
    rank = COLOUR_ORDER.index(colour)
    ranked = [c for c in available if c in COLOUR_ORDER]
    if not ranked:
        return None
    return min(ranked, key=lambda c: (abs(COLOUR_ORDER.index(c) - rank), -COLOUR_ORDER.index(c)))


def display_sender(sender: Any, issuer: Any) -> str:
    """The sender if it reads as an organisation's name, else the issuer (addresses, codes are not names)."""
    text = str(sender).strip() if sender and not isinstance(sender, Undefined) else ""
    if text and not _NOT_DISPLAY_NAME.match(text):
        return text
    fallback = str(issuer).strip() if issuer and not isinstance(issuer, Undefined) else ""
    return fallback or text


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass
class _Language:
    """One language directory: its Jinja2 environment and its wording."""

    name: str
    env: _Sandbox
    labels: dict[str, Any]
    hazards: dict[str, Any]


class Renderer:
    """Renders channel templates for alert revisions; one instance per process, safe to share.

    ``overrides``: (language, file name) → source rendered instead of that file (a candidate being previewed)."""

    def __init__(
        self,
        templates_dir: Path,
        *,
        default_language: str = "zh-CN",
        timezone: str = "Asia/Shanghai",
        overrides: Mapping[tuple[str, str], str] | None = None,
    ):
        self.templates_dir = Path(templates_dir)
        self.overrides = dict(overrides or {})
        self.default_language = default_language
        self.tz = ZoneInfo(timezone)
        self._lock = threading.RLock()
        self._languages: list[str] | None = None
        self._langs: dict[str, _Language] = {}
        self._templates: dict[tuple[str, str], Template] = {}
        self._uses_recipient: dict[tuple[str, str], bool] = {}
        self._located: dict[tuple[str, str | None], str] = {}

    # --- languages ------------------------------------------------------------------------------------

    def languages(self) -> list[str]:
        """Subdirectories of the templates directory that hold templates."""
        if self._languages is None:
            found = []
            if self.templates_dir.is_dir():
                for sub in self.templates_dir.iterdir():
                    if sub.is_dir() and any(sub.glob(f"*{TEMPLATE_SUFFIX}")):
                        found.append(sub.name)
            self._languages = sorted(found)
        return self._languages

    def resolve_language(self, language: str | None) -> str:
        """The available language that best serves ``language``: exact (any case), Chinese script/region
        aliases (zh, zh-Hans → zh-CN), the primary subtag (en-US → en), a sibling (zh → zh-CN); else the
        default language."""
        available = self.languages()
        if not language or not str(language).strip():
            return self.default_language
        by_lower = {lang.lower(): lang for lang in available}
        wanted = str(language).strip().replace("_", "-").lower()
        candidates = [wanted, _ZH_ALIASES.get(wanted, "").lower()]
        primary = wanted.split("-")[0]
        candidates.append(primary)
        for candidate in candidates:
            if candidate and candidate in by_lower:
                return by_lower[candidate]
        siblings = [lang for lang in available if lang.lower().split("-")[0] == primary]
        if siblings:
            if self.default_language in siblings:
                return self.default_language
            return siblings[0]
        return self.default_language

    def reload(self) -> None:
        """Forget every compiled template and wording file (after operators edit them)."""
        with self._lock:
            self._languages = None
            self._langs.clear()
            self._templates.clear()
            self._uses_recipient.clear()
            self._located.clear()

    # --- loading --------------------------------------------------------------------------------------

    def _load_yaml(self, path: Path) -> dict[str, Any]:
        if not path.is_file():
            return {}
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise RenderError(f"{_display_path(path)}: expected a mapping at the top level")
        return data

    def _language(self, language: str) -> _Language:
        lang = self._langs.get(language)
        if lang is not None:
            return lang
        with self._lock:
            lang = self._langs.get(language)
            if lang is not None:
                return lang
            directory = self.templates_dir / language
            labels = self._load_yaml(directory / "labels.yaml")
            hazards = self._load_yaml(directory / "hazards.yaml")
            if language != self.default_language:
                base = self._language(self.default_language)
                labels = _deep_merge(base.labels, labels)
                hazards = hazards or base.hazards
            else:
                labels = _deep_merge(_BUILTIN_LABELS, labels)
            env = _Sandbox(
                loader=self._loader(language),
                autoescape=False,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=False,
                undefined=ChainableUndefined,
                finalize=_finalize,
                auto_reload=False,
            )
            lang = _Language(language, env, labels, hazards)
            self._install_helpers(lang)
            self._langs[language] = lang
            return lang

    def _loader(self, language: str) -> BaseLoader:
        directory = self.templates_dir / language
        mine = {name: source for (lang, name), source in self.overrides.items() if lang == language}
        return _Loader(directory, mine) if mine else FileSystemLoader(str(directory))

    def _install_helpers(self, lang: _Language) -> None:
        labels = lang.labels
        tz = self.tz
        full_stop = str(labels.get("full_stop", "。"))

        def colour_name(value: Any) -> str:
            colour = normalise_colour(value)
            if colour is None:
                return "" if not value or isinstance(value, Undefined) else str(value)
            return str(labels.get("colours", {}).get(colour, colour))

        def level_name(value: Any) -> str:
            level = normalise_level(value)
            if level is None:
                return "" if value is None or isinstance(value, Undefined) else str(value)
            return str(labels.get("levels", {}).get(level, level))

        def signal_word(value: Any) -> str:
            colour = normalise_colour(value)
            return str(labels.get("signal_words", {}).get(colour, "")) if colour else ""

        def local_time(value: Any, fmt: str | None = None) -> str:
            if value is None or isinstance(value, Undefined):
                return ""
            if isinstance(value, str):
                try:
                    value = datetime.fromisoformat(value)
                except ValueError:
                    return value
            if not isinstance(value, datetime):
                return str(value)
            moment = value.astimezone(tz) if value.tzinfo else value.replace(tzinfo=tz)
            pattern = fmt or str(labels.get("time_format", _DEFAULT_TIME_FORMAT))
            return pattern.format(
                year=moment.year,
                month=moment.month,
                day=moment.day,
                hour=moment.hour,
                minute=moment.minute,
                month_abbr=moment.strftime("%b"),
                month_name=moment.strftime("%B"),
                tz=moment.tzname() or "",
            )

        def spoken(value: Any) -> str:
            if value is None or isinstance(value, Undefined):
                return ""
            return to_spoken(str(value), lang.name)

        def sentence(value: Any) -> str:
            """The text as a sentence: stripped, ending with a full stop unless it already ends one."""
            if value is None or isinstance(value, Undefined):
                return ""
            text = str(value).strip()
            if text and text[-1] not in _SENTENCE_END:
                text += full_stop
            return text

        helpers = {
            "colour_name": colour_name,
            "level_name": level_name,
            "signal_word": signal_word,
            "local_time": local_time,
            "spoken": spoken,
            "sentence": sentence,
        }
        assert set(helpers) == set(HELPERS)
        lang.env.filters.update(helpers)
        lang.env.globals.update(helpers)

    @staticmethod
    def _file_name(template: str) -> str:
        return template if template.endswith(TEMPLATE_SUFFIX) else template + TEMPLATE_SUFFIX

    def _locate(self, template: str, language: str | None) -> str:
        """The language whose directory provides ``template`` for ``language`` (falls back to the default)."""
        located = self._located.get((template, language))
        if located is not None:
            return located
        name = self._file_name(template)
        resolved = self.resolve_language(language)
        for candidate in dict.fromkeys((resolved, self.default_language)):
            if (
                (candidate, name) in self._templates
                or (candidate, name) in self.overrides
                or (self.templates_dir / candidate / name).is_file()
            ):
                self._located[(template, language)] = candidate
                return candidate
        raise RenderError(
            f"no template {name!r} for language {resolved!r} in {_display_path(self.templates_dir)}"
        )

    def template(self, template: str, language: str | None) -> Template:
        """The compiled template (compiled on first use, then cached)."""
        lang_name = self._locate(template, language)
        key = (lang_name, self._file_name(template))
        cached = self._templates.get(key)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._templates.get(key)
            if cached is None:
                try:
                    cached = self._language(lang_name).env.get_template(key[1])
                except TemplateSyntaxError as exc:
                    raise RenderError(self._syntax_message(lang_name, exc), exc.lineno) from exc
                self._templates[key] = cached
            return cached

    # --- recipient-dependence -------------------------------------------------------------------------

    def uses_recipient(self, template: str, language: str) -> bool:
        """True iff the template, with what it includes, imports or extends, references ``recipient``.

        A template that includes a name computed at render time counts as using it (it cannot be known).
        """
        lang_name = self._locate(template, language)
        key = (lang_name, self._file_name(template))
        cached = self._uses_recipient.get(key)
        if cached is None:
            env = self._language(lang_name).env
            cached = self._references(env, key[1], "recipient", set())
            self._uses_recipient[key] = cached
        return cached

    def _references(self, env: _Sandbox, name: str, variable: str, seen: set[str]) -> bool:
        if name in seen:
            return False
        seen.add(name)
        assert env.loader is not None
        source, _, _ = env.loader.get_source(env, name)
        ast = env.parse(source, name=name)
        if variable in meta.find_undeclared_variables(ast):
            return True
        for ref in meta.find_referenced_templates(ast):
            if ref is None or self._references(env, ref, variable, seen):
                return True
        return False

    # --- rendering ------------------------------------------------------------------------------------

    def context_for(
        self, language: str, context: Mapping[str, Any], recipient: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The variables a template sees: the pipeline's context plus what the renderer adds."""
        lang = self._language(language)
        ctx: dict[str, Any] = {
            "alert": None,
            "action": "issue",
            "previous": None,
            "place": None,
            "drill": None,
            "issuer": None,
            "ack": None,  # 叫应 asked of this recipient: {"reply": "1", "url": one-tap link or None}
        }
        ctx.update(context)
        alert = ctx.get("alert")
        hazard = _get(alert, "hazard")
        colour = normalise_colour(_get(alert, "colour"))
        hazard_text = self._hazard_text(lang, _get(hazard, "code"), colour)
        ctx["hazard_text"] = hazard_text
        ctx["hazard_name"] = (
            hazard_text["name"]
            if hazard_text["known"]
            else (_get(hazard, "name") or _get(alert, "event") or hazard_text["name"])
        )
        ctx["sender_name"] = display_sender(_get(alert, "sender"), ctx.get("issuer"))
        ctx["labels"] = lang.labels
        drill = ctx.get("drill") or _DRILL_STATUSES.get(str(_get(alert, "status") or "").lower())
        ctx["drill"] = drill
        ctx["drill_marker"] = str(lang.labels.get("drill", {}).get(drill, "")) if drill else ""
        if recipient is not None:
            ctx["recipient"] = recipient
        return ctx

    def _hazard_text(self, lang: _Language, code: Any, colour: str | None) -> dict[str, Any]:
        entry = lang.hazards.get(str(code)) if code else None
        known = isinstance(entry, Mapping)
        default = lang.hazards.get("default") or {}
        if not known:
            entry = default
        assert isinstance(entry, Mapping)
        colours = entry.get("colours") or {}
        picked = nearest_colour(list(colours), colour)
        wording = colours.get(picked) if picked else None
        if not isinstance(wording, Mapping):
            wording = entry.get("general") or default.get("general") or {}
        return {
            "code": str(code) if known else None,
            "known": known,
            "name": entry.get("name") or default.get("name") or "",
            "risks": entry.get("risks") or "",
            "at_risk": entry.get("at_risk") or "",
            "colours": colours,
            "colour": picked,
            "criteria": wording.get("criteria") or "",
            "advice": wording.get("advice") or "",
            "actions": wording.get("actions") or "",
        }

    def render(
        self,
        template: str,
        language: str,
        context: Mapping[str, Any],
        *,
        style: str,
        signature: str | None = None,
        max_chars: int | None = None,
        recipient: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """Render ``template`` in ``language`` (resolved; falls back to the default language) and post-process
        it by ``style`` ("sms" | "spoken" | "push" | "text")."""
        compiled = self.template(template, language)
        lang_name = self._locate(template, language)
        ctx = self.context_for(lang_name, context, recipient)
        marker = str(ctx["drill_marker"])
        try:
            if style == "push" and "title" in compiled.blocks:
                title, text = self._render_blocks(compiled, ctx)
            else:
                title, text = None, compiled.render(ctx)
        except Exception as exc:  # one error type for the pipeline, whatever the template did
            where = _template_frame(exc.__traceback__)
            place = (
                f"{_display_path(Path(where[0]))}:{where[1]}"
                if where
                else f"{_display_path(self.templates_dir / lang_name / self._file_name(template))}"
            )
            raise RenderError(f"{place}: {type(exc).__name__}: {exc}", where[1] if where else None) from exc

        if style == "sms":
            return self._sms(text, marker, signature, max_chars)
        if style == "spoken":
            script = _with_marker(text.strip(), marker)
            script = to_spoken(collapse(script), lang_name)
            script, cut = sms.truncate(script, max_chars or DEFAULT_SPOKEN_MAX_CHARS)
            return Rendered(body=script, data={"text": script}, truncated=cut)
        if style == "push":
            body = _with_marker(collapse(text), marker)
            cut = False
            if max_chars:
                body, cut = sms.truncate(body, max_chars)
            push_title = _with_marker(collapse(title), marker) if title is not None else None
            return Rendered(body=body, title=push_title, data=self._push_data(ctx), truncated=cut)
        body = _with_marker(text.strip(), marker)
        cut = False
        if max_chars:
            body, cut = sms.truncate(body, max_chars)
        return Rendered(body=body, truncated=cut)

    @staticmethod
    def _render_blocks(compiled: Template, ctx: dict[str, Any]) -> tuple[str, str]:
        context = compiled.new_context(ctx)
        for _ in compiled.root_render_func(context):  # runs top-level {% set %}s so blocks can use them
            pass
        title = "".join(compiled.blocks["title"](context))
        body = "".join(compiled.blocks["body"](context)) if "body" in compiled.blocks else ""
        return title.strip(), body.strip()

    @staticmethod
    def _sms(text: str, marker: str, signature: str | None, max_chars: int | None) -> Rendered:
        content = text.strip()
        if signature:
            own = f"【{signature.strip().strip('【】')}】"
            content = content.removeprefix(own).lstrip()
        # 【】 is stripped from the content (carriers reject it there) but the drill marker keeps its brackets:
        # the issue that defines drills asks for 【演练】/【测试】 on every channel.
        content = collapse(content)
        if marker:
            content = content.removeprefix(marker).lstrip()
        content = _with_marker(sms.sanitize_content(content), marker)
        content, cut = sms.truncate(content, max_chars or sms.DEFAULT_MAX_CHARS)
        body = sms.sign(signature, content)
        bare = signature.strip().strip("【】") if signature else None
        return Rendered(
            body=body,
            data={"signature": bare or None, "content": content},
            segments=sms.segments(body),
            truncated=cut,
        )

    @staticmethod
    def _push_data(ctx: Mapping[str, Any]) -> dict[str, Any]:
        alert = ctx.get("alert")
        data: dict[str, Any] = {
            "alert_id": _get(alert, "id"),
            "colour": normalise_colour(_get(alert, "colour")),
            "level": _get(alert, "level"),
            "msg_type": _get(alert, "msg_type"),
        }
        if _get(alert, "web"):
            data["url"] = str(_get(alert, "web"))
        ack = ctx.get("ack")
        if ack and _get(ack, "url"):  # tapping the notification opens the 叫应 page
            data["url"] = data["ack_url"] = str(_get(ack, "url"))
        return data

    # --- check-config ---------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Compile every template in every language, load the wording files, and try each template on a
        sample alert. Returns readable errors (``templates/zh-CN/sms.j2:12: …``); empty when all is well."""
        self.reload()
        errors: list[str] = []
        if not self.templates_dir.is_dir():
            return [f"{_display_path(self.templates_dir)}: templates directory not found"]
        if self.default_language not in self.languages():
            errors.append(
                f"{_display_path(self.templates_dir)}: no templates for the default language "
                f"{self.default_language!r}"
            )
        broken_default = False
        for language in sorted(self.languages(), key=lambda lang: lang != self.default_language):
            directory = self.templates_dir / language
            problems = self._check_wording(directory)
            errors.extend(problems)
            usable = not problems and not broken_default
            if usable:
                try:
                    self._language(language)
                except (yaml.YAMLError, RenderError) as exc:
                    errors.append(self._yaml_message(directory, exc))
                    usable = False
            if language == self.default_language and not usable:
                broken_default = True  # other languages fall back on its labels: only syntax-check them
            syntax_only = ImmutableSandboxedEnvironment(loader=FileSystemLoader(str(directory)))
            syntax_only.filters.update(dict.fromkeys(HELPERS, str))
            for name in sorted(syntax_only.list_templates(extensions=[TEMPLATE_SUFFIX.lstrip(".")])):
                if not usable:
                    try:
                        syntax_only.get_template(name)
                    except TemplateSyntaxError as exc:
                        errors.append(self._syntax_message(language, exc))
                    continue
                try:
                    self.template(name, language)
                except RenderError as exc:
                    errors.append(str(exc))
                    continue
                errors.extend(self._try_render(name, language))
        return errors

    def _check_wording(self, directory: Path) -> list[str]:
        """Parse labels.yaml and hazards.yaml and check the shape templates rely on."""
        problems: list[str] = []
        for file_name in ("labels.yaml", "hazards.yaml"):
            path = directory / file_name
            try:
                data = self._load_yaml(path)
            except (yaml.YAMLError, RenderError) as exc:
                problems.append(self._yaml_message(directory, exc))
                continue
            if file_name != "hazards.yaml":
                continue
            for code, entry in data.items():
                where = f"{_display_path(path)}: {code}"
                if not isinstance(entry, Mapping) or not entry.get("name"):
                    problems.append(f"{where}: expected a mapping with a name")
                    continue
                colours = entry.get("colours") or {}
                if not isinstance(colours, Mapping):
                    problems.append(f"{where}: colours must map colour → wording")
                    continue
                for colour, wording in colours.items():
                    if colour not in COLOUR_ORDER:
                        problems.append(f"{where}: unknown colour {colour!r} (use {', '.join(COLOUR_ORDER)})")
                    elif not isinstance(wording, Mapping):
                        problems.append(f"{where}.{colour}: expected advice/actions")
        return problems

    def _syntax_message(self, language: str, exc: TemplateSyntaxError) -> str:
        name = exc.name or exc.filename or "?"
        path = self.templates_dir / language / name
        return f"{_display_path(path)}:{exc.lineno}: {exc.message}"

    @staticmethod
    def _yaml_message(directory: Path, exc: Exception) -> str:
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = (
                f"{_display_path(Path(mark.name))}:{mark.line + 1}" if mark.name else _display_path(directory)
            )
            return f"{where}: {getattr(exc, 'problem', None) or exc}"
        return f"{_display_path(directory)}: {exc}"

    def _try_render(self, name: str, language: str) -> Iterator[str]:
        style = style_for(name)
        for action in ACTIONS:
            for drill in (None, "exercise"):
                context = sample_context(action=action, drill=drill)
                try:
                    self.render(name, language, context, style=style, signature="签名")
                except RenderError as exc:
                    yield f"{exc} (rendering a sample {action})"
                    return


def collapse(text: str) -> str:
    """Whitespace runs and line breaks → one space; none around full-width punctuation; stripped."""
    return _SPACE_BY_CJK_PUNCT.sub(r"\1", _WHITESPACE.sub(" ", text)).strip()


def _with_marker(text: str, marker: str) -> str:
    if marker and not text.startswith(marker.strip()):
        return marker + text
    return text


def _template_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """The innermost template file and line in a traceback (Jinja2 rewrites frames to template lines)."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(TEMPLATE_SUFFIX):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def sample_context(*, action: str = "issue", drill: str | None = None) -> dict[str, Any]:
    """A representative context (暴雨 orange over 梁平区), used by :meth:`Renderer.check` and tests."""
    sent = datetime(2026, 7, 1, 9, 15, tzinfo=UTC)
    cancel = action in ("cancel", "expire")
    return {
        "alert": {
            "id": 1,
            "identifier": "50022841600000_20260701171500",
            "sender": "梁平区气象台",
            "sender_code": "50022841600000",
            "sent": sent,
            "status": "Exercise" if drill == "exercise" else "Actual",
            "msg_type": "Cancel" if cancel else ("Alert" if action == "issue" else "Update"),
            "event": "暴雨",
            "hazard": {"code": "11B03", "name": "暴雨"},
            "colour": "orange",
            "level": 2,
            "headline": "梁平区气象台发布暴雨橙色预警[Ⅱ级/严重]",
            "description": "预计未来3小时内我区大部地区降雨量将达50毫米以上，局地可达100毫米。",
            "instruction": None,
            "area_desc": "梁平区",
            "web": "http://www.12379.cn",
            "note": "降雨已减弱。" if cancel else None,
            "effective": sent,
            "onset": sent,
            "expires": sent + timedelta(hours=12),
            "channel_text": None,
        },
        "action": action,
        "previous": {
            "upgrade": {"colour": "yellow", "level": 3},
            "downgrade": {"colour": "red", "level": 1},
        }.get(
            action, {"colour": "orange", "level": 2} if action in ("update", "no_longer_applies") else None
        ),
        "place": {"code": "500228101201", "name": "万年村"} if action == "no_longer_applies" else None,
        "drill": drill,
        "issuer": "梁平区应急管理局",
    }
