"""Issue 7, item 6: load on the API while a big fan-out runs.

A real ``warnd run`` (SQLite, its own process) with ``people`` members of the public imported into one village
(``Store.upsert_recipients`` before the daemon starts; not timed) and ``sms`` pointed at the gateway stub
(``bench.fanout.TimedGateway``, 100 numbers per request) in this process. Then, through ``POST /api/v1/alerts``
with an operator token:

1. one red rainstorm warning to all of them; its answer is not awaited (ingest fans out inline, so it may take
   long): the time it took to be answered is the big fan-out's *persisted* time, and the stub notes when it
   accepted the last of that alert's SMS (idempotency keys begin with the alert id);
2. at once, small distinct CAP-CN alerts (a blue gale or yellow heat warning for one township or village other
   than the big one's, each reaching a few of the example's people) posted open loop at a fixed ``rate`` for
   ``seconds``: each send is scheduled at a fixed time whatever the answers, so queueing shows up as latency.
   At most ``MAX_IN_FLIGHT`` are outstanding; a send due while that many are is skipped and counted.

Every rule is made ``inhibit: false`` (the small alerts of one hazard and area would otherwise suppress each
other's deliveries, and none may touch the big one) and without an escalation ladder (a long run would resend
the big warning to everyone not confirmed reached). ``measure(...)`` returns the figures; ``bench/run.py``
(``--only api_load``) turns them into rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.cap_cn import cap_cn
from bench.fanout import IMPORT_CHUNK, TimedGateway, make_config, person
from bench.peer_alertmanager import operator_token, peak_rss_mib
from tests.conftest import edit_yaml
from tests.e2e.daemon import Daemon, free_port

MAX_IN_FLIGHT = 500  # 5 s of sending at 100/s
LATE = 0.05  # a send this far (s) behind its schedule (this process was busy) is counted late, and still sent
SMALL_HAZARDS = [("11B06", "大风", "Blue"), ("11B09", "高温", "Yellow")]
# townships and villages of the example without the big alert's village (屏锦镇 万年村, tests.support.cluster.VILLAGE)
SMALL_AREAS = [
    "500228001000",
    "500228001201",
    "500228001001",
    "500228102000",
    "500228102201",
    "500228102202",
    "500228103000",
    "500228103201",
]


class CountingGateway(TimedGateway):
    """The stub, counting newly accepted numbers per alert and noting when each alert's last one came."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted_by_alert: Counter[str] = Counter()
        self.last_accepted_at: dict[str, float] = {}
        self.waiting: dict[str, tuple[int, asyncio.Event]] = {}

    async def wait_for(self, alert_id: str, count: int) -> None:
        """Until ``count`` numbers of this alert have been accepted."""
        done = asyncio.Event()
        self.waiting[alert_id] = (count, done)
        self._check_alert(alert_id)
        await done.wait()

    def _check_alert(self, alert_id: str) -> None:
        count, done = self.waiting.get(alert_id, (0, None))
        if done is not None and self.accepted_by_alert[alert_id] >= count:
            done.set()

    def _process(
        self, phone: str, key: str, content: str | None, signature: str | None, batch_id: str
    ) -> dict[str, Any]:
        before = len(self.accepted_keys)
        result = super()._process(phone, key, content, signature, batch_id)
        if len(self.accepted_keys) > before:
            alert_id = key.split(":", 1)[0]  # "<alert id>:<recipient id>:<channel>" (Pipeline's deliveries)
            self.accepted_by_alert[alert_id] += 1
            self.last_accepted_at[alert_id] = time.perf_counter()
            self._check_alert(alert_id)
        return result


@dataclass
class LoadRun:
    people: int
    rate: float
    seconds: float
    scheduled: int = 0
    latencies: list[float] = field(default_factory=list)  # s, POST sent → 201 answered, small alerts
    failed: int = 0  # answered otherwise, or no answer
    skipped: int = 0  # not sent: MAX_IN_FLIGHT were outstanding when it was due
    late: int = 0  # sent more than LATE behind schedule
    sending_seconds: float = 0.0  # first small POST sent → last answered
    small_sms: int = 0  # SMS the small alerts planned
    big_answered: float = 0.0  # s, the big POST sent → answered (its fan-out persisted)
    big_status: int = 0
    big_sms: int = 0
    big_accepted: float | None = None  # s, the big POST sent → its last SMS accepted by the stub
    peak_rss_mb: float = 0.0
    import_seconds: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def achieved_rate(self) -> float:
        return self.answered / self.sending_seconds if self.sending_seconds else 0.0


