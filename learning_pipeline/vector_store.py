"""Qdrant access shared by every stage: one code path for local mode and a Qdrant server.

Plain Python, no Dagster imports. The Dagster layer builds a `QdrantConfig` from the settings, calls
`open_qdrant`, and hands the client to `InteractionHistory` / `PatternStore`.

- Local mode (`QdrantClient(path=...)`, the default under `<data_dir>/qdrant`) is brute force and
  single-process: a second process opening the same folder fails with the error `open_qdrant`
  explains. Server mode (`url=...`) goes through exactly the same calls.
- Point ids are uuid5 strings (`stable_point_id`): the same parts give the same id in every process
  and on every machine. Python's `hash()` is salted per process and is never used for ids.
- Only the modern client API is used: `create_collection`, `collection_exists`, `upsert`, `delete`,
  `retrieve`, `scroll`, `query_points`, `query_batch_points`, `set_payload`, `count`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from qdrant_client import QdrantClient, models

from learning_pipeline.settings import Settings
from learning_pipeline.telemetry.ledger import exclusive_lock

# Fixed forever: changing it changes every point id in every deployment (and every federated peer).
ID_NAMESPACE = uuid.UUID("6f1d3c1e-8b0a-5b7e-9c55-2a4f0e7d9b13")

INTERACTION_HISTORY = "interaction-history"
UPSERT_BATCH = 256


class VectorStoreError(RuntimeError):
    """A Qdrant collection or connection is not what the pipeline needs; the message says why."""


class QdrantConfig(BaseModel):
    """Where Qdrant lives. `url` set = server mode; else `path` = local mode folder; neither = in memory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    path: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    timeout: int = Field(default=30, ge=1)
    prefer_grpc: bool = False

    @model_validator(mode="after")
    def _one_location(self) -> QdrantConfig:
        if self.url and self.path:
            raise ValueError("qdrant: set either `url` (server mode) or `path` (local mode), not both")
        return self

    @property
    def mode(self) -> str:
        return "server" if self.url else ("local" if self.path else "memory")


def open_qdrant(config: QdrantConfig) -> QdrantClient:
    """A client for `config`. Close it (`client.close()`) when done: local mode holds a folder lock."""
    if config.url:
        return QdrantClient(
            url=config.url,
            api_key=config.api_key,
            timeout=config.timeout,
            prefer_grpc=config.prefer_grpc,
        )
    if config.path:
        folder = Path(config.path).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return QdrantClient(path=str(folder))
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise VectorStoreError(
                    f"Qdrant local storage {folder} is open in another process (local mode allows one "
                    "process per folder). Stop the other process, or run a Qdrant server and set "
                    "qdrant.url so several runs can share it."
                ) from exc
            raise
    return QdrantClient(location=":memory:")


def stable_point_id(*parts: str) -> str:
    """uuid5 of the parts under a fixed namespace: identical in every process, machine and run.

    The parts are encoded as a JSON list, so ("a", "b c") and ("a b", "c") never collide.
    """
    if not parts:
        raise ValueError("stable_point_id needs at least one part")
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"stable_point_id parts must be str, got {type(part).__name__}: {part!r}")
    name = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    return str(uuid.uuid5(ID_NAMESPACE, name))


def _vector_params(info: models.CollectionInfo) -> models.VectorParams | None:
    vectors = info.config.params.vectors
    if isinstance(vectors, models.VectorParams):
        return vectors
    if isinstance(vectors, Mapping) and "" in vectors:
        return vectors[""]
    return None


