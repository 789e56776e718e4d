"""`warnd subscribers import` of a large CSV (200,000 rows; 50,000 with --quick), run as the command it is — a
subprocess on a temp copy of the example config with a new database — and timed from outside (the whole command:
interpreter start, schema creation, the import) and from inside (the ``in N.Ns`` it prints: reading, checking and
writing the rows). That the import streams and is all or nothing is tested, at a smaller size, by
tests/integration/test_subscribers_import.py and tests/e2e/test_cli.py."""

from __future__ import annotations

import csv
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["name", "phone", "role", "area_code", "lat", "lon", "language", "groups"]


def write_people(path: Path, count: int, *, seed: int = 11) -> None:
    """``count`` members of the public in the example's areas: ¾ with coordinates, 1 in 50 English-speaking,
    1 in 3 also a grid worker."""
    rng = random.Random(seed)
    areas = list(yaml.safe_load((ROOT / "config" / "areas.yaml").read_text(encoding="utf-8"))["areas"])
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(count):
            located = i % 4 != 0
            writer.writerow(
                [
                    f"居民{i:06d}",
                    f"139{i:08d}",
                    "public",
                    rng.choice(areas),
                    f"{30.5 + rng.random() * 0.4:.5f}" if located else "",
                    f"{107.6 + rng.random() * 0.4:.5f}" if located else "",
                    "en" if i % 50 == 0 else "zh-CN",
                    "public|grid_workers" if i % 3 == 0 else "public",
                ]
            )


def run(quick: bool, *, rows: int | None = None) -> list[dict[str, Any]]:
    from tests.conftest import make_config_copy  # the tests' copy of the example config, data in the temp dir

    count = rows or (50_000 if quick else 200_000)
    with tempfile.TemporaryDirectory(prefix="warnd-bench-") as tmp:
        root = Path(tmp)
        config_dir = make_config_copy(root)
        people = root / "people.csv"
        write_people(people, count)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARND_")}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "warnd", "subscribers", "import", str(people), "-c", str(config_dir)],
            capture_output=True,
            text=True,
            env={**env, "WARND_LOG_LEVEL": "WARNING"},
            cwd=root,
            timeout=3600,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"warnd subscribers import failed ({done.returncode}):\n{done.stderr[-3000:]}")
        said = re.search(rf"^imported {count} subscriber\(s\) from .* in ([\d.]+)s$", done.stdout, re.M)
        if said is None:
            raise RuntimeError(f"unexpected output of warnd subscribers import:\n{done.stdout[-3000:]}")
        with sqlite3.connect(root / "data" / "warnd.db") as conn:
            stored = conn.execute("SELECT count(*) FROM recipients WHERE source = 'import'").fetchone()[0]
        if stored != count:
            raise RuntimeError(f"imported {stored} of {count} rows")
    inside = float(said.group(1))
    size = f"{count // 1000}k" if count >= 1000 else str(count)
    blank = {"target": None, "met": None, "ratio_to_baseline": None}
    return [
        {
            "name": f"import_{size}_wall",
            "value": round(wall, 3),
            "unit": "s",
            **blank,
            "notes": f"`warnd subscribers import` of {count:,} rows as a subprocess, new database: "
            "interpreter start, schema, import",
        },
        {
            "name": f"import_{size}_rate",
            "value": round(count / max(inside, 0.001)),
            "unit": "rows/s",
            **blank,
            "notes": f"{count:,} rows read, checked and written in {inside:g} s (as the command reports it)",
        },
    ]
