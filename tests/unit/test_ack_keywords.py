"""叫应 reply keywords (warnd/acks.py): normalisation and the digit / word matching rules."""

from __future__ import annotations

import pytest

from warnd.acks import is_ack, normalise_reply
from warnd.config import FeedbackSettings

DEFAULT = FeedbackSettings().ack_keywords  # 1, 收到, 确认, 已收到, 好的, OK


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        (" 1 ", True),
        ("1。", True),
        ("１", True),  # full-width digit (NFKC)
        ("1 收到", True),
        ("1收到", True),
        ("12", False),
        ("1.2", False),  # punctuation goes first: "12"
        ("10", False),
        ("21", False),
        ("收到", True),
        ("收到！", True),
        ("收到，马上组织转移", True),
        ("  收到了  ", True),
        ("已收到", True),
        ("确认", True),
        ("好的～", True),
        ("OK", True),
        ("ok", True),
        ("Ok!", True),
        ("ＯＫ", True),  # full-width letters
        ("没收到", False),  # must start with the keyword
        ("请问什么情况", False),
        ("", False),
        ("，。！", False),
        ("TD", False),  # carriers' unsubscribe
    ],
)
def test_default_keywords(text: str, expected: bool) -> None:
    assert is_ack(text, DEFAULT) is expected


def test_normalise_strips_whitespace_punctuation_and_casefolds() -> None:
    assert normalise_reply(" 收到，马上组织转移！") == "收到马上组织转移"
    assert normalise_reply("ＯＫ.") == "ok"
    assert normalise_reply("1 收到") == "1收到"
    assert normalise_reply("\t\n") == ""


def test_configured_keywords_are_normalised_too() -> None:
    keywords = ["２", "Roger!"]
    assert is_ack("2", keywords) and is_ack("2 好", keywords) and not is_ack("23", keywords)
    assert is_ack("roger that", keywords) and not is_ack("1", keywords)
    assert not is_ack("收到", keywords)  # only the configured ones
