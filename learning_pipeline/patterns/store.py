"""The learned-pattern collections in Qdrant: `skills-patterns`, `error-solutions`, `best-practices`.

Plain Python, no Dagster imports. The Dagster layer builds `PatternRecord`s from extracted patterns
(one per event and collection) and calls `PatternStore.sync(records, retracted_event_ids)`.

## Model: supporters and clusters
Every record is a *supporter*: one event's pattern in one collection. Supporters are kept, with their
vector (also as exact float32 bytes in the payload), in an internal collection per pattern collection,
`<collection>-supporters` (id = stable_point_id("supporter", collection, event_id)). The points users
search are *clusters* of near-duplicate supporters (cosine >= `merge_similarity`, 0.95 by default),
one point per cluster in the pattern collection. Each point also lists its supporters' own fields
under `supporters`, so an export can be read without the internal collections.

The clusters are a pure function of the set of supporters, so the result never depends on the order
or batching in which records arrive, and reruns are no-ops:

1. Order a collection's supporters canonically: by event time (oldest first; supporters without a
   time after those with one), then by event_id.
2. Walk them in that order. A supporter joins the existing cluster whose *anchor* (first supporter)
   is most similar to it, if that cosine is >= merge_similarity (ties: the older anchor); otherwise it
   anchors a new cluster.
3. A cluster's point has id stable_point_id("pattern", collection, anchor event_id) and the
   anchor's vector, so every member has cosine >= merge_similarity with the point it merged into.
   Because anchors are the oldest events, a live system that learns newer events mostly adds members
   to existing points, and point ids stay put. A backfill of older days may re-anchor a cluster
   (its id changes: the old point is deleted, the new one written).
4. The displayed fields (name, description, prerequisites, steps, tags, example, source_query) and
   `value_score`/`best_value_score` come from the highest-value supporter (ties: canonical order).

A sync recomputes only the connected components (of the cosine >= merge_similarity graph) that
contain a changed supporter or a neighbour of a removed one; the greedy walk inside a component only
depends on that component, so this equals recomputing everything.

## Changes and crash safety
- A record identical to the stored supporter (same content hash of fields and vector) changes
  nothing. A different record for the same (collection, event_id) replaces the old one. Records of
  an event are the whole truth for that event: its supporters in other collections (re-routed) leave.
- `retracted_event_ids` (events now below the threshold) leave every collection; a cluster whose
  last supporter leaves is deleted, others are recomputed from the remaining supporters.
- A sync first writes its plan (the supporters to re-cluster and those leaving) as one point of
  `pattern-sync-journal`, then upserts supporters, rewrites cluster points (upsert, then delete the
  obsolete ones), deletes leaving supporters, and deletes its journal point. A sync interrupted
  anywhere leaves its journal point, and the next sync (even with no records) finishes that plan.
- One writer at a time: two syncs running concurrently against the same Qdrant can interleave
  their cluster rewrites. Serialise them (e.g. a Dagster concurrency pool of 1).

`usage_count` and `success_rate` start at 0 and 1.0 (the seed's values); when a cluster is rewritten
under the same id, the values found on the point are kept (the serving stack may update them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from qdrant_client import QdrantClient, models

from learning_pipeline.vector_store import (
    as_unit_vector,
    ensure_collection,
    ensure_payload_indexes,
    epoch_us,
    iso_utc,
    scroll_all,
    stable_point_id,
    utc_timestamp,
)

PATTERN_COLLECTIONS: tuple[str, ...] = ("skills-patterns", "error-solutions", "best-practices")
JOURNAL_COLLECTION = "pattern-sync-journal"


def supporters_collection(collection: str) -> str:
    """The internal collection holding one pattern collection's supporters."""
    return f"{collection}-supporters"


_PAGE = 256
# Neighbour search runs slightly below the threshold so float32 rounding in Qdrant can never hide an
# edge that the exact (numpy) clustering sees; extra candidates are harmless.
_SEARCH_SLACK = 1e-4

# Supporter fields copied into each cluster point's `supporters` list.
_SUPPORTER_VIEW = (
    "event_id",
    "value_score",
    "name",
    "description",
    "prerequisites",
    "steps",
    "tags",
    "example",
    "source_query",
    "source",
    "node_id",
    "extraction_path",
    "event_time",
)


