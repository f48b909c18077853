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
        "patterns": pattern_counts(settings),
        "sources": sources,
    }


def pattern_counts(settings: Settings) -> dict[str, int]:
    """Points per pattern collection; zeros before the first sync (nothing opened or created)."""
    from learning_pipeline.patterns.routing import COLLECTIONS
    from learning_pipeline.vector_store import qdrant_session

    counts = dict.fromkeys(COLLECTIONS, 0)
    if not settings.qdrant_url and not settings.qdrant_path.exists():
        return counts
    with qdrant_session(settings) as client:
        for name in COLLECTIONS:
            if client.collection_exists(name):
                counts[name] = client.count(collection_name=name, exact=True).count
    return counts
