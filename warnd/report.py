"""Coverage and timeliness per alert, village and channel; reports kept when an alert ends, drills apart
(docs/reports.md).

A report is computed from one alert chain's *warning deliveries* (:mod:`warnd.store.report`), its
acknowledgements (叫应) and its door-knock list (敲门行动), and counts **persons**; loudspeaker terminals are
counted apart. The counting is :func:`build_report` (pure); :class:`Reporter` fetches the rows, keeps the
report of every chain that ended, and serves the CLI (``warnd report``, ``warnd optimise``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from warnd.cap.model import DRILL_STATUSES
from warnd.clock import Clock
from warnd.config import Config, parse_when, township_code
from warnd.optimise import DEFAULT_WINDOW, Optimiser, percentile, reach_seconds, with_chain
from warnd.receipts import sent_is_enough
from warnd.store import NOT_SENT, Store
from warnd.store import report as queries

Command = Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]
log = logging.getLogger("warnd.report")

# door-knock results that mean the household was told
DOORKNOCK_REACHED = ("reached", "moved")
METRICS = (
    "targeted",
    "sent",
    "delivered",
    "failed",
    "ack_required",
    "acknowledged",
    "doorknocked",
    "reached_by_doorknock",
    "reached",
    "covered_elsewhere",
)
CHANNEL_METRICS = (
    "targeted",
    "sent",
    "delivered",
    "failed",
    "ack_required",
    "acknowledged",
    "covered_elsewhere",
)
TERMINAL_METRICS = ("targeted", "sent", "delivered", "failed", "failed_over")
CSV_COLUMNS = ("area_code", "name", "township", *METRICS, "coverage", "below_target", "flagged")


# --- counting (pure) -------------------------------------------------------------------------------------------


def timing(values: Sequence[float]) -> dict[str, Any]:
    """count, p50, p90, p99 (nearest rank, seconds) of ``values``."""

    def p(q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value, 3)

    return {"count": len(values), "p50": p(50), "p90": p(90), "p99": p(99)}


def _coverage(reached: int, targeted: int, target: float) -> tuple[float | None, bool]:
    if not targeted:
        return None, False
    ratio = reached / targeted
    return round(ratio, 4), ratio < target


class _Person:
    """What one person's rows add up to."""

    def __init__(self, rows: list[Mapping[str, Any]], acked: bool, knock: str | None):
        live = [r for r in rows if r["status"] != "suppressed"]
        self.covered_elsewhere = not live
        self.targeted = bool(live)
        self.sent = any(r["sent_at"] is not None for r in live)
        self.delivered = any(r["reached"] for r in live)
        self.failed = not self.delivered and any(r["status"] == "failed" for r in live)
        self.ack_required = any(r["ack_required"] and r["status"] not in NOT_SENT for r in live)
        self.acknowledged = self.targeted and acked
        self.doorknocked = self.targeted and knock is not None
        self.reached_by_doorknock = self.targeted and knock in DOORKNOCK_REACHED
        self.reached = self.delivered or self.acknowledged or self.reached_by_doorknock

    def counts(self) -> dict[str, int]:
        return {m: int(getattr(self, m)) for m in METRICS}


