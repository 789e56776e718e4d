"""Items b and c: an alert fanned out to N recipients by a real App on a temp SQLite file, sent through the
``sms_http`` channel to the local gateway stub (tests/support/gateway.py).

The App runs in a child process (``python -m bench.fanout``) so its peak RSS is its own; the stub runs in the
parent, so its bookkeeping is not counted. The child imports the recipients (not timed), then per repetition
ingests one alert and reports wall-clock times (``time.time()``, one machine) on stdout; the parent's stub
records when the first request arrived and when the last expected number was accepted, then tells the child
to go on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.cap_cn import cap_cn
from tests.support.cluster import IMPORT_CHUNK, person
from tests.support.gateway import FakeSmsGateway

ROOT = Path(__file__).resolve().parent.parent


# --- the stub, in the parent ---------------------------------------------------------------------------------


class TimedGateway(FakeSmsGateway):
    """The fake SMS gateway, noting when the first request came in and when ``expect`` numbers were accepted.
    It forgets raw requests as it goes (a million numbers would otherwise be kept twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.max_numbers_per_request = 100
        self.first_request_at: float | None = None
        self.expect = 0
        self.reached = asyncio.Event()
        self.reached_at: float | None = None
        self.handled = 0
        self.base = 0
        self.errors: list[str] = []

    def arm(self) -> None:
        """A new alert is being ingested: forget the last one's times."""
        self.first_request_at = None
        self.base = len(self.accepted_keys)
        self.expect = 0
        self.reached = asyncio.Event()
        self.reached_at = None

    def expect_more(self, count: int) -> None:
        """``count`` numbers of this alert are due (known once its fan-out is done)."""
        self.expect = self.base + count
        self._check()

    def _check(self) -> None:
        if self.expect and len(self.accepted_keys) >= self.expect and not self.reached.is_set():
            self.reached_at = time.time()
            self.reached.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.first_request_at is None:
            self.first_request_at = time.time()
        response = await super()._handle(request)
        self.handled += 1
        if response.status != 200 and len(self.errors) < 3:
            self.errors.append(f"{response.status} {getattr(response, 'text', '')}")
        self.requests.clear()
        self.sent.clear()
        self._check()
        return response


@dataclass
class FanoutRun:
    recipients: int
    reps: list[dict[str, float]] = field(
        default_factory=list
    )  # per repetition: t0, persisted, first, accepted
    peak_rss_mb: float = 0.0
    import_seconds: float = 0.0
    planned_sms: int = 0
    requests: int = 0


async def measure(recipients: int, reps: int, *, patience: float = 600) -> FanoutRun:
    """Run the child on a fresh temp directory: ``reps`` alerts, each to ``recipients`` imported people."""
    run = FanoutRun(recipients)
    with tempfile.TemporaryDirectory(prefix="warnd-bench-") as tmp:
        async with TimedGateway() as gateway:
            config_dir = make_config(Path(tmp), gateway.url)
            log = Path(tmp) / "child.log"
            # WARND_BENCH_PROFILE=FILE: the child runs under cProfile and writes its stats there
            profile = os.environ.get("WARND_BENCH_PROFILE")
            profiling = ["-m", "cProfile", "-o", profile] if profile else []
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *profiling,
                "-m",
                "bench.fanout",
                str(config_dir),
                "--recipients",
                str(recipients),
                "--reps",
                str(reps),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log.open("wb"),
                limit=1 << 20,
            )
            assert proc.stdin is not None and proc.stdout is not None
            try:
                while line := await asyncio.wait_for(proc.stdout.readline(), patience):
                    event = json.loads(line)
                    if event["event"] == "imported":
                        run.import_seconds = event["seconds"]
                    elif event["event"] == "started":
                        gateway.arm()
                    elif event["event"] == "persisted":
                        run.planned_sms = event["planned_sms"]
                        gateway.expect_more(run.planned_sms)
                        try:
                            await asyncio.wait_for(gateway.reached.wait(), patience)
                        except TimeoutError:
                            got = len(gateway.accepted_keys) - gateway.base
                            raise RuntimeError(
                                f"stub accepted {got} of {run.planned_sms} SMS in {gateway.handled} requests {gateway.errors}:\n{log.read_text()[-3000:]}"
                            ) from None
                        assert gateway.first_request_at is not None and gateway.reached_at is not None
                        run.reps.append(
                            {
                                "t0": event["t0"],
                                "persisted": event["persisted"] - event["t0"],
                                "first_request": gateway.first_request_at - event["t0"],
                                "accepted": gateway.reached_at - event["t0"],
                            }
                        )
                        proc.stdin.write(b"next\n")
                        await proc.stdin.drain()
                    elif event["event"] == "done":
                        run.peak_rss_mb = event["peak_rss_mb"]
                await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            if proc.returncode != 0:
                raise RuntimeError(f"bench child failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
            run.requests = gateway.handled
    return run


def make_config(root: Path, gateway_url: str) -> Path:
    """The tests' copy of the example config (tests/conftest.py), ``sms`` pointed at the stub (100 numbers per
    request, no rate limit: the stub is the provider) and loudspeakers / push writing files (no broker needed)."""
    # imported here, in the parent only: the child (python -m bench.fanout) must not load pytest, its RSS counts
    from tests.conftest import edit_yaml, file_loudspeaker, file_push, make_config_copy

    target = make_config_copy(root)
    file_loudspeaker(target)
    file_push(target, tokens={})

    def sms(data: dict[str, Any]) -> None:
        data["channels"]["sms"] = {
            "adapter": "sms_http",
            "url": gateway_url,
            "signature": "梁平区应急管理局",
            "max_recipients_per_request": 100,
            "timeout": 30,
        }

    def rules(data: dict[str, Any]) -> None:
        for rule in data["rules"]:
            if rule["name"] == "rainstorm-red":
                rule["inhibit"] = False  # each repetition is a new red rainstorm; none may suppress the next

    edit_yaml(target / "channels.yaml", sms)
    edit_yaml(target / "rules.yaml", rules)
    return target


# --- the App, in the child -----------------------------------------------------------------------------------


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def peak_rss_mb() -> float:
    """Peak resident set of this process (VmHWM; ru_maxrss as a fallback), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def child(config_dir: Path, recipients: int, reps: int) -> None:
    from warnd.app import App
    from warnd.config import load_config

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = App(load_config(config_dir))
    await app.start(channels=True)
    started = time.perf_counter()
    chunks = (
        [person(i) for i in range(s, min(s + IMPORT_CHUNK, recipients))]
        for s in range(0, recipients, IMPORT_CHUNK)
    )
    await app.store.upsert_recipients(chunks, source="import", now=app.clock.now())
    emit(event="imported", seconds=time.perf_counter() - started)
    stopping = asyncio.Event()
    dispatcher = asyncio.create_task(app.dispatcher.run(stopping))
    loop = asyncio.get_running_loop()
    try:
        for rep in range(reps):
            # a new chain each time (the rule does not inhibit, so no repetition suppresses the next)
            emit(event="started")
            t0 = time.time()
            results = await app.pipeline.ingest(
                cap_cn(f"bench-{rep}-{t0}", event_code="11B03", event="暴雨", severity="Red"), source="bench"
            )
            persisted = time.time()
            assert results and results[0].outcome == "created", results
            alert = await app.store.get_alert(results[0].alert_id or 0)
            assert alert is not None
            stats = alert["fanout_stats"] or {}
            emit(event="persisted", t0=t0, persisted=persisted, planned_sms=stats.get("planned:sms", 0))
            await loop.run_in_executor(None, sys.stdin.readline)  # the stub has them all
    finally:
        stopping.set()
        await dispatcher
        await app.close()
    emit(event="done", peak_rss_mb=peak_rss_mb())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config_dir", type=Path)
    parser.add_argument("--recipients", type=int, required=True)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(child(args.config_dir, args.recipients, args.reps))


if __name__ == "__main__":
    main()
