"""The escalation ladder (resend on the next channel → tell the superior → door-knock list) and the door-knock
list itself (敲门行动), docs/escalation.md.

Every sweep (every node may run it) first opens a ladder for each person of an active alert revision whose plan
has an ``escalation`` and who missed a deadline: the acknowledgement deadline without an acknowledgement
(``unacknowledged``) or the delivery deadline with no warning delivery reached (``undelivered``). It then
claims the ladders that are due (a lease, like the outbox) and, for each, first checks whether it is over
(acknowledged, reached after all, the alert cancelled / expired / updated), else climbs the next rung of the
rule's ``escalation.steps``. A rung that can do nothing is recorded as skipped with its reason and the next one
runs at once. Every step is an ``escalation_events`` row: 有叫有应有记录.

A drill (status Exercise / Test) only ever involves members of the drill groups (``groups.<g>.drill``): the
terminals of the resend rung, the superiors told and the door-knockers tasked are all taken from them.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import re
import sys
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from channels.base import can_address
from warnd.cap.model import DRILL_STATUSES
from warnd.clock import Clock
from warnd.config import Config, county_code, is_village, township_code
from warnd.hazards import COLOUR_LABELS
from warnd.links import DOORKNOCK, LinkSigner
from warnd.logs import mask_phone
from warnd.receipts import sent_is_enough
from warnd.render import RenderError
from warnd.store import Store
from warnd.store.escalation import DrillGroups, EscalationStore, Facts

if TYPE_CHECKING:
    from warnd.pipeline import Pipeline

log = logging.getLogger("warnd.escalation")

Command = Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]

# most urgent first: the order households are knocked in
VULNERABLE_ORDER = ("elderly_alone", "disabled", "child", "bedridden", "pregnant")
VULNERABLE_LABELS = {
    "elderly_alone": "独居老人",
    "disabled": "残疾人",
    "child": "留守儿童",
    "bedridden": "卧床病人",
    "pregnant": "孕妇",
}


def vulnerable_words(flags: Sequence[str]) -> str:
    """「独居老人、残疾人」: the flags as the door-knock list says them."""
    return "、".join(VULNERABLE_LABELS.get(f, f) for f in flags)


RESULT_LABELS = {
    "reached": "已通知到",
    "moved": "已转移",
    "not_home": "不在家",
    "reached_by_message": "消息已送达",
}
REASON_WORDS = {"undelivered": "未收到", "unacknowledged": "未确认收到"}
DUTY_ROLES = ("duty_person", "village_cadre")  # a village without door-knockers: its duty persons knock
CLAIM_BATCH = 200
MAX_FAILURES = 3  # a rung that fails (an exception) this often ends its ladder exhausted
NOTICE_TEMPLATE = "notice"
VILLAGE_CODE = re.compile(r"[0-9]{12}")


def valid_village(code: str) -> bool:
    """A 12-digit admin code (what ``village`` parameters of the door-knock list accept)."""
    return VILLAGE_CODE.fullmatch(code) is not None


def order_channels(allowed: Sequence[str], learned: Sequence[str] | None) -> list[str]:
    """The resend channels: the learned order first (only channels the rule allows), then the rule's order."""
    allowed = list(dict.fromkeys(allowed))
    first = [c for c in (learned or ()) if c in allowed]
    return list(dict.fromkeys([*first, *allowed]))


def household_key(household: Mapping[str, Any]) -> tuple[int, str, str]:
    """Vulnerable households first (the most urgent flag decides), then by address."""
    flags = household.get("vulnerable") or ()
    rank = min(
        (VULNERABLE_ORDER.index(f) for f in flags if f in VULNERABLE_ORDER), default=len(VULNERABLE_ORDER)
    )
    return rank, household.get("address") or "", household["household"]


