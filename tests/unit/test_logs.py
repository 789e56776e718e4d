"""Phone numbers never reach the logs in clear."""

from __future__ import annotations

import io
import logging

import pytest

from warnd.logs import MaskPhonesFilter, mask_phone, mask_text


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812345678", "138****5678"),
        ("13800230001", "138****0001"),
        ("+8613812345678", "+86138****5678"),
        ("008613812345678", "0086138****5678"),
        ("+447700900123", "+44****0123"),
        ("1234567", "****"),
        ("12345", "****"),
        ("+86123", "****"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_phone(phone: str | None, masked: str | None) -> None:
    assert mask_phone(phone) == masked


def test_mask_phone_hides_the_middle_digits() -> None:
    for phone in ("13800230001", "+8613800230001", "+447700900123", "13900000002"):
        masked = mask_phone(phone)
        assert masked is not None
        assert "****" in masked
        assert masked.endswith(phone[-4:])
        assert phone[3:-4] not in masked


def test_mask_text_masks_every_mobile_number() -> None:
    text = "已发送至13800230001和13900000002，转发+8613712345678失败"
    masked = mask_text(text)
    assert masked == "已发送至138****0001和139****0002，转发+86137****5678失败"
    for clear in ("13800230001", "13900000002", "13712345678", "0023", "1234"):
        assert clear not in masked


def test_mask_text_leaves_other_numbers_alone() -> None:
    # admin codes, identifiers, landlines and numbers that merely contain 11 digits are not phones
    text = "区划500228101201 标识50022841600000_20240712053000 座机023-53221234 编号213800230001 12800230001"
    assert mask_text(text) == text


def test_mask_text_number_next_to_letters_and_punctuation() -> None:
    assert mask_text("phone=13800230001;") == "phone=138****0001;"
    assert mask_text("(86)13800230001") == "(86)138****0001"
    assert mask_text("86 13800230001") == "86 138****0001"


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("warnd.test", logging.INFO, __file__, 1, msg, args, None)


def test_filter_masks_the_formatted_message() -> None:
    entry = record("sent %s to %s (%d segments)", "预警短信", "13800230001", 2)
    assert MaskPhonesFilter().filter(entry) is True
    assert entry.getMessage() == "sent 预警短信 to 138****0001 (2 segments)"
    assert "13800230001" not in logging.Formatter("%(message)s").format(entry)


def test_filter_masks_numbers_in_the_format_string_and_in_objects() -> None:
    entry = record("recipient 13900000002 failed: %r", {"phone": "+8613712345678"})
    MaskPhonesFilter().filter(entry)
    message = entry.getMessage()
    assert "13900000002" not in message and "13712345678" not in message
    assert "139****0002" in message and "+86137****5678" in message


def test_filter_leaves_clean_records_untouched() -> None:
    entry = record("alert %s has %d recipients", "500228", 21)
    MaskPhonesFilter().filter(entry)
    assert entry.msg == "alert %s has %d recipients"
    assert entry.args == ("500228", 21)


def test_filter_on_a_handler() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(MaskPhonesFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("warnd.test.masking")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("SMS to %s rejected by the gateway", "13800230001")
    finally:
        logger.removeHandler(handler)
    assert out.getvalue() == "WARNING SMS to 138****0001 rejected by the gateway\n"
