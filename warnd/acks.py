"""叫应: acknowledgements by reply SMS, by signed one-tap link, or by an operator who took a phone call
(docs/acknowledgement.md).

Messages to people whose rule target has ``ack_required`` ask them to reply a keyword or tap their link
(``warnd/pipeline.py``). Each way in ends here and becomes one row of ``acknowledgements`` per alert revision and
person: the first one counts, a repeat is an audit entry. All SQL is in :mod:`warnd.store.acks`.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from warnd.clock import Clock
from warnd.config import Config, normalise_phone, parse_when
from warnd.links import ACK, BadLink, LinkSigner
from warnd.logs import mask_phone
from warnd.store import Store
from warnd.store.acks import Ack, AckStore, LinkTarget

Command = Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]

# how far in the future an operator's "at" may be (clock skew between their watch and the server)
FUTURE_SLACK = timedelta(minutes=2)
MAX_TEXT = 500  # characters of a reply kept in the record


# --- keywords -------------------------------------------------------------------------------------------------


def normalise_reply(text: str) -> str:
    """NFKC, without whitespace, punctuation, symbols or control characters (Chinese ，。！ included), casefolded:
    ``" 收到！"`` → ``"收到"``, ``"ＯＫ."`` → ``"ok"``, ``"1 收到"`` → ``"1收到"``."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PSZC").casefold()


def is_ack(text: str, keywords: Iterable[str]) -> bool:
    """Whether a reply acknowledges. A digit keyword matches only as the whole text or followed by a non-digit
    (``1`` and ``1 收到`` yes, ``12`` no); a word keyword matches when the text starts with it
    (``收到，马上组织转移`` yes)."""
    reply = normalise_reply(text)
    if not reply:
        return False
    for keyword in keywords:
        word = normalise_reply(keyword)
        if not word or not reply.startswith(word):
            continue
        if word.isdigit():
            rest = reply[len(word) :]
            if rest and rest[0].isdigit():
                continue
        return True
    return False


# --- results --------------------------------------------------------------------------------------------------


class AckError(ValueError):
    """An operator's acknowledgement that cannot be recorded; ``status`` is the HTTP status to answer."""

    status = 400


class UnknownAlert(AckError):
    status = 404


class NotARecipient(AckError):
    status = 404


@dataclass(frozen=True)
class ReplyResult:
    """What became of one inbound SMS: ``acknowledged`` (``acks`` holds one per obligation), ``no_obligation``
    (a keyword from a known person with nothing open), ``not_a_keyword``, ``unknown_phone`` or ``invalid``."""

    outcome: str
    acks: list[Ack] = field(default_factory=list)


@dataclass(frozen=True)
class LinkView:
    """What a 叫应 page shows. state: ``open`` (may acknowledge), ``acknowledged`` (``ack`` says when),
    ``ended`` (the chain was cancelled or expired: nothing to do). ``updated``: a later Update superseded the
    revision the link came with (its message asks again if needed)."""

    state: str
    target: LinkTarget
    ack: Ack | None
    updated: bool
    recorded: bool = False  # this request recorded the acknowledgement

    @property
    def alert(self) -> dict[str, Any]:
        return self.target.alert

    @property
    def recipient(self) -> dict[str, Any]:
        return self.target.recipient


def _phone(value: str) -> str:
    """A phone number as recipients store it (11 digits for Chinese mobiles), or the value as given."""
    try:
        return normalise_phone(value)
    except ValueError:
        return re.sub(r"[\s\-()]", "", value)


def _local(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).isoformat(timespec="seconds")


# --- the service ----------------------------------------------------------------------------------------------


