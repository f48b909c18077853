"""Shared fixtures: a telemetry inbox and a data dir on real disk, per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learning_pipeline.settings import Settings, load_settings


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path: Path, inbox: Path) -> Settings:
    return load_settings(telemetry_dir=inbox, data_dir=tmp_path / "data")


def event(i: int, day: int = 9, **fields) -> dict:
    """A valid ralph-style event; `i` makes it unique."""
    base = {
        "event": "task_completed",
        "task_id": f"task-{i}",
        "prompt": f"Implement feature number {i}",
        "output": f"Added feature {i} with tests",
        "iteration": 2,
        "exit_code": 0,
        "timestamp": f"2026-01-{day:02d}T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
    }
    base.update(fields)
    return base


def jsonl(*objs: dict) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def build_pending(settings: Settings) -> None:
    from learning_pipeline.telemetry.ledger import Ledger
    from learning_pipeline.telemetry.partitions import build_raw_partition

    with Ledger(settings.ledger_path) as ledger:
        for p in ledger.pending_partitions():
            build_raw_partition(settings, ledger, p.source, p.event_date)


def all_events(settings: Settings):
    """Every built raw_telemetry row, as one DataFrame in a canonical order."""
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted((settings.assets_dir / "raw_telemetry").glob("*/*.parquet"))
    if not files:
        return pd.DataFrame(columns=["event_id"])
    frames = [pq.read_table(f).to_pandas() for f in files]
    return pd.concat(frames).sort_values(["source", "event_id"]).reset_index(drop=True)
