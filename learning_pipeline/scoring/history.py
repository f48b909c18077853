"""The interaction history every event is compared with: all ingested events and their vectors.

"Earlier" must mean earlier event time, whatever order partitions are processed in, so the history
of a partition is every raw event of every source up to its date, not only those already scored.
Raw partitions landed but not yet built are built first. Each raw partition gets an embedded companion file (`assets/embedded_events/<source>/<date>.parquet`:
event id, time, query and response vectors), rebuilt only when its raw partition changed; texts go
through the persistent embedding cache, so none is embedded twice. Scoring a partition loads the
companions up to its date and searches them exactly, in memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from learning_pipeline.scoring.similarity import unit_rows
from learning_pipeline.settings import Settings
from learning_pipeline.storage import partition_path, read_metadata, write_parquet_atomic
from learning_pipeline.telemetry.ledger import Ledger
from learning_pipeline.telemetry.partitions import build_raw_partition, raw_partition_path, read_raw_partition

EMBEDDED_ASSET = "embedded_events"
_RAW_SEQ_KEY = "learning_pipeline.raw_built_seq"
_MODEL_KEY = "learning_pipeline.embedding_model"
# Vectors are stored as float16: half the bytes to load for every partition scored, and the same
# stored values feed every computation, so results stay deterministic.
_STORE_TYPE = np.float16
_EVENT_COLUMNS = ("event_id", "source", "timestamp", "has_query_text", "has_response_text")


@dataclasses.dataclass
class History:
    events: pd.DataFrame  # event_id, source, timestamp (int µs), has_query_text, has_response_text
    query_vectors: np.ndarray  # float32 unit rows (n, d); zero rows where has_query is False
    response_vectors: np.ndarray

    def rows_of(self, event_ids: pd.Series) -> np.ndarray:
        position = pd.Series(np.arange(len(self.events)), index=self.events["event_id"].to_numpy())
        return position.loc[event_ids.to_numpy()].to_numpy()


def _embed_column(embedder, texts: pd.Series, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    present = texts.notna().to_numpy() & (texts.fillna("").str.strip() != "").to_numpy()
    vectors = np.zeros((len(texts), dimension), dtype=np.float32)
    if present.any():
        vectors[present] = embedder.embed(texts[present].tolist())
    return vectors, present


def _vector_column(vectors: np.ndarray) -> pa.Array:
    flat = pa.array(vectors.astype(_STORE_TYPE).reshape(-1), type=pa.float16())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def _column_vectors(column: pa.ChunkedArray, dimension: int) -> np.ndarray:
    """Unit float32 rows from a stored vector column (see `similarity.unit_rows`)."""
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return unit_rows(flat.reshape(-1, dimension))


def embed_partition(settings: Settings, embedder, source: str, event_date: str, raw_seq: int | None) -> pa.Table:
    """The embedded companion of one raw partition, (re)built when its raw content changed."""
    path = partition_path(settings.assets_dir, EMBEDDED_ASSET, source, event_date)
    version = (str(raw_seq), embedder.model_id)
    if path.exists():
        meta = read_metadata(path)
        if (meta.get(_RAW_SEQ_KEY), meta.get(_MODEL_KEY)) == version:
            return pq.read_table(path)
    raw_table = read_raw_partition(settings, source, event_date)
    raw = raw_table.select(["event_id", "query", "response"]).to_pandas()
    query_vecs, has_query = _embed_column(embedder, raw["query"], embedder.dimension)
    response_vecs, has_response = _embed_column(embedder, raw["response"], embedder.dimension)
    table = pa.table(
        {
            "event_id": pa.array(raw["event_id"], pa.string()),
            "source": pa.array([source] * len(raw), pa.string()),
            "timestamp": raw_table["timestamp"].cast(pa.int64()),
            "has_query_text": pa.array(has_query, pa.bool_()),
            "has_response_text": pa.array(has_response, pa.bool_()),
            "query_vector": _vector_column(query_vecs),
            "response_vector": _vector_column(response_vecs),
        }
    )
    write_parquet_atomic(table, path, {_RAW_SEQ_KEY: str(raw_seq), _MODEL_KEY: embedder.model_id})
    return table


def _raw_partitions_up_to(settings: Settings, up_to: str) -> list[tuple[str, str, int]]:
    """(source, date, built seq) of every landed raw partition dated up to `up_to`.

    One not yet built (its run has not happened) is built here first: the build is idempotent and
    gives exactly what its own run will, and it makes "earlier" mean every landed event, however
    runs happen to be ordered.
    """
    found = []
    with Ledger(settings.ledger_path) as ledger:
        for p in ledger.partitions_up_to(up_to):
            built = p.built_seq
            if built is None or built < p.staged_seq or not raw_partition_path(settings, p.source, p.event_date).exists():
                built = build_raw_partition(settings, ledger, p.source, p.event_date).built_through_seq
            found.append((p.source, p.event_date, built))
    return found


def _unit_parts(
    settings: Settings, embedder, source: str, event_date: str, raw_seq: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A companion's events and unit query/response vectors, computed once per companion version."""
    key = str(partition_path(settings.assets_dir, EMBEDDED_ASSET, source, event_date))
    version = (str(raw_seq), embedder.model_id)
    known = _UNIT.get(key)
    if known is None or known[0] != version:
        table = embed_partition(settings, embedder, source, event_date, raw_seq)
        known = (
            version,
            table.select(list(_EVENT_COLUMNS)).to_pandas(),
            _column_vectors(table["query_vector"], embedder.dimension),
            _column_vectors(table["response_vector"], embedder.dimension),
        )
        _UNIT[key] = known
    return known[1], known[2], known[3]


# Companion path -> (version, events, unit query vectors, unit response vectors), per process. A
# companion's content is a function of its version (raw seq, model id), so scoring many partitions
# in one process reads and normalises each companion once instead of once per partition.
_UNIT: dict[str, tuple[tuple[str, str], pd.DataFrame, np.ndarray, np.ndarray]] = {}


def load_history(settings: Settings, embedder, up_to_date: str | dt.date) -> History:
    """Every ingested event dated up to `up_to_date` (all sources) with its unit vectors."""
    up_to = up_to_date.isoformat() if isinstance(up_to_date, dt.date) else up_to_date
    parts = [
        _unit_parts(settings, embedder, source, event_date, seq)
        for source, event_date, seq in _raw_partitions_up_to(settings, up_to)
    ]
    if not parts:
        empty = np.zeros((0, embedder.dimension), dtype=np.float32)
        return History(pd.DataFrame(columns=list(_EVENT_COLUMNS)), empty, empty)
    return History(
        pd.concat([events for events, _, _ in parts], ignore_index=True),
        np.concatenate([q for _, q, _ in parts]),
        np.concatenate([r for _, _, r in parts]),
    )
