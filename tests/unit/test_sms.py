"""SMS text rules: 70/67 segments (signature counted), one signature, no 【】 in content, truncation."""

from __future__ import annotations

import pytest

from warnd.sms import length, sanitize_content, segments, sign, truncate

SIGNATURE = "梁平区应急管理局"  # 8 characters → 【…】 is 10


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 0), (1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (160, 3), (201, 3), (202, 4), (500, 8)],
)
def test_segments_70_67_boundaries(n: int, expected: int) -> None:
    assert segments("预" * n) == expected
    assert segments("a" * n) == expected  # every character counts as one, Chinese or not


@pytest.mark.parametrize(("content_chars", "expected"), [(60, 1), (61, 2), (124, 2), (125, 3), (150, 3)])
def test_segments_count_the_signature(content_chars: int, expected: int) -> None:
    body = sign(SIGNATURE, "雨" * content_chars)
    assert length(body) == content_chars + 10
    assert segments(body) == expected


def test_digits_punctuation_and_spaces_count_as_one() -> None:
    assert segments("1，a 。" * 14) == 1  # 70
    assert segments("1，a 。" * 14 + " ") == 2  # 71


def test_non_bmp_characters_count_as_two_units() -> None:
    assert length("𠀀") == 2
    assert segments("𠀀" * 35) == 1
    assert segments("𠀀" * 35 + "a") == 2


def test_sign_puts_the_signature_once_at_the_front() -> None:
    assert sign(SIGNATURE, "内容") == "【梁平区应急管理局】内容"
    assert sign(SIGNATURE, "【梁平区应急管理局】内容") == "【梁平区应急管理局】内容"
    assert sign("【梁平区应急管理局】", "内容") == "【梁平区应急管理局】内容"  # brackets given in config
    signed = sign(SIGNATURE, sign(SIGNATURE, "内容"))
    assert signed.count("梁平区应急管理局") == 1


def test_sign_without_signature_returns_content() -> None:
    assert sign(None, "内容") == "内容"
    assert sign("", "内容") == "内容"
    assert sign("  ", "内容") == "内容"


def test_sign_prefixes_a_different_leading_bracket() -> None:
    assert sign(SIGNATURE, "【演练】内容") == "【梁平区应急管理局】【演练】内容"


def test_sanitize_replaces_square_brackets_and_collapses_whitespace() -> None:
    text = "  【预警解除】梁平区\n\n暴雨  红色\t预警  】【 "
    assert sanitize_content(text) == "〔预警解除〕梁平区 暴雨 红色 预警 〕〔"
    assert "【" not in sanitize_content("【【】】")
    assert "】" not in sanitize_content("【【】】")
    assert sanitize_content("") == ""
    assert sanitize_content("\u3000全角空格\u3000") == "全角空格"


def test_truncate_leaves_short_text_alone() -> None:
    assert truncate("短信", 500) == ("短信", False)
    assert truncate("a" * 10, 10) == ("a" * 10, False)


def test_truncate_cuts_at_a_sentence_boundary() -> None:
    text = "第一句话说明情况。第二句话给出建议；第三句话很长很长很长很长很长很长很长很长。"
    cut, was_cut = truncate(text, 30)
    assert was_cut
    assert cut == "第一句话说明情况。第二句话给出建议；…"
    assert len(cut) <= 30


def test_truncate_hard_cut_without_a_usable_boundary() -> None:
    text = "一" * 100
    cut, was_cut = truncate(text, 20)
    assert was_cut and cut == "一" * 19 + "…"
    # a boundary too early (before half the budget) is ignored: keep more text instead
    cut, _ = truncate("短。" + "二" * 100, 20)
    assert cut == "短。" + "二" * 17 + "…"


@pytest.mark.parametrize("max_chars", [0, 1, 2, 5, 33, 67, 70, 134, 500])
def test_truncate_never_exceeds_max_chars(max_chars: int) -> None:
    text = "预计未来3小时内降雨量将达100毫米以上。请注意防范！" * 40 + "𠀀" * 10
    cut, was_cut = truncate(text, max_chars)
    assert was_cut
    assert length(cut) <= max_chars
    if max_chars >= 1:
        assert cut.endswith("…")


def test_truncate_counts_utf16_units() -> None:
    cut, was_cut = truncate("𠀀" * 10, 6)
    assert was_cut and cut == "𠀀𠀀…" and length(cut) == 5
