"""The ``warnd`` command line. Every command takes ``-c DIR`` (config directory) and ``--database URL``."""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from warnd import __version__, acks, auth, escalation, report
from warnd.config import Config, ConfigInvalid, load_config, parse_duration, parse_when
from warnd.logs import configure_logging, mask_phone

LOG_COLUMNS = (
    "id",
    "alert_id",
    "created_at",
    "channel",
    "status",
    "recipient",
    "phone",
    "area_code",
    "segments",
    "attempts",
    "sent_at",
    "error",
    "body",
)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=os.environ.get("WARND_CONFIG", "config"),
        help="config directory (default: $WARND_CONFIG or ./config)",
    )
    common.add_argument(
        "--database",
        default=None,
        help="database URL (default: config database, $WARND_DATABASE_URL, or SQLite in data_dir)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="warnd", description="Early-warning message dissemination daemon.")
    parser.add_argument("--version", action="version", version=f"warnd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the daemon: API, feeds, dispatcher")
    run.add_argument("--host", default=None, help="listen address (default: api.host, 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="listen port (default: api.port, 8470)")

    ingest = sub.add_parser("ingest", parents=[common], help="ingest CAP files (or feeds / EDXL-DE files)")
    ingest.add_argument("files", nargs="+", type=Path, metavar="FILE")

    sub.add_parser("check-config", parents=[common], help="validate the config directory and templates")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", parents=[common], help="apply Alembic migrations")
    copy = db_sub.add_parser(
        "copy",
        parents=[common],
        help="copy every table into another database (SQLite → PostgreSQL: docs/cluster.md)",
    )
    copy.add_argument(
        "--from", dest="source", default=None, help="source database URL (default: the config's database)"
    )
    copy.add_argument(
        "--to",
        dest="target",
        required=True,
        help="target database URL, e.g. postgresql+asyncpg://warnd@db/warnd",
    )
    copy.add_argument(
        "--replace",
        action="store_true",
        help="delete the target's rows first (default: refuse a target with rows)",
    )
    copy.add_argument("--chunk", type=int, default=5000, help="rows per read (default 5000)")

    logs = sub.add_parser("logs", parents=[common], help="the delivery log")
    logs.add_argument("--alert", type=int, help="alert id")
    logs.add_argument("--channel")
    logs.add_argument(
        "--status", help="queued, sent, delivered, failed, failed_over, suppressed, superseded, expired"
    )
    logs.add_argument("--area", help="admin code or prefix, e.g. 500228101")
    logs.add_argument("--since", help="ISO time or a duration ago (30m, 2h, 1d)")
    logs.add_argument("--until", help="ISO time or a duration ago")
    logs.add_argument("--phone-suffix", help="last digits of a phone number")
    logs.add_argument("--format", choices=("table", "json", "csv"), default="table")
    logs.add_argument("--limit", type=int, default=None, help="at most this many rows (default: all)")
    logs.add_argument("--unmask", action="store_true", help="show full phone numbers (audited)")

    bc = sub.add_parser("broadcast", parents=[common], help="send a manual broadcast through the pipeline")
    bc.add_argument("--channel", action="append", required=True, help="channel (repeat or comma-separate)")
    bc.add_argument("--area", action="append", default=[], help="12-digit admin code (repeatable)")
    bc.add_argument("--group", action="append", default=[], help="group name (repeatable)")
    bc.add_argument("--hazard", help="hazard name or code, e.g. 暴雨 or 11B03")
    bc.add_argument("--colour", "--color", dest="colour", help="red/orange/yellow/blue or 红/橙/黄/蓝")
    bc.add_argument("--text", help="the message text (free text, or the description of the warning)")
    bc.add_argument("--headline")
    drill = bc.add_mutually_exclusive_group()
    drill.add_argument("--exercise", action="store_true", help="a drill (演练): drill groups only")
    drill.add_argument("--test", action="store_true", help="a test (测试): drill groups only")
    bc.add_argument("--expires-in", default="6h", help="how long the broadcast stays active (default 6h)")
    bc.add_argument("--actor", default=None, help="who is sending (default: the login name)")
    bc.add_argument(
        "--send",
        action="store_true",
        help="also dispatch now from this process (otherwise the running daemon sends it)",
    )

    subs = sub.add_parser("subscribers", help="import or export subscribers")
    subs_sub = subs.add_subparsers(dest="subscribers_command", required=True, metavar="ACTION")
    imp = subs_sub.add_parser("import", parents=[common], help="import a CSV (all rows or none)")
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    exp = subs_sub.add_parser("export", parents=[common], help="export subscribers as CSV")
    exp.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")

    quarantine = sub.add_parser("quarantine", parents=[common], help="rejected payloads and why")
    quarantine.add_argument("--limit", type=int, default=20)

    # the feedback loop's commands live beside their code: warnd ack, warnd doorknock, warnd report, ...
    for module in (acks, escalation, report, auth):
        COMMANDS.update(module.add_cli(sub, common))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("DEBUG" if args.verbose else os.environ.get("WARND_LOG_LEVEL", "INFO"))
    try:
        config = load_config(args.config, database=args.database)
    except ConfigInvalid as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{len(exc.errors)} configuration error(s) in {args.config}", file=sys.stderr)
        return 2
    handler = COMMANDS[args.command]
    try:
        return asyncio.run(handler(config, args))
    except KeyboardInterrupt:
        return 130


def actor(args: argparse.Namespace) -> str:
    return f"cli:{getattr(args, 'actor', None) or getpass.getuser()}"


def make_app(config: Config, args: argparse.Namespace) -> Any:
    from warnd.app import App

    return App(config, database=args.database)


async def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from warnd.daemon import AlreadyRunning, run_daemon

    app = make_app(config, args)
    try:
        await run_daemon(app, args.host or config.api.host, args.port or config.api.port)
    except AlreadyRunning as exc:
        print(f"warnd: {exc}", file=sys.stderr)
        await app.close()
        return 1
    return 0


async def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    from warnd.render import Renderer

    problems = Renderer(config.templates, default_language=config.language, timezone=config.timezone).check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} template error(s)", file=sys.stderr)
        return 2
    print(
        f"config OK: {config.directory}: {len(config.channels)} channels, {len(config.groups)} groups, "
        f"{len(config.rules)} rules, {len(config.subscribers)} subscribers, {len(config.terminals)} terminals, "
        f"{len(config.feeds)} feeds"
    )
    return 0


async def cmd_db(config: Config, args: argparse.Namespace) -> int:
    from warnd.store import Store

    if args.db_command == "copy":
        return await cmd_db_copy(config, args)
    store = Store.open(args.database or config.database_url)
    try:
        await store.upgrade()
        await store.audit(datetime.now(UTC), actor(args), "db.upgrade")
    finally:
        await store.close()
    print("database is at the newest schema")
    return 0


async def cmd_db_copy(config: Config, args: argparse.Namespace) -> int:
    """``warnd db copy --to URL``: no daemon may run on either database meanwhile (SQLite: its lock is taken)."""
    from sqlalchemy.engine import make_url

    from warnd.daemon import AlreadyRunning, single_instance_lock
    from warnd.store import Store
    from warnd.store.copy import TargetNotEmpty, copy_database

    source_url = args.source or args.database or config.database_url
    if make_url(source_url) == make_url(args.target):
        print("warnd: --from and --to name the same database", file=sys.stderr)
        return 2
    try:
        locks = [single_instance_lock(source_url), single_instance_lock(args.target)]
    except AlreadyRunning as exc:
        print(f"warnd: {exc}; stop it before copying", file=sys.stderr)
        return 1
    source, target = Store.open(source_url), Store.open(args.target)
    shown = {url: make_url(url).render_as_string(hide_password=True) for url in (source_url, args.target)}
    try:
        report = await copy_database(source, target, chunk=args.chunk, replace=args.replace)
        if report.matches:  # the copy's own entry, after the copied log
            await target.audit(
                datetime.now(UTC),
                actor(args),
                "db.copy",
                detail={"from": shown[source_url], "rows": sum(report.rows.values())},
            )
    except TargetNotEmpty as exc:
        print(f"warnd: {exc}", file=sys.stderr)
        return 1
    finally:
        await source.close()
        await target.close()
        for lock in locks:
            if lock is not None:
                lock.close()
    for table, rows in report.rows.items():
        print(f"{table:24} {rows:>12}")
    if not report.matches:
        print("warnd: the target's row counts differ from the rows copied", file=sys.stderr)
        return 1
    print(f"copied {sum(report.rows.values())} rows from {shown[source_url]} to {shown[args.target]}")
    return 0


async def cmd_ingest(config: Config, args: argparse.Namespace) -> int:
    app = make_app(config, args)
    failed = 0
    try:
        await app.start()
        for path in args.files:
            try:
                data = path.read_bytes()
            except OSError as exc:
                print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
                failed += 1
                continue
            results = await app.pipeline.ingest(data, source=f"file:{path.resolve()}")
            for result in results:
                if result.outcome == "rejected":
                    failed += 1
                    print(f"{path}: rejected (quarantine #{result.payload_id})", file=sys.stderr)
                    for error in result.errors:
                        print(f"  {error}", file=sys.stderr)
                    continue
                if result.outcome == "held":
                    print(f"{path}: held (payload #{result.payload_id}): waiting for the alert it references")
                    continue
                alert = await app.store.get_alert(result.alert_id)
                counts = (await app.store.delivery_counts([result.alert_id])).get(result.alert_id, {})
                assert alert is not None
                summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no deliveries"
                print(
                    f"{path}: {result.outcome} alert {alert['id']} {alert['msg_type']} {alert['event']} "
                    f"{alert['colour'] or '-'} level {alert['level'] or '-'}: {summary}"
                )
                for warning in result.warnings:
                    print(f"  warning: {warning}")
            await app.store.audit(
                app.clock.now(),
                actor(args),
                "alert.ingest",
                target=str(path),
                detail={"outcomes": [r.outcome for r in results]},
            )
    finally:
        await app.close()
    return 1 if failed else 0


async def cmd_logs(config: Config, args: argparse.Namespace) -> int:
    from warnd.store import Store

    tz = ZoneInfo(config.timezone)
    now = datetime.now(UTC)
    filters = {
        "alert_id": args.alert,
        "channel": args.channel,
        "status": args.status,
        "area": args.area,
        "since": parse_when(args.since, now, tz),
        "until": parse_when(args.until, now, tz),
        "phone_suffix": args.phone_suffix,
    }
    store = Store.open(args.database or config.database_url)
    out = sys.stdout
    writer = csv.writer(out) if args.format == "csv" else None
    if writer:
        writer.writerow(LOG_COLUMNS)
    shown, after = 0, 0
    table: list[list[str]] = []
    try:
        await store.upgrade()
        if args.unmask:
            await store.audit(
                now, actor(args), "logs.unmask", detail={k: str(v) for k, v in filters.items() if v}
            )
        while args.limit is None or shown < args.limit:
            page = await store.deliveries_page(
                filters, limit=min(5000, (args.limit or 5000) - shown), after_id=after
            )
            if not page:
                break
            after = page[-1]["id"]
            for row in page:
                row = dict(row)
                if not args.unmask:
                    row["phone"] = mask_phone(row["phone"])
                for key in ("created_at", "sent_at", "updated_at", "ack_deadline"):
                    if row.get(key):
                        row[key] = row[key].astimezone(tz)
                if args.format == "json":
                    out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                elif writer:
                    writer.writerow([_cell(row[c]) for c in LOG_COLUMNS])
                else:
                    table.append([_cell(row[c], short=True) for c in LOG_COLUMNS])
            shown += len(page)
    finally:
        await store.close()
    if args.format == "table":
        print_table(LOG_COLUMNS, table)
        print(f"{shown} deliver{'y' if shown == 1 else 'ies'}", file=sys.stderr)
    return 0


def _cell(value: Any, short: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%m-%d %H:%M:%S") if short else value.isoformat()
    text = str(value).replace("\n", " ")
    return text[:40] + "…" if short and len(text) > 41 else text


def print_table(headers: Sequence[str], rows: list[list[str]]) -> None:
    """Columns aligned for a terminal (CJK characters are two columns wide)."""
    import unicodedata

    def width(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)

    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for line in [list(headers), *rows]:
        print("  ".join(cell + " " * (widths[i] - width(cell)) for i, cell in enumerate(line)).rstrip())


async def cmd_broadcast(config: Config, args: argparse.Namespace) -> int:
    from warnd.pipeline import BroadcastInvalid, BroadcastRequest

    channels = [c.strip() for value in args.channel for c in value.split(",") if c.strip()]
    request = BroadcastRequest(
        channels=channels,
        areas=args.area,
        groups=args.group,
        hazard=args.hazard,
        colour=args.colour,
        text=args.text,
        headline=args.headline,
        status="Exercise" if args.exercise else ("Test" if args.test else "Actual"),
        expires_in=parse_duration(args.expires_in),
        actor=actor(args),
    )
    app = make_app(config, args)
    try:
        await app.start(channels=args.send)
        try:
            result = await app.pipeline.broadcast(request)
        except BroadcastInvalid as exc:
            print(f"broadcast refused: {exc}", file=sys.stderr)
            return 2
        await app.store.audit(
            app.clock.now(),
            actor(args),
            "broadcast.send",
            target=str(result.alert_id),
            detail={
                "channels": channels,
                "areas": args.area,
                "groups": args.group,
                "hazard": args.hazard,
                "colour": args.colour,
                "status": request.status,
                # the console and the API ask a second person for red / orange / whole-public drafts; the command
                # line on the server is the break-glass path (docs/console.md), marked as such in the audit log
                "approval": "none: command line on the server",
            },
        )
        if args.send:
            await app.dispatcher.drain()
        counts = (await app.store.delivery_counts([result.alert_id or 0])).get(result.alert_id or 0, {})
        print(
            f"broadcast alert {result.alert_id}: "
            + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no recipients matched")
        )
    finally:
        await app.close()
    return 0


async def cmd_subscribers(config: Config, args: argparse.Namespace) -> int:
    from warnd.subscribers import ImportRejected, ImportReport, open_csv, validated_chunks, write_csv

    app = make_app(config, args)
    try:
        await app.start()
        if args.subscribers_command == "export":
            handle = args.output.open("w", encoding="utf-8", newline="") if args.output else sys.stdout
            try:
                count = await write_csv(app.store.export_recipients(), handle)
            finally:
                if args.output:
                    handle.close()
            await app.store.audit(
                app.clock.now(),
                actor(args),
                "subscribers.export",
                target=str(args.output or "stdout"),
                detail={"rows": count},
            )
            print(f"exported {count} subscriber(s)", file=sys.stderr)
            return 0
        report = ImportReport()
        started = datetime.now(UTC)
        try:
            with open_csv(args.file) as handle:
                result = await app.store.upsert_recipients(
                    validated_chunks(
                        handle,
                        report,
                        groups=config.groups,
                        roles=config.roles,
                        # an import never takes over a person defined in config (the next start would undo it)
                        reserved={
                            p.phone: "defined in config (edit it there)"
                            for p in config.subscribers
                            if p.phone
                        },
                    ),
                    source="import",
                    now=app.clock.now(),
                )
        except ImportRejected:
            for error in report.errors:
                print(f"{args.file}: {error}", file=sys.stderr)
            if report.more_errors:
                print(f"{args.file}: … and {report.more_errors} more", file=sys.stderr)
            print(
                f"{args.file}: {len(report.errors) + report.more_errors} problem(s); nothing was imported",
                file=sys.stderr,
            )
            return 1
        except OSError as exc:
            print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
            return 1
        seconds = (datetime.now(UTC) - started).total_seconds()
        await app.store.audit(
            app.clock.now(),
            actor(args),
            "subscribers.import",
            target=str(args.file),
            detail={"rows": result["upserted"]},
        )
        print(f"imported {result['upserted']} subscriber(s) from {args.file} in {seconds:.1f}s")
        return 0
    finally:
        await app.close()


async def cmd_quarantine(config: Config, args: argparse.Namespace) -> int:
    from warnd.store import Store

    store = Store.open(args.database or config.database_url)
    try:
        await store.upgrade()
        tz = ZoneInfo(config.timezone)
        for row in await store.quarantine(limit=args.limit):
            received = row["received_at"].astimezone(tz)
            print(f"#{row['id']} {received:%Y-%m-%d %H:%M:%S} {row['source']} ({row['bytes']} bytes)")
            for error in row["errors"] or []:
                print(f"  {error}")
    finally:
        await store.close()
    return 0


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "run": cmd_run,
    "ingest": cmd_ingest,
    "check-config": cmd_check_config,
    "db": cmd_db,
    "logs": cmd_logs,
    "broadcast": cmd_broadcast,
    "subscribers": cmd_subscribers,
    "quarantine": cmd_quarantine,
}
