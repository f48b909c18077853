"""Value scoring: `interaction_history`, `event_features`, `scored_events` and their checks.

After editing the weights or the threshold in `config/pipeline.toml`, reload the code location:
`scored_events` gets a new code version and the UI marks its partitions stale. Then backfill
`rescore_job` (scored_events and what follows) over all partitions: it weighs the stored features
again and never embeds or searches.
"""

import dagster as dg

from learning_pipeline.defs.resources import EmbeddingResource, PipelineResource, QdrantResource
from learning_pipeline.defs.telemetry import (
    SETTINGS,
    TELEMETRY_PARTITIONS,
    raw_telemetry,
    split_partition_key,
)
from learning_pipeline.scoring.config import features_version, load_scoring_config, scoring_version
from learning_pipeline.scoring.features import score_bands
from learning_pipeline.scoring.history import embed_partition
from learning_pipeline.scoring.partitions import (
    all_scores,
    build_features,
    build_scores,
    out_of_range,
)
from learning_pipeline.telemetry.ledger import Ledger
from learning_pipeline.telemetry.partitions import read_raw_partition
from learning_pipeline.vector_store import InteractionHistory

# The code versions come from the configuration the definitions were loaded with; each run reads
# the file again (a run is a fresh process under `dagster dev`, so the two agree).
SCORING = load_scoring_config(SETTINGS.config_file)
# A band this far (absolute share) from the seed's target makes the distribution check warn.
BAND_TOLERANCE = 0.15


@dg.asset(
    partitions_def=TELEMETRY_PARTITIONS,
    group_name="scoring",
    deps=[raw_telemetry],
    kinds={"qdrant"},
    pool="qdrant",
    description=(
        "Query vectors of every event in the Qdrant collection `interaction-history` (payload: event "
        "id, source, timestamp, outcome), point id uuid5(event id). Embeddings come from the "
        "persistent cache: a text is never embedded twice."
    ),
)
def interaction_history(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
    embeddings: EmbeddingResource,
    qdrant: QdrantResource,
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    source, event_date = split_partition_key(context)
    embedder = embeddings.embedder(settings)
    with Ledger(settings.ledger_path) as ledger:
        raw_seq = ledger.built_seq(source, event_date)
    embedded = embed_partition(settings, embedder, source, event_date, raw_seq).to_pandas()
    events = read_raw_partition(settings, source, event_date).to_pandas()
    vectors = dict(zip(embedded["event_id"], embedded["query_vector"]))
    with qdrant.client(settings) as client:
        history = InteractionHistory(client, embedder.dimension)
        report = history.upsert_events(events, vectors)
        total = history.count()
    return dg.MaterializeResult(
        metadata={
            "points_upserted": report.upserted,
            "events_without_query": report.skipped_no_query,
            "collection_points": total,
            "texts_embedded_now": embedder.texts_embedded,
        }
    )


@dg.asset(
    partitions_def=TELEMETRY_PARTITIONS,
    group_name="scoring",
    deps=[raw_telemetry, interaction_history],
    kinds={"parquet"},
    code_version=features_version(SCORING),
    description=(
        "The five value-score components per event, independent of the weights: outcome quality, "
        "user feedback, reusability (earlier similar queries of any source), complexity, novelty "
        "(answer unlike earlier answers). 'Earlier' is event time, so the order partitions are "
        "processed in changes nothing. See docs/scoring.md."
    ),
)
def event_features(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, embeddings: EmbeddingResource
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    source, event_date = split_partition_key(context)
    embedder = embeddings.embedder(settings)
    features = build_features(settings, embedder, load_scoring_config(settings.config_file), source, event_date)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(features),
            "texts_embedded_now": embedder.texts_embedded,
            "events_with_earlier_similar_queries": int((features["similar_earlier_queries"] > 0).sum()),
            "mean_reusability": float(features["reusability"].mean()) if len(features) else 0.0,
            "mean_novelty": float(features["novelty"].mean()) if len(features) else 0.0,
        }
    )


def _bands_markdown(bands: dict) -> str:
    rows = [
        f"| {name} | {b['count']} | {b['share']:.0%} | {b['target_share']:.0%} |"
        for name, b in bands["bands"].items()
    ]
    return "| value score | events | share | seed target |\n|---|---|---|---|\n" + "\n".join(rows)


@dg.asset(
    partitions_def=TELEMETRY_PARTITIONS,
    group_name="scoring",
    deps=[event_features],
    kinds={"parquet"},
    code_version=scoring_version(SCORING),
    check_specs=[
        dg.AssetCheckSpec("scores_in_range", asset="scored_events", blocking=True,
                          description="every component and the value score lie in [0, 1]"),
        dg.AssetCheckSpec("score_distribution", asset="scored_events",
                          description="value scores across the seed's bands vs its 20/30/30/20 target"),
    ],
    description=(
        "Weighted value score and the high-value flag (score >= threshold), from event_features and "
        "the weights in config/pipeline.toml. Its code version is derived from the weights and the "
        "threshold: after an edit the partitions show as stale; backfill rescore_job."
    ),
)
def scored_events(context: dg.AssetExecutionContext, pipeline: PipelineResource):
    settings = pipeline.settings()
    source, event_date = split_partition_key(context)
    config = load_scoring_config(settings.config_file)
    scored = build_scores(settings, config, source, event_date)
    bad = out_of_range(scored)
    partition_bands = score_bands(scored["value_score"])
    overall = score_bands(all_scores(settings, ["value_score"])["value_score"])
    off_target = {
        name: band["deviation"] for name, band in overall["bands"].items()
        if abs(band["deviation"]) > BAND_TOLERANCE
    }
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(scored),
            "high_value_events": int(scored["high_value"].sum()),
            "mean_value_score": float(scored["value_score"].mean()) if len(scored) else 0.0,
            "weights": dg.MetadataValue.json(config.weights.as_dict()),
            "threshold": config.threshold,
            "bands_this_partition": dg.MetadataValue.md(_bands_markdown(partition_bands)),
        }
    )
    yield dg.AssetCheckResult(
        check_name="scores_in_range",
        passed=not any(bad.values()),
        metadata={column: count for column, count in bad.items()},
    )
    yield dg.AssetCheckResult(
        check_name="score_distribution",
        passed=not off_target,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "within tolerance" if not off_target else
            "off the seed's target: " + ", ".join(f"{k} {v:+.0%}" for k, v in off_target.items())
        ),
        metadata={
            "all_partitions": dg.MetadataValue.md(_bands_markdown(overall)),
            "events_scored_overall": overall["total"],
            "tolerance": BAND_TOLERANCE,
        },
    )


rescore_job = dg.define_asset_job(
    "rescore_job",
    selection=dg.AssetSelection.assets(scored_events).downstream(),
    description=(
        "After a weight or threshold edit: re-weigh stored features and update what follows. "
        "Backfill it over all partitions; nothing is embedded or searched."
    ),
    executor_def=dg.in_process_executor,  # a chain per partition, like telemetry_partition_job
)
