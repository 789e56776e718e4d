"""Recommendations from the delivery logs (docs/reports.md, "Recommendations"): wrong numbers, terminals to
check, slow providers per township, SMS one segment too long, villages below the coverage target, and the
channel order that works best per person.

Each recommendation is ``{"kind", "subject", "message" (Chinese), "evidence": {...}, "action"}``. The rules are
pure functions over rows from :mod:`warnd.store.report`; :class:`Optimiser` fetches the rows and, only where
config enables it (``feedback.learn_channel_order``), applies what it learned (``channel_preferences``).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from warnd import sms
from warnd.clock import Clock
from warnd.config import Config, township_code
from warnd.logs import mask_phone
from warnd.receipts import ADAPTER_KINDS, SMS, sent_is_enough
from warnd.render import style_for
from warnd.store import Store
from warnd.store import report as queries

DEFAULT_WINDOW = 30 * 86400.0  # seconds of history looked at (by delivery created_at)
WRONG_NUMBER_CHAINS = 2  # failed SMS in at least this many alert chains
TERMINAL_FAILURES = 2  # failed / failed-over deliveries of one terminal
SLOW_MIN_SAMPLES = 5  # reached deliveries of one channel in one township
SLOW_FACTOR = 2.0  # the township's p90 above this many times the channel's p90 ...
SLOW_FLOOR = 300.0  # ... and above this many seconds
SEGMENT_CUT = 10  # at most this many characters to cut to save a segment
KINDS = (
    "wrong_number",
    "terminal_maintenance",
    "slow_provider",
    "extra_segment",
    "low_coverage",
    "channel_order",
)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``p`` % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def reach_seconds(row: Mapping[str, Any]) -> float | None:
    """Seconds from the revision's ``received_at`` to the moment a reached delivery reached its recipient:
    ``delivered_at`` when a receipt said delivered, else ``sent_at`` (channels on which sent is enough)."""
    if not row.get("reached"):
        return None
    at = row["delivered_at"] if row["status"] == "delivered" and row.get("delivered_at") else row["sent_at"]
    if at is None or row.get("received_at") is None:
        return None
    return max(0.0, (at - row["received_at"]).total_seconds())


def sms_channels(config: Config) -> tuple[str, ...]:
    """Channels whose messages are SMS: style ``sms`` (by setting or template name) or an SMS adapter."""
    out = []
    for name, settings in config.channels.items():
        style = settings.get("style") or style_for(str(settings.get("template") or name))
        if style == "sms" or ADAPTER_KINDS.get(str(settings.get("adapter"))) == SMS:
            out.append(name)
    return tuple(out)


def _rec(kind: str, subject: str, message: str, evidence: dict[str, Any], action: str) -> dict[str, Any]:
    return {"kind": kind, "subject": subject, "message": message, "evidence": evidence, "action": action}


def _person(row: Mapping[str, Any]) -> str:
    phone = mask_phone(row.get("phone"))
    return f"{row['name']}（{phone}）" if phone else str(row["name"])


# --- the rules -------------------------------------------------------------------------------------------------


def wrong_numbers(rows: Iterable[Mapping[str, Any]], sms_names: Sequence[str]) -> list[dict[str, Any]]:
    """A person whose SMS failed in ≥ 2 alert chains and no SMS reached them since the first of those failures."""
    per: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "person" and r["channel"] in sms_names:
            per[r["recipient_id"]].append(r)
    out = []
    for rid, items in per.items():
        failed = [r for r in items if r["status"] == "failed"]
        chains = sorted({r["root_id"] for r in failed})
        if len(chains) < WRONG_NUMBER_CHAINS:
            continue
        first = min(r["created_at"] for r in failed)
        if any(r["reached"] and r["created_at"] >= first for r in items):
            continue
        last = max(failed, key=lambda r: (r["created_at"], r["id"]))
        who = _person(last)
        out.append(
            _rec(
                "wrong_number",
                who,
                f"{who}的短信在 {len(chains)} 次预警中发送失败，此后没有一条送达，号码可能有误或已停机，"
                "请核实并更正号码。",
                {
                    "recipient_id": rid,
                    "name": last["name"],
                    "phone": mask_phone(last["phone"]),
                    "area_code": last["area_code"],
                    "alerts": chains,
                    "failures": len(failed),
                    "last_error": last["error"],
                },
                "verify_phone",
            )
        )
    return out


def terminal_maintenance(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A loudspeaker terminal with ≥ 2 failed or failed-over deliveries (failed play reports end as failed)."""
    per: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "terminal" and r["status"] in ("failed", "failed_over"):
            per[r["recipient_id"]].append(r)
    out = []
    for rid, failed in per.items():
        if len(failed) < TERMINAL_FAILURES:
            continue
        last = max(failed, key=lambda r: (r["created_at"], r["id"]))
        name = last["terminal_id"] or last["name"]
        out.append(
            _rec(
                "terminal_maintenance",
                f"{last['name']}（{name}）",
                f"{last['name']}（{name}）已有 {len(failed)} 次播发失败或离线转发，请派人现场检查供电、网络和功放。",
                {
                    "recipient_id": rid,
                    "terminal_id": last["terminal_id"],
                    "name": last["name"],
                    "area_code": last["area_code"],
                    "failed": sum(1 for r in failed if r["status"] == "failed"),
                    "failed_over": sum(1 for r in failed if r["status"] == "failed_over"),
                    "alerts": sorted({r["root_id"] for r in failed}),
                    "last_error": last["error"],
                },
                "inspect_terminal",
            )
        )
    return out