@dataclass(frozen=True, eq=False)
class PatternRecord:
    """One event's extracted pattern, routed to one collection, with its embedding."""

    event_id: str
    collection: str
    name: str
    description: str
    prerequisites: Sequence[str]
    steps: Sequence[str]
    tags: Sequence[str]
    example: str
    value_score: float
    source_query: str | None
    source: str | None
    node_id: str | None
    extraction_path: str | None
    vector: Any  # sequence of floats / 1-d numpy array of the store's dimension
    # When the event happened (datetime, pandas Timestamp or ISO string). Orders supporters and sets
    # `created_at`; without it, created_at falls back to when the supporter was first synced.
    event_time: Any = None


@dataclass(frozen=True)
class SearchHit:
    collection: str
    score: float
    payload: dict[str, Any]
    id: str = ""


@dataclass(frozen=True)
class SyncReport:
    added: int = 0  # supporters new to the store
    updated: int = 0  # supporters whose record changed (text, score, vector or time)
    unchanged: int = 0  # records identical to what was stored (no-op)
    removed: int = 0  # supporters that left (retracted or re-routed to another collection)
    points_written: int = 0  # cluster points upserted (new or changed)
    points_deleted: int = 0  # cluster points deleted (emptied or re-anchored)
    recovered: int = 0  # interrupted syncs finished by this one
    counts: dict[str, int] = field(default_factory=dict)  # points per pattern collection afterwards


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{what} must be a list of strings, got {type(value).__name__}")
    return [str(v) for v in value]


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _canonical_key(payload: dict[str, Any]) -> tuple[int, int, str]:
    us = payload.get("event_time_us")
    return (0, us, payload["event_id"]) if us is not None else (1, 0, payload["event_id"])


def _as_array(vector: Any) -> np.ndarray:
    return np.asarray(vector, dtype=np.float32).astype(np.float64)


def _payload_vector(payload: dict[str, Any]) -> np.ndarray:
    """The supporter's vector exactly as it was given (float32), from its payload.

    Vectors read back from Qdrant are not bit-stable (Qdrant re-normalises cosine vectors in float32,
    and in local mode the last bits depend on how the point was written and read; a server's JSON
    adds its own rounding). Clustering and the points' vectors use these stored bytes instead, so
    the result is bit-identical however a supporter was found.
    """
    return np.frombuffer(base64.b64decode(payload["vector_f32"]), dtype="<f4").astype(np.float64)