def ensure_collection(
    client: QdrantClient,
    name: str,
    dimension: int,
    distance: models.Distance = models.Distance.COSINE,
) -> bool:
    """Create collection `name` (one unnamed dense vector) unless it exists. True when created.

    An existing collection with another dimension or distance is an error, not something to fix
    silently: the embedding model changed, and its vectors are not comparable with the stored ones.
    """
    if dimension < 1:
        raise ValueError(f"dimension must be positive, got {dimension}")
    if not client.collection_exists(name):
        try:
            client.create_collection(
                collection_name=name,
                vectors_config=models.VectorParams(size=dimension, distance=distance),
            )
            return True
        except Exception:
            # Another process (server mode) may have created it meanwhile; check what exists.
            if not client.collection_exists(name):
                raise
    params = _vector_params(client.get_collection(name))
    if params is None:
        raise VectorStoreError(
            f"Qdrant collection {name!r} exists with named vectors; the pipeline needs one unnamed "
            f"{dimension}-dimensional vector. Delete or rename the collection."
        )
    if params.size != dimension or params.distance != distance:
        raise VectorStoreError(
            f"Qdrant collection {name!r} exists with {params.size}-dimensional {params.distance.value} "
            f"vectors, but the pipeline now embeds into {dimension} dimensions ({distance.value}). "
            "The embedding model changed: delete the collection (it is rebuilt from the assets) or "
            "configure the previous model."
        )
    return False


def ensure_payload_indexes(
    client: QdrantClient, name: str, fields: Mapping[str, models.PayloadSchemaType]
) -> None:
    """Index payload fields used in filters (server mode). Local mode ignores indexes: no warning."""
    existing = client.get_collection(name).payload_schema or {}
    for field, schema in fields.items():
        if field in existing:
            continue
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
            client.create_payload_index(collection_name=name, field_name=field, field_schema=schema)


def scroll_all(
    client: QdrantClient,
    name: str,
    scroll_filter: models.Filter | None = None,
    with_vectors: bool = False,
    page: int = 256,
) -> Iterator[models.Record]:
    """Every point of a collection (matching the filter), page by page."""
    offset = None
    while True:
        points, offset = client.scroll(
            collection_name=name,
            scroll_filter=scroll_filter,
            limit=page,
            offset=offset,
            with_payload=True,
            with_vectors=with_vectors,
        )
        yield from points
        if offset is None:
            return


