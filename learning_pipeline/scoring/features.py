"""Weight-independent features of events (`event_features`) and the weighted value score
(`scored_events`).

`compute_features` does the expensive part once: the seed's components for each event, with
reusability and novelty found by exact similarity against strictly earlier events (`similarity.py`).
`score` only weighs them, so a weight change never re-embeds or re-searches anything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from learning_pipeline.scoring.components import (
    novelty_from_similarities,
    reusability_from_counts,
    static_components,
)
from learning_pipeline.scoring.config import ScoringConfig
from learning_pipeline.scoring.similarity import (
    OrderKeys,
    best_earlier_similarity,
    count_earlier_similar,
    order_keys,
)

FEATURE_COLUMNS = (
    "event_id",
    "source",
    "timestamp",
    "outcome_quality",
    "user_feedback",
    "reusability",
    "complexity",
    "novelty",
    "similar_earlier_queries",
    "best_earlier_answer_similarity",
    "has_query_text",
    "has_response_text",
)
COMPONENTS = ("outcome_quality", "user_feedback", "reusability", "complexity", "novelty")
# The seed's value-score bands and the share of events it aims for in each.
SCORE_BANDS = (
    ("0.0-0.3", 0.0, 0.3, 0.20),
    ("0.3-0.5", 0.3, 0.5, 0.30),
    ("0.5-0.7", 0.5, 0.7, 0.30),
    ("0.7-1.0", 0.7, 1.0, 0.20),
)
# Scores are rounded to this many decimals: the seed's decimal weights then add up to exactly the
# decimal a person would compute (0.4 + 0.1 + 0.1 + 0.1 = 0.7, not 0.7000000000000001 or 0.6999...),
# so `high_value` and the bands agree with the value shown.
SCORE_DECIMALS = 12


def has_text(column: pd.Series | None, n: int) -> np.ndarray:
    """True where a text column holds something other than null or blanks."""
    if column is None:
        return np.zeros(n, dtype=bool)
    return column.map(lambda t: isinstance(t, str) and bool(t.strip())).to_numpy(dtype=bool)


def _vectors(vecs: np.ndarray, n: int, present: np.ndarray, what: str) -> np.ndarray:
    """float32 (n, d) with the rows of events without text zeroed ("no text" never matches)."""
    v = np.array(vecs, dtype=np.float32, copy=True)
    if v.ndim != 2 or v.shape[0] != n:
        raise ValueError(f"{what}: expected {n} rows of vectors, got shape {v.shape}")
    v[~present] = 0.0
    return v


def _history_presence(history: pd.DataFrame, text: str) -> np.ndarray:
    """Which history rows have text: `has_<text>_text` if given, else the text column, else all (the
    caller then marks rows without text by zero or NaN vectors)."""
    n = len(history)
    if f"has_{text}_text" in history.columns:
        return history[f"has_{text}_text"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    if text in history.columns:
        return has_text(history[text], n)
    return np.ones(n, dtype=bool)


def compute_features(
    events: pd.DataFrame,
    query_vecs: np.ndarray,
    response_vecs: np.ndarray,
    history: pd.DataFrame | None = None,
    history_query_vecs: np.ndarray | None = None,
    history_response_vecs: np.ndarray | None = None,
    cfg: ScoringConfig | None = None,
    normalized: bool = False,
) -> pd.DataFrame:
    """The features of `events` (canonical columns, see `telemetry/schema.py`), one row per event in
    the same order (index 0..n-1), with the columns in `FEATURE_COLUMNS`.

    - `query_vecs` / `response_vecs`: one embedding row per event (any values where the event has no
      query / response text; they are ignored).
    - `history`: other events (columns `timestamp`, `event_id`; optionally `query`/`response` or
      `has_query_text`/`has_response_text`) with their vectors. The events themselves always count as
      history too, and only strictly earlier events matter, so passing every known event (later ones
      included) is correct: the result does not depend on how events are split into runs.
    - reusability: the number of strictly earlier events whose query is >= `reusability_similarity`
      similar (at most `reusability_limit`), through the seed's mapping. An event without query text
      counts 0 (-> 0.3) and is never counted for others.
    - `normalized`: every vector already went through `similarity.unit_rows` (the caller stores them
      so); otherwise they are normalised here, on every call.
    - novelty: 1 - the best similarity (>= `novelty_similarity`) of the response to the responses of
      strictly earlier events; 1.0 when there is none, or when the event has no response text.
    """
    cfg = cfg or ScoringConfig()
    n = len(events)
    static = static_components(events)
    has_query = has_text(events.get("query"), n)
    has_response = has_text(events.get("response"), n)
    q = _vectors(query_vecs, n, has_query, "query_vecs")
    r = _vectors(response_vecs, n, has_response, "response_vecs")
    keys = order_keys(events)

    # History = the events, then every other history row (the similarity code keeps the first row of
    # a repeated event_id, so the events' own vectors win).
    h_keys, h_q, h_r = keys, q, r
    if history is not None and len(history):
        if history_query_vecs is None or history_response_vecs is None:
            raise ValueError("history needs history_query_vecs and history_response_vecs")
        other_keys = order_keys(history)
        other_q = _vectors(history_query_vecs, len(history), _history_presence(history, "query"),
                           "history_query_vecs")
        other_r = _vectors(history_response_vecs, len(history), _history_presence(history, "response"),
                           "history_response_vecs")
        h_keys = OrderKeys(
            np.concatenate([keys.timestamp_us, other_keys.timestamp_us]),
            np.concatenate([keys.event_id, other_keys.event_id]),
        )
        h_q = np.concatenate([q, other_q]) if len(q) else other_q
        h_r = np.concatenate([r, other_r]) if len(r) else other_r

    counts = count_earlier_similar(q, keys, h_q, h_keys, cfg.reusability_similarity, cfg.reusability_limit,
                                   normalized=normalized)
    counts[~has_query] = 0
    best = best_earlier_similarity(r, keys, h_r, h_keys, cfg.novelty_similarity, normalized=normalized)
    best[~has_response] = np.nan

    out = pd.DataFrame(
        {
            "event_id": events["event_id"].reset_index(drop=True),
            "source": events["source"].reset_index(drop=True),
            "timestamp": events["timestamp"].reset_index(drop=True),
            "outcome_quality": static["outcome_quality"].to_numpy(),
            "user_feedback": static["user_feedback"].to_numpy(),
            "reusability": reusability_from_counts(counts),
            "complexity": static["complexity"].to_numpy(),
            "novelty": novelty_from_similarities(best, cfg.novelty_similarity),
            "similar_earlier_queries": counts.astype(np.int64),
            "best_earlier_answer_similarity": best.astype(np.float64),
            "has_query_text": has_query,
            "has_response_text": has_response,
        }
    )
    return out


def value_scores(features: pd.DataFrame, cfg: ScoringConfig) -> np.ndarray:
    """The seed's weighted sum, float64, rounded to `SCORE_DECIMALS`."""
    weights = cfg.weights.as_dict()
    total = np.zeros(len(features))
    for name in COMPONENTS:  # the seed's order of terms
        total = total + features[name].to_numpy(dtype=np.float64) * weights[name]
    return np.round(total, SCORE_DECIMALS)


