"""Receipt states → verdicts, and how part (segment) states add up to a delivery's status (warnd/receipts.py)."""

from __future__ import annotations

from functools import reduce

import pytest

from warnd.receipts import LOUDSPEAKER, PUSH, SMS, Verdict, classify, delivery_status, part_state


@pytest.mark.parametrize("state", ["DELIVRD", "delivered", "DELIVERED", "success", "0"])
def test_sms_success_states(state: str) -> None:
    assert classify(SMS, state) is Verdict.DELIVERED


@pytest.mark.parametrize("state", ["UNDELIV", "REJECTD", "EXPIRED", "failed", "DELETED"])
def test_sms_failure_states(state: str) -> None:
    assert classify(SMS, state) is Verdict.FAILED


@pytest.mark.parametrize("state", ["ACCEPTD", "ENROUTE", "UNKNOWN", "whatever", ""])
def test_sms_interim_and_unknown_states_are_informational(state: str) -> None:
    assert classify(SMS, state) is Verdict.INFO


def test_play_states() -> None:
    assert classify(LOUDSPEAKER, "success") is Verdict.DELIVERED
    assert classify(LOUDSPEAKER, 3) is Verdict.DELIVERED  # GY/T number
    assert classify(LOUDSPEAKER, "failed") is Verdict.FAILED
    for state in ("pending", "waiting", "playing", "cancelled", 0, 5):
        assert classify(LOUDSPEAKER, state) is Verdict.INFO


def test_push_states() -> None:
    assert classify(PUSH, "delivered") is Verdict.DELIVERED
    assert classify(PUSH, "clicked") is Verdict.DELIVERED
    assert classify(PUSH, "unregistered") is Verdict.FAILED
    assert classify(PUSH, "sent") is Verdict.INFO


def _run(reports: list[tuple[int, Verdict]], segments: int = 3) -> str:
    parts = ["sent"] * segments
    for part, verdict in reports:
        parts[part] = part_state(parts[part], verdict)
    return delivery_status(parts)


def test_three_segments_success_fail_success_is_failed() -> None:
    d, f = Verdict.DELIVERED, Verdict.FAILED
    assert _run([(0, d), (1, f), (2, d)]) == "failed"
    assert (
        _run([(1, f), (1, d), (0, d), (2, d)]) == "failed"
    )  # a later success of the same part hides nothing


def test_all_segments_delivered_and_only_then() -> None:
    d = Verdict.DELIVERED
    assert _run([(0, d), (1, d)]) == "sent"
    assert _run([(0, d), (1, d), (2, d)]) == "delivered"
    assert _run([(0, d), (0, d), (1, d)]) == "sent"  # a duplicate does not count for another part


def test_part_state_only_gets_worse() -> None:
    assert reduce(part_state, [Verdict.DELIVERED, Verdict.INFO], "sent") == "delivered"
    assert reduce(part_state, [Verdict.FAILED, Verdict.DELIVERED], "sent") == "failed"
    assert delivery_status([]) == "sent"