class Acknowledgements:
    def __init__(self, *, config: Config, store: Store, clock: Clock, links: LinkSigner):
        self.config = config
        self.store = store
        self.acks = AckStore(store)
        self.clock = clock
        self.links = links
        self.tz = ZoneInfo(config.timezone)

    @property
    def keywords(self) -> list[str]:
        return list(self.config.feedback.ack_keywords)

    def is_ack(self, text: str) -> bool:
        return is_ack(text, self.keywords)

    # --- reply SMS ---------------------------------------------------------------------------------------------

    async def from_reply(
        self,
        phone: str,
        text: str,
        at: datetime | None = None,
        detail: Mapping[str, Any] | None = None,
        *,
        actor: str = "feedback:reply",
        remote: str | None = None,
    ) -> ReplyResult:
        """An inbound SMS. A keyword acknowledges every open obligation of that person (a reply cannot say which
        warning it answers) of the same kind — drill (Exercise/Test) or real — as the newest message that asked
        them: a reply never answers a drill and a real warning together. Anything else acknowledges nothing but
        is kept in the audit log (``reply.unmatched``): the text, the masked phone number and why."""
        now = self.clock.now()
        at = (
            min(at, now) if at else now
        )  # a provider's clock ahead of ours does not date an ack in the future
        number = _phone(str(phone))
        record = {
            "text": text[:MAX_TEXT],
            "phone": mask_phone(number),
            "received_at": at.isoformat(),
            **{k: v for k, v in (detail or {}).items() if v is not None},
        }
        if not self.is_ack(text):
            return await self._unmatched("not_a_keyword", actor, record, remote, now)
        people = await self.acks.people_by_phone(number)
        if not people:
            return await self._unmatched("unknown_phone", actor, record, remote, now)
        ids = [p["id"] for p in people]
        drill = await self.acks.newest_asking_is_drill(ids)
        if drill is not None:
            record["drill"] = drill  # what the reply answers: drills or real warnings, never both
        obligations = await self.acks.open_obligations(ids, at, drill=drill)
        if not obligations:
            record["recipients"] = ids
            return await self._unmatched("no_obligation", actor, record, remote, now)
        acks = [
            await self.acks.record(
                alert_id=o.alert_id,
                recipient_id=o.recipient_id,
                delivery_id=o.delivery_id,
                at=at,
                channel="reply",
                recorded_by=f"recipient:{o.recipient_id}",
                detail={**record, "answered": len(obligations)},
                remote=remote,
            )
            for o in obligations
        ]
        return ReplyResult("acknowledged", acks)

    async def _unmatched(
        self, why: str, actor: str, record: dict[str, Any], remote: str | None, now: datetime
    ) -> ReplyResult:
        await self.acks.audit(
            now, actor, "reply.unmatched", record.get("phone"), {**record, "why": why}, remote
        )
        return ReplyResult(why)

    async def unreadable_reply(self, item: Any, why: str, *, actor: str, remote: str | None = None) -> None:
        """A webhook item that is not a reply at all: kept in the audit log too."""
        shown = repr(item)[:MAX_TEXT]
        await self.acks.audit(
            self.clock.now(),
            actor,
            "reply.unmatched",
            None,
            {"why": f"invalid: {why}", "item": shown},
            remote,
        )

    # --- one-tap link ------------------------------------------------------------------------------------------

    async def look(self, token: str) -> LinkView:
        """What the link's page shows; never records anything (carriers' URL scanners and link previews fetch
        every link in an SMS). :class:`BadLink` when the token is bad or points at nothing."""
        alert_id, recipient_id = self.links.verify(ACK, token, 2)
        target = await self.acks.link_target(alert_id, recipient_id)
        if target is None:
            raise BadLink("the link points at nothing")
        return self._view(target, target.ack)

    def _view(self, target: LinkTarget, ack: Ack | None, recorded: bool = False) -> LinkView:
        latest = target.latest
        expires = latest["expires"]
        ended = latest["state"] != "active" or (expires is not None and expires <= self.clock.now())
        state = "ended" if ended else ("acknowledged" if ack else "open")
        return LinkView(state, target, ack, updated=latest["id"] != target.alert["id"], recorded=recorded)

    async def from_link(self, token: str, *, remote: str | None = None) -> LinkView:
        """The person tapped 「确认收到」: record the acknowledgement (channel ``link``) while the chain is active
        and not past its (latest) ``expires``. A link of a revision an Update superseded acknowledges that
        revision (history); the view says the warning was updated."""
        view = await self.look(token)
        if view.state != "open":
            if view.state == "acknowledged":  # a second tap: the first counts, this one is audited
                await self._record_link(view, remote)
            return view
        ack = await self._record_link(view, remote)
        return self._view(view.target, ack, recorded=not ack.already)

    async def _record_link(self, view: LinkView, remote: str | None) -> Ack:
        person = view.recipient["id"]
        return await self.acks.record(
            alert_id=view.alert["id"],
            recipient_id=person,
            delivery_id=view.target.delivery_id,
            at=self.clock.now(),
            channel="link",
            recorded_by=f"recipient:{person}",
            detail={"updated": True} if view.updated else {},
            remote=remote,
        )

    # --- an operator's call ------------------------------------------------------------------------------------

    async def record_call(
        self,
        alert_id: int,
        recipient: str | int,
        by: str,
        note: str | None = None,
        at: datetime | None = None,
        *,
        remote: str | None = None,
    ) -> Ack:
        """An operator reached the person by phone (or in person) and records it: channel ``call``,
        recorded_by the operator. The person (phone number or recipient id) must be a recipient of the alert's
        chain; the acknowledgement is of the newest revision they had been sent by ``at`` (those that asked for
        叫应 first). An ``at`` before the warning was sent to them is refused. Audited as ``ack.record``."""
        now = self.clock.now()
        if at is None:
            at = now
        elif at.tzinfo is None:
            at = at.replace(tzinfo=self.tz)
        if at > now + FUTURE_SLACK:
            raise AckError(f"at {at.isoformat()} is in the future")
        alert = await self.store.get_alert(alert_id)
        if alert is None:
            raise UnknownAlert(f"no alert {alert_id}")
        who = str(recipient).strip()
        if not who:
            raise AckError("recipient is required: a phone number or a recipient id")
        found = await self.acks.chain_recipient(alert["root_id"] or alert_id, _phone(who))
        if found is None:
            raise NotARecipient(
                f"{mask_phone(who) if len(who) > 10 else who} is not a recipient of alert {alert_id}"
            )
        person = found.recipient
        sent = next((d for d in found.sent if d.created_at <= at), None)
        if sent is None:
            first = min(d.created_at for d in found.sent)
            raise AckError(
                f"at {_local(at, self.tz)} is before the warning of alert {alert_id} was sent to "
                f"{person['name']} (first at {_local(first, self.tz)}): check the time of the call"
            )
        revision, delivery_id = sent.alert_id, sent.delivery_id
        detail: dict[str, Any] = {}
        if note:
            detail["note"] = note[:MAX_TEXT]
        if revision != alert_id:
            detail["asked_for"] = alert_id
        return await self.acks.record(
            alert_id=revision,
            recipient_id=person["id"],
            delivery_id=delivery_id,
            at=at,
            channel="call",
            recorded_by=by,
            detail=detail,
            audit_action="ack.record",
            remote=remote,
        )

    # --- the board ---------------------------------------------------------------------------------------------

    async def board(self, alert_id: int, *, unmask: bool = False) -> dict[str, Any]:
        """The 叫应 board of an alert's chain: who must acknowledge (each person's newest revision that asked),
        who has not yet (deadline, overdue) and every acknowledgement (at, channel, recorded by, note)."""
        alert = await self.store.get_alert(alert_id)
        if alert is None:
            raise UnknownAlert(f"no alert {alert_id}")
        root_id = alert["root_id"] or alert_id
        latest = await self.store.latest_in_chain(root_id) or alert
        obligations, acks = await self.acks.board(root_id)
        now = self.clock.now()

        def phone(value: str | None) -> str | None:
            return value if unmask else mask_phone(value)

        pending = [
            {
                "recipient_id": o["recipient_id"],
                "name": o["name"],
                "role": o["role"],
                "phone": phone(o["phone"]),
                "area_code": o["area_code"],
                "alert_id": o["alert_id"],
                "deadline": o["deadline"],
                "overdue": o["deadline"] is not None and o["deadline"] < now,
            }
            for o in obligations
            if o["ack"] is None
        ]
        far = datetime.max.replace(tzinfo=now.tzinfo)
        pending.sort(key=lambda p: (p["deadline"] or far, p["area_code"], p["name"]))
        return {
            "alert_id": alert_id,
            "root_id": root_id,
            "latest_id": latest["id"],
            "state": latest["state"],
            "required": len(obligations),
            "acknowledged": sum(1 for o in obligations if o["ack"] is not None),
            "pending": pending,
            "acks": [
                {
                    "recipient_id": a["recipient_id"],
                    "name": a["name"],
                    "role": a["role"],
                    "phone": phone(a["phone"]),
                    "area_code": a["area_code"],
                    "alert_id": a["alert_id"],
                    "at": a["at"],
                    "channel": a["channel"],
                    "recorded_by": a["recorded_by"],
                    "note": (a["detail"] or {}).get("note"),
                }
                for a in acks
            ],
        }


