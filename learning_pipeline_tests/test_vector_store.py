"""Qdrant helpers against a real local-mode Qdrant in tmp_path (same calls as server mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from qdrant_client import models

from learning_pipeline.vector_store import (
    INTERACTION_HISTORY,
    InteractionHistory,
    QdrantConfig,
    VectorStoreError,
    ensure_collection,
    open_qdrant,
    scroll_all,
    stable_point_id,
)

DIM = 8


@pytest.fixture
def client(tmp_path):
    c = open_qdrant(QdrantConfig(path=str(tmp_path / "qdrant")))
    yield c
    c.close()


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM)
    v[i % DIM] = 1.0
    return v


# ---------------------------------------------------------------- stable ids


def test_stable_point_id_is_the_same_in_another_process():
    parts = [("interaction", "abc123"), ("pattern", "skills-patterns", "e1"), ("x",), ("ünïcode", "a b")]
    here = [stable_point_id(*p) for p in parts]
    code = (
        "import json,sys; from learning_pipeline.vector_store import stable_point_id; "
        f"print(json.dumps([stable_point_id(*p) for p in {parts!r}]))"
    )
    outputs = set()
    for seed in ("1", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ).stdout
        outputs.add(out.strip())
    import json

    assert outputs == {json.dumps(here)}


def test_stable_point_id_is_a_uuid_and_separates_parts():
    pid = stable_point_id("interaction", "e1")
    assert uuid.UUID(pid).version == 5
    assert stable_point_id("a", "b c") != stable_point_id("a b", "c")
    assert stable_point_id("a", "b") != stable_point_id("ab")
    assert stable_point_id("interaction", "e1") != stable_point_id("interaction", "e2")
    with pytest.raises(TypeError):
        stable_point_id("a", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        stable_point_id()


# ---------------------------------------------------------------- config and client


def test_config_is_strict_and_frozen():
    cfg = QdrantConfig(path="/tmp/x")
    assert cfg.timeout == 30 and cfg.prefer_grpc is False and cfg.url is None and cfg.mode == "local"
    assert QdrantConfig(url="http://localhost:6333").mode == "server"
    assert QdrantConfig().mode == "memory"
    with pytest.raises(ValidationError):
        QdrantConfig(path="/tmp/x", unknown=1)
    with pytest.raises(ValidationError):
        QdrantConfig(url="http://q:6333", path="/tmp/x")
    with pytest.raises(ValidationError):
        cfg.timeout = 5  # type: ignore[misc]
    assert "secret" not in repr(QdrantConfig(url="http://q:6333", api_key="secret"))


def test_second_client_on_the_same_folder_gets_a_clear_error(tmp_path):
    cfg = QdrantConfig(path=str(tmp_path / "qdrant"))
    first = open_qdrant(cfg)
    try:
        code = (
            "from learning_pipeline.vector_store import QdrantConfig, open_qdrant, VectorStoreError\n"
            f"try:\n    open_qdrant(QdrantConfig(path={cfg.path!r}))\n"
            "except VectorStoreError as e:\n    print('ERR', e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ).stdout
        assert out.startswith("ERR") and "another process" in out and "qdrant.url" in out
    finally:
        first.close()
    # Once closed, the folder opens again and keeps its data.
    again = open_qdrant(cfg)
    again.close()


# ---------------------------------------------------------------- collections


def test_ensure_collection_is_idempotent(client):
    assert ensure_collection(client, "c", DIM) is True
    client.upsert("c", points=[models.PointStruct(id=stable_point_id("p"), vector=unit(0).tolist())])
    assert ensure_collection(client, "c", DIM) is False
    assert ensure_collection(client, "c", DIM) is False
    assert client.count("c", exact=True).count == 1


def test_ensure_collection_refuses_another_dimension_or_distance(client):
    ensure_collection(client, "c", DIM)
    with pytest.raises(VectorStoreError, match=r"'c' exists with 8-dimensional Cosine .* 16 dimensions"):
        ensure_collection(client, "c", 16)
    with pytest.raises(VectorStoreError, match="Dot"):
        ensure_collection(client, "c", DIM, distance=models.Distance.DOT)
    with pytest.raises(ValueError):
        ensure_collection(client, "d", 0)


def test_scroll_all_pages(client):
    ensure_collection(client, "c", DIM)
    client.upsert(
        "c",
        points=[
            models.PointStruct(id=stable_point_id(str(i)), vector=unit(i).tolist(), payload={"i": i})
            for i in range(23)
        ],
    )
    assert sorted(p.payload["i"] for p in scroll_all(client, "c", page=5)) == list(range(23))


# ---------------------------------------------------------------- interaction history


def events_frame(n: int, start: int = 0) -> pd.DataFrame:
    rows = []
    for i in range(start, start + n):
        rows.append(
            {
                "event_id": f"ev{i:04d}",
                "source": ["ralph", "aidb", "hybrid", "vscode"][i % 4],
                "event_type": "task_completed",
                "timestamp": pd.Timestamp("2026-01-09T10:30:00Z") + pd.Timedelta(seconds=i),
                "query": f"how to do thing {i}",
                "query_redacted": False,
                "success": [True, False, None, True][i % 4],
                "partial_success": i % 4 == 3,
            }
        )
    df = pd.DataFrame(rows)
    df["timestamp"] = df["timestamp"].astype("datetime64[us, UTC]")
    return df


def vectors_for(df: pd.DataFrame) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(size=(len(df), DIM))


def test_interaction_history_upsert_twice_keeps_the_point_count(client):
    history = InteractionHistory(client, DIM)
    df = events_frame(300)  # more than one batch of 256
    vecs = vectors_for(df)
    first = history.upsert_events(df, vecs)
    assert (first.upserted, first.skipped_no_query, first.skipped_no_vector) == (300, 0, 0)
    second = history.upsert_events(df, vecs)
    assert second.upserted == 300
    assert history.count() == 300
    # A new client (a new process would do the same) computes the same ids.
    InteractionHistory(client, DIM).upsert_events(df.iloc[:10], vecs[:10])
    assert history.count() == 300


def test_interaction_history_payload_and_skips(client):
    history = InteractionHistory(client, DIM)
    df = events_frame(4)
    df.loc[1, "query"] = None  # no query
    df.loc[2, "query"] = "   "  # blank
    df.loc[3, "query_redacted"] = True  # replaced by a hash upstream
    report = history.upsert_events(df, vectors_for(df))
    assert (report.upserted, report.skipped_no_query) == (1, 3)
    (point,) = client.retrieve(INTERACTION_HISTORY, ids=[InteractionHistory.point_id("ev0000")])
    assert point.payload == {
        "event_id": "ev0000",
        "source": "ralph",
        "timestamp": "2026-01-09T10:30:00+00:00",
        "timestamp_us": int(pd.Timestamp("2026-01-09T10:30:00Z").value // 1000),
        "outcome": "success",
        "event_type": "task_completed",
    }


def test_interaction_history_outcomes_and_vector_mapping(client):
    history = InteractionHistory(client, DIM)
    df = events_frame(4)
    vecs = {row.event_id: v for row, v in zip(df.itertuples(), vectors_for(df))}
    del vecs["ev0002"]
    report = history.upsert_events(df, vecs)
    assert (report.upserted, report.skipped_no_vector) == (3, 1)
    outcomes = {p.payload["event_id"]: p.payload["outcome"] for p in scroll_all(client, INTERACTION_HISTORY)}
    assert outcomes == {"ev0000": "success", "ev0001": "failure", "ev0003": "partial"}
    df.loc[2, "success"] = None
    history.upsert_events(df.iloc[[2]], vectors_for(df)[[2]])
    (p,) = client.retrieve(INTERACTION_HISTORY, ids=[InteractionHistory.point_id("ev0002")])
    assert p.payload["outcome"] == "unknown"


def test_interaction_history_filters_by_time(client):
    history = InteractionHistory(client, DIM)
    df = events_frame(10)
    history.upsert_events(df, vectors_for(df))
    cutoff = int(df["timestamp"].iloc[5].value // 1000)
    earlier = client.count(
        INTERACTION_HISTORY,
        count_filter=models.Filter(
            must=[models.FieldCondition(key="timestamp_us", range=models.Range(lt=cutoff))]
        ),
        exact=True,
    ).count
    assert earlier == 5


def test_interaction_history_rejects_bad_vectors(client):
    history = InteractionHistory(client, DIM)
    df = events_frame(2)
    with pytest.raises(ValueError, match="rows"):
        history.upsert_events(df, vectors_for(df)[:1])
    with pytest.raises(ValueError, match="dimensions"):
        history.upsert_events(df, np.ones((2, DIM + 1)))
    with pytest.raises(ValueError, match="zeros"):
        history.upsert_events(df, np.zeros((2, DIM)))
    with pytest.raises(VectorStoreError):
        InteractionHistory(client, DIM + 1)
