"""Patterns of one date x source partition: extraction to Parquet, then the Qdrant collections.

`build_extracted` turns the partition's high-value events into patterns (LLM, else the deterministic
extractor; cached per event, prompt version and model). `sync_collections` routes them into
`skills-patterns`, `error-solutions` and `best-practices`; events of the partition that are no
longer high value (a rescore) have their contribution removed. `search_patterns` is what the stack
calls to retrieve learned patterns for a new question.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from learning_pipeline.patterns.cache import ExtractionCache
from learning_pipeline.patterns.extract import extract_patterns, extraction_blocker
from learning_pipeline.patterns.llm import LLMClient
from learning_pipeline.patterns.routing import route
from learning_pipeline.patterns.store import PatternRecord, PatternStore, SearchHit, SyncReport
from learning_pipeline.scoring.partitions import read_scores
from learning_pipeline.settings import Settings
from learning_pipeline.storage import partition_path, write_parquet_atomic
from learning_pipeline.telemetry.partitions import read_raw_partition

EXTRACTED_ASSET = "extracted_patterns"
EXTRACTED_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()), ("source", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
        ("value_score", pa.float64()), ("collection", pa.string()), ("name", pa.string()),
        ("description", pa.string()), ("prerequisites", pa.list_(pa.string())),
        ("steps", pa.list_(pa.string())), ("tags", pa.list_(pa.string())), ("example", pa.string()),
        ("source_query", pa.string()), ("path", pa.string()), ("model", pa.string()),
        ("llm_calls", pa.int64()), ("error", pa.string()),
    ]
)


def node_id(settings: Settings) -> str:
    """This machine's id in provenance: random, made once, kept under the data dir (never a hostname)."""
    path = settings.state_dir / "node_id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"node-{uuid.uuid4().hex[:12]}\n")
        tmp.rename(path)
    return path.read_text().strip()


def extracted_path(settings: Settings, source: str, event_date: str) -> Path:
    return partition_path(settings.assets_dir, EXTRACTED_ASSET, source, event_date)


def extraction_cache(settings: Settings) -> ExtractionCache:
    return ExtractionCache(settings.data_dir / "patterns" / "extraction-cache.sqlite")


@dataclasses.dataclass(frozen=True)
class ExtractionSummary:
    high_value: int
    skipped: dict[str, int]  # reason -> events not extractable (redacted, no text)
    by_path: dict[str, int]
    llm_calls: int


def build_extracted(
    settings: Settings, threshold: float, client: LLMClient | None, source: str, event_date: str
) -> tuple[pd.DataFrame, ExtractionSummary]:
    raw = read_raw_partition(settings, source, event_date).to_pandas()
    scores = read_scores(settings, source, event_date)[["event_id", "value_score"]]
    events = raw.merge(scores, on="event_id", how="inner")
    high = events[events["value_score"] >= threshold]
    records = high.to_dict("records")
    skipped: dict[str, int] = {}
    extractable = []
    for event in records:
        blocker = extraction_blocker(event)
        if blocker:
            skipped[blocker] = skipped.get(blocker, 0) + 1
        else:
            extractable.append(event)
    cache = extraction_cache(settings)
    try:
        extractions = extract_patterns(extractable, client, cache)
    finally:
        cache.close()
    by_id = {e["event_id"]: e for e in extractable}
    rows = []
    for extraction in extractions:
        event, pattern = by_id[extraction.event_id], extraction.pattern
        rows.append(
            {
                "event_id": extraction.event_id, "source": source, "timestamp": event["timestamp"],
                "value_score": float(event["value_score"]), "collection": route(pattern, event),
                "name": pattern.name, "description": pattern.description,
                "prerequisites": list(pattern.prerequisites), "steps": list(pattern.steps),
                "tags": list(pattern.tags), "example": pattern.example, "source_query": event.get("query"),
                "path": extraction.path, "model": extraction.model, "llm_calls": extraction.llm_calls,
                "error": extraction.error,
            }
        )
    frame = pd.DataFrame(rows, columns=EXTRACTED_SCHEMA.names)
    write_parquet_atomic(
        pa.Table.from_pandas(frame, schema=EXTRACTED_SCHEMA, preserve_index=False),
        extracted_path(settings, source, event_date),
    )
    by_path = frame["path"].value_counts().to_dict() if len(frame) else {}
    summary = ExtractionSummary(len(records), skipped, by_path, sum(e.llm_calls for e in extractions))
    return frame, summary


def pattern_text(source_query: str | None, name: str, description: str) -> str:
    """What a pattern is embedded as: the question it answers, then what it is.

    The seed embeds name + description; a new question is then compared with a slug and a summary.
    Leading with the original question retrieves the pattern for paraphrases of that question
    (measured: learning_pipeline_tests/test_patterns_real_model.py).
    """
    head = (source_query or "").strip()
    return f"{head}\n{name.replace('_', ' ')}: {description}".strip()


def sync_collections(settings: Settings, embedder, store: PatternStore, source: str, event_date: str) -> SyncReport:
    """Upsert this partition's patterns and withdraw those of its events no longer high value."""
    path = extracted_path(settings, source, event_date)
    extracted = pq.read_table(path).to_pandas() if path.exists() else pd.DataFrame(columns=EXTRACTED_SCHEMA.names)
    vectors = embedder.embed(
        [pattern_text(q, n, d) for q, n, d in zip(extracted["source_query"], extracted["name"], extracted["description"])]
    ) if len(extracted) else []
    node = node_id(settings)
    records = [
        PatternRecord(
            event_id=row.event_id, collection=row.collection, name=row.name, description=row.description,
            prerequisites=list(row.prerequisites), steps=list(row.steps), tags=list(row.tags),
            example=row.example, value_score=float(row.value_score), source_query=row.source_query,
            source=row.source, node_id=node, extraction_path=row.path, vector=vector, event_time=row.timestamp,
        )
        for row, vector in zip(extracted.itertuples(index=False), vectors)
    ]
    partition_events = set(read_raw_partition(settings, source, event_date).column("event_id").to_pylist())
    return store.sync(records, retracted_event_ids=partition_events - set(extracted["event_id"]))


def search_patterns(store: PatternStore, embedder, question: str, collection: str | None = None,
                    limit: int = 5) -> list[SearchHit]:
    """The learned patterns that best answer `question`, best first."""
    (vector,) = embedder.embed([question])
    return store.search(vector, collection=collection, limit=limit)
