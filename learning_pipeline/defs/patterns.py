"""Patterns: `extracted_patterns` and the three Qdrant collections they are routed into."""

import dagster as dg

from learning_pipeline.defs.resources import EmbeddingResource, LLMResource, PipelineResource, QdrantResource
from learning_pipeline.defs.scoring import scored_events
from learning_pipeline.defs.telemetry import TELEMETRY_PARTITIONS, split_partition_key
from learning_pipeline.patterns.partitions import build_extracted, sync_collections
from learning_pipeline.patterns.routing import COLLECTIONS
from learning_pipeline.patterns.store import PatternStore
from learning_pipeline.scoring.config import load_scoring_config


@dg.asset(
    partitions_def=TELEMETRY_PARTITIONS,
    group_name="patterns",
    deps=[scored_events],
    kinds={"parquet"},
    description=(
        "For each event at or above the value threshold: the seed's pattern JSON (name, description, "
        "prerequisites, steps, tags, example), from the LLM when one is configured (validated, one "
        "repair attempt) else the deterministic extractor; `path` records which. Cached per (event, "
        "prompt version, model): reruns and backfills never call the LLM again for the same event."
    ),
)
def extracted_patterns(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, llm: LLMResource
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    source, event_date = split_partition_key(context)
    client = llm.client()
    try:
        frame, summary = build_extracted(
            settings, load_scoring_config(settings.config_file).threshold, client, source, event_date
        )
    finally:
        if client is not None:
            client.close()
    failures = frame[frame["error"].notna()] if len(frame) else frame
    for error in failures["error"].head(5) if len(failures) else []:
        context.log.warning(f"LLM extraction fell back to the deterministic extractor: {error}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "high_value_events": summary.high_value,
            "not_extractable": dg.MetadataValue.json(summary.skipped),
            "by_path": dg.MetadataValue.json(summary.by_path),
            "llm_calls": summary.llm_calls,
            "by_collection": dg.MetadataValue.json(
                frame["collection"].value_counts().to_dict() if len(frame) else {}
            ),
        }
    )


COLLECTION_ASSETS = {collection: collection.replace("-", "_") for collection in COLLECTIONS}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            asset_key, deps=[extracted_patterns], group_name="patterns", kinds={"qdrant"},
            partitions_def=TELEMETRY_PARTITIONS,
            description=f"The Qdrant collection `{collection}`: learned patterns, near-duplicates (cosine "
                        ">= 0.95) merged with their provenance, stable point ids.",
        )
        for collection, asset_key in COLLECTION_ASSETS.items()
    ],
    pool="qdrant",
    can_subset=False,
)
def pattern_collections(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, embeddings: EmbeddingResource,
    qdrant: QdrantResource,
):
    settings = pipeline.settings()
    source, event_date = split_partition_key(context)
    embedder = embeddings.embedder(settings)
    with qdrant.client(settings) as client:
        store = PatternStore(client, embedder.dimension)
        report = sync_collections(settings, embedder, store, source, event_date)
        counts = store.counts()
    for collection, asset_key in COLLECTION_ASSETS.items():
        yield dg.MaterializeResult(
            asset_key=asset_key,
            metadata={
                "points": counts.get(collection, 0),
                "records_added": report.added,
                "records_updated": report.updated,
                "records_removed": report.removed,
            },
        )