def slow_providers(rows: Iterable[Mapping[str, Any]], area_name: Any = None) -> list[dict[str, Any]]:
    """Per channel × township with ≥ 5 reached samples: p90 time-to-delivered > 2 × the channel's p90 and > 300 s."""
    by_channel: dict[str, list[float]] = defaultdict(list)
    by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if r["kind"] != "person":
            continue
        seconds = reach_seconds(r)
        if seconds is None:
            continue
        by_channel[r["channel"]].append(seconds)
        by_pair[(r["channel"], township_code(r["area_code"]))].append(seconds)
    out = []
    for (channel, township), samples in sorted(by_pair.items()):
        if len(samples) < SLOW_MIN_SAMPLES:
            continue
        p90 = percentile(samples, 90)
        overall = percentile(by_channel[channel], 90)
        assert p90 is not None and overall is not None
        if p90 > SLOW_FACTOR * overall and p90 > SLOW_FLOOR:
            name = (area_name(township) if area_name else None) or township
            out.append(
                _rec(
                    "slow_provider",
                    f"{channel} @ {name}",
                    f"{name}的{channel}通道送达慢：90% 的人在 {p90 / 60:.0f} 分钟内收到，全区为 "
                    f"{overall / 60:.0f} 分钟。请向运营商核查该地基站或通道，或为该乡镇改用其他通道。",
                    {
                        "channel": channel,
                        "township": township,
                        "samples": len(samples),
                        "p90": round(p90, 1),
                        "channel_p90": round(overall, 1),
                    },
                    "review_provider",
                )
            )
    return out


def segment_capacity(segments: int) -> int:
    """Characters that fit in ``segments`` SMS segments (70 for one, 67 each beyond)."""
    return sms.SINGLE_LIMIT if segments == 1 else sms.MULTI_PART * segments


