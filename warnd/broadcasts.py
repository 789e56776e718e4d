"""Manual broadcasts and operator Updates / Cancels, with two-person approval (docs/console.md).

    draft ──► preview ──► submit ──► (needs approval?) ──► approve by another person ──► send (pipeline)
                                     └─ no: send at once     └─ reject / withdraw

A draft is the composer's JSON. Preview renders each channel's message exactly as fan-out would and counts the
recipients per channel, storing nothing. A draft needs a second person's approval when it is red or orange
(or Updates / Cancels a red or orange chain), or when it goes to the whole public of the district (the public
group with no area narrower than the county). The submitter can never approve their own draft; approvers with
a phone on file are told by SMS (``api.approval_notify_channel``). Submitting, approving, rejecting,
withdrawing and the send's outcome are each audited.

Each broadcast fixes its alert's CAP identifier (``warnd-bc-<id>``) and sent time when it is decided, so a send
interrupted by a crash is finished at the next start (:meth:`Broadcasts.resume`) as the same alert, never twice.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from channels.base import Channel, OutgoingMessage, Recipient
from warnd.clock import Clock
from warnd.config import Config
from warnd.hazards import COLOUR_LABELS
from warnd.logs import mask_phone
from warnd.pipeline import (
    BroadcastInvalid,
    BroadcastRequest,
    ChannelPreview,
    Draft,
    IngestResult,
    Pipeline,
    RevisionRequest,
)
from warnd.sms import segments, sign
from warnd.store import Store
from warnd.store.broadcasts import PENDING, SENDING, WITHDRAWN, BroadcastStore

log = logging.getLogger("warnd.broadcasts")

APPROVAL_COLOURS = ("orange", "red")
APPROVER_ROLES = ("approver", "admin")
BROADCAST_FIELDS = (
    "areas",
    "groups",
    "channels",
    "hazard",
    "colour",
    "text",
    "headline",
    "status",
    "expires_in",
)
REVISION_FIELDS = ("headline", "text", "colour", "expires_in")
MAX_TEXT = 2000
# what XML 1.0 (so CAP) cannot carry: control characters other than tab / newline, lone surrogates
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def same_person(a: str, b: str) -> bool:
    """Whether two principals may be one person: ``user:leader`` and ``token:leader`` (a person's own API token
    for scripts), or names differing only in case. The submitter must not approve under either."""
    return (a.partition(":")[2] or a).casefold() == (b.partition(":")[2] or b).casefold()


class NotAllowed(Exception):
    """The caller may not make this decision (the submitter approving their own draft)."""


class Conflict(Exception):
    """The broadcast is no longer pending (decided by someone else, withdrawn, or sent)."""


class NotFound(Exception):
    pass


@dataclass
class Submitted:
    broadcast: dict[str, Any]
    result: IngestResult | None = None  # the alert, when it was sent at once (or on approval)


def _str_list(body: Mapping[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise BroadcastInvalid(f"{key} must be a list of strings")
    return [str(v) for v in value]


def _opt_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BroadcastInvalid(f"{key} must be a string")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise BroadcastInvalid(f"{key} is longer than {MAX_TEXT} characters")
    if isinstance(value, str) and NOT_XML.search(value):
        raise BroadcastInvalid(f"{key} contains control characters (不能包含控制字符)")
    return value or None


def _seconds(body: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 60 <= value <= 7 * 86400:
        raise BroadcastInvalid(f"{key} must be a number of seconds between 60 and 604800")
    return float(value)


def _only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BroadcastInvalid(
            f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def broadcast_request(body: Any, actor: str) -> BroadcastRequest:
    """The composer's JSON, checked field by field (the pipeline checks channels, groups, areas, hazard)."""
    if not isinstance(body, dict):
        raise BroadcastInvalid("body must be a JSON object")
    _only(body, BROADCAST_FIELDS)
    return BroadcastRequest(
        channels=_str_list(body, "channels"),
        # stripped as the area check strips them: a padded county code must still count as the whole district
        areas=[code.strip() for code in _str_list(body, "areas")],
        groups=_str_list(body, "groups"),
        hazard=_opt_str(body, "hazard"),
        colour=_opt_str(body, "colour"),
        text=_opt_str(body, "text"),
        headline=_opt_str(body, "headline"),
        status=_opt_str(body, "status") or "Actual",
        expires_in=_seconds(body, "expires_in", 6 * 3600) or 6 * 3600,
        actor=actor,
    )