# --- command line -----------------------------------------------------------------------------------------------

BOARD_COLUMNS = ("state", "recipient_id", "name", "role", "phone", "area_code", "alert_id", "deadline",
                 "at", "channel", "recorded_by", "note")  # fmt: skip


def add_cli(sub: Any, common: argparse.ArgumentParser) -> dict[str, Command]:
    """Adds ``warnd ack``; returns its handler by command name."""
    ack = sub.add_parser(
        "ack",
        parents=[common],
        help="叫应: record that a person acknowledged by phone, or list an alert's acknowledgements",
        description="Record an acknowledgement an operator took by phone (channel call), or --list the "
        "alert's 叫应 board: who must acknowledge, who has, and how.",
    )
    ack.add_argument("alert", type=int, metavar="ALERT", help="alert id (any revision of the chain)")
    ack.add_argument("phone", nargs="?", metavar="PHONE", help="the person's phone number (or recipient id)")
    ack.add_argument("--note", help="what was said, e.g. 已电话确认，正在组织转移")
    ack.add_argument("--by", dest="actor", metavar="NAME", help="who took the call (default: the login name)")
    ack.add_argument(
        "--at", help="when: ISO time (local time if no offset) or a duration ago (10m); default now"
    )
    ack.add_argument("--list", action="store_true", help="print the alert's 叫应 board (phones masked)")
    return {"ack": cmd_ack}