def extra_segments(
    messages: Iterable[Mapping[str, Any]], signatures: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """Multi-segment SMS that ≤ 10 characters fewer (signature included) would have sent as one segment less.

    One recommendation per (alert chain, channel, language, length): the personal copies of one text (each
    duty person's 叫应 link makes their own message) and the revisions of a chain are one template to shorten,
    not N recommendations. Ordered by the group's first message."""
    groups: dict[tuple[int, str, str, int], list[Mapping[str, Any]]] = defaultdict(list)
    lengths: dict[tuple[int, str, str, int], tuple[int, int]] = {}
    for m in sorted(messages, key=lambda m: m["id"]):
        signature = (m.get("data") or {}).get("signature") or signatures.get(m["channel"])
        text = sms.sign(signature, m["body"])
        n, segments = sms.length(text), sms.segments(text)
        if segments < 2:
            continue
        cut = n - segment_capacity(segments - 1)
        if not 0 < cut <= SEGMENT_CUT:
            continue
        key = (m["root_id"], m["channel"], m["language"], n)
        groups[key].append(m)
        lengths[key] = (segments, cut)
    out = []
    for key, items in groups.items():
        root_id, channel, language, n = key
        segments, cut = lengths[key]
        first = items[0]
        sent = sum(int(m["sent"]) for m in items)
        ids = [m["id"] for m in items]
        which = f"#{ids[0]}" if len(ids) == 1 else f"#{ids[0]} 等 {len(ids)} 条"
        out.append(
            _rec(
                "extra_segment",
                f"{channel} 消息 {which}（预警 {root_id}）",
                f"该短信连签名共 {n} 字、计 {segments} 条；删去 {cut} 个字即可少计 1 条，"
                f"按 {sent} 次发送算可少发 {sent} 条短信。请精简模板或预警正文。",
                {
                    "message_id": first["id"],
                    "message_ids": ids,
                    "alert_id": first["alert_id"],
                    "alert_ids": sorted({m["alert_id"] for m in items}),
                    "root_id": root_id,
                    "channel": channel,
                    "language": language,
                    "length": n,
                    "segments": segments,
                    "cut": cut,
                    "deliveries": sent,
                    "sms_saved": sent,
                },
                "shorten_template",
            )
        )
    return out


def low_coverage(reports: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Villages below target in kept reports of real alerts, one recommendation per village."""
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    names: dict[str, str] = {}
    for kept in reports:
        if kept.get("drill"):
            continue
        report = kept["report"]
        for v in report.get("villages", []):
            if v.get("below_target"):
                per[v["area_code"]].append(
                    {
                        "root_id": kept["root_id"],
                        "coverage": v["coverage"],
                        "targeted": v["targeted"],
                        "reached": v["reached"],
                        "target": report.get("target"),
                    }
                )
                names[v["area_code"]] = v.get("name") or v["area_code"]
    out = []
    for code, items in sorted(per.items()):
        worst = min(i["coverage"] for i in items)
        target = items[0]["target"]
        out.append(
            _rec(
                "low_coverage",
                names[code],
                f"{names[code]}在 {len(items)} 次预警中覆盖率低于目标 {target:.0%}（最低 {worst:.0%}）。"
                "请核实名单和号码，补充网格员或大喇叭，必要时提前组织敲门。",
                {"area_code": code, "alerts": items, "worst": worst},
                "review_village",
            )
        )
    return out


def channel_orders(
    rows: Iterable[Mapping[str, Any]], configured: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per person with history on ≥ 2 channels: channels by success rate (reached of those with an outcome),
    then median time-to-delivered, then the configured order. Returns (recommendations where the learned order
    differs from the configured one, learned orders of every such person)."""
    rank = {name: i for i, name in enumerate(configured)}
    per: dict[int, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    people: dict[int, Mapping[str, Any]] = {}
    for r in rows:
        if r["kind"] != "person":
            continue
        # an outcome is known: reached, or failed / failed over (sent-awaiting-receipt and unsent rows are not)
        if r["reached"] or r["status"] in ("failed", "failed_over"):
            per[r["recipient_id"]][r["channel"]].append(r)
            people[r["recipient_id"]] = r
    recs, learned = [], []
    for rid, channels in sorted(per.items()):
        if len(channels) < 2:
            continue
        stats = {}
        for channel, items in channels.items():
            times = [t for t in (reach_seconds(r) for r in items) if t is not None]
            stats[channel] = {
                "attempts": len(items),
                "reached": sum(1 for r in items if r["reached"]),
                "success_rate": round(sum(1 for r in items if r["reached"]) / len(items), 4),
                "median_seconds": round(statistics.median(times), 1) if times else None,
            }

        order = sorted(channels, key=lambda c: _order_key(stats[c], rank.get(c, len(rank))))
        current = sorted(channels, key=lambda c: rank.get(c, len(rank)))
        person = people[rid]
        evidence = {"recipient_id": rid, "name": person["name"], "configured": current, "channels": stats}
        learned.append({"recipient_id": rid, "channels": order, "evidence": evidence})
        if order != current:
            who = _person(person)
            recs.append(
                _rec(
                    "channel_order",
                    who,
                    f"{who}按历史记录 {' → '.join(order)} 更快更可靠（配置顺序为 {' → '.join(current)}），"
                    "建议升级重发时按此顺序。",
                    {**evidence, "learned": order, "applied": False},
                    "review_channel_order",
                )
            )
    return recs, learned


def _order_key(s: Mapping[str, Any], configured: int) -> tuple[float, float, int]:
    median = s["median_seconds"]
    return (-s["success_rate"], math.inf if median is None else median, configured)


# --- the service ---------------------------------------------------------------------------------------------


class Optimiser:
    def __init__(self, *, config: Config, store: Store, clock: Clock):
        self.config = config
        self.store = store
        self.clock = clock

    async def window(self, since: datetime | None) -> list[dict[str, Any]]:
        """The warning deliveries created since ``since`` (all when None): what recommendations look at."""
        return await queries.history(self.store, since, None, sent_is_enough(self.config.channels))

    async def recommend(
        self,
        *,
        since: datetime | None,
        root_id: int | None = None,
        apply: bool = False,
        rows: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Recommendations from deliveries created since ``since`` (None: all history). With ``root_id`` the
        history also holds that whole chain, and only recommendations about what the chain touched (its
        recipients, messages, townships, its kept report) are returned. ``rows``: that history, already read
        (:meth:`window` plus the chain's deliveries; the report sweep reads the window once per pass).
        ``apply``: write the learned channel orders, when ``feedback.learn_channel_order`` allows it."""
        if rows is None:
            rows = await queries.history(self.store, since, root_id, sent_is_enough(self.config.channels))
        sms_names = sms_channels(self.config)
        messages = await queries.multipart_messages(self.store, sms_names, since, root_id)
        reports = await queries.kept_reports_since(self.store, since, root_id)
        signatures = {name: c.get("signature") for name, c in self.config.channels.items()}
        recs = [
            *wrong_numbers(rows, sms_names),
            *terminal_maintenance(rows),
            *slow_providers(rows, self.config.area_name),
            *extra_segments(messages, signatures),
            *low_coverage(reports),
        ]
        order_recs, learned = channel_orders(rows, list(self.config.channels))
        if root_id is not None:
            mine = [r for r in rows if r["root_id"] == root_id]
            people = {r["recipient_id"] for r in mine}
            pairs = {(r["channel"], township_code(r["area_code"])) for r in mine if r["kind"] == "person"}
            recs = [r for r in recs if _touches(r, people, pairs)]
            order_recs = [r for r in order_recs if r["evidence"]["recipient_id"] in people]
            learned = [p for p in learned if p["recipient_id"] in people]
        if apply and self.config.feedback.learn_channel_order and learned:
            await queries.save_channel_preferences(self.store, learned, self.clock.now())
            for r in order_recs:
                r["evidence"]["applied"] = True
                r["action"] = "channel_order_learned"
            await self.store.audit(
                self.clock.now(),
                "warnd:optimise",
                "optimise.channel_order",
                target=str(root_id) if root_id else None,
                detail={"people": len(learned), "changed": len(order_recs)},
            )
        return recs + order_recs


def with_chain(
    window: Sequence[Mapping[str, Any]], chain: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The window's deliveries plus a chain's (those created before the window), by delivery id: what
    :func:`warnd.store.report.history` returns for ``(since, root_id)``."""
    by_id = {r["id"]: r for r in window}
    for r in chain:
        by_id.setdefault(r["id"], r)
    return [by_id[i] for i in sorted(by_id)]


def _touches(rec: Mapping[str, Any], people: set[int], pairs: set[tuple[str, str]]) -> bool:
    ev = rec["evidence"]
    if rec["kind"] in ("wrong_number", "terminal_maintenance"):
        return ev["recipient_id"] in people
    if rec["kind"] == "slow_provider":
        return (ev["channel"], ev["township"]) in pairs
    return True  # extra_segment, low_coverage: their rows were already limited to the chain


__all__ = [
    "KINDS",
    "Optimiser",
    "channel_orders",
    "extra_segments",
    "low_coverage",
    "percentile",
    "reach_seconds",
    "segment_capacity",
    "slow_providers",
    "terminal_maintenance",
    "with_chain",
    "wrong_numbers",
]