def _chunks(items: Sequence[Any], size: int = _PAGE) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class PatternStore:
    """The three pattern collections, their supporter collections and the sync journal (module doc)."""

    def __init__(self, client: QdrantClient, dimension: int, merge_similarity: float = 0.95):
        if not 0.0 < merge_similarity <= 1.0:
            raise ValueError(f"merge_similarity must be in (0, 1], got {merge_similarity}")
        self.client = client
        self.dimension = dimension
        self.merge_similarity = merge_similarity
        for name in PATTERN_COLLECTIONS:
            ensure_collection(client, name, dimension)
            ensure_payload_indexes(
                client,
                name,
                {
                    "source_event_ids": models.PayloadSchemaType.KEYWORD,
                    "tags": models.PayloadSchemaType.KEYWORD,
                },
            )
            ensure_collection(client, supporters_collection(name), dimension)
        # One point per unfinished sync (a 1-d dummy vector: Qdrant needs one).
        ensure_collection(client, JOURNAL_COLLECTION, 1)

    # ------------------------------------------------------------------ ids

    @staticmethod
    def point_id(collection: str, anchor_event_id: str) -> str:
        return stable_point_id("pattern", collection, anchor_event_id)

    @staticmethod
    def supporter_id(collection: str, event_id: str) -> str:
        return stable_point_id("supporter", collection, event_id)

    # ------------------------------------------------------------------ reading

    def counts(self) -> dict[str, int]:
        return {c: self.client.count(collection_name=c, exact=True).count for c in PATTERN_COLLECTIONS}

    def points(self, collection: str, with_vectors: bool = False) -> Iterator[models.Record]:
        """Every cluster point of one collection (e.g. for a federated export)."""
        self._check_collection(collection)
        return scroll_all(self.client, collection, with_vectors=with_vectors)

    def search(
        self,
        query_vector: Any,
        collection: str | None = None,
        limit: int = 5,
        score_threshold: float | None = None,
    ) -> list[SearchHit]:
        """The `limit` closest patterns in one collection, or across all three (merged by score)."""
        collections = PATTERN_COLLECTIONS if collection is None else (self._check_collection(collection),)
        vector = as_unit_vector(query_vector, self.dimension, "query vector")
        hits: list[SearchHit] = []
        for name in collections:
            response = self.client.query_points(
                collection_name=name,
                query=vector,
                limit=limit,
                with_payload=True,
                score_threshold=score_threshold,
            )
            hits.extend(SearchHit(name, p.score, p.payload or {}, str(p.id)) for p in response.points)
        hits.sort(key=lambda h: (-h.score, h.collection, h.id))
        return hits[:limit]

    # ------------------------------------------------------------------ writing

    def sync(
        self, records: Iterable[PatternRecord], retracted_event_ids: Iterable[str] = frozenset()
    ) -> SyncReport:
        """Bring the collections in line with `records` (upserted) and `retracted_event_ids` (removed).

        Not safe to run concurrently with another sync on the same Qdrant (one writer at a time).
        """
        retracted = {str(e) for e in retracted_event_ids}
        incoming: dict[str, dict[str, tuple[dict[str, Any], list[float]]]] = {
            c: {} for c in PATTERN_COLLECTIONS
        }
        for record in records:
            payload, vector = self._supporter_payload(record)
            sid = self.supporter_id(record.collection, payload["event_id"])
            seen = incoming[record.collection].get(sid)
            if seen is not None:
                if seen[0]["content_hash"] != payload["content_hash"]:
                    raise ValueError(
                        f"two different records for event {payload['event_id']} in {record.collection}"
                    )
                continue
            incoming[record.collection][sid] = (payload, vector)
        incoming_events = {p["event_id"] for batch in incoming.values() for p, _ in batch.values()}
        overlap = incoming_events & retracted
        if overlap:
            raise ValueError(f"events both synced and retracted: {sorted(overlap)[:5]}")

        # Work left by an interrupted sync: finished here too.
        journal = list(scroll_all(self.client, JOURNAL_COLLECTION))
        seeds: dict[str, set[str]] = {c: set() for c in PATTERN_COLLECTIONS}
        removal: dict[str, dict[str, str]] = {c: {} for c in PATTERN_COLLECTIONS}  # sid -> event_id
        for entry in journal:
            for coll in PATTERN_COLLECTIONS:
                seeds[coll].update(entry.payload.get("seeds", {}).get(coll, []))
                removal[coll].update(entry.payload.get("removals", {}).get(coll, {}))

        touched = sorted(incoming_events | retracted)
        to_write: dict[str, dict[str, tuple[dict[str, Any], list[float]]]] = {
            c: {} for c in PATTERN_COLLECTIONS
        }
        # Payloads of supporter versions that leave (removed, or replaced by a changed record).
        leaving: dict[str, list[dict[str, Any]]] = {c: [] for c in PATTERN_COLLECTIONS}
        added = updated = unchanged = 0
        for coll in PATTERN_COLLECTIONS:
            existing = {
                str(p.id): p.payload
                for p in self._retrieve(coll, [self.supporter_id(coll, e) for e in touched])
            }
            for sid, (payload, vector) in incoming[coll].items():
                removal[coll].pop(sid, None)  # re-added after an interrupted retraction
                old = existing.get(sid)
                if old is None:
                    added += 1
                    to_write[coll][sid] = (payload, vector)
                    continue
                payload["first_synced_at"] = old.get("first_synced_at", payload["first_synced_at"])
                if old.get("content_hash") == payload["content_hash"]:
                    unchanged += 1
                else:
                    updated += 1
                    leaving[coll].append(old)
                    to_write[coll][sid] = (payload, vector)
            for sid, old in existing.items():
                # Retracted, or re-routed: the event's records now name other collections only.
                if sid not in incoming[coll]:
                    removal[coll][sid] = old["event_id"]
                    leaving[coll].append(old)
        if not journal and not any(to_write.values()) and not any(removal.values()):
            return SyncReport(unchanged=unchanged, counts=self.counts())

        # Supporters near a vector that leaves (removed, or the old version of an updated one) may
        # re-cluster: find them before anything changes, and note the whole plan in the journal.
        for coll in PATTERN_COLLECTIONS:
            for found in self._neighbours(coll, [_payload_vector(old) for old in leaving[coll]]):
                seeds[coll].update(str(p.id) for p in found)
            seeds[coll].update(to_write[coll])
            seeds[coll] -= set(removal[coll])
        plan = {
            "seeds": {c: sorted(seeds[c]) for c in PATTERN_COLLECTIONS},
            "removals": {c: dict(sorted(removal[c].items())) for c in PATTERN_COLLECTIONS},
        }
        entry_id = stable_point_id(
            "sync-journal", hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
        )
        self.client.upsert(
            collection_name=JOURNAL_COLLECTION,
            points=[models.PointStruct(id=entry_id, vector=[1.0], payload=plan)],
            wait=True,
        )

        for coll in PATTERN_COLLECTIONS:
            points = [
                models.PointStruct(id=sid, vector=vector, payload=payload)
                for sid, (payload, vector) in to_write[coll].items()
            ]
            for chunk in _chunks(points):
                self.client.upsert(collection_name=supporters_collection(coll), points=list(chunk), wait=True)
        written = deleted = removed = 0
        for coll in PATTERN_COLLECTIONS:
            if seeds[coll] or removal[coll]:
                w, d, _ = self._recompute(coll, seeds[coll], removal[coll])
                written += w
                deleted += d
            for chunk in _chunks(sorted(removal[coll])):
                self.client.delete(
                    collection_name=supporters_collection(coll),
                    points_selector=models.PointIdsList(points=list(chunk)),
                    wait=True,
                )
            removed += len(removal[coll])
        self.client.delete(
            collection_name=JOURNAL_COLLECTION,
            points_selector=models.PointIdsList(points=[entry_id, *(str(e.id) for e in journal)]),
            wait=True,
        )
        return SyncReport(
            added=added,
            updated=updated,
            unchanged=unchanged,
            removed=removed,
            points_written=written,
            points_deleted=deleted,
            recovered=len(journal),
            counts=self.counts(),
        )

    def rebuild(self) -> SyncReport:
        """Re-cluster every collection from its supporters and drop points no supporter backs.

        For a changed `merge_similarity`, or to repair points edited by hand. Reads everything.
        """
        first = self.sync([])  # finish an interrupted sync, if any
        written = deleted = 0
        for coll in PATTERN_COLLECTIONS:
            seeds = {str(p.id) for p in scroll_all(self.client, supporters_collection(coll))}
            w, d, kept = self._recompute(coll, seeds, {})
            orphans = sorted(str(p.id) for p in scroll_all(self.client, coll) if str(p.id) not in kept)
            for chunk in _chunks(orphans):
                self.client.delete(
                    collection_name=coll, points_selector=models.PointIdsList(points=list(chunk)), wait=True
                )
            written += w
            deleted += d + len(orphans)
        return SyncReport(
            points_written=written, points_deleted=deleted, recovered=first.recovered, counts=self.counts()
        )

    # ------------------------------------------------------------------ internals

    def _check_collection(self, collection: str) -> str:
        if collection not in PATTERN_COLLECTIONS:
            raise ValueError(
                f"unknown pattern collection {collection!r}; expected one of {PATTERN_COLLECTIONS}"
            )
        return collection

    def _supporter_payload(self, record: PatternRecord) -> tuple[dict[str, Any], list[float]]:
        self._check_collection(record.collection)
        event_id = _opt_str(record.event_id)
        if not event_id:
            raise ValueError("PatternRecord.event_id must be a non-empty string")
        if isinstance(record.value_score, bool) or not _finite(record.value_score):
            raise ValueError(
                f"value_score of event {event_id} must be a finite number, got {record.value_score!r}"
            )
        vector = as_unit_vector(record.vector, self.dimension, f"vector of event {event_id}")
        event_time = event_time_us = None
        if (_opt_str(record.event_time) or "").strip():  # None, "", NaN and NaT mean "no time"
            ts = utc_timestamp(record.event_time)
            event_time, event_time_us = iso_utc(ts), epoch_us(ts)
        fields = {
            "collection": record.collection,
            "event_id": event_id,
            "value_score": float(record.value_score),
            "name": str(record.name),
            "description": str(record.description),
            "prerequisites": _str_list(record.prerequisites, "prerequisites"),
            "steps": _str_list(record.steps, "steps"),
            "tags": _str_list(record.tags, "tags"),
            "example": "" if record.example is None else str(record.example),
            "source_query": _opt_str(record.source_query),
            "source": _opt_str(record.source),
            "node_id": _opt_str(record.node_id),
            "extraction_path": _opt_str(record.extraction_path),
            "event_time": event_time,
            "event_time_us": event_time_us,
        }
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode())
        digest.update(np.asarray(record.vector, dtype=np.float32).reshape(-1).tobytes())
        fields["content_hash"] = digest.hexdigest()
        unit = np.asarray(vector, dtype="<f4")
        fields["vector_f32"] = base64.b64encode(unit.tobytes()).decode("ascii")
        fields["first_synced_at"] = iso_utc(pd.Timestamp.now(tz="UTC"))  # kept from the first sync
        return fields, [float(x) for x in unit]

    def _retrieve(self, collection: str, ids: Sequence[str]) -> list[models.Record]:
        found: list[models.Record] = []
        for chunk in _chunks(list(ids)):
            found.extend(
                self.client.retrieve(
                    collection_name=supporters_collection(collection), ids=list(chunk), with_payload=True
                )
            )
        return found

    def _neighbours(self, collection: str, vectors: Sequence[np.ndarray]) -> list[list[models.Record]]:
        """For each vector: every supporter of `collection` with cosine >= threshold (minus slack)."""
        name = supporters_collection(collection)
        threshold = self.merge_similarity - _SEARCH_SLACK
        results: list[list[models.Record]] = []
        for chunk in _chunks(list(vectors)):
            requests = [
                models.QueryRequest(
                    query=[float(x) for x in v], limit=_PAGE, score_threshold=threshold, with_payload=True
                )
                for v in chunk
            ]
            for v, response in zip(chunk, self.client.query_batch_points(name, requests)):
                found = list(response.points)
                page = found
                while len(page) == _PAGE:  # a full page: there may be more
                    page = self.client.query_points(
                        collection_name=name,
                        query=[float(x) for x in v],
                        limit=_PAGE,
                        offset=len(found),
                        score_threshold=threshold,
                        with_payload=True,
                    ).points
                    found.extend(page)
                results.append(found)
        return results

    def _expand(
        self,
        region: dict[str, tuple[np.ndarray, dict[str, Any]]],
        seeds: Iterable[str],
        collection: str,
        excluded: Mapping[str, str],
    ) -> None:
        """Add the connected components (cosine >= threshold) of `seeds` to `region`, in place."""
        wanted = sorted(s for s in seeds if s not in region and s not in excluded)
        frontier: list[str] = []
        for p in self._retrieve(collection, wanted):
            region[str(p.id)] = (_payload_vector(p.payload), p.payload)
            frontier.append(str(p.id))
        while frontier:
            found = self._neighbours(collection, [region[s][0] for s in frontier])
            frontier = []
            for records in found:
                for p in records:
                    sid = str(p.id)
                    if sid in region or sid in excluded:
                        continue
                    region[sid] = (_payload_vector(p.payload), p.payload)
                    frontier.append(sid)

    def _old_points(self, collection: str, event_ids: set[str]) -> list[models.Record]:
        found: list[models.Record] = []
        for chunk in _chunks(sorted(event_ids)):
            flt = models.Filter(
                must=[models.FieldCondition(key="source_event_ids", match=models.MatchAny(any=list(chunk)))]
            )
            found.extend(scroll_all(self.client, collection, flt, with_vectors=True))
        return found

    def _recompute(
        self, collection: str, seeds: set[str], removal: Mapping[str, str]
    ) -> tuple[int, int, set[str]]:
        """Re-cluster the components around `seeds`, rewrite their points: (written, deleted, point ids).

        `removal` (supporter id -> event id) are leaving: never part of a cluster, and the points that
        still list them are rewritten.
        """
        region: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        self._expand(region, seeds, collection, removal)
        old_points: dict[str, models.Record] = {}
        queried: set[str] = set()
        while True:  # close the region over the members of every point it touches
            events = {payload["event_id"] for _, payload in region.values()} | set(removal.values())
            new = events - queried
            if not new:
                break
            queried |= new
            extra: set[str] = set()
            for p in self._old_points(collection, new):
                if str(p.id) in old_points:
                    continue
                old_points[str(p.id)] = p
                extra.update(self.supporter_id(collection, e) for e in p.payload.get("source_event_ids", []))
            self._expand(region, extra, collection, removal)

        new_points = self._cluster_points(collection, region)
        written = 0
        to_upsert = []
        for pid, (vector, payload) in new_points.items():
            old = old_points.get(pid)
            if old is not None:
                payload["success_rate"] = old.payload.get("success_rate", payload["success_rate"])
                payload["usage_count"] = old.payload.get("usage_count", payload["usage_count"])
                if old.payload == payload and np.allclose(_as_array(old.vector), vector, rtol=0, atol=1e-6):
                    continue
            to_upsert.append(models.PointStruct(id=pid, vector=vector.tolist(), payload=payload))
        for chunk in _chunks(to_upsert):
            self.client.upsert(collection_name=collection, points=list(chunk), wait=True)
            written += len(chunk)
        obsolete = sorted(set(old_points) - set(new_points))
        for chunk in _chunks(obsolete):
            self.client.delete(
                collection_name=collection, points_selector=models.PointIdsList(points=list(chunk)), wait=True
            )
        return written, len(obsolete), set(new_points)

    def _cluster_points(
        self, collection: str, region: dict[str, tuple[np.ndarray, dict[str, Any]]]
    ) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """The greedy anchor clustering of `region` (a union of whole components) as points."""
        order = sorted(region, key=lambda s: _canonical_key(region[s][1]))
        if not order:
            return {}
        matrix = np.stack([region[s][0] for s in order])
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        anchors: list[int] = []
        members: dict[int, list[int]] = {}
        for i in range(len(order)):
            if anchors:
                sims = matrix[anchors] @ matrix[i]
                j = int(np.argmax(sims))  # first maximum: the older anchor wins ties
                if sims[j] >= self.merge_similarity:
                    members[anchors[j]].append(i)
                    continue
            anchors.append(i)
            members[i] = [i]
        points = {}
        for a in anchors:
            group = [region[order[i]][1] for i in members[a]]  # canonical order, anchor first
            vector = np.asarray(region[order[a]][0], dtype=np.float32)
            pid = self.point_id(collection, group[0]["event_id"])
            points[pid] = (vector, self._cluster_payload(collection, pid, group))
        return points

    @staticmethod
    def _cluster_payload(collection: str, pid: str, group: list[dict[str, Any]]) -> dict[str, Any]:
        anchor = group[0]
        display = min(group, key=lambda p: (-p["value_score"], _canonical_key(p)))
        if anchor.get("event_time") is not None:
            created_at = anchor["event_time"]  # timed supporters sort first: the oldest event time
        else:
            created_at = min(p.get("first_synced_at") or "" for p in group) or None
        return {
            "name": display["name"],
            "description": display["description"],
            "prerequisites": display["prerequisites"],
            "steps": display["steps"],
            "tags": display["tags"],
            "example": display["example"],
            "source_query": display["source_query"],
            "success_rate": 1.0,
            "usage_count": 0,
            "created_at": created_at,
            "value_score": display["value_score"],
            "best_value_score": display["value_score"],
            "category": collection,
            "pattern_id": pid,
            "anchor_event_id": anchor["event_id"],
            "display_event_id": display["event_id"],
            "source_event_ids": sorted(p["event_id"] for p in group),
            "node_ids": sorted({p["node_id"] for p in group if p.get("node_id")}),
            "sources": sorted({p["source"] for p in group if p.get("source")}),
            "support_count": len(group),
            "supporters": [{k: p.get(k) for k in _SUPPORTER_VIEW} for p in group],
        }