def score(features: pd.DataFrame, cfg: ScoringConfig | None = None) -> pd.DataFrame:
    """A copy of `features` with `value_score` (float64 in [0, 1]) and `high_value` (>= threshold)."""
    cfg = cfg or ScoringConfig()
    scored = features.copy()
    scored["value_score"] = value_scores(features, cfg)
    scored["high_value"] = scored["value_score"].to_numpy() >= cfg.threshold
    return scored


def score_bands(scores) -> dict:
    """Counts and shares of scores in the seed's bands [0, 0.3), [0.3, 0.5), [0.5, 0.7), [0.7, 1.0]
    next to its target shares 20/30/30/20 %. NaN scores are counted apart as `missing`."""
    values = np.asarray(scores, dtype=np.float64)
    missing = int(np.isnan(values).sum())
    values = values[~np.isnan(values)]
    edges = np.array([hi for _, _, hi, _ in SCORE_BANDS[:-1]])
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(SCORE_BANDS))
    total = len(values)
    bands = {}
    for (name, _, _, target), count in zip(SCORE_BANDS, counts):
        share = float(count) / total if total else 0.0
        bands[name] = {
            "count": int(count),
            "share": share,
            "target_share": target,
            "deviation": share - target,
        }
    return {"total": total, "missing": missing, "bands": bands}