async def measure(people: int, rate: float = 100, seconds: float = 60, *, patience: float = 7200) -> LoadRun:
    run = LoadRun(people, rate, seconds)
    with tempfile.TemporaryDirectory(prefix="warnd-load-") as tmp:
        async with CountingGateway() as gateway:
            config_dir = make_config(Path(tmp), gateway.url)
            edit_yaml(config_dir / "rules.yaml", plain_rules)
            run.import_seconds = await import_people(config_dir, people)
            token = operator_token(config_dir, {})
            daemon = Daemon(config_dir, free_port())
            try:
                await daemon.start(timeout=120)
                assert daemon.proc is not None
                async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
                    timeout=aiohttp.ClientTimeout(total=patience),
                    connector=aiohttp.TCPConnector(limit=0),  # MAX_IN_FLIGHT is the limit
                ) as session:
                    url = f"{daemon.url}/api/v1/alerts"
                    prefix = uuid.uuid4().hex[:8]
                    big_body = cap_cn(
                        f"bench-load-{prefix}-big", event_code="11B03", event="暴雨", severity="Red"
                    )
                    big = asyncio.create_task(post(session, url, big_body))
                    await open_loop(session, url, small_alerts(prefix, round(rate * seconds)), run)
                    run.big_status, answer, run.big_answered, sent = await big
                    if run.big_status != 201:
                        raise RuntimeError(f"big alert answered {run.big_status}: {answer}")
                    big_id = str(answer["id"])
                    run.big_sms = answer["fanout_stats"].get("planned:sms", 0)
                    with contextlib.suppress(TimeoutError):  # then big_accepted stays None
                        await asyncio.wait_for(gateway.wait_for(big_id, run.big_sms), patience)
                        run.big_accepted = gateway.last_accepted_at.get(big_id, sent) - sent
                run.peak_rss_mb = peak_rss_mib(daemon.proc.pid)
            finally:
                daemon.stop_quietly()
    return run


def plain_rules(data: dict[str, Any]) -> None:
    for rule in data["rules"]:
        rule["inhibit"] = False
        rule.pop("escalation", None)


async def import_people(config_dir: Path, people: int) -> float:
    """``people`` members of the public in bench.fanout's village, written before the daemon starts."""
    from warnd.app import App
    from warnd.config import load_config

    started = time.perf_counter()
    app = App(load_config(config_dir))
    try:
        await app.start()
        chunks = (
            [person(i) for i in range(s, min(s + IMPORT_CHUNK, people))]
            for s in range(0, people, IMPORT_CHUNK)
        )
        await app.store.upsert_recipients(chunks, source="import", now=app.clock.now())
    finally:
        await app.close()
    return time.perf_counter() - started


def small_alerts(prefix: str, count: int) -> list[bytes]:
    """``count`` distinct small alerts, made before the clock starts: hazards × areas in turn."""
    alerts = []
    for i in range(count):
        code, event, severity = SMALL_HAZARDS[i % len(SMALL_HAZARDS)]
        area = SMALL_AREAS[(i // len(SMALL_HAZARDS)) % len(SMALL_AREAS)]
        alerts.append(
            cap_cn(f"bench-load-{prefix}-{i}", event_code=code, event=event, severity=severity, geocode=area)
        )
    return alerts


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any, float, float]:
    """Status, JSON answer (None if not JSON), seconds from sent to answered, and when it was sent."""
    sent = time.perf_counter()
    async with session.post(url, data=body) as resp:
        answer = await resp.json(content_type=None) if resp.content_type == "application/json" else None
        return resp.status, answer, time.perf_counter() - sent, sent


async def open_loop(session: aiohttp.ClientSession, url: str, alerts: list[bytes], run: LoadRun) -> None:
    """Send ``alerts`` at ``run.rate`` on a fixed schedule, not waiting for answers; wait for the answers."""
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()
    first = time.perf_counter()
    last_answer = first

    async def one(body: bytes) -> None:
        nonlocal last_answer
        try:
            status, answer, seconds, _ = await post(session, url, body)
        except (aiohttp.ClientError, TimeoutError):
            run.failed += 1
            return
        if status == 201:
            run.latencies.append(seconds)
            run.small_sms += (answer["fanout_stats"] or {}).get("planned:sms", 0)
            last_answer = time.perf_counter()
        else:
            run.failed += 1

    start = loop.time()
    run.scheduled = len(alerts)
    for i, body in enumerate(alerts):
        due = start + i / run.rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        if len(in_flight) >= MAX_IN_FLIGHT:
            run.skipped += 1
            continue
        if loop.time() - due > LATE:
            run.late += 1
        task = asyncio.create_task(one(body))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)
    run.sending_seconds = last_answer - first
