"""`learning-pipeline` as a user runs it: a real subprocess, a fresh DAGSTER_HOME, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from learning_pipeline_tests.conftest import append, event, jsonl


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "learning_pipeline.cli", *args], env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )


def clean_env(tmp_path: Path, inbox: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "LEARNING_PIPELINE_"))}
    env["LEARNING_PIPELINE_TELEMETRY_DIR"] = str(inbox)
    env["LEARNING_PIPELINE_DATA_DIR"] = str(tmp_path / "data")
    return env


def test_run_processes_everything_once_records_runs_and_then_has_nothing_to_do(tmp_path, inbox):
    env = clean_env(tmp_path, inbox)
    append(inbox / "ralph-events.jsonl", jsonl(*[event(i, day=9 + i % 2) for i in range(10)]) + b"oops\n")
    append(inbox / "aidb-events.jsonl", jsonl({"event_type": "query", "query": "q", "timestamp": 1767954600}))

    first = cli("run", env=env)
    assert first.returncode == 0, first.stderr
    assert "landed 12 new lines" in first.stdout and "1 quarantined" in first.stdout
    assert "[3/3]" in first.stdout and "3/3 partitions" in first.stdout

    again = cli("run", env=env)
    assert again.returncode == 0 and "nothing new to process" in again.stdout

    status = json.loads(cli("status", "--json", env=env).stdout)
    assert status["raw_events"] == 11 and status["quarantined_lines"] == 1
    assert status["sources"]["ralph"] == {
        "raw_events": 10, "quarantined_lines": 1, "bytes_read": (inbox / "ralph-events.jsonl").stat().st_size,
    }
    assert set(status["sources"]) == {"ralph", "aidb", "hybrid", "vscode"}

    # the runs live in the instance the UI shows: <data dir>/dagster_home unless DAGSTER_HOME is set
    home = tmp_path / "data" / "dagster_home"
    assert (home / "dagster.yaml").exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert {r.tags["dagster/partition"] for r in runs} == {"2026-01-09|ralph", "2026-01-10|ralph", "2026-01-09|aidb"}


def test_invalid_configuration_stops_with_a_message_naming_the_field(tmp_path, inbox):
    env = clean_env(tmp_path, inbox)
    config = tmp_path / "bad.toml"
    config.write_text("[telemetry]\nmax_line_bytes = 10\n")
    env["LEARNING_PIPELINE_CONFIG"] = str(config)
    result = cli("status", env=env)
    assert result.returncode == 2
    assert "telemetry.max_line_bytes" in result.stderr and str(config) in result.stderr
