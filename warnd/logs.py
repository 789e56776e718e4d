"""Logging set-up and privacy: phone numbers are masked in every log line and, by default, in output."""

from __future__ import annotations

import logging
import re
import sys

_PHONE = re.compile(r"(?<!\d)(\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def mask_phone(phone: str | None) -> str | None:
    """``13812345678`` → ``138****5678``; ``+8613812345678`` → ``+86138****5678``; short values → ``****``."""
    if not phone:
        return phone
    prefix, rest = "", phone
    for country in ("+86", "0086"):
        if rest.startswith(country) and len(rest) - len(country) >= 11:
            prefix, rest = country, rest[len(country) :]
            break
    if len(rest) < 8:
        return prefix + "****"
    return f"{prefix}{rest[:3]}****{rest[-4:]}"


def mask_text(text: str) -> str:
    """Mask every Chinese mobile number inside free text."""
    return _PHONE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)


class MaskPhonesFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskPhonesFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
