"""A real ingest process killed with SIGKILL at several points, then rerun, ends exactly where an
uninterrupted run ends: same Parquet contents, nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas.testing as pdt

from learning_pipeline.settings import load_settings
from learning_pipeline_tests.conftest import all_events, event, jsonl

# Land in small slices (many commit points) and build after each slice, until nothing is pending.
INGEST = """
import sys
from learning_pipeline.settings import load_settings
from learning_pipeline.telemetry.landing import land_pending
from learning_pipeline.telemetry.ledger import Ledger
from learning_pipeline.telemetry.partitions import build_raw_partition
settings = load_settings(telemetry_dir=sys.argv[1], data_dir=sys.argv[2])
while True:
    report = land_pending(settings, max_bytes=24 * 1024)
    with Ledger(settings.ledger_path) as ledger:
        for p in ledger.pending_partitions():
            build_raw_partition(settings, ledger, p.source, p.event_date)
    if not report.more_pending:
        break
"""


def start_ingest(inbox: Path, data: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", INGEST, str(inbox), str(data)])


def segments_landed(data: Path) -> int:
    ledger = data / "state" / "ingest.sqlite"
    if not ledger.exists():
        return 0
    try:
        with sqlite3.connect(ledger, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # schema not created yet


def test_sigkill_at_several_points_then_rerun_equals_an_uninterrupted_run(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "ralph-events.jsonl").write_bytes(
        jsonl(*[event(i, day=9 + i % 3) for i in range(2500)]) + b"garbage line\n"
    )
    (inbox / "aidb-events.jsonl").write_bytes(
        jsonl(*[{"event_type": "query", "query": f"question {i}", "timestamp": 1767954600 + i * 60} for i in range(2500)])
    )

    reference = tmp_path / "reference"
    subprocess.run([sys.executable, "-c", INGEST, str(inbox), str(reference)], check=True)

    crashed = tmp_path / "crashed"
    kills = 0
    for kill_after_segments in (1, 5, 12, 20, 33):
        proc = start_ingest(inbox, crashed)
        deadline = time.monotonic() + 60
        while proc.poll() is None and segments_landed(crashed) < kill_after_segments and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3  # the process really died mid-way several times
    subprocess.run([sys.executable, "-c", INGEST, str(inbox), str(crashed)], check=True)

    expected = all_events(load_settings(telemetry_dir=inbox, data_dir=reference))
    actual = all_events(load_settings(telemetry_dir=inbox, data_dir=crashed))
    assert len(expected) == 5000
    pdt.assert_frame_equal(actual, expected)
    with sqlite3.connect(crashed / "state" / "ingest.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 1
