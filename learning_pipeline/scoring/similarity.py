"""Exact "strictly earlier" cosine similarity, in numpy, in bounded memory.

An event's order key is (timestamp in microseconds, event_id): ties on the timestamp are broken by
the event id, so "earlier" is a total order and every result depends only on the *set* of events,
never on the order rows arrive in, how they are split into partitions, or which partition runs first.
An event never counts itself (same event_id); history rows with a repeated event_id count once.

Exactness. The similarity of two rows is defined as the float64 dot product of their float32 unit
vectors, summed in a fixed pairwise tree: the same bits whatever else is in the batch. The fast path
is a float32 matrix product (BLAS), whose rounding may depend on the block shape; its error is
bounded (|error| <= d * 2**-24 for unit vectors), so every pair within twice that bound of a decision
(the threshold, the running maximum) is recomputed exactly. Results are therefore identical for any
chunking and any permutation of the input.

Rows that are all zero (or contain NaN) stand for "no text": their similarity to anything is 0, so
with a threshold > 0 they never match.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

QUERY_CHUNK = 2048
HISTORY_CHUNK = 8192
_REFINE_CHUNK = 16384  # pairs recomputed exactly at once


class OrderKeys(NamedTuple):
    """The order of events: timestamp (int64 microseconds, UTC) then event_id."""

    timestamp_us: np.ndarray
    event_id: np.ndarray


def order_keys(frame: pd.DataFrame) -> OrderKeys:
    """OrderKeys from a frame with `timestamp` (datetime64 of any unit/zone, or int64 microseconds)
    and `event_id` columns."""
    ts = frame["timestamp"]
    if pd.api.types.is_datetime64_any_dtype(ts):
        us = pd.to_datetime(ts, utc=True).dt.as_unit("us").astype("int64").to_numpy()
    else:
        us = ts.to_numpy(dtype=np.int64)
    return OrderKeys(us, frame["event_id"].astype(str).to_numpy(dtype=str))


def _as_keys(keys: OrderKeys | tuple, n: int, what: str) -> OrderKeys:
    ts, ids = keys
    ts = np.asarray(ts, dtype=np.int64)
    ids = np.asarray(ids).astype(str)
    if ts.shape != (n,) or ids.shape != (n,):
        raise ValueError(f"{what}: order keys must have one timestamp and one event_id per vector ({n})")
    return OrderKeys(ts, ids)


def _tree_sum(values: np.ndarray) -> np.ndarray:
    """Row sums of a 2-D float64 array in a fixed pairwise order (elementwise adds only)."""
    while values.shape[1] > 1:
        width = values.shape[1]
        half = width // 2
        summed = values[:, :half] + values[:, half:2 * half]
        if width % 2:
            summed[:, 0] += values[:, 2 * half]
        values = summed
    return values[:, 0] if values.shape[1] else np.zeros(values.shape[0])


def _as_matrix(vectors: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.size == 0 and v.ndim < 2:
        v = v.reshape(0, 0)
    if v.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array of vectors, got shape {v.shape}")
    return v


def unit_rows(vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
    """float32 unit rows, computed row by row in a fixed order; zero (or NaN) rows become zero."""
    v = _as_matrix(vectors, what)
    out = np.zeros_like(v)
    for start in range(0, len(v), HISTORY_CHUNK):  # bounded float64 temporaries
        block = v[start:start + HISTORY_CHUNK].astype(np.float64)
        norms = np.sqrt(_tree_sum(block * block))
        ok = np.isfinite(norms) & (norms > 0)
        out[start:start + HISTORY_CHUNK][ok] = (block[ok] / norms[ok, None]).astype(np.float32)
    return out


def exact_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The defined similarity of row i of `a` and row i of `b` (float32 unit rows): float64 products,
    summed in a fixed tree. Chunked by the caller."""
    return _tree_sum(a.astype(np.float64) * b.astype(np.float64))


class _Prepared(NamedTuple):
    q: np.ndarray  # query vectors, sorted by rank
    q_rank: np.ndarray
    q_order: np.ndarray  # sorted position -> original index
    h: np.ndarray  # history vectors (deduplicated by event_id), sorted by rank
    h_rank: np.ndarray
    self_pairs: tuple[np.ndarray, np.ndarray]  # (sorted query pos, sorted history pos) sharing an id
    eps: float  # bound on the float32 matrix product's error


