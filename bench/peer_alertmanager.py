"""Peer benchmark (issue 7, item 2f): warnd's webhook channel against Prometheus Alertmanager on the same work.

Both servers run as real processes on this machine, one after the other, each sending to a local aiohttp
webhook receiver in this process that records when each notification arrives:

1. **latency**: one alert → one webhook call, 200 alerts posted one at a time (each waits for its webhook);
   latency = POST sent → webhook received, p50 / p99 (nearest rank);
2. **throughput**: 10,000 distinct alerts posted 100 per request (requests sent one after another) → 10,000
   webhook notifications; alerts/s = alerts delivered / (first POST sent → last webhook received), and the
   server's peak RSS (``VmHWM`` of its process after both parts).

Alertmanager (Debian ``prometheus-alertmanager``, 0.25) is tuned for it: ``group_by: ['...']`` (every alert its
own group, so one notification per alert), ``group_wait: 0s``, ``group_interval: 1s``, ``repeat_interval:
24h``, clustering off, alerts posted as JSON to ``/api/v2/alerts``. It keeps alerts in memory and does not
record a notification before sending it.

warnd runs as ``warnd run`` on SQLite with a copy of the example config whose only channel is a ``webhook``
and whose only rule (``inhibit: false``, so distinct alerts never suppress each other) sends every alert to one
subscriber: one alert → one delivery → one signed POST, each delivery persisted before it is sent. Alerts are
CAP-CN messages (distinct identifiers) posted to ``POST /api/v1/alerts`` with an operator token from ``warnd
tokens add``; part 2 posts 100 per request in an EDXL-DE distribution, which ``Pipeline.ingest`` accepts.

Targets (issue 7, item 3): warnd's p99 ≤ 1.5 × Alertmanager's p99; warnd's alerts/s ≥ Alertmanager's.

``run(quick)`` returns the rows for ``bench/run.py``; ``python -m bench.peer_alertmanager [--quick]`` prints
them. Needs ``/usr/bin/prometheus-alertmanager`` (``apt-get install prometheus-alertmanager``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bench.cap_cn import cap_cn
from tests.conftest import edit_yaml, make_config_copy
from tests.e2e.daemon import Daemon, cn_time, free_port

ALERTMANAGER = Path(os.environ.get("WARND_BENCH_ALERTMANAGER", "/usr/bin/prometheus-alertmanager"))
LATENCY_ALERTS = 200
DISTINCT_ALERTS = 10_000
PER_REQUEST = 100
WARMUP_ALERTS = 10  # sent before the latency run and not counted: first connections, caches, JIT-less warm-up
P99_FACTOR = 1.5
WEBHOOK_SECRET = "bench-webhook-secret-0123456789"
DELIVERY_TIMEOUT = 600.0  # seconds to wait for all webhooks of part 2


class MissingAlertmanager(RuntimeError):
    """The Alertmanager binary is not installed."""


@dataclass
class Side:
    """One server's figures."""

    latencies_ms: list[float] = field(default_factory=list)
    answered_ms: list[float] = field(default_factory=list)  # POST sent → answered, part 1
    posting_seconds: float = 0.0  # first POST sent → last POST answered, part 2
    notifications: int = 0  # webhook calls received in part 2
    delivered: int = 0  # distinct alerts received in part 2
    seconds: float = 0.0  # first POST sent → last webhook received, part 2
    peak_rss_mib: float = 0.0
    version: str = ""

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def peak_rss_mib(pid: int) -> float:
    """``VmHWM`` (peak resident set) of a live process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


class Receiver:
    """A local webhook endpoint: records when each alert id first arrives.

    ``extract`` maps a request's JSON body to the alert ids it carries."""

    def __init__(self, extract: Callable[[Any], list[str]]):
        self.extract = extract
        self.arrivals: dict[str, float] = {}
        self.calls = 0
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.expected = 0
        self.all_arrived = asyncio.Event()
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.perf_counter()
        self.calls += 1
        for key in self.extract(json.loads(body)):
            if key in self.arrivals:
                continue
            self.arrivals[key] = now
            waiter = self.waiting.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
        if self.expected and len(self.arrivals) >= self.expected:
            self.all_arrived.set()
        return web.json_response({"id": str(self.calls)})

    def expect(self, key: str) -> asyncio.Future[float]:
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[key] = waiter
        return waiter

    def reset(self, expected: int) -> None:
        self.arrivals.clear()
        self.calls = 0
        self.expected = expected
        self.all_arrived.clear()