def revision_request(alert_id: int, msg_type: str, body: Any, actor: str) -> RevisionRequest:
    if not isinstance(body, dict):
        raise BroadcastInvalid("body must be a JSON object")
    if msg_type == "Cancel":
        _only(body, ("reason",))
        return RevisionRequest(alert_id, "Cancel", actor, text=_opt_str(body, "reason"))
    _only(body, REVISION_FIELDS)
    return RevisionRequest(
        alert_id,
        "Update",
        actor,
        headline=_opt_str(body, "headline"),
        text=_opt_str(body, "text"),
        colour=_opt_str(body, "colour"),
        expires_in=_seconds(body, "expires_in", None),
    )


def broadcast_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "kind": row["kind"],
        "update_of": row["update_of"],
        "draft": row["draft"],
        "needs_approval": row["needs_approval"],
        "approval_reasons": row["approval_reasons"] or [],
        "headline": row["headline"],
        "colour": row["colour"],
        "colour_label": COLOUR_LABELS.get(row["colour"] or ""),
        "recipients": row["recipients"],
        "channels": row["preview"] or [],
        "submitted_by": row["submitted_by"],
        "submitted_at": row["submitted_at"],
        "decided_by": row["decided_by"],
        "decided_at": row["decided_at"],
        "note": row["note"],
        "alert_id": row["alert_id"],
        "error": row["error"],
    }


@dataclass
class Preview:
    draft: Draft
    channels: list[ChannelPreview]
    reasons: list[str]
    colour: str | None  # what the hazard catalogue reads from the draft's CAP info

    @property
    def recipients(self) -> int:
        return sum(c.recipients for c in self.channels)

    @property
    def headline(self) -> str | None:
        info = self.draft.parsed.alert.infos[0] if self.draft.parsed.alert.infos else None
        return (info.headline if info else None) or self.draft.parsed.alert.note

    def json(self) -> dict[str, Any]:
        return {
            "needs_approval": bool(self.reasons),
            "approval_reasons": self.reasons,
            "headline": self.headline,
            "recipients": self.recipients,
            "channels": [dataclasses.asdict(c) for c in self.channels],
        }


