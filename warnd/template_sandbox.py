"""Candidate templates rendered in a separate process, with time and memory limits (docs/admin.md).

An operator previewing a template edit, or an admin saving one, sends source that has never run. Jinja2's
sandbox (stricter in :class:`warnd.render._Sandbox`) keeps it away from Python's internals, but not from
spending time or memory: nested ``range(100000)`` loops, ``'x'.ljust(10**10)``. So candidates never run in the
daemon: one worker process (``python -m warnd.template_sandbox``, started on first use, kept for the next)
renders them, with its address space capped (``RLIMIT_AS``) and an alarm per request; if it still does not
answer in time it is killed and the next request starts a new one.

Each request renders the candidate on sample alerts — a red rainstorm warning for a village, as it is issued,
updated, upgraded and cancelled (the previews people look at), plus every other action, a drill and a message
asking for 叫应 (checked, not shown) — and scans its source for names the sandbox would refuse, so a probe in a
branch the samples never take is refused too.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from warnd.render import ACTIONS, Renderer, RenderError, sample_context

RENDER_SECONDS = 3.0  # all samples of one candidate, in the worker (an alarm)
ANSWER_SECONDS = RENDER_SECONDS + 2.0  # the parent's limit before it kills the worker
START_SECONDS = 60.0  # for the worker to import warnd.render and say it is ready
MEMORY_BYTES = 512 * 1024 * 1024  # the worker's address space
MAX_OUTPUT = 20_000  # characters one sample may render to (before the channel's own cut)
SHOWN_ACTIONS = ("issue", "update", "upgrade", "cancel")
NOTICE_KINDS = ("superior", "doorknock")
SAMPLE_VILLAGE = {"code": "500228101201", "name": "万年村"}
READY = "ready"
_WORKER_ENV = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")
_FORMAT_FIELD = re.compile(r"\{[^{}]*(\._|\[_)")  # str.format reaching for an attribute: {0.__class__}


class RenderTimeout(Exception):
    """The worker's alarm: the candidate's samples took longer than RENDER_SECONDS."""


class SandboxBusy(Exception):
    """Another candidate is being rendered and did not finish in time to take this one."""


class SandboxFailed(Exception):
    """The worker died or had to be killed while rendering a candidate (its fault: time or memory)."""


class SandboxUnavailable(Exception):
    """The worker could not be started."""


# --- in the worker ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    label: str  # issue, update, … (or superior / doorknock for notice.j2); "drill" / "ack" variants
    context: dict[str, Any]
    shown: bool  # in the preview; the others are only checked


def _red_warning(action: str, village: Mapping[str, str], drill: str | None) -> dict[str, Any]:
    """:func:`warnd.render.sample_context` turned into a red rainstorm warning for one village."""
    context = sample_context(action=action, drill=drill)
    alert = context["alert"]
    alert.update(
        colour="red",
        level=1,
        headline="梁平区气象台发布暴雨红色预警[Ⅰ级/特别严重]",
        description=f"预计未来3小时内{village['name']}降雨量将达100毫米以上，山洪、滑坡风险极高。",
        area_desc=village["name"],
    )
    if action == "upgrade":
        context["previous"] = {"colour": "orange", "level": 2}
    elif action in ("update", "no_longer_applies"):
        context["previous"] = {"colour": "red", "level": 1}
    if action == "no_longer_applies":
        context["place"] = dict(village)
    return context


def samples(kind: str, village: Mapping[str, str]) -> Iterator[Sample]:
    """The sample contexts of one template kind: ``warning`` (channel templates) or ``notice`` (notice.j2, the
    escalation ladder's notices to superiors and grid workers)."""
    if kind == "notice":
        for notice_kind in NOTICE_KINDS:
            for drill in (None, "exercise"):
                context = _red_warning("issue", village, drill)
                context["notice"] = _notice(notice_kind, village)
                yield Sample(notice_kind + ("-drill" if drill else ""), context, shown=drill is None)
        return
    for action in SHOWN_ACTIONS:
        yield Sample(action, _red_warning(action, village, None), shown=True)
    for action in ACTIONS:
        if action not in SHOWN_ACTIONS:
            yield Sample(action, _red_warning(action, village, None), shown=False)
        yield Sample(f"{action}-drill", _red_warning(action, village, "exercise"), shown=False)
    asking = _red_warning("issue", village, None)
    asking["ack"] = {"reply": "1", "url": "https://warn.example.gov.cn/a/sample"}
    yield Sample("issue-ack", asking, shown=False)


def _notice(kind: str, village: Mapping[str, str]) -> dict[str, Any]:
    if kind == "superior":
        return {
            "kind": "superior",
            "reason": "unacknowledged",
            "person": {
                "name": "张三",
                "phone": "13800000000",
                "role": "duty_person",
                "role_label": "村防汛责任人",
                "place": village["name"],
                "area_code": village["code"],
            },
        }
    return {
        "kind": "doorknock",
        "reason": "undelivered",
        "village": dict(village),
        "households": 3,
        "vulnerable": {"elderly_alone": 1},
        "url": "https://warn.example.gov.cn/k/sample",
    }


def unsafe_references(path: Path, source: str) -> list[dict[str, Any]]:
    """Places the source names something the sandbox refuses — ``x.__class__``, ``x['_y']``,
    ``x|attr('_z')``, ``'{0.__class__}'.format(…)`` — whether or not the samples reach them. ``path``: the
    template's file, for the messages."""
    problems = []
    seen: set[tuple[int, str]] = set()
    for node in ImmutableSandboxedEnvironment().parse(source).find_all(nodes.Expr):
        name = _refused_name(node)
        if name is None or (node.lineno, name) in seen:
            continue
        seen.add((node.lineno, name))
        problems.append(
            {
                "line": node.lineno,
                "kind": "sandbox",
                "message": f"{path}:{node.lineno}: 沙箱不允许访问内部属性 {name!r} "
                "(the sandbox refuses attributes starting with _)",
            }
        )
    return problems


def _refused_name(node: nodes.Node) -> str | None:
    name: Any = None
    if isinstance(node, nodes.Getattr):
        name = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        name = node.arg.value
    elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        first = node.args[0]
        name = first.value if isinstance(first, nodes.Const) else None
    elif isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value if _FORMAT_FIELD.search(node.value) else None
    return name if isinstance(name, str) and name.startswith("_") else None


def check_candidate(request: Mapping[str, Any]) -> dict[str, Any]:
    """Compile and render one candidate on the samples of its kind. ``request``: templates_dir,
    default_language, timezone, language, file (e.g. sms.j2), source, kind (warning | notice), style,
    signature, max_chars, village {code, name}. Returns ``{"errors": [{line, kind, message}], "previews": [...]}``
    (kind: syntax | sandbox | runtime | limit); previews only when there are no errors."""
    language, file_name, source = request["language"], request["file"], request["source"]
    renderer = Renderer(
        Path(request["templates_dir"]),
        default_language=request["default_language"],
        timezone=request["timezone"],
        overrides={(language, file_name): source},
    )
    try:
        renderer.template(file_name, language)
    except RenderError as exc:
        return {"errors": [_error(exc, "syntax")], "previews": []}
    errors = unsafe_references(renderer.templates_dir / language / file_name, source)  # it compiled
    previews = []
    seen: set[str] = set()
    village = request.get("village") or SAMPLE_VILLAGE
    recipient = {"name": "张三", "role": "public", "area_code": village["code"], "language": language}
    for sample in samples(request["kind"], village):
        try:
            rendered = renderer.render(
                file_name,
                language,
                sample.context,
                style=request["style"],
                signature=request.get("signature"),
                max_chars=request.get("max_chars"),
                recipient=recipient,
            )
        except RenderError as exc:
            if isinstance(exc.__cause__, RenderTimeout):  # the alarm: no time left for other samples
                raise exc.__cause__ from None
            if str(exc) not in seen:  # the same fault in every sample is reported once
                seen.add(str(exc))
                error = _error(exc, "runtime")
                error["message"] += f" (样例 sample: {sample.label})"
                errors.append(error)
            continue
        longest = max(len(rendered.body), len(rendered.title or ""))
        if longest > MAX_OUTPUT:
            errors.append(
                {
                    "line": None,
                    "kind": "limit",
                    "message": f"样例 {sample.label} 输出 {longest} 字，超过 {MAX_OUTPUT} "
                    f"(the sample rendered to more than {MAX_OUTPUT} characters)",
                }
            )
        elif sample.shown:
            previews.append(
                {
                    "sample": sample.label,
                    "body": rendered.body,
                    "title": rendered.title,
                    "segments": rendered.segments,
                    "chars": len(rendered.body),
                    "truncated": rendered.truncated,
                }
            )
    return {"errors": errors, "previews": [] if errors else previews}


def _error(exc: RenderError, default: str) -> dict[str, Any]:
    cause = exc.__cause__
    kind = default
    if isinstance(cause, SecurityError):
        kind = "sandbox"
    elif isinstance(cause, RenderTimeout | MemoryError | RecursionError | OverflowError):
        kind = "limit"
    return {"line": exc.line, "kind": kind, "message": str(exc)}


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise RenderTimeout(f"模板运行超过 {RENDER_SECONDS:g} 秒 (ran longer than {RENDER_SECONDS:g} s)")


def _answer(request: Mapping[str, Any]) -> dict[str, Any]:
    signal.setitimer(signal.ITIMER_REAL, RENDER_SECONDS)
    try:
        return check_candidate(request)
    except RenderTimeout as exc:
        return {"errors": [{"line": None, "kind": "limit", "message": str(exc)}], "previews": []}
    except MemoryError:
        message = "模板占用内存过多 (the template needs too much memory)"
        return {"errors": [{"line": None, "kind": "limit", "message": message}], "previews": []}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main() -> None:
    """The worker: one JSON request per line on stdin, one JSON answer per line on stdout; ends at EOF (which
    is also what it sees when the daemon goes away)."""
    pages = int(Path("/proc/self/statm").read_text().split()[0]) if Path("/proc/self/statm").exists() else 0
    limit = max(MEMORY_BYTES, pages * os.sysconf("SC_PAGE_SIZE") + 256 * 1024 * 1024)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C at the daemon's terminal: the daemon decides; EOF ends us
    out = sys.stdout
    out.write(READY + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            answer = _answer(json.loads(line))
        except Exception as exc:  # a malformed request: answered, the worker goes on
            answer = {
                "errors": [{"line": None, "kind": "runtime", "message": f"{type(exc).__name__}: {exc}"}]
            }
        out.write(json.dumps(answer, ensure_ascii=False) + "\n")
        out.flush()


# --- in the daemon ------------------------------------------------------------------------------------------------


class TemplateSandbox:
    """The daemon's handle on the worker: :meth:`run` is blocking (call it in a thread), one request at a time,
    loop-independent (a plain subprocess.Popen), so one worker serves the process whatever event loop asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None

    def run(self, request: Mapping[str, Any]) -> dict[str, Any]:
        if not self._lock.acquire(timeout=ANSWER_SECONDS):
            raise SandboxBusy(
                "另一个模板正在预览，请稍后再试 (another template is being rendered; try again)"
            )
        try:
            proc = self._worker()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(dict(request), ensure_ascii=False) + "\n")
                proc.stdin.flush()
            except OSError:
                self._stop()
                raise SandboxFailed("模板沙箱进程已退出 (the sandbox process died)") from None
            line = self._read_line(proc.stdout, ANSWER_SECONDS)
            if line is None:
                self._stop()
                raise SandboxFailed(
                    f"模板运行超时或占用内存过多，已终止 (the template ran longer than {ANSWER_SECONDS:g} s or "
                    "ran out of memory; stopped)"
                )
            answer: dict[str, Any] = json.loads(line)
            return answer
        finally:
            self._lock.release()

    def _worker(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "warnd.template_sandbox"],
                # none of the daemon's secrets (${ENV} values of gateways, tokens) in the worker's environment
                env={k: v for k, v in os.environ.items() if k in _WORKER_ENV},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        except OSError as exc:
            raise SandboxUnavailable(f"模板沙箱无法启动 (cannot start the template sandbox: {exc})") from exc
        assert proc.stdout is not None
        self._proc = proc
        if self._read_line(proc.stdout, START_SECONDS) != READY:
            self._stop()
            raise SandboxUnavailable("模板沙箱无法启动 (the template sandbox did not start)")
        return proc

    @staticmethod
    def _read_line(stream: IO[str], seconds: float) -> str | None:
        """The next line, or None if none came within ``seconds`` or the worker ended. The worker writes each
        answer with one write and a flush, so once the first bytes are there the rest follows at once."""
        ready, _, _ = select.select([stream], [], [], seconds)
        if not ready:
            return None
        line = stream.readline()
        return line.rstrip("\n") if line else None

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        with self._lock:
            self._stop()


SANDBOX = TemplateSandbox()
atexit.register(SANDBOX.close)


if __name__ == "__main__":
    main()
