"""What a delivery report means for a delivery: the one place that maps providers' and terminals' states to
delivery outcomes, and folds per-part (per-segment) outcomes into the delivery's status (docs/feedback.md).

Pure functions, no I/O: the store applies them inside the transaction that records the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    DELIVERED = "delivered"  # the part reached the person / was played
    FAILED = "failed"  # the part will not reach them (undeliverable, rejected, expired at the provider)
    INFO = "info"  # an interim or unknown state: recorded, changes nothing


# report kinds: what kind of channel a report is about
SMS, PUSH, LOUDSPEAKER = "sms", "push", "loudspeaker"
KINDS = (SMS, PUSH, LOUDSPEAKER)
# adapter → report kind
ADAPTER_KINDS = {
    "smpp": SMS,
    "sms_http": SMS,
    "push_http": PUSH,
    "webpush": PUSH,
    "mqtt_loudspeaker": LOUDSPEAKER,
}

# adapters whose providers report delivery (receipts, play reports): on their channels only ``delivered`` counts as
# reached. On the others (webpush, webhook, file: nobody reports back) the provider's acceptance, ``sent``, is the
# best there is and counts as reached — for the escalation deadline and for coverage alike.
CONFIRMING_ADAPTERS = frozenset({"smpp", "sms_http", "push_http", "mqtt_loudspeaker"})


def sent_is_enough(channels: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """The configured channels (name → settings with ``adapter``) on which ``sent`` counts as reached."""
    return tuple(sorted(name for name, c in channels.items() if c.get("adapter") not in CONFIRMING_ADAPTERS))


_SMS_DELIVERED = {"DELIVRD", "DELIVERED", "DELIVERY_SUCCESS", "SUCCESS", "OK", "0", "DELIVRD:0", "RECEIVED"}
_SMS_FAILED = {
    "UNDELIV",
    "UNDELIVERED",
    "UNDELIVERABLE",
    "REJECTD",
    "REJECTED",
    "EXPIRED",
    "DELETED",
    "FAILED",
    "FAIL",
    "FAILURE",
    "ERROR",
    "BLACKLIST",
    "BLACKLISTED",
}
# ACCEPTD, ENROUTE, UNKNOWN, SENT, … : interim or unknown → INFO

_PUSH_DELIVERED = {"delivered", "received", "arrived", "displayed", "shown", "clicked", "opened", "read"}
_PUSH_FAILED = {"failed", "undelivered", "expired", "rejected", "unregistered", "invalid_token", "dropped"}

# GY/T play states: pending 0, waiting 1, playing 2, success 3, failed 4, cancelled 5
_PLAY_STATES = ("pending", "waiting", "playing", "success", "failed", "cancelled")
_PLAY_DELIVERED = {"success", "played", "done", "finished"}
_PLAY_FAILED = {"failed", "fail", "error"}


def _play_state(text: str) -> str:
    """Loudspeaker states by name or by their GY/T number (3 → success)."""
    lower = text.lower()
    numbered = lower.isascii() and lower.isdigit()  # not "²": int() refuses it
    return _PLAY_STATES[int(lower)] if numbered and int(lower) < len(_PLAY_STATES) else lower


# per kind: how a reported state is normalised, and which states mean delivered / failed (others: info —
# SMS ACCEPTD/ENROUTE, loudspeaker pending/waiting/playing/cancelled, anything unknown)
_VOCABULARY = {
    SMS: (str.upper, _SMS_DELIVERED, _SMS_FAILED),
    LOUDSPEAKER: (_play_state, _PLAY_DELIVERED, _PLAY_FAILED),
    PUSH: (str.lower, _PUSH_DELIVERED, _PUSH_FAILED),
}


def classify(kind: str, state: object) -> Verdict:
    """The verdict for one report ``state`` of a channel of report ``kind`` (sms, push, loudspeaker)."""
    normalise, delivered, failed = _VOCABULARY.get(kind, _VOCABULARY[PUSH])
    text = normalise(str(state).strip() if state is not None else "")
    if text in delivered:
        return Verdict.DELIVERED
    if text in failed:
        return Verdict.FAILED
    return Verdict.INFO


# a part's state: sent (no verdict yet) < delivered < failed — the worst report wins, so a later success never
# hides a failure
PART_RANK = {"sent": 0, "delivered": 1, "failed": 2}


def part_state(current: str, verdict: Verdict) -> str:
    """A part's state after a report with ``verdict``: it only ever gets worse (sent → delivered → failed)."""
    if verdict is Verdict.INFO:
        return current
    new = verdict.value
    return new if PART_RANK[new] > PART_RANK.get(current, 0) else current


def delivery_status(parts: Iterable[str]) -> str:
    """The status the part states add up to: ``failed`` if any part failed, ``delivered`` if every part was
    delivered, else ``sent`` (still waiting for some)."""
    states = list(parts)
    if any(s == "failed" for s in states):
        return "failed"
    if states and all(s == "delivered" for s in states):
        return "delivered"
    return "sent"


__all__ = [
    "ADAPTER_KINDS",
    "KINDS",
    "LOUDSPEAKER",
    "PUSH",
    "SMS",
    "Verdict",
    "classify",
    "delivery_status",
    "part_state",
]
