"""The timeline of one alert chain (``GET /api/v1/alerts/{id}/timeline``, docs/board.md): what happened to it,
in order — received, validated, rules matched, each revision, each channel's sending, escalations, 叫应,
door-knock results and operator actions — each with a Chinese title. Phone numbers are masked.

The events are made from the database rows (:mod:`warnd.store.board`) by the pure functions below.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from warnd.escalation import RESULT_LABELS
from warnd.logs import mask_phone, mask_text
from warnd.render import style_for
from warnd.store import board as queries
from warnd.store.report import resolve_chain

if TYPE_CHECKING:
    from warnd.app import App

# events about one person or household, and operator actions: at most ``limit`` of each kind (an alert to
# thousands of people has thousands of these)
CAPPED_KINDS = ("escalation", "ack", "doorknock", "action", "broadcast")
# what happened at the same moment is listed in this order
KIND_ORDER = {
    "received": 0,
    "revision": 0,
    "validated": 1,
    "matched": 2,
    "broadcast": 3,
    "action": 3,
    "deliveries": 4,
    "escalation": 5,
    "ack": 5,
    "doorknock": 5,
}
STYLE_LABELS = {"sms": "短信", "spoken": "大喇叭", "push": "推送"}
STYLE_CHANNELS = {"sms": "sms", "spoken": "loudspeaker", "push": "push"}  # the usual channel name of a style
STATUS_LABELS = {
    "queued": "待发送",
    "sent": "已发送",
    "delivered": "已送达",
    "failed": "失败",
    "failed_over": "已转其他渠道",
    "suppressed": "已被更高级别预警覆盖",
    "superseded": "已被新版本取代",
    "expired": "已过期未发",
}
ACK_HOW = {"reply": "回复短信", "link": "点击链接", "call": "电话确认"}
# audit actions shown as their own kind of event already (acknowledgements, door-knock results)
AUDITED_ELSEWHERE = ("ack.record", "ack.repeat", "doorknock.result")
TARGET_ALERT = re.compile(r"^(?:alert:)?([0-9]+)(?:/|$)")  # the revision an audit entry's target names
TARGET_BROADCAST = re.compile(r"^broadcast:([0-9]+)$")
ACTION_TITLES = {
    "alert.post": "通过接口提交预警",
    "broadcast.send": "人工广播已发出",
    "broadcast.submit": "提交广播",
    "broadcast.notify": "已通知审批人",
    "broadcast.approve": "广播已批准",
    "broadcast.reject": "广播已驳回",
    "broadcast.withdraw": "广播已撤回",
    "broadcast.sent": "广播已发出",
    "broadcast.failed": "广播发送失败",
    "doorknock.export": "导出敲门名单",
    "doorknock.print": "打印敲门名单",
    "report.kept": "覆盖率报告已归档",
}


def channel_label(name: str, settings: Mapping[str, Any]) -> str:
    """「短信」, 「大喇叭」, 「推送」 by the channel's style; 「短信（sms_backup）」 for a second channel of a style; the
    name itself for other styles."""
    style = settings.get("style") or style_for(str(settings.get("template") or name))
    label = STYLE_LABELS.get(style)
    if label is None:
        return name
    return label if STYLE_CHANNELS[style] == name else f"{label}（{name}）"


def masked(value: Any) -> Any:
    """``value`` with every mobile number in its strings masked (JSON-like values)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value


def _event(at: datetime, kind: str, title: str, alert_id: int | None, **detail: Any) -> dict[str, Any]:
    return {"at": at, "kind": kind, "title": title, "alert_id": alert_id, "detail": detail}


def _revision_word(row: Mapping[str, Any], number: int) -> str:
    if row["msg_type"] == "Cancel":
        return "解除"
    return f"更新（第{number}版）" if number > 1 else "预警"