def _cell(value: Any, tz: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(tz).strftime("%m-%d %H:%M:%S")
    return str(value)


def board_rows(board: Mapping[str, Any], tz: ZoneInfo) -> list[list[str]]:
    """The board as table rows: pending people (overdue ones marked), then the acknowledgements."""
    rows: list[Sequence[Any]] = []
    for p in board["pending"]:
        rows.append(
            ("overdue" if p["overdue"] else "pending", p["recipient_id"], p["name"], p["role"], p["phone"],
             p["area_code"], p["alert_id"], p["deadline"], None, None, None, None)
        )  # fmt: skip
    for a in board["acks"]:
        rows.append(
            ("acknowledged", a["recipient_id"], a["name"], a["role"], a["phone"], a["area_code"], a["alert_id"],
             None, a["at"], a["channel"], a["recorded_by"], a["note"])
        )  # fmt: skip
    return [[_cell(v, tz) for v in row] for row in rows]


async def cmd_ack(config: Config, args: argparse.Namespace) -> int:
    from warnd.cli import actor, make_app, print_table

    if not args.list and not args.phone:
        print("warnd ack: give PHONE (record a call) or --list (show the board)", file=sys.stderr)
        return 2
    app = make_app(config, args)
    tz = app.tz
    try:
        await app.start()
        if args.list:
            try:
                board = await app.acks.board(args.alert)
            except AckError as exc:
                print(f"warnd ack: {exc}", file=sys.stderr)
                return 1
            print_table(BOARD_COLUMNS, board_rows(board, tz))
            print(
                f"alert {args.alert} ({board['state']}): {board['acknowledged']} of {board['required']} "
                f"acknowledged, {len(board['pending'])} pending "
                f"({sum(1 for p in board['pending'] if p['overdue'])} overdue)"
            )
            return 0
        try:
            at = parse_when(args.at, app.clock.now(), tz)
        except ValueError as exc:
            print(f"warnd ack: --at: {exc}", file=sys.stderr)
            return 2
        try:
            ack = await app.acks.record_call(args.alert, args.phone, actor(args), args.note, at)
        except AckError as exc:
            print(f"warnd ack: {exc}", file=sys.stderr)
            return 1
        who = f"{ack.name} ({mask_phone(ack.phone)})"
        when = ack.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        if ack.already:
            print(
                f"already acknowledged: {who} acknowledged alert {ack.alert_id} at {when} by {ack.channel} "
                f"(recorded by {ack.recorded_by}); the first acknowledgement counts"
            )
        else:
            print(
                f"recorded: {who} acknowledged alert {ack.alert_id} at {when} by call "
                f"(recorded by {ack.recorded_by})" + (f": {ack.note}" if ack.note else "")
            )
        return 0
    finally:
        await app.close()