async def measure(
    receiver: Receiver,
    post_one: Callable[[str], Awaitable[None]],
    post_many: Callable[[list[str]], Awaitable[None]],
    *,
    run: str,
    sequential: int,
    distinct: int,
) -> Side:
    """Both parts against one server: ``post_one(id)`` posts one alert, ``post_many(ids)`` one request."""
    side = Side()
    for i in range(WARMUP_ALERTS + sequential):
        key = f"{run}-seq-{i}"
        waiter = receiver.expect(key)
        sent = time.perf_counter()
        await post_one(key)
        answered = time.perf_counter()
        arrived = await asyncio.wait_for(waiter, 30)
        if i >= WARMUP_ALERTS:
            side.latencies_ms.append((arrived - sent) * 1000)
            side.answered_ms.append((answered - sent) * 1000)

    receiver.reset(distinct)
    keys = [f"{run}-many-{i}" for i in range(distinct)]
    first = time.perf_counter()
    for start in range(0, distinct, PER_REQUEST):
        await post_many(keys[start : start + PER_REQUEST])
    side.posting_seconds = time.perf_counter() - first
    try:
        await asyncio.wait_for(receiver.all_arrived.wait(), DELIVERY_TIMEOUT)
    except TimeoutError:
        pass  # reported as fewer alerts delivered
    side.notifications = receiver.calls
    side.delivered = len(receiver.arrivals)
    side.seconds = (max(receiver.arrivals.values()) - first) if receiver.arrivals else 0.0
    return side


# --- Alertmanager --------------------------------------------------------------------------------------------


def alertmanager_config(hook_url: str) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "hook",
            "group_by": ["..."],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "24h",
        },
        "receivers": [{"name": "hook", "webhook_configs": [{"url": hook_url, "send_resolved": False}]}],
    }


def am_ids(document: Any) -> list[str]:
    return [str(a["labels"]["id"]) for a in document.get("alerts", [])]


def am_alert(key: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": "BenchRainstorm", "id": key, "severity": "warning", "area": "500228"},
        "annotations": {"summary": "梁平区气象台发布暴雨蓝色预警"},
    }


def alertmanager_version() -> str:
    """The installed Alertmanager's version line; MissingAlertmanager if it is not installed."""
    if not ALERTMANAGER.exists():
        raise MissingAlertmanager(
            f"{ALERTMANAGER} not found: apt-get install -y prometheus-alertmanager "
            "(or set WARND_BENCH_ALERTMANAGER to the binary)"
        )
    done = subprocess.run([str(ALERTMANAGER), "--version"], capture_output=True, text=True, check=True)
    return (done.stdout or done.stderr).splitlines()[0]


def start_alertmanager(root: Path, hook_url: str, port: int) -> subprocess.Popen[bytes]:
    """Alertmanager on 127.0.0.1:``port``, clustering off, config and storage under ``root``."""
    config = root / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(hook_url)), encoding="utf-8")
    with (root / "alertmanager.log").open("w") as log:
        return subprocess.Popen(
            [
                str(ALERTMANAGER),
                f"--config.file={config}",
                f"--storage.path={root / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def run_alertmanager(root: Path, run: str, sequential: int, distinct: int) -> Side:
    receiver = Receiver(am_ids)
    await receiver.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_alertmanager(root, receiver.url, port)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, f"{url}/-/ready", proc)

            async def post(alerts: list[dict[str, Any]]) -> None:
                async with session.post(f"{url}/api/v2/alerts", json=alerts) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"alertmanager answered {resp.status}: {await resp.text()}")

            side = await measure(
                receiver,
                lambda key: post([am_alert(key)]),
                lambda keys: post([am_alert(k) for k in keys]),
                run=run,
                sequential=sequential,
                distinct=distinct,
            )
        side.peak_rss_mib = peak_rss_mib(proc.pid)
        return side
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        await receiver.close()


