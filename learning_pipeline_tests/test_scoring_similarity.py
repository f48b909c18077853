"""Exact, order-free "strictly earlier" similarity, and the features and scores built on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from learning_pipeline.scoring import similarity
from learning_pipeline.scoring.config import ScoringConfig, ScoringWeights
from learning_pipeline.scoring.embeddings import HashingEmbedder
from learning_pipeline.scoring.features import FEATURE_COLUMNS, compute_features, score, score_bands
from learning_pipeline.scoring.similarity import (
    OrderKeys,
    best_earlier_similarity,
    count_earlier_similar,
    exact_similarity,
    order_keys,
)

# 16-dimensional vectors with entries +-0.25 are exactly unit length, and the cosine of two of them
# is exactly (16 - 2 * differing signs) / 16: 1 flip -> 0.875, 2 -> 0.75, 8 -> 0.
BASE = np.full(16, 0.25, dtype=np.float32)


def flipped(*positions: int) -> np.ndarray:
    v = BASE.copy()
    v[list(positions)] *= -1
    return v


def keys(*pairs: tuple[int, str]) -> OrderKeys:
    return OrderKeys(np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs]))


def test_only_strictly_earlier_items_count():
    history = np.stack([BASE, BASE, BASE])
    h_keys = keys((1, "a"), (2, "b"), (3, "c"))
    query, q_keys = BASE[None, :], keys((2, "q"))
    # t=1 "a" and t=2 "b" (same time, "b" < "q") are earlier; t=3 is later.
    assert count_earlier_similar(query, q_keys, history, h_keys, 0.85, 10).tolist() == [2]
    assert best_earlier_similarity(query, q_keys, history, h_keys, 0.85).tolist() == [1.0]
    assert np.isnan(best_earlier_similarity(query, keys((1, "a")), history, h_keys, 0.85)).all()  # none


def test_an_event_never_counts_itself():
    vecs = np.stack([BASE, BASE])
    k = keys((5, "x"), (6, "y"))
    assert count_earlier_similar(vecs, k, vecs, k, 0.85, 10).tolist() == [0, 1]
    # Even when the history lists the same event (same id) with an earlier timestamp.
    assert count_earlier_similar(BASE[None], keys((9, "x")), vecs[:1], keys((1, "x")), 0.85, 10).tolist() == [0]
    assert np.isnan(best_earlier_similarity(BASE[None], keys((9, "x")), vecs[:1], keys((1, "x")), 0.85)[0])


def test_repeated_history_rows_count_once():
    history = np.stack([BASE, BASE, BASE])
    h_keys = keys((1, "a"), (1, "a"), (2, "b"))
    assert count_earlier_similar(BASE[None], keys((9, "q")), history, h_keys, 0.85, 10).tolist() == [2]


def test_cap():
    history = np.tile(BASE, (25, 1))
    h_keys = keys(*[(i, f"h{i:02d}") for i in range(25)])
    assert count_earlier_similar(BASE[None], keys((100, "q")), history, h_keys, 0.85, 10).tolist() == [10]
    assert count_earlier_similar(BASE[None], keys((100, "q")), history, h_keys, 0.85, 30).tolist() == [25]
    # t=0..11, and "h12" at the same t=12 as "q" ("h12" < "q").
    assert count_earlier_similar(BASE[None], keys((12, "q")), history, h_keys, 0.85, 30).tolist() == [13]


def test_threshold_boundary_is_inclusive():
    history = np.stack([flipped(0), flipped(0, 1), flipped(*range(8))])  # cosines 0.875, 0.75, 0
    h_keys = keys((1, "a"), (2, "b"), (3, "c"))
    q, q_keys = BASE[None], keys((10, "q"))
    assert count_earlier_similar(q, q_keys, history, h_keys, 0.875, 10).tolist() == [1]
    assert count_earlier_similar(q, q_keys, history, h_keys, np.nextafter(0.875, 1.0), 10).tolist() == [0]
    assert count_earlier_similar(q, q_keys, history, h_keys, 0.75, 10).tolist() == [2]
    assert best_earlier_similarity(q, q_keys, history, h_keys, 0.875).tolist() == [0.875]
    assert np.isnan(best_earlier_similarity(q, q_keys, history, h_keys, np.nextafter(0.875, 1.0))[0])
    assert best_earlier_similarity(q, q_keys, history, h_keys, 0.5).tolist() == [0.875]


def test_ties_on_timestamp_are_broken_by_event_id():
    vecs = np.stack([BASE, BASE, BASE])
    k = keys((7, "b"), (7, "a"), (7, "c"))
    assert count_earlier_similar(vecs, k, vecs, k, 0.85, 10).tolist() == [1, 0, 2]
    assert np.isnan(best_earlier_similarity(vecs, k, vecs, k, 0.85)).tolist() == [False, True, False]


def test_zero_rows_mean_no_text_and_never_match():
    history = np.stack([np.zeros(16, np.float32), np.full(16, np.nan, np.float32), BASE])
    h_keys = keys((1, "a"), (2, "b"), (3, "c"))
    q = np.stack([np.zeros(16, np.float32), BASE])
    assert count_earlier_similar(q, keys((9, "q"), (9, "r")), history, h_keys, 0.5, 10).tolist() == [0, 1]


def _reference(qv, qk, hv, hk, threshold, cap):
    """Brute force over every pair, straight from the definition."""
    q, h = similarity.unit_rows(qv, "q"), similarity.unit_rows(hv, "h")
    unique = {}
    for j, eid in enumerate(hk.event_id):
        unique.setdefault(eid, j)
    counts, best = [], []
    for i in range(len(q)):
        sims = [
            exact_similarity(q[i:i + 1], h[j:j + 1])[0]
            for eid, j in unique.items()
            if (hk.timestamp_us[j], eid) < (qk.timestamp_us[i], qk.event_id[i]) and eid != qk.event_id[i]
        ]
        hits = [s for s in sims if s >= threshold]
        counts.append(min(len(hits), cap))
        best.append(max(hits) if hits else np.nan)
    return np.array(counts), np.array(best)


def _clustered(rng, n, dim=24, clusters=6, noise=0.25):
    centres = rng.standard_normal((clusters, dim))
    v = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def data():
    rng = np.random.default_rng(11)
    n = 160
    vecs = _clustered(rng, n)
    vecs[5] = vecs[3]  # identical texts
    vecs[40:44] = vecs[2]
    ts = rng.integers(0, 40, n)  # many timestamp ties
    ids = np.array([f"{i * 7919 % 1000:03d}e" for i in range(n)])
    return vecs, OrderKeys(ts.astype(np.int64), ids)


def test_matches_brute_force(data):
    vecs, k = data
    for threshold, cap in ((0.85, 10), (0.9, 3), (0.7, 100)):
        counts, best = _reference(vecs, k, vecs, k, threshold, cap)
        assert counts.sum() > 0 and not np.isnan(best).all()
        assert np.array_equal(count_earlier_similar(vecs, k, vecs, k, threshold, cap), counts)
        assert np.array_equal(best_earlier_similarity(vecs, k, vecs, k, threshold), best, equal_nan=True)


def test_independent_of_input_order_and_chunking(data, monkeypatch):
    vecs, k = data
    expected_counts = count_earlier_similar(vecs, k, vecs, k, 0.85, 10)
    expected_best = best_earlier_similarity(vecs, k, vecs, k, 0.9)
    rng = np.random.default_rng(3)
    monkeypatch.setattr(similarity, "QUERY_CHUNK", 7)
    monkeypatch.setattr(similarity, "HISTORY_CHUNK", 13)
    for _ in range(3):
        qp, hp = rng.permutation(len(vecs)), rng.permutation(len(vecs))
        qk, hk = OrderKeys(k.timestamp_us[qp], k.event_id[qp]), OrderKeys(k.timestamp_us[hp], k.event_id[hp])
        counts = count_earlier_similar(vecs[qp], qk, vecs[hp], hk, 0.85, 10)
        best = best_earlier_similarity(vecs[qp], qk, vecs[hp], hk, 0.9)
        assert np.array_equal(counts, expected_counts[qp])
        assert np.array_equal(best, expected_best[qp], equal_nan=True)  # bit for bit


def test_empty_inputs():
    empty = np.zeros((0, 16), np.float32)
    none = keys()
    assert count_earlier_similar(empty, none, np.stack([BASE]), keys((1, "a")), 0.85, 10).shape == (0,)
    assert count_earlier_similar(BASE[None], keys((1, "q")), empty, none, 0.85, 10).tolist() == [0]
    assert np.isnan(best_earlier_similarity(BASE[None], keys((1, "q")), empty, none, 0.85)).all()
    with pytest.raises(ValueError):
        count_earlier_similar(BASE[None], keys((1, "q")), BASE[None], keys((0, "a")), 0.0, 10)


def test_order_keys_from_a_frame():
    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(["2026-01-09T10:00:00.000001Z", "2026-01-09T10:00:00Z"], utc=True, format="ISO8601"),
        "event_id": ["b", "a"],
    })
    k = order_keys(frame)
    assert k.timestamp_us.tolist() == [1767952800000001, 1767952800000000]
    assert k.event_id.tolist() == ["b", "a"]
    ns = frame.assign(timestamp=frame.timestamp.dt.as_unit("ns"))
    assert order_keys(ns).timestamp_us.tolist() == k.timestamp_us.tolist()


# --- features and scores ---

def _events(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
    for col in ("query", "response"):
        if col not in frame:
            frame[col] = None
    frame["source"] = frame.get("source", "aidb")
    return frame


def _features(events: pd.DataFrame, history: pd.DataFrame | None = None, cfg: ScoringConfig | None = None):
    emb = HashingEmbedder(dimension=256)

    def vecs(frame, col):
        return emb.embed([t if isinstance(t, str) else "" for t in frame[col]])

    kwargs = {}
    if history is not None:
        kwargs = {"history": history, "history_query_vecs": vecs(history, "query"),
                      "history_response_vecs": vecs(history, "response")}
    return compute_features(events, vecs(events, "query"), vecs(events, "response"), cfg=cfg, **kwargs)


QUERY = "how do i configure networking on nixos"
ANSWER = "set networking.hostName and networking.interfaces in configuration.nix then run nixos-rebuild switch"


def _sample() -> pd.DataFrame:
    rows = [{"event_id": f"e{i}", "timestamp": 100 + i, "query": QUERY, "response": ANSWER, "success": True}
            for i in range(6)]
    rows += [
        {"event_id": "x1", "timestamp": 103, "query": "bake a chocolate cake", "response": "mix flour and cocoa",
         "success": False},
        {"event_id": "x2", "timestamp": 104, "query": None, "response": ANSWER, "success": True},  # redacted query
        {"event_id": "x3", "timestamp": 200, "query": QUERY, "response": None, "success": None},  # no response
    ]
    return _events(rows)


def test_compute_features_reusability_and_novelty():
    events = _sample()
    f = _features(events)
    assert tuple(f.columns) == FEATURE_COLUMNS
    assert f.event_id.tolist() == events.event_id.tolist()
    by_id = f.set_index("event_id")
    # e0..e5 ask the same question: 0, 1, 2, ... earlier copies.
    assert by_id.loc[[f"e{i}" for i in range(6)], "similar_earlier_queries"].tolist() == [0, 1, 2, 3, 4, 5]
    assert by_id.loc[[f"e{i}" for i in range(6)], "reusability"].tolist() == [0.3, 0.5, 0.5, 0.7, 0.7, 1.0]
    assert by_id.loc["x1", "reusability"] == 0.3
    assert by_id.loc["x2", "reusability"] == 0.3 and not by_id.loc["x2", "has_query_text"]
    assert by_id.loc["x3", "similar_earlier_queries"] == 6  # e0..e5; x2 has no query text
    # Novelty: the first answer is new; each repeat is 1 - 1.0 = 0 (the same answer seen before).
    assert by_id.loc["e0", "novelty"] == 1.0 and np.isnan(by_id.loc["e0", "best_earlier_answer_similarity"])
    assert by_id.loc["e1", "novelty"] == pytest.approx(0.0, abs=1e-6)
    assert by_id.loc["x2", "novelty"] == pytest.approx(0.0, abs=1e-6)
    assert by_id.loc["x1", "novelty"] == 1.0
    assert by_id.loc["x3", "novelty"] == 1.0 and not by_id.loc["x3", "has_response_text"]
    assert by_id.loc["e0", "outcome_quality"] == 1.0 and by_id.loc["x3", "outcome_quality"] == 0.2


def test_compute_features_in_parts_equals_whole():
    events = _sample()
    whole = _features(events).set_index("event_id").sort_index()
    rng = np.random.default_rng(5)
    for _ in range(3):
        shuffled = events.iloc[rng.permutation(len(events))].reset_index(drop=True)
        first, second = shuffled.iloc[:4], shuffled.iloc[4:]
        parts = pd.concat([
            _features(second, history=first),  # the later-run part first: order does not matter
            _features(first, history=second),
        ]).set_index("event_id").sort_index()
        pd.testing.assert_frame_equal(parts, whole)


def test_compute_features_history_without_text_columns_uses_zero_vectors():
    events = _events([{"event_id": "q", "timestamp": 10, "query": QUERY, "response": ANSWER}])
    history = pd.DataFrame({"event_id": ["h1", "h2"], "timestamp": pd.to_datetime([1, 2], unit="s", utc=True)})
    emb = HashingEmbedder(dimension=256)
    hq = np.stack([emb.embed([QUERY])[0], np.zeros(256, np.float32)])
    hr = np.stack([np.zeros(256, np.float32), emb.embed([ANSWER])[0]])
    f = compute_features(events, emb.embed([QUERY]), emb.embed([ANSWER]), history=history,
                         history_query_vecs=hq, history_response_vecs=hr)
    assert f.similar_earlier_queries.tolist() == [1]
    assert f.novelty.tolist() == [pytest.approx(0.0, abs=1e-6)]


def test_score_weighs_components_and_applies_threshold():
    features = pd.DataFrame({
        "outcome_quality": [1.0, 1.0, 0.2, 1.0, 1.0],
        "user_feedback": [0.5, 1.0, 0.0, 0.5, 0.8],
        "reusability": [0.5, 1.0, 0.3, 0.3, 0.5],
        "complexity": [0.0, 1.0, 0.0, 0.3, 0.3],
        "novelty": [1.0, 1.0, 1.0, 1.0, 0.1],
    })
    scored = score(features, ScoringConfig())
    # The last row is 0.4 + 0.16 + 0.1 + 0.03 + 0.01 = 0.7; float addition alone gives
    # 0.7000000000000001. Scores are rounded to 12 decimals, so the value shown is the decimal one.
    assert scored.value_score.tolist() == [0.7, 1.0, 0.24, 0.69, 0.7]
    assert scored.high_value.tolist() == [True, True, False, False, True]
    assert scored.value_score.dtype == np.float64
    assert "value_score" not in features  # a copy
    heavy = ScoringConfig(weights=ScoringWeights(outcome_quality=0.6, user_feedback=0.1, reusability=0.1,
                                                 complexity=0.1, novelty=0.1), threshold=0.75)
    rescored = score(features, heavy)
    assert rescored.value_score.tolist() == [0.8, 1.0, 0.25, 0.81, 0.77]
    assert rescored.high_value.tolist() == [True, True, False, True, True]


def test_score_bands():
    bands = score_bands([0.0, 0.29, 0.3, 0.49, 0.5, 0.5, 0.69, 0.7, 1.0, float("nan")])
    assert bands["total"] == 9 and bands["missing"] == 1
    assert {k: v["count"] for k, v in bands["bands"].items()} == {
        "0.0-0.3": 2, "0.3-0.5": 2, "0.5-0.7": 3, "0.7-1.0": 2,
    }
    assert bands["bands"]["0.5-0.7"]["share"] == pytest.approx(3 / 9)
    assert [b["target_share"] for b in bands["bands"].values()] == [0.2, 0.3, 0.3, 0.2]
    assert bands["bands"]["0.7-1.0"]["deviation"] == pytest.approx(2 / 9 - 0.2)
    assert score_bands([])["total"] == 0
