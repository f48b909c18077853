"""Counts per stage, for `learning-pipeline status` and for tests. Keys are a stable interface."""

from __future__ import annotations

from learning_pipeline.scoring.partitions import all_scores
from learning_pipeline.settings import Settings
from learning_pipeline.telemetry.ledger import Ledger


def collect_status(settings: Settings) -> dict:
    with Ledger(settings.ledger_path) as ledger:
        by_source = ledger.counts_by_source()
        pending = ledger.pending_partitions()
    sources = {
        name: {
            key: by_source.get(name, {}).get(key, 0)
            for key in ("raw_events", "quarantined_lines", "bytes_read")
        }
        for name in sorted(set(settings.telemetry.source_names) | set(by_source))
    }
    scores = all_scores(settings, ["high_value"])
    return {
        "raw_events": sum(s["raw_events"] for s in sources.values()),
        "scored_events": len(scores),
        "high_value_events": int(scores["high_value"].sum()) if len(scores) else 0,
        "quarantined_lines": sum(s["quarantined_lines"] for s in sources.values()),
        "blank_lines": sum(s.get("blank_lines", 0) for s in by_source.values()),
        "pending_partitions": len(pending),
        "sources": sources,
    }
