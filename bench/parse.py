"""Item a: CAP parse + validate throughput (``warnd.cap.parse``), alerts/s."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.cap_cn import generated
from warnd.cap import parse

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
TARGET = 5000.0  # typical alerts/s (issue 7, item 3)


def corpus_files(corpus: Path = CORPUS) -> list[bytes]:
    """The corpus files labelled valid (CAP, ATOM, RSS, EDXL-DE, NWS JSON), as bytes."""
    manifest = corpus / "manifest.jsonl"
    if not manifest.exists():
        return []
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(corpus / r["dest"]).read_bytes() for r in records if r.get("label") == "valid"]


def throughput(payloads: list[bytes], min_seconds: float) -> tuple[float, int, int]:
    """Parse every payload, over and over for at least ``min_seconds``: (alerts/s, alerts per pass, passes)."""
    per_pass = sum(len(parse(p).alerts) for p in payloads)  # also warms caches
    passes = 0
    started = time.perf_counter()
    while True:
        for p in payloads:
            parse(p)
        passes += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return per_pass * passes / elapsed, per_pass, passes


def run(
    quick: bool, *, generated_count: int = 2000, seconds: float | None = None, corpus: Path = CORPUS
) -> list[dict[str, Any]]:
    seconds = seconds or (1.0 if quick else 3.0)
    results = []
    files = corpus_files(corpus)
    if files:
        rate, per_pass, passes = throughput(files, seconds)
        results.append(
            {
                "name": "parse_corpus",
                "value": round(rate),
                "unit": "alerts/s",
                "target": None,  # the target is about typical (CAP-CN) alerts; the corpus has feeds and giants
                "met": None,
                "ratio_to_baseline": None,
                "notes": f"{len(files)} valid corpus files, {per_pass} alerts per pass, {passes} passes",
            }
        )
    payloads = generated(generated_count)
    rate, per_pass, passes = throughput(payloads, seconds)
    results.append(
        {
            "name": "parse_cap_cn",
            "value": round(rate),
            "unit": "alerts/s",
            "target": TARGET,
            "met": rate >= TARGET,
            "ratio_to_baseline": None,
            "notes": f"{per_pass} generated CAP-CN alerts (¼ with a polygon), {passes} passes; target ≥ {TARGET:,.0f}",
        }
    )
    return results