def _prepare(query_vecs, query_order, history_vecs, history_order, copies: int, normalized: bool = False) -> _Prepared:
    """Unit rows, ranks, both sides sorted by rank. History keeps one row per event_id and, per
    distinct vector, only its `copies` earliest rows: identical vectors give identical similarities,
    so later copies cannot change a count capped at `copies` or a maximum (copies=1); this keeps many
    identical texts ("OK", "Done.") from costing n^2 exact recomputations."""

    # `normalized`: the caller already passed rows through `unit_rows` (e.g. once per stored history
    # file instead of once per call); the rows are then used as they are.
    q = _as_matrix(query_vecs, "query_vecs") if normalized else unit_rows(query_vecs, "query_vecs")
    h = _as_matrix(history_vecs, "history_vecs") if normalized else unit_rows(history_vecs, "history_vecs")
    if q.shape[1] != h.shape[1] and len(q) and len(h):
        raise ValueError(f"query vectors have dimension {q.shape[1]}, history vectors {h.shape[1]}")
    qk = _as_keys(query_order, len(q), "query_order")
    hk = _as_keys(history_order, len(h), "history_order")

    # History: one row per event_id (the id is a hash of the content: duplicates are the same event).
    _, first = np.unique(hk.event_id, return_index=True)
    if len(first) < len(h):
        first.sort()
        h, hk = h[first], OrderKeys(hk.timestamp_us[first], hk.event_id[first])

    # Dense ranks of (timestamp, event_id) over queries and history together.
    ts = np.concatenate([qk.timestamp_us, hk.timestamp_us])
    ids = np.concatenate([qk.event_id, hk.event_id])
    by_key = np.lexsort((ids, ts))
    new_key = np.ones(len(ts), dtype=bool)
    new_key[1:] = (ts[by_key][1:] != ts[by_key][:-1]) | (ids[by_key][1:] != ids[by_key][:-1])
    rank = np.empty(len(ts), dtype=np.int64)
    rank[by_key] = np.cumsum(new_key) - 1
    q_rank, h_rank = rank[: len(q)], rank[len(q):]

    q_order = np.argsort(q_rank, kind="stable")
    h_order = np.argsort(h_rank, kind="stable")

    # An event listed in the history under another timestamp must still never count itself.
    h_ids = hk.event_id[h_order]  # unique after the dedup above
    by_id = np.argsort(h_ids)
    q_ids = qk.event_id[q_order]
    at = np.minimum(np.searchsorted(h_ids[by_id], q_ids), max(len(h_ids) - 1, 0))
    same = (h_ids[by_id][at] == q_ids) if len(h_ids) else np.zeros(len(q_ids), dtype=bool)
    q_pos = np.flatnonzero(same)
    h_pos = by_id[at[q_pos]]
    earlier = h_rank[h_order][h_pos] < q_rank[q_order][q_pos]
    self_pairs = (q_pos[earlier], h_pos[earlier])

    h_sorted, h_rank_sorted = h[h_order], h_rank[h_order]
    if len(self_pairs[0]) == 0 and len(h_sorted):  # (with self pairs, history positions must stay put)
        rows = np.ascontiguousarray(h_sorted).view(np.dtype((np.void, h_sorted.dtype.itemsize * h_sorted.shape[1])))
        codes = np.unique(rows.ravel(), return_inverse=True)[1].ravel()
        keep = pd.Series(codes).groupby(codes).cumcount().to_numpy() < copies
        if not keep.all():
            h_sorted, h_rank_sorted = h_sorted[keep], h_rank_sorted[keep]

    dim = q.shape[1] if len(q) else h.shape[1]
    eps = 2.0 * max(dim, 1) * 2.0**-24 * (1 + 1e-6) ** 2 + 1e-12
    return _Prepared(q[q_order], q_rank[q_order], q_order, h_sorted, h_rank_sorted, self_pairs, eps)


def _chunks(p: _Prepared):
    """Yield (query slice, blocks) per chunk of queries; `blocks` yields (history slice, similarity
    block) for every block holding an earlier pair, with pairs that are not strictly earlier (or are
    the event itself) set to -inf. A consumer may stop a chunk's blocks early."""
    for qs in range(0, len(p.q), QUERY_CHUNK):
        qsl = slice(qs, min(qs + QUERY_CHUNK, len(p.q)))
        yield qsl, _history_blocks(p, qsl)