def revision_events(
    chain: Sequence[Mapping[str, Any]], payloads: Mapping[int, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """received (or revision), validated and matched, for each revision of the chain."""
    out = []
    for number, row in enumerate(chain, start=1):
        payload = payloads.get(row["payload_id"] or -1)
        at = payload["received_at"] if payload else row["received_at"]
        word = _revision_word(row, number)
        about = {
            "identifier": row["identifier"],
            "sender": row["sender"],
            "msg_type": row["msg_type"],
            "status": row["status"],
            "colour": row["colour"],
            "level": row["level"],
            "headline": row["headline"],
            "source": payload["source"] if payload else row["source"],
            "payload_id": row["payload_id"],
        }
        kind = "received" if number == 1 else "revision"
        out.append(_event(at, kind, f"收到{word}", row["id"], **about))
        warnings = list((payload or {}).get("errors") or [])
        title = f"校验通过（{len(warnings)} 条提示）" if warnings else "校验通过"
        out.append(_event(at, "validated", title, row["id"], warnings=warnings))
        rules = list((row["rules"] or {}).get("rules", []))
        if row["msg_type"] == "Cancel":
            title = "解除通知发给此前收到预警的人"
        elif rules:
            title = "规则匹配：" + "、".join(rules)
        else:
            title = "没有匹配的规则，不发送"
        if row["state"] == "inactive":
            title += "（草稿或系统消息，不发送）"
        elif (row["fanout_stats"] or {}).get("not_sent"):
            title += "（到达时已过期，不发送）"
        out.append(
            _event(
                row["received_at"],
                "matched",
                title,
                row["id"],
                rules=rules,
                level=row["level"],
                fanout_stats=row["fanout_stats"],
            )
        )
    return out


def delivery_events(
    chain: Sequence[Mapping[str, Any]],
    summary: Iterable[Mapping[str, Any]],
    labels: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Per revision × channel: when the first message went out; once nothing is queued any more, when the last
    one went out (or was given up); when the last delivery receipt came — each with the counts by status."""
    numbers = {row["id"]: n for n, row in enumerate(chain, start=1)}
    words = {row["id"]: _revision_word(row, numbers[row["id"]]) for row in chain}
    groups: dict[tuple[int, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in summary:
        groups[(row["alert_id"], row["channel"])].append(row)
    out = []
    for (alert_id, channel), rows in groups.items():
        counts = {r["status"]: int(r["count"]) for r in rows}
        first_sent = min((r["first_sent"] for r in rows if r["first_sent"]), default=None)
        last_delivered = max((r["last_delivered"] for r in rows if r["last_delivered"]), default=None)
        label = labels.get(channel, channel)
        prefix = "" if numbers.get(alert_id) == 1 else f"{words.get(alert_id, '')}·"
        detail = {
            "channel": channel,
            "counts": counts,
            "total": sum(counts.values()),
            "first_sent": first_sent,
            "last_delivered": last_delivered,
        }
        if first_sent is not None:
            out.append(
                _event(
                    first_sent, "deliveries", f"{prefix}{label}开始发送", alert_id, phase="started", **detail
                )
            )
        if not counts.get("queued"):  # the moment the last one went out or was given up
            done_at = max(t for r in rows for t in (r["last_sent"], r["last_unsent"]) if t is not None)
            parts = "，".join(
                f"{STATUS_LABELS.get(s, s)} {n}" for s, n in sorted(counts.items(), key=_status_order)
            )
            out.append(
                _event(
                    done_at,
                    "deliveries",
                    f"{prefix}{label}发送完毕：{parts}",
                    alert_id,
                    phase="done",
                    **detail,
                )
            )
        if last_delivered is not None:
            out.append(
                _event(
                    last_delivered,
                    "deliveries",
                    f"{prefix}{label}最近一条送达回执（已送达 {counts.get('delivered', 0)}）",
                    alert_id,
                    phase="delivered",
                    **detail,
                )
            )
    return out


def _status_order(item: tuple[str, int]) -> int:
    order = list(STATUS_LABELS)
    return order.index(item[0]) if item[0] in order else len(order)


def escalation_events(steps: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each rung climbed: 「升级·李秀英：叫应期限已过，仍未确认」 (the reason's Chinese part)."""
    return [
        _event(
            s["at"],
            "escalation",
            f"升级·{s['name']}：{mask_text(s['reason'].split(' (')[0])}",
            s["alert_id"],
            step=s["step"],
            reason=mask_text(s["reason"]),
            why=s["why"],
            escalation_id=s["escalation_id"],
            role=s["role"],
            area_code=s["area_code"],
            info=masked(s["detail"] or {}),
        )
        for s in steps
    ]


def ack_events(acks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """「张三 已确认收到（回复短信）」; a call names who took it."""
    out = []
    for a in acks:
        how = ACK_HOW.get(a["channel"], a["channel"])
        if a["channel"] == "call":
            how = f"{how}，{a['recorded_by']} 记录"
        out.append(
            _event(
                a["at"],
                "ack",
                f"{a['name']} 已确认收到（{how}）",
                a["alert_id"],
                name=a["name"],
                phone=mask_phone(a["phone"]),
                role=a["role"],
                area_code=a["area_code"],
                channel=a["channel"],
                recorded_by=a["recorded_by"],
                info=masked(a["detail"] or {}),
            )
        )
    return out


def doorknock_events(results: Iterable[Mapping[str, Any]], area_name: Any) -> list[dict[str, Any]]:
    """One per household checked off: 「敲门：万年村 wn-2 已通知到（吴强）」."""
    out = []
    for k in results:
        place = area_name(k["area_code"]) or k["area_code"]
        label = RESULT_LABELS.get(k["result"], k["result"])
        by = f"（{k['result_by']}）" if k["result_by"] else ""
        out.append(
            _event(
                k["result_at"],
                "doorknock",
                f"敲门：{place} {k['household']} {label}{by}",
                None,
                area_code=k["area_code"],
                household=k["household"],
                result=k["result"],
                result_by=k["result_by"],
                people=int(k["people"]),
                note=mask_text(k["note"]) if k["note"] else None,
            )
        )
    return out


def audit_events(
    entries: Iterable[Mapping[str, Any]], broadcasts: Mapping[int, int] | None = None
) -> list[dict[str, Any]]:
    """Operator actions from the audit log: kind ``broadcast`` for ``broadcast.*``, else ``action``. The
    revision an event is about comes from its target (``5``, ``alert:5/…``), or for ``broadcast:<id>`` from
    ``broadcasts`` (broadcast id → the revision it became or revises)."""
    out = []
    for e in entries:
        action, actor, target = e["action"], e["actor"], e["target"] or ""
        who = actor.split(":", 1)[1] if ":" in actor else actor
        title = f"{ACTION_TITLES.get(action, f'操作：{action}')}（{who}）"
        kind = "broadcast" if action.startswith("broadcast.") else "action"
        revision = TARGET_ALERT.match(target)
        broadcast = TARGET_BROADCAST.match(target)
        if revision:
            alert_id: int | None = int(revision.group(1))
        else:
            alert_id = (broadcasts or {}).get(int(broadcast.group(1))) if broadcast else None
        out.append(
            _event(
                e["at"],
                kind,
                title,
                alert_id,
                action=action,
                actor=actor,
                target=e["target"],
                info=masked(e["detail"] or {}),
            )
        )
    return out


def in_order(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """By time; what happened at the same moment in :data:`KIND_ORDER`, else as listed."""
    return sorted(events, key=lambda e: (e["at"], KIND_ORDER.get(e["kind"], len(KIND_ORDER))))


def capped(events: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], bool]:
    """At most ``limit`` events of each of :data:`CAPPED_KINDS` (the first ones); whether any were left out."""
    seen: dict[str, int] = defaultdict(int)
    kept = []
    for e in events:
        if e["kind"] in CAPPED_KINDS:
            seen[e["kind"]] += 1
            if seen[e["kind"]] > limit:
                continue
        kept.append(e)
    return kept, len(kept) < len(events)


async def timeline(app: App, alert_id: int, *, limit: int) -> dict[str, Any] | None:
    """The timeline of the chain ``alert_id`` (any revision) belongs to; None for an unknown alert."""
    store = app.store
    chain = await resolve_chain(store, alert_id)
    if not chain:
        return None
    root_id = chain[0]["id"]
    ids = [r["id"] for r in chain]
    payloads = {
        p["id"]: p
        for p in await queries.chain_payloads(store, [r["payload_id"] for r in chain if r["payload_id"]])
    }
    summary = await queries.delivery_summary(store, root_id)
    broadcasts = await queries.chain_broadcasts(store, ids)
    labels = {name: channel_label(name, settings) for name, settings in app.config.channels.items()}
    # one more than the limit of each capped kind, so that leaving some out shows
    events = [
        *revision_events(chain, payloads),
        *delivery_events(chain, summary, labels),
        *audit_events(
            await queries.chain_audit(
                store, ids, root_id, broadcast_ids=list(broadcasts), skip=AUDITED_ELSEWHERE, limit=limit + 1
            ),
            broadcasts,
        ),
        *escalation_events(await queries.escalation_steps(store, root_id, limit + 1)),
        *ack_events(await queries.chain_ack_events(store, root_id, limit + 1)),
        *doorknock_events(await queries.doorknock_results(store, root_id, limit + 1), app.config.area_name),
    ]
    kept, truncated = capped(in_order(events), limit)
    per_channel: dict[str, dict[str, int]] = defaultdict(dict)
    for row in summary:
        own = per_channel[row["channel"]]
        own[row["status"]] = own.get(row["status"], 0) + int(row["count"])
    return {
        "alert_id": alert_id,
        "root_id": root_id,
        "latest_id": ids[-1],
        "events": kept,
        "deliveries": dict(per_channel),
        "truncated": truncated,
        "limit": limit,
    }