def utc_timestamp(value: Any) -> pd.Timestamp:
    """A UTC pandas Timestamp from a datetime, Timestamp, ISO string or numpy datetime (naive = UTC)."""
    ts = pd.Timestamp(value)
    if ts is pd.NaT or pd.isna(ts):
        raise ValueError(f"not a timestamp: {value!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def epoch_us(ts: pd.Timestamp) -> int:
    return int((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1))


def iso_utc(ts: pd.Timestamp) -> str:
    """ISO 8601 with `+00:00`, microseconds only when non-zero (Python's `isoformat`)."""
    return ts.to_pydatetime().astimezone(dt.UTC).isoformat()


def as_unit_vector(vector: Any, dimension: int, what: str = "vector") -> list[float]:
    """Validate a vector (length, finite, non-zero) and return it as a list of floats."""
    arr = np.asarray(vector, dtype=np.float64).reshape(-1)
    if arr.shape[0] != dimension:
        raise ValueError(f"{what} has {arr.shape[0]} dimensions, expected {dimension}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    norm = float(np.linalg.norm(arr))
    if norm == 0.0:
        raise ValueError(f"{what} is all zeros")
    return (arr / norm).tolist()


# --------------------------------------------------------------------------- interaction history


@dataclass(frozen=True)
class InteractionUpsertReport:
    upserted: int  # points written (new or rewritten with the same id)
    skipped_no_query: int  # events without usable query text (absent, empty or redacted)
    skipped_no_vector: int  # events with a query but no vector given for them


def _flag(value: Any) -> bool | None:
    if value is None or _isna(value):
        return None
    return bool(value)


def _outcome(row: Mapping[str, Any]) -> str:
    given = row.get("outcome")
    if isinstance(given, str) and given in {"success", "partial", "failure", "unknown"}:
        return given
    if _flag(row.get("partial_success")):
        return "partial"
    success = _flag(row.get("success"))
    if success is None:
        return "unknown"
    return "success" if success else "failure"


def _isna(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _has_query(row: Mapping[str, Any]) -> bool:
    query = row.get("query")
    if query is None or _isna(query) or not isinstance(query, str) or not query.strip():
        return False
    return not _flag(row.get("query_redacted"))


class InteractionHistory:
    """The `interaction-history` collection: one point per event with a query, embedded query text.

    Point id = stable_point_id("interaction", event_id), so re-materialising a partition rewrites the
    same points. Payload: event_id, source, timestamp (ISO, UTC), timestamp_us (int, for range
    filters such as "earlier than this event"), outcome (success/partial/failure/unknown),
    event_type. The query text itself is not stored (the vector is what similarity search needs).
    """

    PAYLOAD_INDEXES: ClassVar[dict[str, models.PayloadSchemaType]] = {
        "timestamp_us": models.PayloadSchemaType.INTEGER,
        "source": models.PayloadSchemaType.KEYWORD,
        "event_id": models.PayloadSchemaType.KEYWORD,
    }

    def __init__(self, client: QdrantClient, dimension: int, collection: str = INTERACTION_HISTORY):
        self.client = client
        self.dimension = dimension
        self.collection = collection
        ensure_collection(client, collection, dimension)
        ensure_payload_indexes(client, collection, self.PAYLOAD_INDEXES)

    @staticmethod
    def point_id(event_id: str) -> str:
        return stable_point_id("interaction", event_id)

    def upsert_events(
        self,
        events_df: pd.DataFrame,
        query_vectors: Sequence[Any] | np.ndarray | Mapping[str, Any],
    ) -> InteractionUpsertReport:
        """Upsert the events that have query text, in batches of 256.

        `query_vectors` is either row-aligned with `events_df` (an array of shape (len(df), dim) or a
        sequence with one entry per row; entries of rows without a query are ignored and may be None)
        or a mapping event_id -> vector. Needs columns event_id, source, event_type, timestamp, query
        (and success/partial_success or outcome, query_redacted when present).
        """
        by_id = isinstance(query_vectors, Mapping)
        if not by_id and len(query_vectors) != len(events_df):
            raise ValueError(
                f"query_vectors has {len(query_vectors)} rows but events_df has {len(events_df)}; pass "
                "row-aligned vectors or a mapping event_id -> vector"
            )
        points: list[models.PointStruct] = []
        skipped_query = skipped_vector = 0
        upserted = 0
        for i, row in enumerate(events_df.to_dict("records")):
            if not _has_query(row):
                skipped_query += 1
                continue
            event_id = str(row["event_id"])
            vector = query_vectors.get(event_id) if by_id else query_vectors[i]
            if vector is None:
                skipped_vector += 1
                continue
            ts = utc_timestamp(row["timestamp"])
            points.append(
                models.PointStruct(
                    id=self.point_id(event_id),
                    vector=as_unit_vector(vector, self.dimension, f"query vector of event {event_id}"),
                    payload={
                        "event_id": event_id,
                        "source": str(row.get("source") or "unknown"),
                        "timestamp": iso_utc(ts),
                        "timestamp_us": epoch_us(ts),
                        "outcome": _outcome(row),
                        "event_type": str(row.get("event_type") or "unknown"),
                    },
                )
            )
            if len(points) >= UPSERT_BATCH:
                self.client.upsert(collection_name=self.collection, points=points, wait=True)
                upserted += len(points)
                points = []
        if points:
            self.client.upsert(collection_name=self.collection, points=points, wait=True)
            upserted += len(points)
        return InteractionUpsertReport(upserted, skipped_query, skipped_vector)

    def count(self) -> int:
        return self.client.count(collection_name=self.collection, exact=True).count


@contextlib.contextmanager
def qdrant_session(settings: Settings, url: str | None = None, api_key: str | None = None) -> Iterator[QdrantClient]:
    """A client for the configured Qdrant: a server when a URL is set, else local mode under the
    data dir. Local mode admits one process per folder, so processes (runs, the CLI) take turns on
    an exclusive file lock instead of failing with "Storage folder ... is already accessed"."""
    url = url or settings.qdrant_url
    config = QdrantConfig(
        url=url, path=None if url else str(settings.qdrant_path), api_key=api_key or settings.qdrant_api_key
    )
    lock = contextlib.nullcontext() if url else exclusive_lock(settings.state_dir / "qdrant-local.lock")
    with lock:
        client = open_qdrant(config)
        try:
            yield client
        finally:
            client.close()
