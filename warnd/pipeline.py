"""The warning pipeline, in one place.

    ingest ──► lifecycle ──► match ──► audience ──► render ──► outbox ──► (dispatcher)
    parse,     link Update/  graded    groups ∩     once per   one row per
    validate,  Cancel to     response  area, in     channel ×  recipient ×
    dedupe,    the alert     rules     chunks       language × channel
    quarantine they update;                         action
               hold early ones

Each stage is a method below, called in that order. Everything is persisted before anything is sent: the alert
(with its raw payload) first, then deliveries chunk by chunk; an interrupted fan-out is finished at the next
start (``resume``) and cannot duplicate rows (one per alert × recipient × channel).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from channels.base import can_address
from warnd.audience import AlertArea
from warnd.audio import Speech
from warnd.cap import InvalidDocument, parse, parse_alert
from warnd.cap.build import build_cap_xml
from warnd.cap.model import Alert, ParsedAlert, Reference
from warnd.clock import Clock
from warnd.config import Config, admin_code, area_prefix
from warnd.hazards import COLOUR_LABELS, COLOUR_RANK, OASIS_SEVERITY, Catalogue, Hazard, parse_colour
from warnd.links import ACK, LinkSigner
from warnd.render import Renderer
from warnd.rules import DRILL_STATUSES, SILENT_STATUSES, Facts, Plan, PlannedTarget, RuleEngine
from warnd.store import NO_LONGER_APPLIES, AudienceQuery, Claimed, Store
from warnd.store.cluster import Solo

log = logging.getLogger("warnd.pipeline")

CAP_METHOD_FOR_STYLE = {"sms": ("SMS",), "spoken": ("SPEAKER", "BROADCAST"), "push": ("APP", "PUSH", "WEB")}


# how far ahead a fan-out that may still be inhibited writes its deliveries' visible time (released at its end)
FANOUT_HOLD = timedelta(days=1)
EXPIRY_SOURCE = "warnd:expiry"  # source of the 解除 notes the expiry sweep issues (rule notify_on_expiry)


@dataclass
class IngestResult:
    outcome: str  # created | duplicate | rejected | held (an Update/Cancel waiting for its original)
    alert_id: int | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    payload_id: int | None = None


@dataclass
class BroadcastRequest:
    """A manual broadcast by an operator: where (areas and/or groups), how (channels), what (hazard + colour,
    or free text)."""

    channels: list[str]
    actor: str
    areas: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    hazard: str | None = None
    colour: str | None = None
    text: str | None = None
    headline: str | None = None
    status: str = "Actual"
    expires_in: float = 6 * 3600
    # fixed by the broadcasts row (warnd/broadcasts.py), so sending again after a crash makes the same alert
    identifier: str | None = None
    sent: datetime | None = None


@dataclass
class RevisionRequest:
    """An operator's Update or Cancel (解除) of an alert chain, in warnd's name, referencing its latest
    revision. Unset fields keep the chain's values."""

    alert_id: int
    msg_type: str  # Update | Cancel
    actor: str
    headline: str | None = None
    text: str | None = None
    colour: str | None = None
    expires_in: float | None = None
    identifier: str | None = None
    sent: datetime | None = None


@dataclass
class Draft:
    """A message an operator composed, built as CAP but not yet accepted: what preview renders and counts, and
    what is sent once approved. ``plan`` None: the rules decide (an Update of a rules-matched chain, a Cancel)."""

    parsed: ParsedAlert
    plan: Plan | None
    previous: dict[str, Any] | None = None


@dataclass
class ChannelPreview:
    channel: str
    style: str
    body: str
    title: str | None
    segments: int
    chars: int
    recipients: int