def _add(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


def _finish(counts: Mapping[str, int], target: float, active: bool) -> dict[str, Any]:
    row: dict[str, Any] = {m: int(counts.get(m, 0)) for m in METRICS}
    row["coverage"], row["below_target"] = _coverage(row["reached"], row["targeted"], target)
    row["flagged"] = active and row["below_target"]
    return row


def _iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat() if value else None


def build_report(
    *,
    chain: Sequence[Mapping[str, Any]],
    deliveries: Iterable[Mapping[str, Any]],
    acks: Iterable[Mapping[str, Any]],
    doorknocks: Iterable[Mapping[str, Any]],
    target: float,
    channel_order: Sequence[str],
    area_name: Callable[[str], str | None],
    tz: ZoneInfo,
    computed_at: datetime,
) -> dict[str, Any]:
    """The report of one chain (docs/reports.md has the definitions). JSON-ready: times are ISO strings."""
    root, latest = chain[0], chain[-1]
    active = latest["state"] == "active"
    drill = root["status"] in DRILL_STATUSES
    people: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    terminals: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    info: dict[int, Mapping[str, Any]] = {}
    for row in deliveries:
        (people if row["kind"] == "person" else terminals)[row["recipient_id"]].append(row)
        info[row["recipient_id"]] = row
    first_ack: dict[int, Mapping[str, Any]] = {}
    for a in sorted(acks, key=lambda a: a["at"]):
        first_ack.setdefault(a["recipient_id"], a)
    knocks = {k["recipient_id"]: k["result"] for k in doorknocks}

    villages: dict[str, dict[str, int]] = defaultdict(dict)
    townships: dict[str, dict[str, int]] = defaultdict(dict)
    channels: dict[str, dict[str, int]] = defaultdict(dict)
    total: dict[str, int] = {}
    reach_total: list[float] = []
    reach_channel: dict[str, list[float]] = defaultdict(list)
    ack_total: list[float] = []
    ack_channel: dict[str, list[float]] = defaultdict(list)
    for rid, rows in people.items():
        person = _Person(rows, rid in first_ack, knocks.get(rid))
        counts = person.counts()
        village = info[rid]["area_code"]
        _add(villages[village], counts)
        _add(townships[township_code(village)], counts)
        _add(total, counts)
        by_channel: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for r in rows:
            by_channel[r["channel"]].append(r)
        fastest: list[float] = []  # each channel's fastest; the person's fastest is the least of them
        for name, own in by_channel.items():
            sub = _Person(own, rid in first_ack, None)
            _add(channels[name], {m: int(getattr(sub, m)) for m in CHANNEL_METRICS})
            times = [
                t for t in (reach_seconds(r) for r in own if r["status"] != "suppressed") if t is not None
            ]
            if times:
                reach_channel[name].append(min(times))
                fastest.append(min(times))
        if not person.targeted:
            continue
        if fastest:
            reach_total.append(min(fastest))
        ack = first_ack.get(rid)
        if ack is not None:
            seconds = max(0.0, (ack["at"] - ack["received_at"]).total_seconds())
            ack_total.append(seconds)
            ack_channel[ack["channel"]].append(seconds)

    village_rows = []
    for code in sorted(villages):
        row = {"area_code": code, "name": area_name(code), "township": township_code(code)}
        row.update(_finish(villages[code], target, active))
        village_rows.append(row)
    township_rows = []
    for code in sorted(townships):
        row = {"area_code": code, "name": area_name(code)}
        row.update(_finish(townships[code], target, active))
        township_rows.append(row)
    rank = {name: i for i, name in enumerate(channel_order)}
    channel_rows = []
    for name in sorted(channels, key=lambda c: (rank.get(c, len(rank)), c)):
        counts = channels[name]
        row = {"channel": name, **{m: int(counts.get(m, 0)) for m in CHANNEL_METRICS}}
        row["coverage"], row["below_target"] = _coverage(row["delivered"], row["targeted"], target)
        channel_rows.append(row)

    terminal_villages: dict[str, dict[str, int]] = defaultdict(dict)
    not_reached: dict[str, list[str]] = defaultdict(list)
    for rid, rows in terminals.items():
        live = [r for r in rows if r["status"] != "suppressed"]
        if not live:
            continue
        delivered = any(r["reached"] for r in live)
        counts = {
            "targeted": 1,
            "sent": int(any(r["sent_at"] is not None for r in live)),
            "delivered": int(delivered),
            "failed": int(not delivered and any(r["status"] == "failed" for r in live)),
            "failed_over": int(not delivered and any(r["status"] == "failed_over" for r in live)),
        }
        village = info[rid]["area_code"]
        _add(terminal_villages[village], counts)
        if not delivered:
            not_reached[village].append(info[rid]["terminal_id"] or info[rid]["name"])
    terminal_rows = []
    for code in sorted(terminal_villages):
        counts = terminal_villages[code]
        row = {"area_code": code, "name": area_name(code), "township": township_code(code)}
        row.update({m: int(counts.get(m, 0)) for m in TERMINAL_METRICS})
        row["not_delivered"] = sorted(not_reached.get(code, []))
        terminal_rows.append(row)

    return {
        "alert": {
            "id": latest["id"],
            "root_id": root["id"],
            "revisions": [r["id"] for r in chain],
            "identifier": latest["identifier"],
            "event": latest["event"],
            "headline": latest["headline"],
            "colour": latest["colour"],
            "level": latest["level"],
            "status": latest["status"],
            "msg_type": latest["msg_type"],
            "state": latest["state"],
            "drill": drill,
            "area_desc": latest["area_desc"],
            "received_at": _iso(root["received_at"], tz),
        },
        "active": active,
        "target": target,
        "total": _finish(total, target, active),
        "townships": township_rows,
        "villages": village_rows,
        "channels": channel_rows,
        "terminals": terminal_rows,
        "timeliness": {
            "delivered": {
                "total": timing(reach_total),
                "channels": {c: timing(v) for c, v in sorted(reach_channel.items())},
            },
            "acknowledged": {
                "total": timing(ack_total),
                "channels": {c: timing(v) for c, v in sorted(ack_channel.items())},
            },
        },
        "computed_at": _iso(computed_at, tz),
    }


# --- output ----------------------------------------------------------------------------------------------------


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def report_csv(report: Mapping[str, Any]) -> str:
    """One row per village plus a total row (area_code ``total``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    total = {"area_code": "total", "name": "合计", "township": "", **report["total"]}
    for row in [*report["villages"], total]:
        writer.writerow([_csv_value(row.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


TABLE_HEADERS = (
    "村/社区 Village",
    "乡镇 Township",
    "目标人数 Targeted",
    "已发送 Sent",
    "已送达 Delivered",
    "失败 Failed",
    "需叫应 Ack req.",
    "已叫应 Acked",
    "已敲门 Knocked",
    "已触达 Reached",
    "覆盖率 Coverage",
)


def percent(coverage: float | None) -> str:
    return "-" if coverage is None else f"{coverage * 100:.1f}%"


def report_table(report: Mapping[str, Any], area_name: Callable[[str], str | None]) -> list[list[str]]:
    """Rows for :func:`warnd.cli.print_table` under :data:`TABLE_HEADERS`: villages, then the total."""

    def cells(label: str, township: str, row: Mapping[str, Any]) -> list[str]:
        mark = " ⚠" if row.get("below_target") else ""
        return [
            label,
            township,
            *(
                str(row[m])
                for m in ("targeted", "sent", "delivered", "failed", "ack_required", "acknowledged")
            ),
            str(row["doorknocked"]),
            str(row["reached"]),
            percent(row["coverage"]) + mark,
        ]

    rows = []
    for v in report["villages"]:
        label = f"{v['name'] or ''} {v['area_code']}".strip()
        rows.append(cells(label, area_name(v["township"]) or v["township"], v))
    rows.append(cells("合计 Total", "", report["total"]))
    return rows


def report_heading(report: Mapping[str, Any]) -> list[str]:
    a = report["alert"]
    drill = "【演练/测试 drill】" if a["drill"] else ""
    state = "进行中 active" if report["active"] else f"已结束 {a['state']}"
    lines = [
        f"{drill}预警 alert {a['root_id']}（revisions {', '.join(map(str, a['revisions']))}）"
        f"{a['headline'] or a['event']}  {a['colour'] or '-'}  level {a['level'] or '-'}  {state}",
        f"覆盖率目标 target {percent(report['target'])}；接收时间 received {a['received_at']}；"
        f"计算于 computed {report['computed_at']}",
    ]
    t = report["timeliness"]["delivered"]["total"]
    k = report["timeliness"]["acknowledged"]["total"]
    lines.append(
        f"送达用时 time to delivered: n={t['count']} p50={_secs(t['p50'])} p90={_secs(t['p90'])} "
        f"p99={_secs(t['p99'])}；叫应用时 time to ack: n={k['count']} p50={_secs(k['p50'])} "
        f"p90={_secs(k['p90'])}"
    )
    return lines


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def chain_report(
    config: Config,
    tz: ZoneInfo,
    chain: Sequence[Mapping[str, Any]],
    rows: queries.ChainRows,
    now: datetime,
) -> dict[str, Any]:
    """The report of ``chain`` from its ``rows`` (:func:`warnd.store.report.chain_rows`, which may hold other
    chains' rows too), with ``config``'s target, channel order and area names: the report API's, the board's
    and the dashboard's."""
    root_id = chain[0]["id"]
    return build_report(
        chain=chain,
        deliveries=rows.deliveries[root_id],
        acks=rows.acks[root_id],
        doorknocks=rows.doorknocks[root_id],
        target=config.feedback.coverage_target,
        channel_order=list(config.channels),
        area_name=config.area_name,
        tz=tz,
        computed_at=now,
    )


# --- the service ---------------------------------------------------------------------------------------------


class Reporter:
    def __init__(self, *, config: Config, store: Store, clock: Clock):
        self.config = config
        self.store = store
        self.clock = clock
        self.tz = ZoneInfo(config.timezone)
        self.optimiser = Optimiser(config=config, store=store, clock=clock)

    async def report(self, alert_id: int) -> dict[str, Any] | None:
        """The live report of the chain ``alert_id`` (any revision) belongs to; None for an unknown alert."""
        found = await self._report(alert_id)
        return found[0] if found else None

    async def _report(self, alert_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The report and the chain's warning deliveries it was counted from."""
        chain = await queries.resolve_chain(self.store, alert_id)
        if not chain:
            return None
        root_id = chain[0]["id"]
        rows = await queries.chain_rows(self.store, [root_id], sent_is_enough(self.config.channels))
        return chain_report(self.config, self.tz, chain, rows, self.clock.now()), rows.deliveries[root_id]

    async def recommendations(
        self, *, since: datetime | None, alert_id: int | None = None, apply: bool = False
    ) -> list[dict[str, Any]] | None:
        """Recommendations over the window (and about one chain); None when ``alert_id`` is unknown."""
        root_id = None
        if alert_id is not None:
            chain = await queries.resolve_chain(self.store, alert_id)
            if not chain:
                return None
            root_id = chain[0]["id"]
        return await self.optimiser.recommend(since=since, root_id=root_id, apply=apply)

    def default_since(self) -> datetime:
        return self.clock.now() - timedelta(seconds=DEFAULT_WINDOW)

    async def keep_ended(self) -> list[int]:
        """Compute and keep the report (and recommendations) of every alert chain that ended since the last
        pass; returns their root ids. Safe on several nodes: a report is inserted once (on conflict nothing).
        The delivery history the recommendations look at (the last 30 days) is read once per pass. A chain
        that fails is logged with its root id and left for the next pass; the chains after it are kept."""
        kept: list[int] = []
        since = self.default_since()
        window: list[dict[str, Any]] | None = None
        after: int | None = None
        while batch := await queries.ended_without_report(self.store, after=after):
            if window is None:
                window = await self.optimiser.window(since)
            for latest in batch:
                root_id = latest["root_id"]
                try:
                    if await self._keep(root_id, since, window):
                        kept.append(root_id)
                except Exception:
                    log.exception(
                        "could not keep the report of alert chain %s (root id); retrying at the next pass",
                        root_id,
                    )
            after = batch[-1]["root_id"]
        return kept

    async def _keep(self, root_id: int, since: datetime, window: Sequence[Mapping[str, Any]]) -> bool:
        found = await self._report(root_id)
        if found is None:
            return False
        report, rows = found
        recs = await self.optimiser.recommend(
            since=since, root_id=root_id, apply=True, rows=with_chain(window, rows)
        )
        if not await queries.keep_report(
            self.store,
            root_id,
            drill=report["alert"]["drill"],
            computed_at=self.clock.now(),
            report=report,
            recommendations=recs,
        ):
            return False  # another node kept it first
        await self.store.audit(
            self.clock.now(),
            "warnd:report",
            "report.kept",
            target=str(root_id),
            detail={
                "drill": report["alert"]["drill"],
                "coverage": report["total"]["coverage"],
                "recommendations": len(recs),
            },
        )
        return True

    async def kept(self, *, drill: bool, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        """Kept reports, newest chain first: a summary of each (root id, alert block, total)."""
        rows = await queries.kept_reports(self.store, drill=drill, limit=limit, before_root=before)
        return [kept_summary(r, self.tz) for r in rows]

    async def kept_one(self, alert_id: int) -> dict[str, Any] | None:
        row = await queries.kept_report(self.store, alert_id)
        if row is None:
            return None
        return {
            **kept_summary(row, self.tz),
            "report": row["report"],
            "recommendations": row["recommendations"],
        }


def kept_summary(row: Mapping[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    report = row["report"]
    return {
        "root_id": row["root_id"],
        "drill": row["drill"],
        "computed_at": _iso(row["computed_at"], tz),
        "alert": report["alert"],
        "total": report["total"],
        "recommendations": len(row["recommendations"] or []),
    }


# --- command line --------------------------------------------------------------------------------------------


def add_cli(sub: Any, common: argparse.ArgumentParser) -> dict[str, Command]:
    """Adds ``warnd report`` and ``warnd optimise``; returns their handlers by command name."""
    rep = sub.add_parser(
        "report", parents=[common], help="coverage and timeliness of an alert; kept reports and drills"
    )
    rep.add_argument(
        "alert", nargs="?", type=int, metavar="ALERT", help="alert id (any revision of the chain)"
    )
    rep.add_argument("--format", choices=("table", "json", "csv"), default="table")
    rep.add_argument("--kept", action="store_true", help="show the report kept when the alert ended")
    rep.add_argument("--list", action="store_true", help="list kept reports of real alerts")
    rep.add_argument("--drills", action="store_true", help="with --list: list drills (演练/测试) instead")
    rep.add_argument("--limit", type=int, default=50, help="with --list: at most this many")

    opt = sub.add_parser("optimise", parents=[common], help="recommendations from the delivery logs")
    opt.add_argument("--alert", type=int, help="only about this alert chain")
    opt.add_argument(
        "--since", default=None, help="window: a duration ago (30d, 12h) or an ISO time (default 30d)"
    )
    opt.add_argument("--format", choices=("table", "json"), default="table")
    return {"report": cmd_report, "optimise": cmd_optimise}


def _open(config: Config, args: argparse.Namespace) -> tuple[Store, Reporter]:
    from warnd.clock import SystemClock

    store = Store.open(args.database or config.database_url)
    return store, Reporter(config=config, store=store, clock=SystemClock())


async def cmd_report(config: Config, args: argparse.Namespace) -> int:
    from warnd.cli import print_table

    if not args.list and args.alert is None:
        print("warnd report: give an ALERT id, or --list [--drills]", file=sys.stderr)
        return 2
    store, reporter = _open(config, args)
    try:
        await store.upgrade()
        if args.list:
            items = await reporter.kept(drill=args.drills, limit=args.limit)
            if args.format == "json":
                print(json.dumps(items, ensure_ascii=False, indent=2))
                return 0
            rows = [
                [
                    str(i["root_id"]),
                    str(i["alert"]["headline"] or i["alert"]["event"]),
                    i["alert"]["state"],
                    str(i["total"]["targeted"]),
                    str(i["total"]["reached"]),
                    percent(i["total"]["coverage"]) + (" ⚠" if i["total"]["below_target"] else ""),
                    i["computed_at"] or "",
                ]
                for i in items
            ]
            if args.format == "csv":
                writer = csv.writer(sys.stdout, lineterminator="\n")
                writer.writerow(
                    ("root_id", "alert", "state", "targeted", "reached", "coverage", "computed_at")
                )
                writer.writerows(rows)
                return 0
            print_table(
                (
                    "预警 Alert",
                    "标题 Headline",
                    "状态 State",
                    "目标人数 Targeted",
                    "已触达 Reached",
                    "覆盖率 Coverage",
                    "归档 Kept at",
                ),
                rows,
            )
            print(f"{len(items)} {'drill' if args.drills else 'alert'} report(s)", file=sys.stderr)
            return 0
        if args.kept:
            kept = await reporter.kept_one(args.alert)
            report = kept["report"] if kept else None
            missing = f"alert {args.alert} has no kept report (it has not ended, or is unknown)"
        else:
            report = await reporter.report(args.alert)
            missing = f"unknown alert: {args.alert} (no such alert id)"
        if report is None:
            print(f"warnd report: {missing}", file=sys.stderr)
            return 1
    finally:
        await store.close()
    if args.format == "json":
        print(json.dumps(report, ensure_ascii=False, indent=2))
    elif args.format == "csv":
        sys.stdout.write(report_csv(report))
    else:
        for line in report_heading(report):
            print(line)
        print_table(TABLE_HEADERS, report_table(report, config.area_name))
        below = [v for v in report["villages"] if v["below_target"]]
        if below:
            print(
                f"⚠ {len(below)} 个村/社区低于覆盖率目标 village(s) below target {percent(report['target'])}"
            )
    return 0


async def cmd_optimise(config: Config, args: argparse.Namespace) -> int:
    from warnd.cli import actor, print_table

    store, reporter = _open(config, args)
    try:
        await store.upgrade()
        now = reporter.clock.now()
        try:
            since = parse_when(args.since, now, reporter.tz)
        except ValueError:
            print(f"warnd optimise: --since: not a duration or ISO time: {args.since!r}", file=sys.stderr)
            return 2
        if since is None and args.alert is None:
            since = reporter.default_since()
        recs = await reporter.recommendations(since=since, alert_id=args.alert, apply=True)
        if recs is None:
            print(f"warnd optimise: unknown alert: {args.alert} (no such alert id)", file=sys.stderr)
            return 1
        await store.audit(
            now,
            actor(args),
            "optimise.run",
            target=str(args.alert) if args.alert else None,
            detail={"since": since.isoformat() if since else None, "recommendations": len(recs)},
        )
    finally:
        await store.close()
    if args.format == "json":
        print(json.dumps(recs, ensure_ascii=False, indent=2, default=str))
        return 0
    print_table(
        ("类别 Kind", "对象 Subject", "建议 Recommendation", "措施 Action"),
        [[r["kind"], r["subject"], r["message"], r["action"]] for r in recs],
    )
    print(f"{len(recs)} recommendation(s)", file=sys.stderr)
    return 0
