"""SMS text rules: the 70/67 segment count, the 【signature】, what content may contain, and truncation.

Chinese SMS (``early-warning-cn.md`` §6): every character counts as one — 汉字, letters, digits,
punctuation, spaces — and the signature counts too. Up to 70 characters is one message; longer messages
are split and billed per 67 characters. Lengths here are UTF-16 code units (what gateways count), so a
character outside the Basic Multilingual Plane counts 2.

The platform prepends the signature 【…】; it appears once, at the front, and 【】 may not appear inside
the content (carriers reject such messages).
"""

from __future__ import annotations

import math
import re

SINGLE_LIMIT = 70  # characters in a one-segment message
MULTI_PART = 67  # characters per segment of a long message
DEFAULT_MAX_CHARS = 500  # platforms cap content around 500 characters

ELLIPSIS = "…"
_SENTENCE_ENDS = "。；！？!?;"
_WHITESPACE = re.compile(r"\s+")


def length(text: str) -> int:
    """Length in UTF-16 code units: a non-BMP character (emoji, rare CJK extension B) counts 2."""
    return len(text.encode("utf-16-le")) // 2


def segments(text: str) -> int:
    """How many SMS segments ``text`` (signature included) is billed as: ≤ 70 → 1, else ⌈n / 67⌉."""
    n = length(text)
    if n == 0:
        return 0
    if n <= SINGLE_LIMIT:
        return 1
    return math.ceil(n / MULTI_PART)


def _bare(signature: str) -> str:
    return signature.strip().strip("【】").strip()


def sign(signature: str | None, content: str) -> str:
    """``【signature】content``; the signature appears once, at the front. No signature → the content."""
    if signature is None or not _bare(signature):
        return content
    prefix = f"【{_bare(signature)}】"
    if content.startswith(prefix):
        return content
    return prefix + content


def sanitize_content(text: str) -> str:
    """Make text acceptable as SMS content: 【】 → 〔〕, whitespace runs → one space, stripped."""
    text = text.replace("【", "〔").replace("】", "〕")
    return _WHITESPACE.sub(" ", text).strip()


def truncate(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_chars`` (UTF-16 units) ending in "…"; returns (text, was_truncated).

    Cuts after the last sentence end (。；！) that keeps at least half of the allowed text, otherwise at the
    character limit.
    """
    if length(text) <= max_chars:
        return text, False
    if max_chars <= 0:
        return "", True
    budget = max_chars - length(ELLIPSIS)
    kept: list[str] = []
    used = 0
    for char in text:
        size = length(char)
        if used + size > budget:
            break
        kept.append(char)
        used += size
    cut = "".join(kept)
    boundary = max(cut.rfind(end) for end in _SENTENCE_ENDS)
    if boundary >= 0 and boundary + 1 >= len(cut) / 2:
        cut = cut[: boundary + 1]
    return cut.rstrip() + ELLIPSIS, True