async def wait_ready(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready after 30 s")


# --- warnd ---------------------------------------------------------------------------------------------------


def warnd_config(root: Path, hook_url: str) -> Path:
    """The example config with one webhook channel and one rule sending every alert to one subscriber."""
    config_dir = make_config_copy(root)
    (config_dir / "channels.yaml").write_text(
        yaml.safe_dump(
            {
                "channels": {
                    "webhook": {
                        "adapter": "webhook",
                        "url": hook_url,
                        "secret": "${WARND_BENCH_WEBHOOK_SECRET}",
                        "template": "push",
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    rule = {
        "name": "bench-webhook",
        "level": "Ⅳ",
        "inhibit": False,
        "targets": [{"groups": ["bench_receivers"], "channels": ["webhook"]}],
    }
    (config_dir / "rules.yaml").write_text(
        yaml.safe_dump({"rules": [rule]}, allow_unicode=True), encoding="utf-8"
    )

    def groups(data: dict[str, Any]) -> None:
        data["groups"]["bench_receivers"] = {"label": "基准测试接收端", "roles": [], "priority": 1}

    def subscribers(data: dict[str, Any]) -> None:
        data["subscribers"].append(
            {
                "name": "基准接收端",
                "phone": "13800239999",
                "role": "duty_person",
                "area_code": "500228000000",
                "groups": ["bench_receivers"],
            }
        )

    edit_yaml(config_dir / "groups.yaml", groups)
    edit_yaml(config_dir / "subscribers.yaml", subscribers)
    return config_dir


def warnd_ids(document: Any) -> list[str]:
    return [str(document["alert"]["identifier"])]


def cap(key: str) -> bytes:
    return cap_cn(key, severity="Blue")


def edxl(alerts: list[bytes]) -> bytes:
    """An EDXL-DE 1.0 distribution carrying several CAP messages."""
    objects = "".join(
        "<de:contentObject><de:xmlContent><de:embeddedXMLContent>"
        + a.decode().split("?>", 1)[-1].strip()
        + "</de:embeddedXMLContent></de:xmlContent></de:contentObject>"
        for a in alerts
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<de:EDXLDistribution xmlns:de="urn:oasis:names:tc:emergency:EDXL:DE:1.0">
<de:distributionID>{uuid.uuid4().hex}</de:distributionID><de:senderID>bench@example.cn</de:senderID>
<de:dateTimeSent>{cn_time().replace(" ", "T")}</de:dateTimeSent><de:distributionStatus>Actual</de:distributionStatus>
<de:distributionType>Report</de:distributionType><de:combinedConfidentiality>UNCLASSIFIED</de:combinedConfidentiality>
{objects}</de:EDXLDistribution>""".encode()


def operator_token(config_dir: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "warnd",
            "tokens",
            "add",
            "bench",
            "--role",
            "operator",
            "-c",
            str(config_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return done.stdout.strip().splitlines()[-1]


async def run_warnd(root: Path, run: str, sequential: int, distinct: int) -> Side:
    receiver = Receiver(warnd_ids)
    await receiver.start()
    config_dir = warnd_config(root, receiver.url)
    env = {"WARND_BENCH_WEBHOOK_SECRET": WEBHOOK_SECRET}
    token = operator_token(config_dir, env)  # `warnd tokens add` loads the config too
    daemon = Daemon(config_dir, free_port(), env=env)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"}
    try:
        await daemon.start()
        assert daemon.proc is not None
        async with aiohttp.ClientSession(headers=headers) as session:

            async def post(body: bytes) -> None:
                async with session.post(f"{daemon.url}/api/v1/alerts", data=body) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"warnd answered {resp.status}: {(await resp.text())[:500]}")

            side = await measure(
                receiver,
                lambda key: post(cap(key)),
                lambda keys: post(edxl([cap(k) for k in keys])),
                run=run,
                sequential=sequential,
                distinct=distinct,
            )
        side.peak_rss_mib = peak_rss_mib(daemon.proc.pid)
        side.version = "warnd (this tree), SQLite"
        return side
    finally:
        daemon.stop_quietly()
        await receiver.close()


# --- results -------------------------------------------------------------------------------------------------


def rows(warnd: Side, am: Side, *, sequential: int, distinct: int) -> list[dict[str, Any]]:
    def ratio(a: float, b: float) -> float:
        return a / b if b else math.nan

    common = f"warnd persists every delivery before sending; Alertmanager does not ({am.version})"
    p99_limit = P99_FACTOR * am.p99
    return [
        {
            "name": "peer: webhook latency p50",
            "value": round(warnd.p50, 2),
            "unit": "ms",
            "target": None,
            "met": None,
            "alertmanager": round(am.p50, 2),
            "ratio": round(ratio(warnd.p50, am.p50), 2),
            "notes": (
                f"{sequential} sequential alerts, POST sent → webhook received; the POST itself was answered in "
                f"p50 {percentile(warnd.answered_ms, 50):.2f} ms (warnd), {percentile(am.answered_ms, 50):.2f} ms "
                f"(Alertmanager); {common}"
            ),
        },
        {
            "name": "peer: webhook latency p99",
            "value": round(warnd.p99, 2),
            "unit": "ms",
            "target": f"≤ {P99_FACTOR}× Alertmanager p99 = {p99_limit:.2f} ms",
            "met": warnd.p99 <= p99_limit,
            "alertmanager": round(am.p99, 2),
            "ratio": round(ratio(warnd.p99, am.p99), 2),
            "notes": f"nearest rank over {sequential}; "
            + ("" if warnd.p99 <= p99_limit else f"missed by {warnd.p99 - p99_limit:.2f} ms; ")
            + common,
        },
        {
            "name": "peer: distinct alerts delivered",
            "value": round(warnd.rate),
            "unit": "alerts/s",
            "target": f"≥ Alertmanager = {am.rate:.0f} alerts/s",
            "met": warnd.rate >= am.rate and warnd.delivered == distinct,
            "alertmanager": round(am.rate),
            "ratio": round(ratio(warnd.rate, am.rate), 2),
            "notes": (
                f"{distinct} alerts, {PER_REQUEST} per request (warnd: EDXL-DE), first POST → last webhook: "
                f"warnd {warnd.delivered} delivered in {warnd.seconds:.2f} s ({warnd.notifications} calls), "
                f"Alertmanager {am.delivered} in {am.seconds:.2f} s ({am.notifications} calls); all POSTs "
                f"answered after {warnd.posting_seconds:.2f} s (warnd), {am.posting_seconds:.2f} s (Alertmanager)"
                + (
                    ""
                    if warnd.rate >= am.rate
                    else f"; missed by {am.rate - warnd.rate:.0f} alerts/s ({1 - ratio(warnd.rate, am.rate):.0%})"
                )
            ),
        },
        {
            "name": "peer: peak RSS",
            "value": round(warnd.peak_rss_mib, 1),
            "unit": "MiB",
            "target": None,
            "met": None,
            "alertmanager": round(am.peak_rss_mib, 1),
            "ratio": round(ratio(warnd.peak_rss_mib, am.peak_rss_mib), 2),
            "notes": "VmHWM of the server process after both parts",
        },
    ]


async def run_async(quick: bool) -> list[dict[str, Any]]:
    sequential = 50 if quick else LATENCY_ALERTS
    distinct = 2_000 if quick else DISTINCT_ALERTS
    run = uuid.uuid4().hex[:8]
    version = alertmanager_version()
    root = Path(tempfile.mkdtemp(prefix="warnd-peer-"))
    try:
        am = await run_alertmanager(root, run, sequential, distinct)
        am.version = version
        warnd = await run_warnd(root, run, sequential, distinct)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows(warnd, am, sequential=sequential, distinct=distinct)


def run(quick: bool) -> list[dict[str, Any]]:
    """The peer rows for bench/run.py; raises MissingAlertmanager if the binary is not installed."""
    return asyncio.run(run_async(quick))


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    return f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 sequential and 2,000 distinct alerts")
    args = parser.parse_args()
    try:
        results = run(args.quick)
    except MissingAlertmanager as exc:
        print(exc, file=sys.stderr)
        return 2
    print(machine())
    head = ("figure", "warnd", "Alertmanager", "ratio", "unit", "target", "met")
    table = [
        (
            r["name"],
            str(r["value"]),
            str(r["alertmanager"]),
            f"{r['ratio']}×",
            r["unit"],
            r["target"] or "—",
            {True: "yes", False: "NO", None: "—"}[r["met"]],
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (head, *table)) for i in range(len(head))]
    for row in (head, *table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    for r in results:
        print(f"- {r['name']}: {r['notes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
