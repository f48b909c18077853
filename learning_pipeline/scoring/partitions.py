"""Scoring of one date x source partition: `event_features` then `scored_events`, as Parquet.

`event_features` holds everything expensive and weight-independent (embeddings looked up, earlier
events searched); `scored_events` only weighs those columns, so a weight change re-runs in
milliseconds and never embeds or searches.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from learning_pipeline.scoring.config import ScoringConfig
from learning_pipeline.scoring.features import COMPONENTS, compute_features, score
from learning_pipeline.scoring.history import load_history
from learning_pipeline.settings import Settings
from learning_pipeline.storage import partition_path, write_parquet_atomic
from learning_pipeline.telemetry.partitions import read_raw_partition

FEATURES_ASSET = "event_features"
SCORED_ASSET = "scored_events"


def features_path(settings: Settings, source: str, event_date: str) -> Path:
    return partition_path(settings.assets_dir, FEATURES_ASSET, source, event_date)


def scored_path(settings: Settings, source: str, event_date: str) -> Path:
    return partition_path(settings.assets_dir, SCORED_ASSET, source, event_date)


def _write(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa

    write_parquet_atomic(pa.Table.from_pandas(frame, preserve_index=False), path)


def build_features(settings: Settings, embedder, cfg: ScoringConfig, source: str, event_date: str) -> pd.DataFrame:
    """The weight-independent features of one partition, compared with every earlier event of
    every source (see `history.py`), written to its Parquet file."""
    events = read_raw_partition(settings, source, event_date).to_pandas()
    history = load_history(settings, embedder, event_date)
    rows = history.rows_of(events["event_id"]) if len(events) else []
    features = compute_features(
        events,
        history.query_vectors[rows],
        history.response_vectors[rows],
        history.events,
        history.query_vectors,
        history.response_vectors,
        cfg,
        normalized=True,
    )
    _write(features, features_path(settings, source, event_date))
    return features


def read_features(settings: Settings, source: str, event_date: str) -> pd.DataFrame:
    return pq.read_table(features_path(settings, source, event_date)).to_pandas()


def build_scores(settings: Settings, cfg: ScoringConfig, source: str, event_date: str) -> pd.DataFrame:
    scored = score(read_features(settings, source, event_date), cfg)
    _write(scored, scored_path(settings, source, event_date))
    return scored


def read_scores(settings: Settings, source: str, event_date: str) -> pd.DataFrame:
    return pq.read_table(scored_path(settings, source, event_date)).to_pandas()


def all_scores(settings: Settings, columns: list[str] | None = None) -> pd.DataFrame:
    """Every scored partition on disk, concatenated (for the status, the bands check, the metrics)."""
    files = sorted((settings.assets_dir / SCORED_ASSET).glob("*/*.parquet"))
    frames = [pq.read_table(f, columns=columns).to_pandas() for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns or [])


def out_of_range(scored: pd.DataFrame) -> dict[str, int]:
    """Per column, how many values fall outside [0, 1] (or are missing)."""
    counts = {}
    for column in (*COMPONENTS, "value_score"):
        values = scored[column]
        counts[column] = int((values.isna() | (values < 0) | (values > 1)).sum())
    return counts