def _history_blocks(p: _Prepared, qsl: slice):
    ranks = p.q_rank[qsl]
    h_end = int(np.searchsorted(p.h_rank, ranks[-1], side="left"))  # earlier than the last query
    h_all_earlier = int(np.searchsorted(p.h_rank, ranks[0], side="left"))  # earlier than every query
    in_chunk = (p.self_pairs[0] >= qsl.start) & (p.self_pairs[0] < qsl.stop)
    for hs in range(0, h_end, HISTORY_CHUNK):
        hsl = slice(hs, min(hs + HISTORY_CHUNK, h_end))
        sims = p.q[qsl] @ p.h[hsl].T
        if hsl.stop > h_all_earlier:
            sims[p.h_rank[None, hsl] >= ranks[:, None]] = -np.inf
        if in_chunk.any():
            sel = in_chunk & (p.self_pairs[1] >= hsl.start) & (p.self_pairs[1] < hsl.stop)
            sims[p.self_pairs[0][sel] - qsl.start, p.self_pairs[1][sel] - hsl.start] = -np.inf
        yield hsl, sims


def _exact_pairs(p: _Prepared, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    out = np.empty(len(rows))
    for s in range(0, len(rows), _REFINE_CHUNK):
        e = s + _REFINE_CHUNK
        out[s:e] = exact_similarity(p.q[rows[s:e]], p.h[cols[s:e]])
    return out


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    return threshold


def count_earlier_similar(
    query_vecs: np.ndarray,
    query_order: OrderKeys | tuple,
    history_vecs: np.ndarray,
    history_order: OrderKeys | tuple,
    threshold: float,
    cap: int,
    normalized: bool = False,
) -> np.ndarray:
    """For each query row: how many history rows strictly earlier have cosine >= threshold, at most
    `cap` (int64, in query order)."""
    threshold = _check_threshold(threshold)
    p = _prepare(query_vecs, query_order, history_vecs, history_order, copies=max(int(cap), 1),
                 normalized=normalized)
    counts = np.zeros(len(p.q), dtype=np.int64)
    surely, maybe = threshold + p.eps, threshold - p.eps
    for qsl, blocks in _chunks(p):
        chunk = counts[qsl]  # a view: updated in place
        for hsl, sims in blocks:
            candidates = sims >= maybe
            if not candidates.any():
                continue
            sure = sims >= surely
            chunk += np.count_nonzero(sure, axis=1)
            rows, cols = np.nonzero(candidates & ~sure)
            if len(rows):
                ok = _exact_pairs(p, rows + qsl.start, cols + hsl.start) >= threshold
                chunk += np.bincount(rows[ok], minlength=len(chunk))
            if (chunk >= cap).all():
                break  # every query of the chunk is at the cap: the rest cannot change anything
    np.minimum(counts, cap, out=counts)
    result = np.empty_like(counts)
    result[p.q_order] = counts
    return result


def best_earlier_similarity(
    query_vecs: np.ndarray,
    query_order: OrderKeys | tuple,
    history_vecs: np.ndarray,
    history_order: OrderKeys | tuple,
    threshold: float,
    normalized: bool = False,
) -> np.ndarray:
    """For each query row: the highest cosine with a strictly earlier history row, when that is
    >= threshold; NaN when no earlier row reaches the threshold (float64, in query order)."""
    threshold = _check_threshold(threshold)
    p = _prepare(query_vecs, query_order, history_vecs, history_order, copies=1, normalized=normalized)
    best = np.full(len(p.q), -np.inf)
    floor = threshold - p.eps
    for qsl, blocks in _chunks(p):
        for hsl, sims in blocks:
            row_max = sims.max(axis=1)
            if not (row_max >= floor).any():
                continue
            # The exact maximum is among the pairs within 2*eps of the float32 maximum.
            cut = np.maximum(row_max - 2 * p.eps, floor)
            rows, cols = np.nonzero(sims >= cut[:, None])
            exact = _exact_pairs(p, rows + qsl.start, cols + hsl.start)
            exact[exact < threshold] = -np.inf
            np.maximum.at(best, rows + qsl.start, exact)
    best[np.isneginf(best)] = np.nan
    result = np.empty_like(best)
    result[p.q_order] = best
    return result