class Broadcasts:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        pipeline: Pipeline,
        clock: Clock,
        channels: Mapping[str, Channel],
    ):
        self.config = config
        self.pipeline = pipeline
        self.clock = clock
        self.channels = channels
        self.db = BroadcastStore(store)

    # --- compose ---------------------------------------------------------------------------------------------

    async def _draft(self, request: BroadcastRequest | RevisionRequest) -> Draft:
        if isinstance(request, RevisionRequest):
            return await self.pipeline.plan_revision(request)
        return self.pipeline.plan_broadcast(request)

    async def preview(self, request: BroadcastRequest | RevisionRequest) -> Preview:
        draft = await self._draft(request)
        channels = await self.pipeline.preview(draft)
        infos = draft.parsed.alert.infos
        colour = self.pipeline.catalogue.classify(infos[0]).colour if infos else None
        return Preview(draft, channels, self.approval_reasons(request, draft, colour), colour)

    def approval_reasons(
        self, request: BroadcastRequest | RevisionRequest, draft: Draft, colour: str | None
    ) -> list[str]:
        """Why this draft (of ``colour``) needs a second person (Chinese, for the console); empty when it does
        not."""
        alert = draft.parsed.alert
        reasons = []
        colours = {colour, (draft.previous or {}).get("colour")}
        for colour in APPROVAL_COLOURS[::-1]:
            if colour in colours:
                what = "解除" if alert.msg_type == "Cancel" else ("更新" if draft.previous else "发布")
                reasons.append(f"{what}{COLOUR_LABELS[colour]}预警需第二人审批")
                break
        if isinstance(request, BroadcastRequest) and self._whole_public(request):
            reasons.append("面向全区社会公众发布需第二人审批")
        if isinstance(request, RevisionRequest) and draft.previous and self._chain_was_whole_public(draft):
            reasons.append("面向全区社会公众的预警变更需第二人审批")
        return reasons

    def _whole_public(self, request: BroadcastRequest) -> bool:
        if request.status != "Actual":  # drills and tests reach the drill groups only
            return False
        district = not request.areas or any(code.endswith("000000") for code in request.areas)
        return self._reaches_public(request.groups or self.config.groups) and district

    def _chain_was_whole_public(self, draft: Draft) -> bool:
        previous = draft.previous or {}
        plan = previous.get("rules") or {}
        return bool(plan.get("manual") and plan.get("everywhere")) and any(
            t.get("groups") is None or self._reaches_public(t["groups"]) for t in plan.get("targets", [])
        )

    def _reaches_public(self, groups: Iterable[str]) -> bool:
        """Whether any of these configured groups has the public among its roles."""
        return any("public" in self.config.groups[g].roles for g in groups if g in self.config.groups)

    # --- submit and decide -----------------------------------------------------------------------------------

    async def submit(
        self, request: BroadcastRequest | RevisionRequest, *, remote: str | None = None
    ) -> Submitted:
        """Store the draft with its preview; send it now when it needs no approval, else tell the approvers."""
        preview = await self.preview(request)
        revision = isinstance(request, RevisionRequest)
        draft_json = (
            {k: v for k, v in dataclasses.asdict(request).items() if k in (*REVISION_FIELDS, "msg_type")}
            if revision
            else {k: v for k, v in dataclasses.asdict(request).items() if k in BROADCAST_FIELDS}
        )
        row = await self.db.add(
            {
                "status": PENDING if preview.reasons else SENDING,
                "kind": request.msg_type.lower() if isinstance(request, RevisionRequest) else "broadcast",
                "update_of": request.alert_id if isinstance(request, RevisionRequest) else None,
                "draft": draft_json,
                "needs_approval": bool(preview.reasons),
                "approval_reasons": preview.reasons,
                "headline": (preview.headline or "")[:500] or None,
                "colour": preview.colour,
                "recipients": preview.recipients,
                "preview": preview.json()["channels"],
            },
            now=self.clock.now(),
            actor=request.actor,
            remote=remote,
        )
        if preview.reasons:
            await self.notify_approvers(row)
            return Submitted(row)
        return await self._send(row, actor=request.actor)

    async def approve(
        self, broadcast_id: int, *, actor: str, note: str | None = None, remote: str | None = None
    ) -> Submitted:
        row = await self._pending(broadcast_id)
        if same_person(row["submitted_by"], actor):
            raise NotAllowed(
                "不能审批自己提交的广播，需由另一位审批人审批 (the submitter cannot approve their own)"
            )
        decided = await self._decide(
            broadcast_id, SENDING, "broadcast.approve", actor=actor, note=note, remote=remote
        )
        return await self._send(decided, actor=actor)

    async def reject(
        self, broadcast_id: int, *, actor: str, reason: str, remote: str | None = None
    ) -> dict[str, Any]:
        await self._pending(broadcast_id)
        return await self._decide(
            broadcast_id, "rejected", "broadcast.reject", actor=actor, note=reason, remote=remote
        )

    async def withdraw(
        self, broadcast_id: int, *, actor: str, admin: bool, remote: str | None = None
    ) -> dict[str, Any]:
        """The submitter (or an admin) takes back a pending draft."""
        row = await self._pending(broadcast_id)
        if not admin and not same_person(row["submitted_by"], actor):
            raise NotAllowed("只有提交人（或管理员）可以撤回 (only the submitter or an admin can withdraw)")
        return await self._decide(
            broadcast_id, WITHDRAWN, "broadcast.withdraw", actor=actor, note=None, remote=remote
        )

    async def resume(self) -> list[int]:
        """Finish sends a crash interrupted (claimed, alert not recorded): the same alert, never a second."""
        rows = await self.db.sending()
        for row in rows:
            log.info("resuming broadcast %s", row["id"])
            await self._send(row, actor=row["decided_by"] or row["submitted_by"])
        return [r["id"] for r in rows]

    async def _send(self, row: Mapping[str, Any], *, actor: str) -> Submitted:
        draft = row["draft"]
        sent = row["decided_at"] or row["submitted_at"]
        identifier = f"warnd-bc-{row['id']}"
        # the alert went out before a crash: record it (a 解除 already sent cannot be drafted again)
        existing = await self.db.store.find_referenced(identifier, self.config.organisation, None)
        if existing is not None:
            await self.db.finish(
                row["id"], now=self.clock.now(), alert_id=existing["id"], error=None, actor=actor
            )
            return Submitted(await self._get(row["id"]), IngestResult("duplicate", alert_id=existing["id"]))
        try:
            request: BroadcastRequest | RevisionRequest
            if row["kind"] == "broadcast":
                request = broadcast_request(draft, row["submitted_by"])
            else:
                fields = {k: v for k, v in draft.items() if k != "msg_type"}
                request = RevisionRequest(row["update_of"], draft["msg_type"], row["submitted_by"], **fields)
            request = dataclasses.replace(request, identifier=identifier, sent=sent)
            result = await self.pipeline.send_draft(await self._draft(request), actor=row["submitted_by"])
        except BroadcastInvalid as exc:  # e.g. the chain ended while the draft waited
            await self.db.finish(row["id"], now=self.clock.now(), alert_id=None, error=str(exc), actor=actor)
            return Submitted(await self._get(row["id"]))
        ok = result.outcome in ("created", "duplicate") and result.alert_id is not None
        await self.db.finish(
            row["id"],
            now=self.clock.now(),
            alert_id=result.alert_id if ok else None,
            error=None if ok else "; ".join(result.errors) or result.outcome,
            actor=actor,
        )
        return Submitted(await self._get(row["id"]), result)

    async def _get(self, broadcast_id: int) -> dict[str, Any]:
        row = await self.db.get(broadcast_id)
        if row is None:
            raise NotFound(f"no broadcast {broadcast_id}")
        return row

    async def _pending(self, broadcast_id: int) -> dict[str, Any]:
        row = await self._get(broadcast_id)
        if row["status"] != PENDING:
            raise Conflict(f"broadcast {broadcast_id} is {row['status']}, not pending")
        return row

    async def _decide(
        self, broadcast_id: int, to: str, action: str, *, actor: str, note: str | None, remote: str | None
    ) -> dict[str, Any]:
        """Move a pending broadcast to ``to`` (audited as ``action``) and return it as it now is.

        ``_pending`` was checked before, but another approver may have decided in between: the store only moves
        a row that is still pending, so the loser of that race gets Conflict, never a second decision.
        """
        if not await self.db.decide(
            broadcast_id,
            to=to,
            actor=actor,
            now=self.clock.now(),
            note=note,
            action=action,
            remote=remote,
        ):
            raise Conflict(f"broadcast {broadcast_id} is no longer pending")
        return await self._get(broadcast_id)

    # --- telling the approvers ---------------------------------------------------------------------------------

    def approval_notice(self, row: Mapping[str, Any]) -> str:
        colour = COLOUR_LABELS.get(row["colour"] or "", "")
        return (
            f"待审批：{row['submitted_by']}提交「{row['headline'] or '广播'}」{colour}，"
            f"约{row['recipients']}人次，请登录预警发布控制台审批（编号{row['id']}）。"
        )

    async def notify_approvers(self, row: Mapping[str, Any]) -> int:
        """SMS every approver and admin with a phone on file (not the submitter) on
        ``api.approval_notify_channel``; the console shows pending drafts either way. Each notice's outcome is
        audited with the phone masked; a failing provider never fails the submission. Returns notices sent."""
        name = self.config.api.approval_notify_channel
        channel = self.channels.get(name) if name else None
        if channel is None:
            return 0
        settings = self.config.channel_settings(channel.name)
        text = self.approval_notice(row)
        signature = settings.signature or ""
        body = sign(signature, text)
        sent = 0
        for user, phone in await self.db.approver_phones(APPROVER_ROLES):
            if same_person(f"user:{user}", row["submitted_by"]):
                continue
            message = OutgoingMessage(
                delivery_id=0,
                idempotency_key=f"approval:{row['id']}:{user}",
                recipient=Recipient(
                    key=phone,
                    name=user,
                    kind="person",
                    role="approver",
                    area_code="",
                    language="zh-CN",
                    phone=phone,
                ),
                address=phone,
                body=body,
                content_key=f"approval:{row['id']}",
                data={"signature": signature, "content": text},
                segments=segments(body),
                priority=1,
            )
            try:
                outcome = (await channel.send([message]))[0]
                state, error = outcome.outcome.value, outcome.error
            except Exception as exc:  # a provider down must not lose the draft; the console still shows it
                state, error = "error", str(exc)[:200]
            sent += state == "accepted"
            await self.db.store.audit(
                self.clock.now(),
                "warnd",
                "broadcast.notify",
                target=f"broadcast:{row['id']}",
                detail={
                    "user": user,
                    "phone": mask_phone(phone),
                    "channel": channel.name,
                    "outcome": state,
                    "error": error,
                },
            )
        return sent

    async def pending_count(self) -> int:
        return await self.db.count(PENDING)

    async def recent(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return await self.db.recent(status, limit)

    async def get(self, broadcast_id: int) -> dict[str, Any]:
        return await self._get(broadcast_id)