def vulnerable_counts(households: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many households have each vulnerable flag, in urgency order (for the door-knock notice)."""
    counts: Counter[str] = Counter(f for h in households for f in set(h.get("vulnerable") or ()))
    return {f: counts[f] for f in VULNERABLE_ORDER if counts[f]}


def listed_for(row: Mapping[str, Any]) -> str:
    """Why a person is on the door-knock list: their ladder's reason (undelivered | unacknowledged)."""
    reason = row.get("ladder_reason")
    if reason in REASON_WORDS:
        return str(reason)
    return "unacknowledged" if "叫应" in str(row.get("reason") or "") else "undelivered"


def member_informed(row: Mapping[str, Any]) -> bool:
    """A listed person counts as informed after all: for ``unacknowledged`` only an acknowledgement (the
    message had reached them before — that is why they are listed), for ``undelivered`` a reached message or an
    acknowledgement."""
    if row["acknowledged"]:
        return True
    return bool(row["reached"]) and listed_for(row) != "unacknowledged"


def household_informed(members: Sequence[Mapping[str, Any]]) -> bool:
    """A listed household counts as informed: one of its listed members acknowledged, or — when none of them
    is listed for ``unacknowledged`` — a message reached one of them."""
    if any(m["acknowledged"] for m in members):
        return True
    if any(listed_for(m) == "unacknowledged" for m in members):
        return False
    return any(m["reached"] for m in members)


def waiting(households: Sequence[Mapping[str, Any]]) -> set[int]:
    """The people of the households still to be knocked on (not checked off, not informed): they are not
    door-knockers for that list."""
    return {m["recipient_id"] for h in households if not h["result"] for m in h["members"]}


@dataclass
class Rung:
    done: bool = False  # the rung did something: the next one waits step_after
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    resolve: str | None = None  # the ladder is over (the household was reached)
    lost: bool = False  # the lease was lost: another node holds the ladder now


class Escalator:
    def __init__(self, *, config: Config, store: Store, pipeline: Pipeline, clock: Clock, links: LinkSigner):
        self.config = config
        self.store = store
        self.pipeline = pipeline
        self.clock = clock
        self.links = links
        self.db = EscalationStore(store)
        self.sent_is_enough = sent_is_enough(config.channels)
        self.claim_batch = CLAIM_BATCH
        drilling = [g for g in config.groups.values() if g.drill]
        self.drill_groups = DrillGroups(
            roles=tuple(sorted({r for g in drilling for r in g.roles})),
            groups=tuple(sorted(name for name, g in config.groups.items() if g.drill)),
        )

    def drill(self, alert: Mapping[str, Any]) -> DrillGroups | None:
        """For a drill (Exercise / Test) the drill groups everyone it involves must belong to; else None."""
        return self.drill_groups if alert.get("status") in DRILL_STATUSES else None

    # --- the sweep ----------------------------------------------------------------------------------------------

    async def sweep(self) -> dict[str, int]:
        """One pass: open ladders whose deadline passed, climb the rungs that are due. Safe on every node."""
        stats: Counter[str] = Counter()
        plans = [p["id"] for p in await self.db.active_plans() if (p["rules"] or {}).get("escalation")]
        if plans:
            stats["opened"] = len(await self.db.open_due(plans, self.clock.now(), self.sent_is_enough))
        for _ in range(50):
            # read per batch: a lease is never born expired, however long the last batch took
            now = self.clock.now()
            token, claimed = await self.db.claim(now, self.config.dispatch.lease, self.claim_batch)
            if not claimed:
                break
            for ladder in claimed:
                try:
                    outcome, created = await self._climb(ladder, token, now)
                except Exception as exc:
                    stats["errors"] += 1
                    failed = await self._failed(ladder, token, now, exc)
                    if failed:
                        stats[failed] += 1
                    continue
                stats[outcome] += 1
                stats["outbox"] += created
            if len(claimed) < self.claim_batch:
                break
        if stats["outbox"]:
            self.pipeline.wake()
        return {k: v for k, v in stats.items() if v}

    async def _failed(self, ladder: Mapping[str, Any], token: str, now: datetime, exc: Exception) -> str:
        """A rung raised: record it (an ``error`` event with the exception's text), retry ``step_after`` later,
        and after MAX_FAILURES failures end the ladder ``exhausted``. Returns "exhausted", "lost" or ""."""
        error = f"{type(exc).__name__}: {exc}"
        step_after = 300.0
        try:
            alert = await self.store.get_alert(ladder["alert_id"])
            plan = ((alert or {}).get("rules") or {}).get("escalation") or {}
            step_after = float(plan.get("step_after") or step_after)
        except Exception:  # the plan may be what is broken: the default wait
            pass
        reason = (
            f"升级步骤连续出错{MAX_FAILURES}次，停止升级：{error} "
            f"(the rung failed {MAX_FAILURES} times; giving up)"
        )
        try:
            result = await self.db.fail(
                ladder["id"],
                token,
                now,
                error=error,
                retry_at=now + timedelta(seconds=step_after),
                max_failures=MAX_FAILURES,
                exhausted_reason=reason,
            )
        except Exception:
            log.exception("escalation #%s: climb failed and could not be recorded", ladder["id"])
            return ""
        if result is None:
            log.warning(
                "escalation #%s: climb failed (%s); the lease was lost meanwhile", ladder["id"], error
            )
            return "lost"
        failures, exhausted = result
        log.warning(
            "escalation #%s: climb failed (%d of %d): %s; %s",
            ladder["id"],
            failures,
            MAX_FAILURES,
            error,
            "the ladder is exhausted" if exhausted else f"retried in {step_after:.0f}s",
            exc_info=exc,
        )
        return "exhausted" if exhausted else ""

    async def _climb(self, ladder: Mapping[str, Any], token: str, now: datetime) -> tuple[str, int]:
        """Check whether the ladder is over, else climb its next rung. Returns (what happened, rows created)."""
        facts = await self.db.facts(ladder, self.sent_is_enough)

        async def end(
            state: str, step: str, why: str, resolution: str, detail: dict[str, Any] | None = None
        ) -> str:
            done = await self.db.advance(
                ladder["id"],
                token,
                now,
                state=state,
                step=ladder["step"],
                due_at=now,
                events=[(step, why, detail)],
                resolution=resolution,
            )
            return step if done is not None else "lost"

        if facts is None:
            return await end("closed", "closed", "预警或接收人已不存在 (alert or recipient gone)", "gone"), 0
        alert, person = facts.alert, facts.recipient
        plan = (alert["rules"] or {}).get("escalation") or {}
        if facts.acknowledged:
            return await end("resolved", "resolved", "已确认 (acknowledged)", "已确认"), 0
        if alert["state"] != "active":
            why = {
                "cancelled": "预警已解除 (alert cancelled)",
                "expired": "预警已过期 (alert expired)",
                "updated": "预警已更新，由新版本接续 (alert updated; the new revision has its own ladders)",
            }.get(alert["state"], f"预警已不再生效 (alert {alert['state']})")
            return await end("closed", "closed", why, why.split(" (")[0]), 0
        if not person["active"]:
            return await end("closed", "closed", "接收人已停用 (recipient deactivated)", "接收人已停用"), 0
        if not plan:
            return await end(
                "closed", "closed", "预警没有升级方案 (no escalation in the plan)", "无升级方案"
            ), 0
        if ladder["reason"] == "undelivered" and facts.reached:
            if not facts.owes_ack:
                return await end("resolved", "resolved", "已送达 (delivery confirmed)", "已送达"), 0
            # reached, but the message asked for 叫应: the ladder now waits for the acknowledgement
            due = max(now, facts.ack_deadline) if facts.ack_deadline else now
            done = await self.db.advance(
                ladder["id"],
                token,
                now,
                state="open",
                step=ladder["step"],
                due_at=due,
                reason="unacknowledged",
                events=[
                    (
                        "waiting",
                        "已送达，等待叫应确认 (delivered; now waiting for the acknowledgement)",
                        {"until": due.isoformat()},
                    )
                ],
            )
            return ("waiting" if done is not None else "lost"), 0

        steps: list[str] = list(plan.get("steps") or ["resend", "superior", "doorknock"])
        step_after = float(plan.get("step_after") or 300.0)
        step = int(ladder["step"])
        events: list[tuple[str, str, Mapping[str, Any] | None]] = []
        outbox: list[dict[str, Any]] = []
        climbed = False
        while step < len(steps):
            name = steps[step]
            rung = await self._rung(name, ladder, facts, token, now)
            if rung.lost:
                return "lost", 0
            if rung.resolve:
                events.append((name, rung.resolve, rung.detail))
                done = await self.db.advance(
                    ladder["id"],
                    token,
                    now,
                    state="resolved",
                    step=step,
                    due_at=now,
                    events=events,
                    resolution=rung.resolve.split(" (")[0],
                )
                return ("resolved" if done is not None else "lost"), 0
            step += 1
            events.append((name, rung.reason, {**rung.detail, "skipped": not rung.done, "step": step}))
            outbox.extend(rung.outbox)
            if rung.done:
                climbed = True
                break
        state, due_at, outcome = (
            "open",
            now + timedelta(seconds=step_after),
            steps[step - 1] if climbed else "",
        )
        if not climbed:
            state, due_at, outcome = "exhausted", now, "exhausted"
            what = REASON_WORDS.get(ladder["reason"], ladder["reason"])
            events.append(
                (
                    "exhausted",
                    f"各级升级措施均已执行，{person['name']}仍{what} (every rung climbed; still {ladder['reason']})",
                    {"steps": steps},
                )
            )
        created = await self.db.advance(
            ladder["id"], token, now, state=state, step=step, due_at=due_at, events=events, outbox=outbox
        )
        if created is None:
            return "lost", 0
        return outcome, len(created)

    async def _rung(
        self, name: str, ladder: Mapping[str, Any], facts: Facts, token: str, now: datetime
    ) -> Rung:
        if name == "resend":
            return await self._resend(ladder, facts)
        if name == "superior":
            return await self._superior(ladder, facts, now)
        if name == "doorknock":
            return await self._doorknock(ladder, facts, token, now)
        return Rung(reason=f"跳过：未知的升级步骤 {name} (unknown step)")

    # --- rung 1: resend on the next channel ----------------------------------------------------------------------

    async def _resend(self, ladder: Mapping[str, Any], facts: Facts) -> Rung:
        person, alert = facts.recipient, facts.alert
        drill = self.drill(alert)
        plan = alert["rules"]["escalation"]
        allowed = [c for c in plan.get("resend") or () if c in self.config.channels]
        learned = (
            await self.db.channel_order(person["id"]) if self.config.feedback.learn_channel_order else None
        )
        notes: list[str] = []
        what = REASON_WORDS.get(ladder["reason"], ladder["reason"])
        for channel in order_channels(allowed, learned):
            kind = self.config.channel_address(channel)
            if kind == "terminal":
                targets = await self.db.terminals(person["area_code"], drill=drill)
                if not targets:
                    notes.append(f"{channel}：本村没有{'参加演练的' if drill else ''}终端")
                    continue
            elif can_address(kind, person):
                targets = [person]
            else:
                notes.append(f"{channel}：无法送达此人")
                continue
            had = await self.db.had(alert["id"], [t["id"] for t in targets])
            fresh = [t for t in targets if (t["id"], channel) not in had]
            if not fresh:
                notes.append(f"{channel}：已发过")
                continue
            if kind == "terminal":
                place = self.config.area_name(person["area_code"]) or person["area_code"]
                reason = (
                    f"叫应升级：{place}{person['name']}{what}预警，经本村 {channel} 补播 "
                    f"(escalation #{ladder['id']}: {ladder['reason']}, resent to the village's terminals)"
                )
            else:
                reason = (
                    f"叫应升级：{person['name']}{what}预警，经 {channel} 补发 "
                    f"(escalation #{ladder['id']}: {ladder['reason']}, resent on {channel})"
                )
            rows = await self.pipeline.resend_rows(
                alert["id"], fresh, channel, reason=reason, like=facts.delivery
            )
            names = "、".join(t["name"] for t in fresh)
            return Rung(
                done=True,
                reason=f"经 {channel} 补发给{names} (resent on {channel})",
                detail={"channel": channel, "recipients": [t["id"] for t in fresh], "tried": notes},
                outbox=rows,
            )
        why = "；".join(notes) or "规则未配置补发渠道"
        return Rung(
            reason=f"跳过补发：没有可用的渠道（{why}） (no channel left to resend on)",
            detail={"tried": notes},
        )

    # --- rung 2: tell the superior --------------------------------------------------------------------------------

    async def superiors(
        self, person: Mapping[str, Any], *, drill: DrillGroups | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Whom to tell that this person did not answer, and how they were found (for a drill: only members of
        the drill groups)."""
        if person.get("superior"):
            found = await self.db.person_by_phone(person["superior"], drill=drill)
            if found and found["id"] != person["id"]:
                return [found], "登记的上级"
        roles = self.config.feedback.superiors.get(person["role"], [])
        for code in (township_code(person["area_code"]), county_code(person["area_code"])):
            people = [p for p in await self.db.people([code], roles, drill=drill) if p["id"] != person["id"]]
            if people:
                labels = dict.fromkeys(self.config.roles.get(p["role"], p["role"]) for p in people)
                return people, "、".join(labels)
        return [], ""

    def _notice_channel(self, person: Mapping[str, Any]) -> str | None:
        for channel in self.config.feedback.notice_channels:
            if channel in self.config.channels and can_address(self.config.channel_address(channel), person):
                return channel
        return None

    async def _superior(self, ladder: Mapping[str, Any], facts: Facts, now: datetime) -> Rung:
        person, alert = facts.recipient, facts.alert
        drill = self.drill(alert)
        found, how = await self.superiors(person, drill=drill)
        if not found:
            among = "参加演练的" if drill else ""
            return Rung(
                reason=f"跳过告知上级：未找到{person['name']}{among}上级 (no superior found for role "
                f"{person['role']}{' among the drill groups' if drill else ''})"
            )
        what = REASON_WORDS.get(ladder["reason"], ladder["reason"])
        notice = {
            "kind": "superior",
            "reason": ladder["reason"],
            "person": {
                "name": person["name"],
                "phone": person["phone"],  # in full: the superior must call them
                "role": person["role"],
                "role_label": self.config.roles.get(person["role"], person["role"]),
                "place": self.config.area_name(person["area_code"]) or "",
                "area_code": person["area_code"],
            },
        }
        rows, told, unreachable = [], [], []
        for superior in found:
            channel = self._notice_channel(superior)
            if channel is None:
                unreachable.append(superior["name"])
                continue
            reason = (
                f"叫应提醒：{person['name']}{what}预警，告知{how}{superior['name']} "
                f"(escalation #{ladder['id']}: {ladder['reason']}, superior told)"
            )
            rows.append(
                await self._notice_row(
                    alert, superior, channel, f"notice:{ladder['id']}", notice, reason, now
                )
            )
            told.append(superior)
        if not rows:
            return Rung(
                reason=f"跳过告知上级：{'、'.join(unreachable)}没有可用的通知渠道 (no notice channel reaches them)"
            )
        names = "、".join(s["name"] for s in told)
        return Rung(
            done=True,
            reason=f"已告知{how}{names}：{person['name']}{what}预警 (superior told)",
            detail={"superiors": [s["id"] for s in told], "unreachable": unreachable, "how": how},
            outbox=rows,
        )

    # --- rung 3: the door-knock list ------------------------------------------------------------------------------

    def _knocker_levels(self, village: str) -> tuple[tuple[list[str], Sequence[str]], ...]:
        return (
            ([village], self.config.feedback.doorknock_roles),
            ([village], DUTY_ROLES),
            ([township_code(village)], ("township_leader",)),
        )

    async def door_knockers(
        self, village: str, *, exclude: Collection[int] = (), drill: DrillGroups | None = None
    ) -> list[dict[str, Any]]:
        """Who knocks on doors in a village: its grid workers (``feedback.doorknock_roles``), else its duty
        persons, else the township's leaders — the first level with anyone once ``exclude`` is left out (the
        person who was not reached and everyone still waiting on the village's list: nobody knocks on their own
        door), so a village whose only grid worker was not reached falls to its duty persons; for a drill,
        drill-group members only."""
        for codes, roles in self._knocker_levels(village):
            people = [p for p in await self.db.people(codes, roles, drill=drill) if p["id"] not in exclude]
            if people:
                return people
        return []

    async def may_knock(
        self, village: str, person: Mapping[str, Any], *, drill: DrillGroups | None = None
    ) -> bool:
        """Whether ``person`` is (still) someone who may knock in ``village``: active, with a door-knock or duty
        role in the village or a township leader of its township (any level ``door_knockers`` picks from), and
        a drill-group member for a drill."""
        if not person.get("active") or person.get("kind", "person") != "person":
            return False
        for codes, roles in self._knocker_levels(village):
            if person["area_code"] in codes and person["role"] in roles:
                return any(p["id"] == person["id"] for p in await self.db.people(codes, roles, drill=drill))
        return False

    def link(self, root_id: int, village: str, knocker_id: int) -> str | None:
        base = self.config.feedback.public_url
        if not base:
            return None
        return f"{base.rstrip('/')}/k/{self.links.sign(DOORKNOCK, root_id, int(village), knocker_id)}"

    async def _doorknock(self, ladder: Mapping[str, Any], facts: Facts, token: str, now: datetime) -> Rung:
        person, alert = facts.recipient, facts.alert
        root_id, village = alert["root_id"], person["area_code"]
        drill = self.drill(alert)
        if not is_village(village):  # a township or county office: somebody calls them, nobody knocks
            return Rung(
                reason=f"跳过敲门：{person['name']}不在村（社区）一级，无入户对象 "
                f"(not a village-level recipient: door-knocking is for households)"
            )
        household = person["household"] or f"r{person['id']}"
        if person["household"]:
            # someone who did not acknowledge had the message already: only another member's acknowledgement
            # stands for them; someone the message did not reach: another member reached (or acknowledging)
            ack_only = ladder["reason"] == "unacknowledged"
            other = await self.db.household_informed(
                root_id, household, person["id"], self.sent_is_enough, ack_only=ack_only
            )
            if other is not None:
                return Rung(
                    resolve=(
                        f"同户已确认：{other['name']}已确认收到 (another member of the household acknowledged)"
                        if ack_only
                        else f"同户已送达：{other['name']}已收到或已确认 (another member of the household was "
                        f"reached)"
                    ),
                    detail={"household": household, "member": other["id"]},
                )
        what = REASON_WORDS.get(ladder["reason"], ladder["reason"])
        added = await self.db.add_doorknock(
            {
                "root_id": root_id,
                "alert_id": alert["id"],
                "recipient_id": person["id"],
                "area_code": village,
                "household": household,
                "reason": f"{what}预警（{'叫应' if ladder['reason'] == 'unacknowledged' else '送达'}期限已过）",
                "added_at": now,
            },
            token,
            ladder["id"],
        )
        if added is None:
            return Rung(lost=True)
        listed = await self.db.doorknock_rows(root_id, self.sent_is_enough, village)
        households = _households(listed)
        # the task says how many households are still to knock on; its purpose is keyed on how many were ever
        # listed, so a grown list sends one new task and concurrent sweeps write the same one once
        total = len(households)
        still = [h for h in households if not h["result"]]
        count = len(still)
        place = self.config.area_name(village) or village
        if not count:  # their household was checked off already: no household waits, nobody to task
            return Rung(
                done=True,
                reason=f"已列入{place}敲门名单；名单上已无待敲门的户（本户已登记敲门结果），不再通知 "
                f"(listed; no household left to knock on)",
                detail={"village": village, "household": household, "households": 0, "listed": total},
            )
        knockers = await self.door_knockers(village, exclude={person["id"], *waiting(still)}, drill=drill)
        rows, told = [], []
        for knocker in knockers:
            channel = self._notice_channel(knocker)
            if channel is None:
                continue
            notice = {
                "kind": "doorknock",
                "reason": ladder["reason"],
                "village": {"code": village, "name": place},
                "households": count,
                "vulnerable": vulnerable_counts(still),
                "url": self.link(root_id, village, knocker["id"]),
            }
            reason = (
                f"敲门任务：{place}共{count}户待敲门，通知{knocker['name']} "
                f"(escalation #{ladder['id']}: door-knock list of {village} has {count} households)"
            )
            rows.append(
                await self._notice_row(
                    alert, knocker, channel, f"doorknock:{village}:{total}", notice, reason, now
                )
            )
            told.append(knocker["name"])
        nobody = "参加演练的网格员或责任人" if drill else "网格员或责任人"
        who = f"，通知{'、'.join(told)}" if told else f"，本村没有可通知的{nobody}"
        return Rung(
            done=True,
            reason=f"已列入{place}敲门名单（待敲门{count}户）{who} (put on the door-knock list)",
            detail={
                "village": village,
                "household": household,
                "households": count,
                "listed": total,
                "knockers": told,
                "added": added,
            },
            outbox=rows,
        )

    # --- notices ----------------------------------------------------------------------------------------------------

    def _alert_context(self, alert: Mapping[str, Any], language: str) -> dict[str, Any]:
        parsed = alert["parsed"] or {}
        infos = parsed.get("infos") or []
        primary = language.split("-")[0].lower()
        info = next(
            (i for i in infos if str(i.get("language", "")).split("-")[0].lower() == primary),
            infos[0] if infos else {},
        )
        hazard = self.pipeline.catalogue.find(alert["hazard_code"]) if alert["hazard_code"] else None
        sender = (
            parsed.get("sender")
            if parsed.get("profile") == "cap-cn"
            else (info.get("sender_name") or parsed.get("sender"))
        )
        return {
            "id": alert["id"],
            "identifier": alert["identifier"],
            "sender": sender or alert["sender"],
            "sent": alert["sent"],
            "status": alert["status"],
            "msg_type": alert["msg_type"],
            "event": info.get("event") or alert["event"],
            "hazard": {
                "code": hazard.code if hazard else None,
                "name": hazard.name if hazard else alert["event"],
            },
            "colour": alert["colour"],
            "level": alert["level"],
            "headline": info.get("headline") or alert["headline"],
            "area_desc": alert["area_desc"],
            "expires": alert["expires"],
        }

    async def _notice_row(
        self,
        alert: Mapping[str, Any],
        person: Mapping[str, Any],
        channel: str,
        purpose: str,
        notice: Mapping[str, Any],
        reason: str,
        now: datetime,
    ) -> dict[str, Any]:
        """A notice (叫应 reminder, door-knock task) for one person: rendered from ``notice.j2`` in their
        language as SMS, written as a message, returned as an outbox row (the caller writes it)."""
        renderer = self.pipeline.renderer
        language = renderer.resolve_language(person["language"])
        settings = self.config.channel_settings(channel)
        context = {
            "alert": self._alert_context(alert, language),
            "issuer": self.config.organisation,
            "notice": dict(notice),
        }
        try:
            rendered = renderer.render(
                NOTICE_TEMPLATE,
                language,
                context,
                style="sms",
                signature=getattr(settings, "signature", None),
                max_chars=getattr(settings, "max_chars", None),
            )
            body, data, segments, truncated = (
                rendered.body,
                rendered.data,
                rendered.segments,
                rendered.truncated,
            )
        except (RenderError, OSError):  # a broken template must not stop the notice: plain facts instead
            log.exception("notice template failed for alert %s; sending plain text", alert["id"])
            body, data, segments, truncated = reason.split(" (")[0], {}, 1, False
        message_id = await self.store.insert_message(
            {
                "alert_id": alert["id"],
                "channel": channel,
                "language": language,
                "recipient_id": person["id"],
                "body": body,
                "title": None,
                "data": data,
                "segments": segments,
                "truncated": truncated,
            }
        )
        return {
            "alert_id": alert["id"],
            "recipient_id": person["id"],
            "channel": channel,
            "message_id": message_id,
            "status": "queued",
            "priority": 1,  # before any warning still queued: these people must act now
            "visible_at": now,
            "lease_token": None,
            "attempts": 0,
            "idempotency_key": f"{alert['id']}:{person['id']}:{channel}:{purpose}"[:80],
            "segments": segments,
            "repeat": 1,
            "level": alert["level"],
            "ack_required": False,
            "ack_deadline": None,
            "deliver_deadline": None,
            "rules": "escalation",
            "area_code": person["area_code"],
            "created_at": now,
            "updated_at": now,
            "provider_message_id": None,
            "error": None,
            "reason": reason,
            "sent_at": None,
            "purpose": purpose,
        }

    # --- the door-knock list ------------------------------------------------------------------------------------------

    async def doorknock_list(
        self, alert_id: int, *, village: str | None = None, full_phones: bool = False
    ) -> dict[str, Any] | None:
        """The chain's door-knock list by village (``None``: no such alert). Phones masked unless asked.
        ``village`` must be a 12-digit code (ValueError otherwise)."""
        if village is not None and not valid_village(village):
            raise ValueError("village must be a 12-digit admin code")
        alert = await self.store.get_alert(alert_id)
        if alert is None:
            return None
        root_id = alert["root_id"] or alert["id"]
        root = await self.store.get_alert(root_id) if root_id != alert["id"] else alert
        drill = self.drill(root or alert)
        rows = await self.db.doorknock_rows(root_id, self.sent_is_enough, village)
        by_village: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_village.setdefault(row["area_code"], []).append(row)
        if village is not None:
            by_village.setdefault(village, [])
        phone = (lambda p: p) if full_phones else mask_phone
        villages = []
        total: Counter[str] = Counter()
        for code in sorted(by_village):
            households = _households(by_village[code], phone)
            knockers = await self.door_knockers(code, exclude=waiting(households), drill=drill)
            done = sum(1 for h in households if h["result"])
            villages.append(
                {
                    "area_code": code,
                    "name": self.config.area_name(code) or code,
                    "door_knockers": [
                        {"id": k["id"], "name": k["name"], "phone": phone(k["phone"]), "role": k["role"]}
                        for k in knockers
                    ],
                    "households": households,
                    "open": len(households) - done,
                    "done": done,
                }
            )
            total["villages"] += 1
            total["households"] += len(households)
            total["people"] += sum(len(h["members"]) for h in households)
            total["open"] += len(households) - done
            total["done"] += done
            for h in households:
                if h["result"]:
                    total[h["result"]] += 1
        head = await self.store.latest_in_chain(root_id)
        return {
            "alert_id": alert_id,
            "root_id": root_id,
            "headline": alert_title(head or alert),
            "villages": villages,
            "total": {
                k: total[k]
                for k in (
                    "villages",
                    "households",
                    "people",
                    "open",
                    "done",
                    "reached",
                    "moved",
                    "not_home",
                    "reached_by_message",
                )
            },
        }

    async def link_target(self, token_fields: tuple[int, ...]) -> dict[str, Any]:
        """What a door-knock link points at: ``status`` ok | gone (the chain ended more than the grace ago) |
        missing (no such chain or door-knocker) | revoked (the door-knocker was deactivated or may no longer
        knock in the village: ``may_knock``), the chain's head revision, the village and the door-knocker."""
        root_id, village_int, knocker_id = token_fields
        village = f"{village_int:012d}"
        if not valid_village(village):
            return {"status": "missing"}
        chain = await self.store.chain(root_id)
        knocker = await self.db.recipient(knocker_id)
        if not chain or knocker is None or chain[0]["id"] != root_id:
            return {"status": "missing"}
        if not await self.may_knock(village, knocker, drill=self.drill(chain[0])):
            return {"status": "revoked"}
        head = chain[-1]
        status = "ok"
        if not any(r["state"] == "active" for r in chain):
            ended = head["expires"] if head["state"] == "expired" and head["expires"] else head["received_at"]
            if self.clock.now() - ended > timedelta(seconds=self.config.feedback.doorknock_grace):
                status = "gone"
        return {"status": status, "root_id": root_id, "head": head, "village": village, "knocker": knocker}

    # --- what the HTTP routes use -----------------------------------------------------------------------------------

    async def ladders(self, root_id: int) -> list[dict[str, Any]]:
        """Every ladder of the chain, oldest first, with its person and its events."""
        return await self.db.ladders(root_id)

    async def record_result(
        self,
        root_id: int,
        household: str,
        *,
        result: str,
        note: str | None,
        by: str,
        actor: str,
        village: str | None = None,
        remote: str | None = None,
    ) -> int:
        """Check a household off the chain's list (of ``village`` when given), now, audited. Returns how many
        people's rows changed (0: no such household on the list). ValueError for an unknown result."""
        return await self.db.record_result(
            root_id,
            household,
            result=result,
            note=note,
            by=by,
            now=self.clock.now(),
            actor=actor,
            village=village,
            remote=remote,
        )


def alert_title(alert: Mapping[str, Any]) -> str:
    colour = COLOUR_LABELS.get(alert.get("colour") or "", "")
    return f"{alert.get('event') or ''}{colour}预警"


def _households(
    rows: Sequence[Mapping[str, Any]], phone: Callable[[str | None], str | None] = mask_phone
) -> list[dict[str, Any]]:
    """People on a door-knock list grouped by household, most vulnerable first, then by address."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["household"], []).append(row)
    households = []
    for key, members in grouped.items():
        flags = {f for m in members for f in (m["vulnerable"] or ())}
        checked = next((m for m in members if m["result"]), None)
        informed = household_informed(members)
        result = checked["result"] if checked else ("reached_by_message" if informed else None)
        households.append(
            {
                "household": key,
                "address": next((m["address"] for m in members if m["address"]), None),
                "vulnerable": [f for f in VULNERABLE_ORDER if f in flags]
                + sorted(flags - set(VULNERABLE_ORDER)),
                "members": [
                    {
                        "recipient_id": m["recipient_id"],
                        "name": m["name"],
                        "phone": phone(m["phone"]),
                        "role": m["role"],
                        "vulnerable": list(m["vulnerable"] or ()),
                        "reason": m["reason"],
                        "listed_for": listed_for(m),
                        "added_at": m["added_at"],
                        "reached_by_message": member_informed(m),
                        "acknowledged": bool(m["acknowledged"]),
                    }
                    for m in members
                ],
                "result": result,
                "result_at": checked["result_at"] if checked else None,
                "result_by": checked["result_by"] if checked else None,
                "note": checked["note"] if checked else None,
            }
        )
    households.sort(key=household_key)
    return households


CSV_COLUMNS = (
    "村代码",
    "村名",
    "户",
    "地址",
    "姓名",
    "电话",
    "角色",
    "重点人群",
    "列入原因",
    "消息已送达",
    "敲门结果",
    "登记时间",
    "登记人",
    "备注",
)


def doorknock_csv(data: Mapping[str, Any], roles: Mapping[str, str], tz: Any) -> str:
    """One row per person (Chinese headers; the caller adds a BOM for Excel where it wants one)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for village in data["villages"]:
        for h in village["households"]:
            for m in h["members"]:
                writer.writerow(
                    [
                        village["area_code"],
                        village["name"],
                        h["household"],
                        h["address"] or "",
                        m["name"],
                        m["phone"] or "",
                        roles.get(m["role"], m["role"]),
                        vulnerable_words(m["vulnerable"]),
                        m["reason"],
                        "是" if m["reached_by_message"] else "",
                        RESULT_LABELS.get(h["result"] or "", ""),
                        h["result_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M") if h["result_at"] else "",
                        h["result_by"] or "",
                        h["note"] or "",
                    ]
                )
    return out.getvalue()


# --- CLI --------------------------------------------------------------------------------------------------------


def add_cli(sub: Any, common: argparse.ArgumentParser) -> dict[str, Command]:
    """Adds ``warnd doorknock``; returns its handler by command name."""
    parser = sub.add_parser(
        "doorknock", parents=[common], help="an alert's door-knock list (敲门名单), by village and household"
    )
    parser.add_argument("alert", type=int, metavar="ALERT", help="alert id (any revision of the chain)")
    parser.add_argument("--csv", action="store_true", help="CSV to stdout, full phone numbers (audited)")
    parser.add_argument("--village", help="only this village (12-digit admin code)")
    return {"doorknock": cmd_doorknock}


async def cmd_doorknock(config: Config, args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from warnd.cli import actor, make_app, print_table

    tz = ZoneInfo(config.timezone)
    if args.village is not None and not valid_village(args.village):
        print("--village must be a 12-digit admin code", file=sys.stderr)
        return 2
    app = make_app(config, args)
    try:
        await app.start(sync=False)
        data = await app.escalator.doorknock_list(args.alert, village=args.village, full_phones=args.csv)
        if data is None:
            print(f"no alert {args.alert}", file=sys.stderr)
            return 1
        if args.csv:
            await app.store.audit(
                app.clock.now(),
                actor(args),
                "doorknock.export",
                target=f"alert:{args.alert}",
                detail={"village": args.village, "format": "csv"},
            )
            sys.stdout.write(doorknock_csv(data, config.roles, tz))
            return 0
        print(f"{data['headline']}（预警 #{data['root_id']}）敲门名单")
        for village in data["villages"]:
            knockers = "、".join(f"{k['name']} {k['phone'] or ''}".strip() for k in village["door_knockers"])
            print(
                f"\n{village['name']} {village['area_code']}：待敲门 {village['open']} 户，已完成 {village['done']} 户"
                f"；敲门人：{knockers or '（无）'}"
            )
            table = []
            for h in village["households"]:
                for i, m in enumerate(h["members"]):
                    table.append(
                        [
                            h["household"] if i == 0 else "",
                            (h["address"] or "") if i == 0 else "",
                            m["name"],
                            m["phone"] or "",
                            vulnerable_words(m["vulnerable"]),
                            "已送达" if m["reached_by_message"] else "",
                            RESULT_LABELS.get(h["result"] or "", "") if i == 0 else "",
                            (h["result_by"] or "") if i == 0 else "",
                        ]
                    )
            if table:
                print_table(("户", "地址", "姓名", "电话", "重点人群", "消息", "结果", "登记人"), table)
        total = data["total"]
        print(
            f"\n共 {total['households']} 户 {total['people']} 人：待敲门 {total['open']} 户，已完成 {total['done']} 户"
        )
        return 0
    finally:
        await app.close()
