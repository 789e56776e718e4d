"""Template candidates (warnd/template_sandbox.py, the stricter sandbox in warnd/render.py): the shipped templates
pass on every sample, probes of Python's internals are refused on their line — reached or not —, and ``*`` and
``**`` cannot build huge values. (The worker process itself: tests/integration/test_admin_api.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from warnd.render import ACTIONS, MAX_REPEAT, Renderer, RenderError, sample_context
from warnd.template_sandbox import (
    SAMPLE_VILLAGE,
    SHOWN_ACTIONS,
    check_candidate,
    samples,
    unsafe_references,
)

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
STYLES = {"sms": "sms", "loudspeaker": "spoken", "push": "push", "notice": "sms"}


def job(source: str, *, name: str = "sms", language: str = "zh-CN") -> dict[str, Any]:
    return {
        "templates_dir": str(TEMPLATES),
        "default_language": "zh-CN",
        "timezone": "Asia/Shanghai",
        "language": language,
        "file": f"{name}.j2",
        "source": source,
        "kind": "notice" if name == "notice" else "warning",
        "style": STYLES.get(name, "text"),
        "signature": "梁平区应急管理局" if STYLES.get(name) == "sms" else None,
        "max_chars": 500,
        "village": SAMPLE_VILLAGE,
    }


@pytest.mark.parametrize("language", ["zh-CN", "en"])
@pytest.mark.parametrize("name", ["sms", "loudspeaker", "push", "notice"])
def test_the_shipped_templates_pass_every_sample(language: str, name: str) -> None:
    source = (TEMPLATES / language / f"{name}.j2").read_text(encoding="utf-8")
    answer = check_candidate(job(source, name=name, language=language))
    assert answer["errors"] == []
    shown = [p["sample"] for p in answer["previews"]]
    assert shown == (["superior", "doorknock"] if name == "notice" else list(SHOWN_ACTIONS))
    for preview in answer["previews"]:
        assert preview["body"] and preview["chars"] == len(preview["body"])
        if STYLES[name] == "sms":
            assert preview["body"].startswith("【梁平区应急管理局】") and preview["segments"] >= 1


def test_samples_are_a_red_warning_for_the_village_in_every_action() -> None:
    warning = list(samples("warning", SAMPLE_VILLAGE))
    labels = {s.label for s in warning}
    assert set(ACTIONS) <= labels and {f"{a}-drill" for a in ACTIONS} <= labels and "issue-ack" in labels
    assert [s.label for s in warning if s.shown] == list(SHOWN_ACTIONS)
    for sample in warning:
        alert = sample.context["alert"]
        assert (
            alert["colour"] == "red" and alert["area_desc"] == "万年村" and alert["hazard"]["code"] == "11B03"
        )
    upgrade = next(s for s in warning if s.label == "upgrade")
    assert upgrade.context["previous"] == {"colour": "orange", "level": 2}


@pytest.mark.parametrize(
    ("source", "line", "name"),
    [
        ("{{ ''.__class__ }}", 1, "__class__"),
        ("一\n{% if false %}{{ cycler.__init__.__globals__.os }}{% endif %}", 2, "__init__"),
        ("{{ alert['_secret'] }}", 1, "_secret"),
        ("\n\n{{ alert|attr('__dict__') }}", 3, "__dict__"),
        ("{{ '{0.__class__}'.format(alert) }}", 1, "{0.__class__}"),
    ],
)
def test_probes_are_found_whether_or_not_they_run(source: str, line: int, name: str) -> None:
    problems = unsafe_references(Path("zh-CN/sms.j2"), source)
    assert problems and problems[0]["line"] == line and problems[0]["kind"] == "sandbox"
    assert any(repr(name) in p["message"] for p in problems)
    assert check_candidate(job(source))["previews"] == []


def test_harmless_underscores_and_separators_pass() -> None:
    assert (
        unsafe_references(Path("x.j2"), "{{ '____' }}{{ alert.headline }}{% set my_var = 1 %}{{ my_var }}")
        == []
    )


def test_the_sandbox_raises_where_jinja_would_print_nothing() -> None:
    renderer = Renderer(TEMPLATES, overrides={("zh-CN", "sms.j2"): "好\n{{ alert.__class__.__mro__ }}"})
    with pytest.raises(RenderError) as caught:
        renderer.render("sms", "zh-CN", sample_context(), style="sms")
    assert caught.value.line == 2 and "unsafe" in str(caught.value) and "sms.j2:2" in str(caught.value)


@pytest.mark.parametrize(
    "source",
    ["{{ 'x' * 1000000 }}", "{{ [1] * (10 ** 6) }}", "{{ 2 ** 100000 }}", "{{ 3 * 'abc' * 100000 }}"],
)
def test_repetition_and_powers_are_capped(source: str) -> None:
    renderer = Renderer(TEMPLATES, overrides={("zh-CN", "sms.j2"): source})
    with pytest.raises(RenderError) as caught:
        renderer.render("sms", "zh-CN", sample_context(), style="text")
    assert "SecurityError" in str(caught.value)


def test_small_repetition_and_powers_still_work() -> None:
    source = "{{ '-' * 10 }}{{ 2 ** 10 }}{{ [0] * 3 }}"
    renderer = Renderer(TEMPLATES, overrides={("zh-CN", "sms.j2"): source})
    assert renderer.render("sms", "zh-CN", sample_context(), style="text").body == "-" * 10 + "1024[0, 0, 0]"
    assert len("x" * MAX_REPEAT) == MAX_REPEAT


def test_an_override_does_not_touch_the_file_or_other_renderers() -> None:
    before = (TEMPLATES / "zh-CN" / "sms.j2").read_text(encoding="utf-8")
    candidate = Renderer(TEMPLATES, overrides={("zh-CN", "sms.j2"): "候选"})
    assert candidate.render("sms", "zh-CN", sample_context(), style="text").body == "候选"
    plain = Renderer(TEMPLATES)
    assert plain.render("sms", "zh-CN", sample_context(), style="text").body != "候选"
    assert (TEMPLATES / "zh-CN" / "sms.j2").read_text(encoding="utf-8") == before


def test_errors_name_the_line_and_the_kind() -> None:
    syntax = check_candidate(job("一\n二\n{% for x in %}"))
    assert syntax["errors"][0]["kind"] == "syntax" and syntax["errors"][0]["line"] == 3
    runtime = check_candidate(job("一\n{{ nothing.here() }}"))
    [error] = runtime["errors"]  # the same fault in every sample: once
    assert error["kind"] == "runtime" and error["line"] == 2 and "sample: issue" in error["message"]
    big = check_candidate(
        {**job("{% for i in range(99999) %}很长的一句话{% endfor %}"), "style": "push", "max_chars": None}
    )
    assert big["errors"][0]["kind"] == "limit"
