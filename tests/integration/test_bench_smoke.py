"""The benchmark suite (bench/, docs/performance.md) at tiny sizes: every piece runs end to end — a real App in a
child process, the local gateway stub, the raw baseline — and the results have the documented shape. Timing is
not checked here."""

from __future__ import annotations

import json
from pathlib import Path

from bench import import_csv, parse, run

FIELDS = {"name", "value", "unit", "target", "met", "ratio_to_baseline", "notes"}


def check_shape(results: list[dict]) -> None:
    for r in results:
        assert set(r) == FIELDS, r
        assert isinstance(r["name"], str) and isinstance(r["unit"], str) and isinstance(r["notes"], str)
        assert isinstance(r["value"], int | float) and r["value"] > 0, r
        assert r["met"] is None if r["target"] is None else isinstance(r["met"], bool)


def test_parse_and_runner_write_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    assert run.main(["--only", "parse", "--json", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert {"cpu", "cores", "ram_gib", "python", "sqlite", "os", "date"} <= set(written["machine"])
    assert written["machine"]["cores"] >= 1
    check_shape(written["results"])
    assert "parse_cap_cn" in {r["name"] for r in written["results"]}
    assert [r["name"] for r in parse.run(True, generated_count=10, seconds=0.01, corpus=tmp_path)] == [
        "parse_cap_cn"  # no corpus there: only the generated alerts
    ]


def test_fanout_pieces_at_tiny_sizes() -> None:
    latency = run.latency(True, recipients=150, reps=2)
    assert [r["name"] for r in latency] == ["ingest_to_first_request_p50", "ingest_to_first_request_p99"]
    check_shape(latency)
    assert latency[0]["value"] <= latency[1]["value"]
    assert "174 SMS" in latency[0]["notes"]  # 150 imported + the example's 24 people with a phone
    million = run.million(True, recipients=300)
    check_shape(million)
    names = [r["name"] for r in million]
    assert names == [
        "baseline_raw_insert",
        "fanout_300_persisted",
        "fanout_300_accepted",
        "fanout_300_peak_rss",
    ]
    assert all(r["ratio_to_baseline"] for r in million[:3])
    assert million[3]["unit"] == "MB" and million[3]["value"] > 10


def test_import_at_a_tiny_size() -> None:
    results = import_csv.run(True, rows=200)
    check_shape(results)
    assert [r["name"] for r in results] == ["import_200_wall", "import_200_rate"]
    assert [r["unit"] for r in results] == ["s", "rows/s"]


def test_api_load_at_a_tiny_size() -> None:
    rows = run.api_load(True, people=50, seconds=1, rate=10)
    check_shape(rows)
    assert [r["name"] for r in rows] == [
        "api_load_50_ingest_p50",
        "api_load_50_ingest_p99",
        "api_load_50_ingest_max",
        "api_load_50_answered_rate",
        "api_load_50_big_persisted",
        "api_load_50_big_accepted",
        "api_load_50_peak_rss",
    ]
    assert all(r["target"] is None for r in rows)  # "bounded": a measurement
    assert rows[0]["value"] <= rows[1]["value"] <= rows[2]["value"]
    # 50 imported + the example's 24 people with a phone; every small alert answered
    assert "10 small alerts offered at 10/s for 1 s" in rows[0]["notes"]
    assert "to 74 SMS: 10 answered 201, 0 failed, 0 not sent" in rows[0]["notes"]
    assert "the last of its 74 SMS" in rows[5]["notes"]
    assert rows[6]["unit"] == "MB" and rows[6]["value"] > 10


def test_table_prints_numeric_and_worded_targets() -> None:
    """The peer suite's targets are sentences (relative to Alertmanager), the others numbers: both print."""
    rows = [
        run.result("peer: webhook latency p99", 66.5, "ms", None, True, None, "n"),
        run.result("fanout_100k_persisted", 30.2, "s", 0.5, True, 2.16, "n"),
    ]
    rows[0].update(target="≤ 1.5× Alertmanager p99 = 1.51 ms", met=False)
    lines = run.table(rows).splitlines()
    assert "≤ 1.5× Alertmanager p99 = 1.51 ms NO" in lines[2]
    assert lines[3].split()[:6] == ["fanout_100k_persisted", "30.2", "s", "0.5", "NO", "14"]