class BroadcastInvalid(ValueError):
    pass


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Pipeline:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        renderer: Renderer,
        clock: Clock,
        wake: Callable[[], None] = lambda: None,
        speech: Speech | None = None,
        links: LinkSigner | None = None,
        cluster: Solo | None = None,
    ):
        self.config = config
        self.store = store
        self.cluster = cluster or Solo()  # cluster mode: a fan-out is one node's (warnd/store/cluster.py)
        self.renderer = renderer
        self.clock = clock
        self.wake = wake  # tells the dispatcher there is new work
        self.speech = speech  # renders spoken scripts to WAV when an offline TTS is installed
        self.links = links  # signs the 叫应 one-tap links in messages that ask for acknowledgement
        self.rules = RuleEngine(config)
        self.catalogue: Catalogue = config.catalogue()
        self._failover_alerts: dict[int, dict[str, Any] | None] = {}  # alert rows (plans) failover looks up

    # --- stage 1: ingest ----------------------------------------------------------------------------------------

    async def ingest(
        self, data: bytes, *, source: str, content_type: str | None = None, max_bytes: int = 5_000_000
    ) -> list[IngestResult]:
        """Parse and validate a payload (CAP, or a feed / EDXL-DE holding several); keep rejects in quarantine."""
        now = self.clock.now()
        try:
            parsed = parse(data, max_bytes=max_bytes)
        except InvalidDocument as exc:
            errors = [str(issue) for issue in exc.issues]
            payload_id = await self.store.save_payload(
                received_at=now,
                source=source,
                content_type=content_type,
                body=data,
                outcome="rejected",
                errors=errors,
            )
            log.warning("rejected payload from %s: %s", source, "; ".join(errors))
            return [IngestResult("rejected", errors=errors, payload_id=payload_id)]
        results = []
        for rejected in parsed.rejected:
            errors = [str(issue) for issue in rejected.issues]
            payload_id = await self.store.save_payload(
                received_at=now,
                source=source,
                content_type=content_type,
                body=rejected.xml or data,
                outcome="rejected",
                errors=errors,
            )
            results.append(IngestResult("rejected", errors=errors, payload_id=payload_id))
        for item in parsed.alerts:
            results.append(await self.accept(item, source=source, content_type=content_type))
        return results

    async def accept(
        self,
        item: ParsedAlert,
        *,
        source: str,
        content_type: str | None = None,
        plan: Plan | None = None,
        hold: bool = True,
    ) -> IngestResult:
        alert = item.alert
        existing = await self.store.find_alert(alert.sender, alert.identifier, alert.sent)
        if existing:
            return IngestResult("duplicate", alert_id=existing["id"])
        warnings = [str(w) for w in alert.warnings]
        previous = await self._lifecycle(alert)
        if previous is None and alert.msg_type in ("Update", "Cancel"):
            if hold and alert.references and self.config.lifecycle.hold_for > 0:
                return await self._hold(item, source=source, content_type=content_type, warnings=warnings)
            warnings.append(
                f"alert/references: none of the referenced alerts is known here; {alert.msg_type} "
                "treated as a new warning"
            )
        facts = self._facts(alert, previous)
        if plan is None:
            plan = self._match(alert, facts, previous)
        values = self._alert_values(alert, facts, plan, previous, source)
        now = self.clock.now()
        alert_id = await self.store.insert_alert(
            values,
            payload={
                "received_at": now,
                "source": source[:500],
                "content_type": content_type,
                "body": item.xml,
                "errors": warnings or None,
            },
        )
        if alert_id is None:  # the same alert arrived concurrently
            again = await self.store.find_alert(alert.sender, alert.identifier, alert.sent)
            return IngestResult("duplicate", alert_id=again["id"] if again else None)
        log.info(
            "alert %s (%s %s %s) from %s: %d rule(s), %d target(s)",
            alert_id,
            alert.msg_type,
            facts.event,
            facts.colour,
            source,
            len(plan.rules),
            len(plan.targets),
        )
        if values["fanout"] == "pending":
            await self.fanout_once(alert_id)
        elif previous is not None and values["state"] == "expired":  # a stale revision still ends the chain
            stored = await self.store.get_alert(alert_id)
            if stored is not None and (await self._uncover(stored, "expired")).get("released"):
                self.wake()
        await self._apply_held(alert)
        return IngestResult("created", alert_id=alert_id, warnings=warnings)

    # --- stage 2: lifecycle ---------------------------------------------------------------------------------------

    async def _lifecycle(self, alert: Alert) -> dict[str, Any] | None:
        """The latest revision of the chain an Update/Cancel refers to, if we have it."""
        if alert.msg_type not in ("Update", "Cancel"):
            return None
        for ref in reversed(alert.references):
            found = await self.store.find_referenced(ref.identifier, ref.sender, ref.sent)
            if found:
                return await self.store.latest_in_chain(found["root_id"] or found["id"])
        return None

    async def _hold(
        self, item: ParsedAlert, *, source: str, content_type: str | None, warnings: list[str]
    ) -> IngestResult:
        """An Update/Cancel that arrived before the alert it references waits for it (out-of-order delivery
        by feeds and relays): applied when the original arrives, or treated as new after
        ``lifecycle.hold_for`` (:meth:`release_held`)."""
        alert = item.alert
        refs = " ".join(r.identifier for r in alert.references)
        note = (
            f"alert/references: the referenced alert ({refs}) is not known here yet; {alert.msg_type} held for "
            f"up to {self.config.lifecycle.hold_for:.0f}s waiting for it, then treated as a new warning"
        )
        payload_id = await self.store.hold_payload(
            received_at=self.clock.now(),
            source=source,
            content_type=content_type,
            body=item.xml,
            errors=[*warnings, note],
        )
        log.warning("%s %s from %s held: %s", alert.msg_type, alert.identifier, source, note)
        if await self._lifecycle(alert) is not None:  # the original arrived while this one was being held
            applied = await self._release(payload_id, item, source, content_type, "applied")
            if applied is not None:
                return applied
        return IngestResult("held", payload_id=payload_id, warnings=[*warnings, note])

    async def _release(
        self, payload_id: int, item: ParsedAlert, source: str, content_type: str | None, outcome: str
    ) -> IngestResult | None:
        if not await self.store.take_held(payload_id, outcome):
            return None  # taken by someone else meanwhile
        result = await self.accept(item, source=source, content_type=content_type, hold=False)
        log.info(
            "held %s %s %s: %s alert %s",
            item.alert.msg_type,
            item.alert.identifier,
            outcome,
            result.outcome,
            result.alert_id,
        )
        return result

    def _held_items(self, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], ParsedAlert]]:
        """Held payloads parsed again, in the order they were sent."""
        items = []
        for row in rows:
            try:
                items.append((row, ParsedAlert(parse_alert(row["body"]), row["body"])))
            except InvalidDocument:  # it parsed when it arrived; never expected
                log.exception("held payload %s no longer parses", row["id"])
        return sorted(items, key=lambda pair: (pair[1].alert.sent, pair[0]["id"]))

    async def _apply_held(self, alert: Alert) -> None:
        """Apply held Updates/Cancels that reference an alert that has just been stored, oldest first."""
        rows = await self.store.held_payloads()
        if not rows:
            return
        for row, item in self._held_items(rows):
            if any(
                ref.identifier == alert.identifier
                and (ref.sender is None or ref.sender == alert.sender)
                and (ref.sent is None or ref.sent == alert.sent)
                for ref in item.alert.references
            ):
                await self._release(row["id"], item, row["source"], row["content_type"], "applied")

    async def release_held(self) -> list[IngestResult]:
        """Scheduled: held Updates/Cancels whose original did not arrive within ``lifecycle.hold_for`` are
        treated as new warnings."""
        cutoff = self.clock.now() - timedelta(seconds=self.config.lifecycle.hold_for)
        results = []
        for row, item in self._held_items(await self.store.held_payloads(received_before=cutoff)):
            result = await self._release(row["id"], item, row["source"], row["content_type"], "released")
            if result is not None:
                results.append(result)
        return results

    async def expire(self) -> list[int]:
        """Scheduled: alerts past ``expires`` stop being active. When a rule of the alert asks for it
        (``notify_on_expiry``), everyone who received the chain gets a 解除 note, issued as a CAP Cancel."""
        expired = await self.store.expire_alerts(self.clock.now())
        notify = {rule.name for rule in self.config.rules if rule.notify_on_expiry}
        for alert_id in expired:
            row = await self.store.get_alert(alert_id)
            if row is None or row["status"] in SILENT_STATUSES:
                continue
            try:  # warnings this one suppressed go out to the people it covered
                if (await self._uncover(row, "expired")).get("released"):
                    self.wake()
            except Exception:
                log.exception("could not release the deliveries alert %s suppressed", alert_id)
            if notify.intersection((row["rules"] or {}).get("rules", ())):
                try:
                    await self._expiry_note(row)
                except Exception:  # one odd alert must not stop the others' notes
                    log.exception("could not issue the expiry note of alert %s", alert_id)
        return expired

    async def _uncover(self, row: Mapping[str, Any], because: str) -> dict[str, int]:
        """The chain of ``row`` stopped covering people (``because``: cancelled | expired | updated): the
        deliveries of other warnings of its family it suppressed go out to those nothing else covers now."""
        if not row["hazard_code"] or row["root_id"] is None:
            return {}
        stats = await self.store.release_suppressed(
            row["root_id"], self.catalogue.family_codes(row["hazard_code"]), self.clock.now(), because=because
        )
        if stats.get("released"):
            log.info(
                "alert chain %s %s: %d suppressed deliveries of other warnings sent now",
                row["root_id"],
                because,
                stats["released"],
            )
        return stats

    async def _expiry_note(self, row: Mapping[str, Any]) -> IngestResult:
        parsed = row["parsed"]
        info = (parsed.get("infos") or [{}])[0]
        expires = row["expires"]
        assert expires is not None
        hazard = self.catalogue.find(row["hazard_code"]) if row["hazard_code"] else None
        xml = build_cap_xml(
            identifier=f"{row['identifier']}-expired",
            sender=row["sender"],
            sent=expires,  # the same note every time: a second sweep finds it a duplicate
            status=row["status"],
            msg_type="Cancel",
            scope=row["scope"],
            references=[Reference(row["identifier"], row["sender"], row["sent"])],
            note="预警已到期 (the warning expired)",
            language=info.get("language") or self.config.language,
            event=row["event"],
            event_codes=[("GB/T 35561", hazard.code)] if hazard else [],
            severity=OASIS_SEVERITY.get(row["colour"] or "", "Unknown"),
            sender_name=info.get("sender_name") or None,
            headline=row["headline"],
            areas=[
                {"area_desc": a.get("desc") or "", "geocodes": [tuple(g) for g in a.get("geocodes", ())]}
                for i in parsed.get("infos", [])[:1]
                for a in i.get("areas", [])
            ],
        )
        result = await self.accept(
            ParsedAlert(parse_alert(xml), xml), source=EXPIRY_SOURCE, content_type="application/cap+xml"
        )
        log.info("alert %s expired: 解除 note is alert %s (%s)", row["id"], result.alert_id, result.outcome)
        return result

    def _facts(self, alert: Alert, previous: Mapping[str, Any] | None) -> Facts:
        info = alert.infos[0] if alert.infos else None
        if info is not None:
            found = self.catalogue.classify(info)
            hazard, colour, event = found.hazard, found.colour, found.event
        else:
            hazard, colour, event = None, None, alert.note or alert.msg_type
        if previous is not None:  # a Cancel often omits what it cancels
            hazard = hazard or (
                self.catalogue.find(previous["hazard_code"]) if previous["hazard_code"] else None
            )
            colour = colour or previous["colour"]
            event = event if hazard is None or event != alert.msg_type else hazard.name
        area = AlertArea([to_jsonable(a) for i in alert.infos for a in i.areas])
        return Facts(
            hazard=hazard,
            event=event,
            colour=colour,
            status=alert.status,
            msg_type=alert.msg_type,
            area_prefixes=area.prefixes,
            has_geometry=area.has_geometry,
        )

    # --- stage 3: match --------------------------------------------------------------------------------------------

    def _match(self, alert: Alert, facts: Facts, previous: Mapping[str, Any] | None) -> Plan:
        if alert.msg_type == "Cancel" and previous is not None:
            # 解除 goes to everyone who received the chain (added in fan-out), at the chain's level
            old = Plan.from_json(previous["rules"] or {})
            return Plan(rules=old.rules, level=previous["level"], inhibit=False, manual=old.manual)
        return self.rules.plan(facts)

    def _alert_values(
        self, alert: Alert, facts: Facts, plan: Plan, previous: Mapping[str, Any] | None, source: str
    ) -> dict[str, Any]:
        info = alert.infos[0] if alert.infos else None
        expires = info.expires if info and info.expires else None
        now = self.clock.now()
        if expires is None and alert.msg_type != "Cancel":
            expires = max(now, alert.sent) + timedelta(seconds=self.config.alert_default_ttl)
        silent = alert.status in SILENT_STATUSES
        stale = expires is not None and expires <= now  # arrived after it ended: recorded, never sent
        rank = plan.level or (COLOUR_RANK.get(facts.colour) if facts.colour else None)
        return {
            "sender": alert.sender,
            "identifier": alert.identifier,
            "sent": alert.sent,
            "msg_type": alert.msg_type,
            "status": alert.status,
            "scope": alert.scope,
            "profile": alert.profile,
            "event": facts.event[:255],
            "hazard_code": facts.hazard.code if facts.hazard else None,
            "colour": facts.colour,
            "level": plan.level,
            "rank": rank,
            "headline": info.headline if info else alert.note,
            "area_desc": "；".join(a.desc for i in alert.infos for a in i.areas) or None,
            "effective": info.effective if info and info.effective else alert.sent,
            "expires": expires,
            "root_id": previous["root_id"] if previous else None,
            "previous_id": previous["id"] if previous else None,
            "parsed": to_jsonable(alert),
            "rules": plan.to_json(),
            "state": "inactive"
            if silent
            else "expired"
            if stale
            else ("cancelled" if alert.msg_type == "Cancel" else "active"),
            "fanout": "done" if silent or stale else "pending",
            "fanout_stats": {"not_sent": "expired on arrival"} if stale and not silent else None,
            "source": source[:500],
            "received_at": now,
        }

    # --- stages 4-6: audience -> render -> outbox ---------------------------------------------------------------

    async def fanout(self, alert_id: int, *, resuming: bool = False) -> dict[str, int]:
        """Create every delivery of one alert revision, chunk by chunk. Safe to run again after a crash
        (``resuming``: then rows an interrupted run held back are released at the end whatever happens)."""
        row = await self.store.get_alert(alert_id)
        assert row is not None
        plan = Plan.from_json(row["rules"] or {})
        area = AlertArea([a for info in row["parsed"]["infos"] for a in info["areas"]])
        previous = await self.store.get_alert(row["previous_id"]) if row["previous_id"] else None
        now = self.clock.now()
        stats: Counter[str] = Counter()
        earlier: list[int] = []
        if previous is not None:
            earlier = [i for i in await self.store.chain_ids(row["root_id"]) if i != alert_id]
            stats["superseded"] = await self.store.supersede_queued(earlier, alert_id, now)
        inhibits = bool(plan.inhibit and row["hazard_code"] and row["rank"] and row["msg_type"] != "Cancel")
        family = self.catalogue.family_codes(row["hazard_code"]) if inhibits else []
        # Deliveries go out while the fan-out is still writing, chunk by chunk, unless another warning of the
        # family is active: then the inhibit step at the end may suppress some of them, so they are held back
        # (visible a day later) and released only after it.
        hold = inhibits and await self.store.family_active_elsewhere(family, row["root_id"])
        messages = _MessageMaker(self, row, previous, visible_at=now + FANOUT_HOLD if hold else now)
        # an Update speaks per recipient: update/upgrade/downgrade to those who had the warning and are still
        # inside, the full warning to those newly inside, a short note to those no longer inside
        per_recipient = previous is not None and row["msg_type"] == "Update"
        for target in plan.targets:
            async for inside, outside in self._audience(target, plan, area):
                stats["outside_area"] += outside
                had = (
                    await self.store.known_among(earlier, [r["id"] for r in inside])
                    if per_recipient
                    else set()
                )
                rows = []
                for r in inside:
                    newly_inside = per_recipient and r["id"] not in had
                    if newly_inside:
                        stats["newly_inside"] += 1
                    rows.append(await messages.delivery(r, target, now, "issue" if newly_inside else None))
                await self.store.insert_deliveries(rows)
                stats[f"planned:{target.channel}"] += len(rows)
                if not hold:
                    self.wake()
        if earlier:  # everyone who had an earlier revision hears about this one (update / downgrade / 解除)
            async for chunk in self._previous_recipients(earlier, now):
                rows = []
                for r in chunk:
                    outside = per_recipient and not (
                        plan.everywhere or area.contains(r["area_code"], r["lat"], r["lon"])
                    )
                    # the note to someone no longer inside is marked: it covers nobody (see Store.inhibit)
                    rule = NO_LONGER_APPLIES if outside else "previous-recipients"
                    target = PlannedTarget(
                        rule=rule,
                        groups=None,
                        channel=r["channel"],
                        level=plan.level or row["level"],
                        repeat=r["repeat"],
                    )
                    if outside:
                        stats["no_longer_applies"] += 1
                    rows.append(
                        await messages.delivery(r, target, now, "no_longer_applies" if outside else None)
                    )
                await self.store.insert_deliveries(rows)
                stats["previous_recipients"] += len(rows)
                if not hold:
                    self.wake()
        if inhibits:
            stats.update(
                await self.store.inhibit(alert_id, family, row["rank"], row["root_id"], now, earlier=earlier)
            )
        if hold or resuming:
            await self.store.release_fanout(alert_id, now)
        if previous is not None and row["msg_type"] in ("Update", "Cancel"):
            # the chain may no longer cover people for whom it suppressed another warning (cancelled, or
            # downgraded / moved away): those warnings go out to them now
            stats.update(await self._uncover(row, "cancelled" if row["msg_type"] == "Cancel" else "updated"))
        stats.update(messages.stats)
        await self.store.set_alert(alert_id, fanout="done", fanout_stats=dict(stats))
        self.wake()
        return dict(stats)

    async def fanout_once(self, alert_id: int) -> dict[str, int] | None:
        """:meth:`fanout` under the alert's fan-out lease; None when another node holds it (it is fanning the
        alert out right now)."""
        async with self.cluster.hold(f"fanout:{alert_id}", self.config.dispatch.fanout_lease) as mine:
            return await self.fanout(alert_id) if mine else None

    async def resume(self, pending: Sequence[int] | None = None) -> list[int]:
        """Finish fan-outs a crash interrupted (all pending ones, or those given), except those another node
        is doing now."""
        if pending is None:
            pending = await self.store.pending_fanouts()
        resumed = []
        for alert_id in pending:
            async with self.cluster.hold(f"fanout:{alert_id}", self.config.dispatch.fanout_lease) as mine:
                if mine and (row := await self.store.get_alert(alert_id)) and row["fanout"] == "pending":
                    log.info("resuming fan-out of alert %s", alert_id)
                    await self.fanout(alert_id, resuming=True)
                    resumed.append(alert_id)
        return resumed

    async def _audience(
        self, target: PlannedTarget, plan: Plan, area: AlertArea
    ) -> AsyncIterator[tuple[list[dict[str, Any]], int]]:
        """The target's recipients inside the alert's area, chunk by chunk: (inside, how many were outside)."""
        query = AudienceQuery(
            groups=target.groups,
            roles=self._group_roles(target.groups),
            address=self.config.channel_address(target.channel),
            area_prefixes=area.prefixes,
            area_ancestors=area.ancestors,
            bbox=area.bbox(),
            rule_prefixes=target.rule_prefixes,
            everywhere=plan.everywhere,
        )
        after = 0
        while chunk := await self.store.audience_chunk(query, after, self.config.dispatch.fanout_chunk):
            after = chunk[-1]["id"]
            inside = [
                r for r in chunk if plan.everywhere or area.contains(r["area_code"], r["lat"], r["lon"])
            ]
            yield inside, len(chunk) - len(inside)

    async def _previous_recipients(
        self, chain: Sequence[int], now: datetime
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Who had an earlier revision of the chain (alert ids ``chain``), chunk by chunk."""
        after = 0
        chunk_size = self.config.dispatch.fanout_chunk
        while chunk := await self.store.previous_recipients_chunk(chain, after, chunk_size, now):
            after = chunk[-1]["id"]
            yield chunk

    def _group_roles(self, groups: tuple[str, ...] | None) -> tuple[str, ...]:
        if groups is None:
            return ()
        return tuple(sorted({role for g in groups for role in self.config.groups[g].roles}))

    # --- failover (docs/failover.md) -------------------------------------------------------------------------------

    async def failover_options(self, item: Claimed) -> FailoverOptions:
        """Where a delivery may go when its channel or terminal is down: the ``failover`` of the plan targets
        that made it (same rule and channel; an Update's/Cancel's note to earlier recipients: any target on the
        channel, else the chain's earlier plans), minus channels this delivery already went through."""
        d = item.delivery
        base, tried = failover_chain(d["idempotency_key"], d["channel"])
        alert_id: int | None = d["alert_id"]
        for _ in range(50):  # walk back through the chain for plans without targets (a Cancel's)
            if alert_id is None:
                break
            row = await self._failover_alert(alert_id)
            if row is None:
                break
            targets = [t for t in Plan.from_json(row["rules"] or {}).targets if t.channel == base]
            own = [t for t in targets if t.rule == d["rules"]]
            chosen = own or targets
            if chosen:
                return FailoverOptions(
                    channels=tuple(dict.fromkeys(c for t in chosen for c in t.failover if c not in tried)),
                    groups=tuple(dict.fromkeys(g for t in chosen for g in t.failover_groups)),
                    group_channels=tuple(dict.fromkeys(c for t in chosen for c in t.failover_channels)),
                )
            alert_id = row["previous_id"]
        return FailoverOptions()

    async def _failover_alert(self, alert_id: int) -> dict[str, Any] | None:
        if alert_id not in self._failover_alerts:
            if len(self._failover_alerts) > 256:
                self._failover_alerts.clear()
            self._failover_alerts[alert_id] = await self.store.get_alert(alert_id)
        return self._failover_alerts[alert_id]

    async def fail_over(
        self, item: Claimed, why: str, *, available: Callable[[str], bool], channels: Collection[str]
    ) -> FailoverDone | None:
        """Create the alternate deliveries of ``item`` (rendered for their channel, written before anything is
        sent, keys derived from the original's so a repeat after a crash adds nothing) and say why. ``available``
        tells whether a channel's breaker lets work through; ``channels`` are those the dispatcher runs.
        None: no alternate could take it (none configured, all down, no address, nobody in the village)."""
        if item.delivery.get("purpose", "warning") != "warning":
            return None  # a notice (叫应 reminder, door-knock task): the escalation sweep follows it up
        options = await self.failover_options(item)
        if not options:
            return None
        d, r = item.delivery, item.recipient
        now = self.clock.now()
        alert = await self._failover_alert(d["alert_id"])
        if alert is None:
            return None
        previous = await self._failover_alert(alert["previous_id"]) if alert["previous_id"] else None
        maker = _MessageMaker(self, alert, previous)
        recipient = {**r, "id": d["recipient_id"]}
        for channel in options.channels:
            if (
                channel not in channels
                or not available(channel)
                or not can_address(self.config.channel_address(channel), r)
            ):
                continue
            reason = f"改道发送：{d['channel']} 不可用 (failover from {d['channel']} #{d['id']}: {why})"
            row = await self._failover_row(maker, item, recipient, channel, f">fo:{channel}", reason, now)
            found = await self.store.insert_failover_deliveries([row])
            alt = found.get((d["recipient_id"], channel))
            if alt is None:
                continue
            already = "" if alt["created"] else f"，该接收人已有 #{alt['id']}"
            return FailoverDone(
                reason=f"熔断/离线，已改由 {channel} 发送{already} ({d['channel']} down: sent by {channel} "
                f"instead, delivery #{alt['id']}; {why})",
                alternates=[alt | {"channel": channel, "recipient_id": d["recipient_id"]}],
            )
        if not options.groups or not options.group_channels:
            return None
        village = r["area_code"]
        query = AudienceQuery(
            groups=options.groups,
            roles=self._group_roles(options.groups),
            area_prefixes=(area_prefix(village),),
        )
        people = [p for p in await self.store.audience_chunk(query, 0, 1000) if p["id"] != d["recipient_id"]]
        rows = []
        for channel in options.group_channels:
            if channel not in channels:
                continue
            kind = self.config.channel_address(channel)
            for person in people:
                if not can_address(kind, person):
                    continue
                reason = (
                    f"{r['name']}离线，改由{self._group_labels(options.groups)}转告 "
                    f"(failover from {d['channel']} to {r['name']} #{d['id']}: {why})"
                )
                rows.append(
                    await self._failover_row(
                        maker, item, person, channel, f">fo:{channel}@{person['id']}", reason, now
                    )
                )
        if not rows:
            return None
        found = await self.store.insert_failover_deliveries(rows)
        alternates = [
            alt | {"channel": channel, "recipient_id": rid} for (rid, channel), alt in sorted(found.items())
        ]
        new = sum(1 for a in alternates if a["created"])
        labels = self._group_labels(options.groups)
        channel_list = "、".join(options.group_channels)
        return FailoverDone(
            reason=f"终端离线/熔断，已改由本村{labels} {len(alternates)} 人经 {channel_list} 转告"
            f"（新发 {new}，其余已有） ({d['channel']} to {r['name']} down: {len(alternates)} "
            f"{'/'.join(options.groups)} in {village} reached by {'/'.join(options.group_channels)} instead, "
            f"{new} new; {why})",
            alternates=alternates,
        )

    def _group_labels(self, groups: Sequence[str]) -> str:
        return "、".join(self.config.groups[g].label if g in self.config.groups else g for g in groups)

    async def _failover_row(
        self,
        maker: _MessageMaker,
        item: Claimed,
        person: Mapping[str, Any],
        channel: str,
        suffix: str,
        reason: str,
        now: datetime,
    ) -> dict[str, Any]:
        """One alternate outbox row, worded like the original (a newly-inside / no-longer-applies note keeps
        its wording), as urgent as the original."""
        d = item.delivery
        action: str | None = None
        if d["rules"] == NO_LONGER_APPLIES:
            action = "no_longer_applies"
        elif maker.previous is not None and maker.alert["msg_type"] == "Update":
            earlier = [i for i in await self.store.chain_ids(maker.alert["root_id"]) if i != d["alert_id"]]
            if person["id"] not in await self.store.known_among(earlier, [person["id"]]):
                action = "issue"
        target = PlannedTarget(
            rule=d["rules"] or "failover",
            groups=None,
            channel=channel,
            level=d["level"],
            ack_required=d["ack_required"],
            repeat=d["repeat"],
        )
        row = await maker.delivery(person, target, now, action)
        row.update(
            idempotency_key=f"{d['idempotency_key']}{suffix}",
            priority=d["priority"],
            ack_deadline=d["ack_deadline"],
            deliver_deadline=d.get("deliver_deadline"),
            reason=reason,
        )
        return row

    async def resend_rows(
        self,
        alert_id: int,
        recipients: Sequence[Mapping[str, Any]],
        channel: str,
        *,
        reason: str,
        like: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Outbox rows sending alert revision ``alert_id`` again to ``recipients`` on ``channel`` (the
        escalation ladder's resend rung, docs/escalation.md), worded like the revision's own (an Update's
        newcomers get the full warning) and as urgent as ``like``, the person's original delivery (priority,
        level, rule, 叫应 request and deadline; people only). Normal warning deliveries (purpose warning): the
        caller writes them with ON CONFLICT DO NOTHING, so one already there stays as it is."""
        alert = await self._failover_alert(alert_id)
        if alert is None or not recipients:
            return []
        previous = await self._failover_alert(alert["previous_id"]) if alert["previous_id"] else None
        maker = _MessageMaker(self, alert, previous)
        now = self.clock.now()
        known: set[int] = set()
        if previous is not None and alert["msg_type"] == "Update":
            earlier = [i for i in await self.store.chain_ids(alert["root_id"]) if i != alert_id]
            known = await self.store.known_among(earlier, [r["id"] for r in recipients])
        rows = []
        for person in recipients:
            is_person = person.get("kind", "person") == "person"
            asks = bool(like and like.get("ack_required")) and is_person
            target = PlannedTarget(
                rule=(like or {}).get("rules") or "escalation",
                groups=None,
                channel=channel,
                level=(like or {}).get("level") or alert["level"],
                ack_required=asks,
                repeat=int((like or {}).get("repeat") or 1) if is_person else 2,
            )
            action = "issue" if previous is not None and alert["msg_type"] == "Update" else None
            if action and person["id"] in known:
                action = None
            row = await maker.delivery(person, target, now, action)
            row.update(
                priority=(like or {}).get("priority", row["priority"]),
                ack_deadline=(like or {}).get("ack_deadline") if asks else None,
                deliver_deadline=None,
                reason=reason,
            )
            rows.append(row)
        return rows

    # --- manual broadcast ----------------------------------------------------------------------------------------

    async def broadcast(self, request: BroadcastRequest) -> IngestResult:
        """An operator's broadcast, written as a real CAP 1.2 message and run through the same pipeline with
        the operator's targets instead of the rules'."""
        return await self.send_draft(self.plan_broadcast(request), actor=request.actor)

    async def send_draft(self, draft: Draft, *, actor: str) -> IngestResult:
        return await self.accept(
            draft.parsed, source=f"broadcast:{actor}", content_type="application/cap+xml", plan=draft.plan
        )

    def plan_broadcast(self, request: BroadcastRequest) -> Draft:
        hazard, colour = self._check_broadcast(request)
        now = request.sent or self.clock.now()
        level = COLOUR_RANK[colour] if colour else None
        name = hazard.name if hazard else "紧急信息"
        colour_word = COLOUR_LABELS.get(colour or "", "")
        headline = request.headline or f"{self.config.organisation}发布{name}{colour_word}预警"
        areas = (
            [
                {
                    "area_desc": "、".join(self.config.area_name(c) or c for c in request.areas),
                    "geocodes": [("geocode", code) for code in request.areas],
                }
            ]
            if request.areas
            else [
                {"area_desc": "、".join(self.config.groups[g].label for g in request.groups), "geocodes": []}
            ]
        )
        xml = build_cap_xml(
            identifier=request.identifier or f"warnd-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}",
            sender=self.config.organisation,
            sent=now.astimezone(),
            status=request.status,
            msg_type="Alert",
            scope="Public",
            language=self.config.language,
            category="Safety" if hazard is None else "Met",
            event=name,
            event_codes=[("GB/T 35561", hazard.code)] if hazard else [],
            urgency="Immediate",
            severity=OASIS_SEVERITY.get(colour or "", "Unknown"),
            certainty="Likely",
            sender_name=self.config.organisation,
            source=request.actor,
            headline=headline,
            description=request.text,
            expires=(now + timedelta(seconds=request.expires_in)).astimezone(),
            areas=areas,
        )
        groups = tuple(request.groups) or None
        plan = Plan(
            rules=["manual-broadcast"], level=level, inhibit=False, manual=True, everywhere=not request.areas
        )
        drill = request.status in DRILL_STATUSES
        if drill and groups:
            groups = tuple(g for g in groups if self.config.groups[g].drill) or None
            if groups is None:
                raise BroadcastInvalid("none of the chosen groups takes part in drills (drill: true)")
        if drill and not groups:
            groups = tuple(g for g, cfg in self.config.groups.items() if cfg.drill)
        plan.targets = [
            PlannedTarget(rule="manual-broadcast", groups=groups, channel=c, level=level)
            for c in request.channels
        ]
        return Draft(ParsedAlert(parse_alert(xml), xml), plan)

    async def plan_revision(self, request: RevisionRequest) -> Draft:
        """An Update or Cancel of the chain of ``request.alert_id``, in warnd's name, referencing the chain's
        latest revision. A manual broadcast's Update keeps its operator-chosen targets (at the new level); any
        other Update is matched against the rules like a received one."""
        first = await self.store.get_alert(request.alert_id)
        if first is None:
            raise BroadcastInvalid(f"no alert {request.alert_id}")
        latest = await self.store.latest_in_chain(first["root_id"] or first["id"])
        assert latest is not None
        if latest["state"] != "active" or latest["msg_type"] == "Cancel":
            raise BroadcastInvalid(
                f"alert {latest['id']} is {latest['state']}: only an active warning changes"
            )
        if request.msg_type not in ("Update", "Cancel"):
            raise BroadcastInvalid(f"msg_type must be Update or Cancel, not {request.msg_type!r}")
        colour = latest["colour"]
        if request.colour:
            try:
                colour = parse_colour(request.colour)
            except ValueError as exc:
                raise BroadcastInvalid(f"colour: {exc}") from None
        parsed = latest["parsed"]
        info = (parsed.get("infos") or [{}])[0]
        now = request.sent or self.clock.now()
        hazard = self.catalogue.find(latest["hazard_code"]) if latest["hazard_code"] else None
        cancel = request.msg_type == "Cancel"
        expires = now + timedelta(seconds=request.expires_in) if request.expires_in else latest["expires"]
        xml = build_cap_xml(
            identifier=request.identifier or f"warnd-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}",
            sender=self.config.organisation,
            sent=now.astimezone(),
            status=latest["status"],
            msg_type=request.msg_type,
            scope="Public",
            references=[Reference(latest["identifier"], latest["sender"], latest["sent"])],
            note=request.text if cancel else None,
            language=self.config.language,
            category=info.get("categories") or "Other",
            event=latest["event"],
            event_codes=[("GB/T 35561", hazard.code)] if hazard else [],
            urgency="Immediate",
            severity=OASIS_SEVERITY.get(colour or "", "Unknown"),
            certainty="Likely",
            sender_name=self.config.organisation,
            source=request.actor,
            headline=request.headline or (None if cancel else latest["headline"]),
            description=None if cancel else (request.text or info.get("description")),
            instruction=None if cancel else info.get("instruction"),
            expires=None if cancel or expires is None else expires.astimezone(),
            areas=[] if cancel else info.get("areas") or [],
        )
        plan = None
        old = Plan.from_json(latest["rules"] or {})
        if old.manual and not cancel:
            level = COLOUR_RANK[colour] if colour else old.level
            plan = dataclasses.replace(
                old, level=level, targets=[dataclasses.replace(t, level=level) for t in old.targets]
            )
        return Draft(ParsedAlert(parse_alert(xml), xml), plan, latest)

    async def preview(self, draft: Draft) -> list[ChannelPreview]:
        """What each channel would say, and to how many recipients (distinct per channel), without storing
        anything: the rendering and the audience query fan-out uses. For an Update or Cancel, everyone who had
        the chain's warning on a channel is counted there too."""
        alert = draft.parsed.alert
        facts = self._facts(alert, draft.previous)
        plan = draft.plan or self._match(alert, facts, draft.previous)
        row = {**self._alert_values(alert, facts, plan, draft.previous, "preview"), "id": 0}
        messages = _MessageMaker(self, row, draft.previous)
        area = AlertArea([a for info in row["parsed"]["infos"] for a in info["areas"]])
        audience: dict[str, set[int]] = {}
        samples: dict[str, Mapping[str, Any]] = {}
        for target in plan.targets:
            ids = audience.setdefault(target.channel, set())
            async for inside, _ in self._audience(target, plan, area):
                ids.update(r["id"] for r in inside)
                if inside and target.channel not in samples:
                    samples[target.channel] = inside[0]
        if draft.previous is not None:
            chain = await self.store.chain_ids(draft.previous["root_id"] or draft.previous["id"])
            async for chunk in self._previous_recipients(chain, self.clock.now()):
                for r in chunk:
                    audience.setdefault(r["channel"], set()).add(r["id"])
                    samples.setdefault(r["channel"], r)
        stand_in = {"id": 0, "name": "", "role": "", "area_code": "", "language": self.config.language}
        out = []
        for channel, ids in audience.items():
            style = self.config.channel_style(channel)
            body, title, _, segments, _ = messages.render(
                channel, samples.get(channel, stand_in), messages.action
            )
            out.append(ChannelPreview(channel, style, body, title, segments, len(body), len(ids)))
        return out

    def _check_broadcast(self, request: BroadcastRequest) -> tuple[Hazard | None, str | None]:
        problems = []
        if not request.channels:
            problems.append("channels: choose at least one channel")
        problems += [
            f"channels: unknown channel {c!r}" for c in request.channels if c not in self.config.channels
        ]
        problems += [f"groups: unknown group {g!r}" for g in request.groups if g not in self.config.groups]
        for code in request.areas:
            try:
                admin_code(code)
            except ValueError as exc:
                problems.append(f"areas: {exc}")
        if not request.areas and not request.groups:
            problems.append("choose areas (admin codes) or groups")
        hazard = self.catalogue.find(request.hazard) if request.hazard else None
        if request.hazard and hazard is None:
            problems.append(f"hazard: unknown hazard {request.hazard!r}")
        colour = None
        if request.colour:
            try:
                colour = parse_colour(request.colour)
            except ValueError as exc:
                problems.append(f"colour: {exc}")
        if hazard is None and not request.text:
            problems.append("give a hazard and colour, or the text to send")
        if request.status not in ("Actual", "Exercise", "Test"):
            problems.append(f"status: {request.status!r} is not Actual, Exercise or Test")
        if problems:
            raise BroadcastInvalid("; ".join(problems))
        return hazard, colour


class _MessageMaker:
    """Renders once per channel × language × action (per recipient only when a template uses recipient
    fields; the "no longer applies" note once per recipient area, which it names) and builds the outbox
    rows."""

    def __init__(
        self,
        pipeline: Pipeline,
        alert: Mapping[str, Any],
        previous: Mapping[str, Any] | None,
        *,
        visible_at: datetime | None = None,
    ):
        self.p = pipeline
        self.visible_at = visible_at  # when the rows may be sent (default: when made)
        self.alert = alert
        self.previous = previous
        self.cache: dict[tuple[str, str, str, str, bool], tuple[int, int]] = {}
        self._rows: dict[tuple[PlannedTarget, bool, datetime], dict[str, Any]] = {}
        self._languages: dict[tuple[str, str | None], tuple[str, bool]] = {}
        self.stats: Counter[str] = Counter()
        self.action = _action(alert, previous)

    async def delivery(
        self, r: Mapping[str, Any], target: PlannedTarget, now: datetime, action: str | None = None
    ) -> dict[str, Any]:
        """One outbox row; ``action`` overrides the revision's own (issue to someone newly inside an
        updated area, no_longer_applies to someone who is no longer inside).

        Called once per recipient of a fan-out (a million times for a province): what is the same for every
        recipient of a target is worked out once (:meth:`_row_for`), the row is that plus the recipient."""
        action = action or self.action
        person = r.get("kind", "person") == "person"
        asks_ack = target.ack_required and person and action in ("issue", "update", "upgrade", "downgrade")
        message_id, segments = await self._message(target.channel, r, action, asks_ack)
        row = self._row_for(target, person, now).copy()
        row["recipient_id"] = r["id"]
        row["message_id"] = message_id
        row["segments"] = segments
        row["idempotency_key"] = f"{row['alert_id']}:{r['id']}:{target.channel}"
        row["area_code"] = r["area_code"]
        return row

    def _row_for(self, target: PlannedTarget, person: bool, now: datetime) -> dict[str, Any]:
        """The columns of ``target``'s outbox rows that do not depend on the recipient."""
        key = (target, person, now)
        row = self._rows.get(key)
        if row is None:
            colour_rank = COLOUR_RANK.get(self.alert["colour"] or "", 5)
            group_priority = min((self.p.config.groups[g].priority for g in target.groups or ()), default=5)
            drill = 100 if self.alert["status"] in DRILL_STATUSES else 0
            row = self._rows[key] = {
                "alert_id": self.alert["id"],
                "channel": target.channel,
                "status": "queued",
                "priority": drill + colour_rank * 10 + group_priority,
                "visible_at": self.visible_at or now,
                "lease_token": None,
                "attempts": 0,
                "repeat": target.repeat,
                "level": target.level,
                "ack_required": target.ack_required,
                "ack_deadline": now + timedelta(seconds=target.ack_within) if target.ack_within else None,
                "deliver_deadline": now + timedelta(seconds=target.deliver_within)
                if target.deliver_within and person
                else None,
                "rules": target.rule,
                "created_at": now,
                "updated_at": now,
                "provider_message_id": None,
                "error": None,
                "reason": None,
                "sent_at": None,
            }
        return row

    async def _message(
        self, channel: str, r: Mapping[str, Any], action: str, asks_ack: bool = False
    ) -> tuple[int, int]:
        language, uses_recipient = self._language_for(channel, r["language"])
        ack = self._ack(r) if asks_ack else None
        per_recipient = uses_recipient or bool(ack and ack["url"])
        place = r["area_code"] if action == "no_longer_applies" else ""
        key = (channel, language, action, place, bool(ack))
        if not per_recipient and key in self.cache:
            return self.cache[key]
        body, title, data, segments, truncated = self.render(channel, r, action, ack, per_recipient)
        if self.p.config.channel_style(channel) == "spoken" and self.p.speech is not None:
            audio = await self.p.speech.render(body, language)
            if audio is not None:
                data = {**data, "audio": audio.name}
        message_id = await self.p.store.insert_message(
            {
                "alert_id": self.alert["id"],
                "channel": channel,
                "language": language,
                "recipient_id": r["id"] if per_recipient else None,
                "body": body,
                "title": title,
                "data": data,
                "segments": segments,
                "truncated": truncated,
            }
        )
        self.stats["messages_rendered"] += 1
        if not per_recipient:
            self.cache[key] = (message_id, segments)
        return message_id, segments

    def _language_for(self, channel: str, wanted: str | None) -> tuple[str, bool]:
        """The language a recipient asking for ``wanted`` gets on ``channel``, and whether that template
        speaks to the recipient personally (then it is rendered per recipient)."""
        key = (channel, wanted)
        found = self._languages.get(key)
        if found is None:
            language = self.p.renderer.resolve_language(wanted)
            template = self.p.config.channel_settings(channel).template or channel
            found = self._languages[key] = (language, self.p.renderer.uses_recipient(template, language))
        return found

    def render(
        self,
        channel: str,
        r: Mapping[str, Any],
        action: str,
        ack: Mapping[str, Any] | None = None,
        per_recipient: bool = False,
    ) -> tuple[str, str | None, dict[str, Any], int, bool]:
        """(body, title, data, segments, truncated) of this channel's message to ``r``; a template that fails
        gives the plain facts instead, so a broken template never stops a warning."""
        settings = self.p.config.channel_settings(channel)
        template = settings.template or channel
        language = self.p.renderer.resolve_language(r["language"])
        place = r["area_code"] if action == "no_longer_applies" else ""
        recipient = (
            {"name": r["name"], "role": r["role"], "area_code": r["area_code"], "language": language}
            if per_recipient or self.p.renderer.uses_recipient(template, language)
            else None
        )
        style = self.p.config.channel_style(channel)
        context = {**self._context(language, style, action, place), "ack": ack}
        try:
            rendered = self.p.renderer.render(
                template,
                language,
                context,
                style=style,
                signature=settings.signature,
                max_chars=settings.max_chars,
                recipient=recipient,
            )
            return rendered.body, rendered.title, dict(rendered.data), rendered.segments, rendered.truncated
        except Exception:
            log.exception(
                "template %s/%s failed for alert %s; sending plain text", language, template, self.alert["id"]
            )
            self.stats["render_errors"] += 1
            alert = context["alert"]
            body = "".join(
                x for x in (alert["headline"] or alert["event"], "：", alert["description"] or "") if x
            )
            return body, alert["headline"], {}, 1, False

    def _ack(self, r: Mapping[str, Any]) -> dict[str, Any]:
        """What a message asking this person for 叫应 says: the reply keyword, and their one-tap link."""
        feedback = self.p.config.feedback
        url = None
        if feedback.public_url and self.p.links is not None:
            token = self.p.links.sign(ACK, self.alert["id"], r["id"])
            url = f"{feedback.public_url.rstrip('/')}/a/{token}"
        return {"reply": feedback.ack_keywords[0], "url": url}

    def _context(self, language: str, style: str, action: str, place: str = "") -> dict[str, Any]:
        parsed = self.alert["parsed"]
        info = _info_for(parsed, language)
        hazard = self.p.catalogue.find(self.alert["hazard_code"]) if self.alert["hazard_code"] else None
        methods = CAP_METHOD_FOR_STYLE.get(style, ())
        channel_text = next(
            (
                t["message"]
                for t in parsed.get("channel_texts", [])
                if t["method"].upper() in methods and t.get("message")
            ),
            None,
        )
        sender = (
            parsed["sender"]
            if parsed["profile"] == "cap-cn"
            else ((info or {}).get("sender_name") or parsed["sender"])
        )
        return {
            "alert": {
                "id": self.alert["id"],
                "identifier": parsed["identifier"],
                "sender": sender,
                "sender_code": parsed.get("sender_code"),
                "sent": _dt(parsed["sent"]),
                "status": parsed["status"],
                "msg_type": parsed["msg_type"],
                "event": (info or {}).get("event") or self.alert["event"],
                "hazard": {
                    "code": hazard.code if hazard else None,
                    "name": hazard.name if hazard else self.alert["event"],
                },
                "colour": self.alert["colour"],
                "level": self.alert["level"],
                "headline": (info or {}).get("headline"),
                "description": (info or {}).get("description"),
                "instruction": (info or {}).get("instruction"),
                "area_desc": self.alert["area_desc"],
                "web": (info or {}).get("web"),
                "note": parsed.get("note"),
                "effective": _dt((info or {}).get("effective")),
                "onset": _dt((info or {}).get("onset")),
                "expires": _dt((info or {}).get("expires")) or self.alert["expires"],
                "channel_text": channel_text,
            },
            "action": action,
            "previous": {"colour": self.previous["colour"], "level": self.previous["level"]}
            if self.previous
            else None,
            "place": {"code": place, "name": self.p.config.area_name(place) or ""} if place else None,
            "drill": {"Exercise": "exercise", "Test": "test"}.get(parsed["status"]),
            "issuer": self.p.config.organisation,
        }


def _action(alert: Mapping[str, Any], previous: Mapping[str, Any] | None) -> str:
    """The revision's own action. Per recipient an Update may instead be ``issue`` (newly inside its area) or
    ``no_longer_applies`` (no longer inside); see :meth:`Pipeline.fanout`."""
    if alert["msg_type"] == "Cancel":
        return "expire" if alert.get("source") == EXPIRY_SOURCE else "cancel"
    if alert["msg_type"] != "Update" or previous is None:
        return "issue"
    new, old = COLOUR_RANK.get(alert["colour"] or ""), COLOUR_RANK.get(previous["colour"] or "")
    if new and old and new < old:
        return "upgrade"
    if new and old and new > old:
        return "downgrade"
    return "update"


def _info_for(parsed: Mapping[str, Any], language: str) -> dict[str, Any] | None:
    infos = parsed.get("infos") or []
    primary = language.split("-")[0].lower()
    for info in infos:
        if str(info.get("language", "")).split("-")[0].lower() == primary:
            return dict(info)
    return dict(infos[0]) if infos else None


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class FailoverOptions:
    channels: tuple[str, ...] = ()  # alternate channels for the same recipient, in order
    groups: tuple[str, ...] = ()  # or these groups in the recipient's village ...
    group_channels: tuple[str, ...] = ()  # ... on these channels

    def __bool__(self) -> bool:
        return bool(self.channels or (self.groups and self.group_channels))


@dataclass
class FailoverDone:
    reason: str  # for the original delivery (status failed_over)
    alternates: list[dict[str, Any]]  # id, channel, recipient_id, status, idempotency_key, created


def failover_chain(key: str, channel: str) -> tuple[str, set[str]]:
    """From an idempotency key, the channel whose rule target decides the failover and the channels already
    tried. ``12:7:sms`` → (sms, {sms}); ``12:7:sms>fo:sms_backup`` → (sms, {sms, sms_backup}); a delivery to
    a village's grid worker ``12:3:loudspeaker>fo:sms@9`` is a new audience → (sms, {sms})."""
    parts = key.split(">fo:")
    base, tried = parts[0].rsplit(":", 1)[-1], {parts[0].rsplit(":", 1)[-1]}
    for part in parts[1:]:
        ch, _, person = part.partition("@")
        if person:
            base, tried = ch, set()
        tried.add(ch)
    tried.add(channel)
    return base, tried
