"""PatternStore against a real local-mode Qdrant in tmp_path, with hand-made vectors of known cosine."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from learning_pipeline.patterns.store import (
    PATTERN_COLLECTIONS,
    PatternRecord,
    PatternStore,
    supporters_collection,
)
from learning_pipeline.vector_store import QdrantConfig, open_qdrant, scroll_all

DIM = 8
SKILLS, ERRORS, PRACTICES = PATTERN_COLLECTIONS


def vec(axis: int, cos: float = 1.0, towards: int | None = None) -> np.ndarray:
    """A unit vector with cosine `cos` to unit axis `axis`, tilted towards axis `towards`."""
    v = np.zeros(DIM)
    v[axis] = cos
    if cos < 1.0:
        v[towards if towards is not None else (axis + 1) % DIM] = np.sqrt(1.0 - cos**2)
    return v


def chain_vec(angle_deg: float) -> np.ndarray:
    """Unit vectors in the plane of axes 0 and 1: cosine between two is cos(angle difference)."""
    a = np.radians(angle_deg)
    v = np.zeros(DIM)
    v[0], v[1] = np.cos(a), np.sin(a)
    return v


def record(
    event_id: str, vector, value: float = 0.8, collection: str = SKILLS, day: int = 1, **kw
) -> PatternRecord:
    fields = {
        "event_id": event_id,
        "collection": collection,
        "name": f"name_{event_id}",
        "description": f"description of {event_id}",
        "prerequisites": [f"pre {event_id}"],
        "steps": [f"step 1 of {event_id}", "step 2"],
        "tags": ["tag", event_id],
        "example": f"example {event_id}",
        "value_score": value,
        "source_query": f"query {event_id}",
        "source": "ralph",
        "node_id": f"node-{event_id[-1]}",
        "extraction_path": "deterministic",
        "vector": vector,
        "event_time": f"2026-01-{day:02d}T10:00:00Z",
    }
    fields.update(kw)
    return PatternRecord(**fields)


@pytest.fixture
def open_store(tmp_path):
    clients = []

    def _open(name: str = "qdrant", **kw) -> PatternStore:
        client = open_qdrant(QdrantConfig(path=str(tmp_path / name)))
        clients.append(client)
        return PatternStore(client, DIM, **kw)

    yield _open
    for c in clients:
        c.close()


@pytest.fixture
def store(open_store) -> PatternStore:
    return open_store()


class State(dict):
    """(collection, point id) -> (payload, vector). Payloads compare exactly; vectors within float32
    noise (Qdrant re-normalises a vector on every write, and a rewrite may differ in the last bit)."""

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, dict)
            and self.keys() == other.keys()
            and all(
                self[k][0] == other[k][0] and np.allclose(self[k][1], other[k][1], rtol=0, atol=1e-6)
                for k in self
            )
        )

    def __ne__(self, other: object) -> bool:
        return not self == other


def snapshot(store: PatternStore) -> State:
    """Every point of every pattern collection."""
    out = State()
    for coll in PATTERN_COLLECTIONS:
        for p in scroll_all(store.client, coll, with_vectors=True):
            out[(coll, str(p.id))] = (p.payload, np.asarray(p.vector))
    return out


def without_created_at(state: State, anchors: set[str] | None = None) -> State:
    """The state with created_at blanked (for all points, or those anchored by `anchors`)."""
    return State(
        {
            k: ({**pl, "created_at": None} if anchors is None or pl["anchor_event_id"] in anchors else pl, v)
            for k, (pl, v) in state.items()
        }
    )


def only_point(store: PatternStore, coll: str = SKILLS):
    points = list(scroll_all(store.client, coll, with_vectors=True))
    assert len(points) == 1, points
    return points[0]


def supporter_count(store: PatternStore) -> int:
    return sum(store.client.count(supporters_collection(c), exact=True).count for c in PATTERN_COLLECTIONS)


# ---------------------------------------------------------------- basics


def test_single_record_payload_matches_the_seed(store):
    report = store.sync([record("e1", vec(0), value=0.81)])
    assert (report.added, report.points_written, report.counts[SKILLS]) == (1, 1, 1)
    p = only_point(store)
    assert str(p.id) == PatternStore.point_id(SKILLS, "e1")
    pl = p.payload
    assert pl["name"] == "name_e1" and pl["description"] == "description of e1"
    assert pl["prerequisites"] == ["pre e1"] and pl["steps"] == ["step 1 of e1", "step 2"]
    assert pl["tags"] == ["tag", "e1"] and pl["example"] == "example e1" and pl["source_query"] == "query e1"
    assert pl["success_rate"] == 1.0 and pl["usage_count"] == 0
    assert pl["created_at"] == "2026-01-01T10:00:00+00:00"
    assert pl["value_score"] == pl["best_value_score"] == 0.81
    assert pl["category"] == SKILLS and pl["source_event_ids"] == ["e1"] and pl["node_ids"] == ["node-1"]
    assert pl["support_count"] == 1 and [s["event_id"] for s in pl["supporters"]] == ["e1"]
    assert pl["supporters"][0]["steps"] == ["step 1 of e1", "step 2"]


def test_resync_is_a_noop(store, open_store):
    records = [record("e1", vec(0)), record("e2", vec(0, 0.97), value=0.9, day=2), record("e3", vec(3))]
    store.sync(records)
    before = snapshot(store)
    report = store.sync(records)
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 0, 3, 0)
    assert (report.points_written, report.points_deleted) == (0, 0)
    assert snapshot(store) == before
    # The same records twice in one batch are one record.
    report = store.sync(records + records)
    assert report.unchanged == 3 and snapshot(store) == before
    merged = [pl for pl, _ in before.values() if pl["support_count"] == 2]
    assert len(merged) == 1 and merged[0]["source_event_ids"] == ["e1", "e2"]


def test_resync_after_reopening_the_folder_is_a_noop(tmp_path):
    records = [record("e1", vec(0)), record("e2", vec(0, 0.97), day=2)]
    client = open_qdrant(QdrantConfig(path=str(tmp_path / "q")))
    store = PatternStore(client, DIM)
    store.sync(records)
    before = snapshot(store)
    client.close()
    client = open_qdrant(QdrantConfig(path=str(tmp_path / "q")))
    try:
        store = PatternStore(client, DIM)
        report = store.sync(records)
        assert report.unchanged == 2 and report.points_written == 0
        assert snapshot(store) == before
    finally:
        client.close()


# ---------------------------------------------------------------- merging


def test_close_records_merge_and_the_best_value_shows(store):
    store.sync([record("e1", vec(0), value=0.75, day=1)])
    report = store.sync([record("e2", vec(0, 0.97), value=0.92, day=2)])
    assert report.counts[SKILLS] == 1
    p = only_point(store)
    pl = p.payload
    assert pl["support_count"] == 2
    assert pl["source_event_ids"] == ["e1", "e2"]
    assert pl["node_ids"] == ["node-1", "node-2"]
    assert pl["value_score"] == pl["best_value_score"] == 0.92
    assert pl["name"] == "name_e2" and pl["steps"] == ["step 1 of e2", "step 2"]
    assert pl["source_query"] == "query e2" and pl["display_event_id"] == "e2"
    # The oldest event anchors the point: id, vector and created_at come from it.
    assert str(p.id) == PatternStore.point_id(SKILLS, "e1") and pl["anchor_event_id"] == "e1"
    assert pl["created_at"] == "2026-01-01T10:00:00+00:00"
    assert np.allclose(p.vector, vec(0), atol=1e-6)
    assert [s["event_id"] for s in pl["supporters"]] == ["e1", "e2"]
    assert [s["value_score"] for s in pl["supporters"]] == [0.75, 0.92]


def test_records_below_the_similarity_stay_separate(store):
    report = store.sync([record("e1", vec(0)), record("e2", vec(0, 0.90), day=2)])
    assert report.counts[SKILLS] == 2
    assert all(p.payload["support_count"] == 1 for p in scroll_all(store.client, SKILLS))


def test_merge_only_within_one_collection(store):
    report = store.sync([record("e1", vec(0)), record("e2", vec(0), collection=ERRORS)])
    assert (report.counts[SKILLS], report.counts[ERRORS]) == (1, 1)


def test_merge_similarity_is_configurable(open_store):
    store = open_store(merge_similarity=0.85)
    report = store.sync([record("e1", vec(0)), record("e2", vec(0, 0.90), day=2)])
    assert report.counts[SKILLS] == 1


def test_a_changed_record_replaces_its_previous_version(store):
    store.sync([record("e1", vec(0), value=0.75), record("e2", vec(0, 0.97), value=0.8, day=2)])
    report = store.sync([record("e1", vec(0), value=0.95, name="renamed")])
    assert (report.updated, report.added) == (1, 0)
    pl = only_point(store).payload
    assert pl["support_count"] == 2 and pl["name"] == "renamed" and pl["value_score"] == 0.95
    # Its vector moves away: it leaves the cluster.
    report = store.sync([record("e1", vec(5), value=0.95)])
    assert report.counts[SKILLS] == 2
    by_anchor = {p.payload["anchor_event_id"]: p.payload for p in scroll_all(store.client, SKILLS)}
    assert by_anchor["e1"]["source_event_ids"] == ["e1"] and by_anchor["e2"]["source_event_ids"] == ["e2"]


def test_a_rerouted_event_leaves_its_old_collection(store):
    store.sync([record("e1", vec(0)), record("e2", vec(0, 0.97), day=2)])
    report = store.sync([record("e2", vec(0, 0.97), day=2, collection=PRACTICES)])
    assert report.removed == 1
    assert (report.counts[SKILLS], report.counts[PRACTICES]) == (1, 1)
    assert only_point(store, SKILLS).payload["source_event_ids"] == ["e1"]
    assert supporter_count(store) == 2


# ---------------------------------------------------------------- retraction


def test_retracting_one_supporter_recomputes_the_fields(store):
    store.sync([record("e1", vec(0), value=0.75), record("e2", vec(0, 0.97), value=0.92, day=2)])
    report = store.sync([], retracted_event_ids={"e2"})
    assert report.removed == 1 and report.counts[SKILLS] == 1
    pl = only_point(store).payload
    assert pl["support_count"] == 1 and pl["source_event_ids"] == ["e1"] and pl["node_ids"] == ["node-1"]
    assert pl["name"] == "name_e1" and pl["value_score"] == pl["best_value_score"] == 0.75
    assert [s["event_id"] for s in pl["supporters"]] == ["e1"]
    assert supporter_count(store) == 1


def test_retracting_the_anchor_keeps_one_point(store):
    store.sync([record("e1", vec(0), value=0.75), record("e2", vec(0, 0.97), value=0.92, day=2)])
    report = store.sync([], retracted_event_ids={"e1"})
    assert report.counts[SKILLS] == 1 and report.points_deleted == 1
    p = only_point(store)
    assert str(p.id) == PatternStore.point_id(SKILLS, "e2")
    assert p.payload["source_event_ids"] == ["e2"] and p.payload["created_at"] == "2026-01-02T10:00:00+00:00"


def test_retracting_the_last_supporter_deletes_the_point(store):
    store.sync([record("e1", vec(0)), record("e2", vec(0, 0.97), day=2), record("e3", vec(4))])
    report = store.sync([], retracted_event_ids={"e1", "e2"})
    assert report.removed == 2 and report.counts[SKILLS] == 1
    assert only_point(store).payload["source_event_ids"] == ["e3"]
    store.sync([], retracted_event_ids={"e3", "never-seen"})
    assert store.counts() == {c: 0 for c in PATTERN_COLLECTIONS}
    assert supporter_count(store) == 0


def test_retracting_a_bridge_splits_the_cluster_deterministically(store, open_store):
    # b is the oldest and anchors a cluster with a and c (both within 0.97 of b, 0.88 of each other).
    b, a, c = chain_vec(0), chain_vec(-14), chain_vec(14)
    store.sync([record("b", b, day=1), record("a", a, day=2), record("c", c, day=3)])
    assert store.counts()[SKILLS] == 1
    store.sync([], retracted_event_ids={"b"})
    fresh = open_store("fresh")
    fresh.sync([record("a", a, day=2), record("c", c, day=3)])
    assert snapshot(store) == snapshot(fresh)
    assert store.counts()[SKILLS] == 2


def test_synced_and_retracted_at_once_is_an_error(store):
    with pytest.raises(ValueError, match="both synced and retracted"):
        store.sync([record("e1", vec(0))], retracted_event_ids={"e1"})


# ---------------------------------------------------------------- order independence


def mixed_records() -> list[PatternRecord]:
    return [
        # A chain in skills: p0 ~ p1 ~ p2 (0.97 apart), p0 and p2 only 0.88.
        record("p0", chain_vec(0), value=0.71, day=3),
        record("p1", chain_vec(14), value=0.93, day=1),
        record("p2", chain_vec(28), value=0.80, day=2),
        record("p3", chain_vec(90), value=0.85, day=4),
        record("p4", chain_vec(100), value=0.77, day=5),  # 0.985 with p3
        # Near-duplicates in error-solutions, and one without an event time.
        record("q0", vec(4), value=0.9, collection=ERRORS, day=6),
        record("q1", vec(4, 0.97, towards=5), value=0.7, collection=ERRORS, day=7),
        record("q2", vec(4, 0.96, towards=6), value=0.95, collection=ERRORS, event_time=None),
        record("r0", vec(6), value=0.88, collection=PRACTICES, day=8),
    ]


def test_sync_order_does_not_change_the_final_state(open_store):
    records = mixed_records()
    reference = open_store("ref")
    reference.sync(records)
    expected = snapshot(reference)
    # Without an event time, created_at falls back to the first sync time: equal only for timed anchors.
    strip = lambda snap: without_created_at(snap, {"q2"})
    rng = random.Random(42)
    for trial in range(4):
        shuffled = records[:]
        rng.shuffle(shuffled)
        cut = sorted(rng.sample(range(1, len(shuffled)), 2))
        batches = [shuffled[: cut[0]], shuffled[cut[0] : cut[1]], shuffled[cut[1] :]]
        store = open_store(f"trial{trial}")
        for batch in batches:
            store.sync(batch)
        assert strip(snapshot(store)) == strip(expected), f"trial {trial}: {[r.event_id for r in shuffled]}"
    # One at a time, reversed.
    store = open_store("reversed")
    for r in reversed(records):
        store.sync([r])
    assert strip(snapshot(store)) == strip(expected)


def test_the_chain_is_split_around_the_oldest_event(open_store):
    store = open_store()
    store.sync(mixed_records())
    skills = {p.payload["anchor_event_id"]: p.payload for p in scroll_all(store.client, SKILLS)}
    # p1 (day 1) anchors and takes p0 and p2 (both 0.97 from it); p3 anchors p4.
    assert skills["p1"]["source_event_ids"] == ["p0", "p1", "p2"]
    assert skills["p1"]["name"] == "name_p1"
    assert skills["p3"]["source_event_ids"] == ["p3", "p4"]
    errors = only_point(store, ERRORS).payload
    assert errors["source_event_ids"] == ["q0", "q1", "q2"] and errors["value_score"] == 0.95
    assert errors["anchor_event_id"] == "q0"  # timed events anchor before untimed ones


def test_permutations_of_a_chain_agree(open_store):
    records = [record(f"c{i}", chain_vec(12 * i), value=0.7 + i / 100, day=[3, 1, 4, 2][i]) for i in range(4)]
    snaps = []
    for n, perm in enumerate(itertools.permutations(records)):
        if n % 5:  # a spread of the 24 orders keeps the test fast
            continue
        store = open_store(f"perm{n}")
        for r in perm:
            store.sync([r])
        snaps.append(snapshot(store))
    assert all(s == snaps[0] for s in snaps)


def test_retraction_then_resync_restores_the_state(open_store):
    records = mixed_records()
    store = open_store()
    store.sync(records)
    before = snapshot(store)
    store.sync([], retracted_event_ids={"p1", "q0"})
    assert snapshot(store) != before
    store.sync([r for r in records if r.event_id in {"p1", "q0"}])
    after = snapshot(store)
    # q2's created_at falls back to its first sync, which it keeps: the whole state comes back.
    assert after == before


# ---------------------------------------------------------------- crash safety


def test_an_interrupted_sync_is_finished_by_the_next(open_store, monkeypatch):
    records = mixed_records()
    store = open_store()
    store.sync(records[:4])
    calls = {"n": 0}
    real = PatternStore._recompute

    def flaky(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("crash")
        return real(self, *args, **kw)

    monkeypatch.setattr(PatternStore, "_recompute", flaky)
    with pytest.raises(RuntimeError):
        store.sync(records[4:], retracted_event_ids={"p0"})
    monkeypatch.setattr(PatternStore, "_recompute", real)
    store.sync([])  # nothing new: finishes the pending work anyway
    fresh = open_store("fresh")
    fresh.sync([r for r in records if r.event_id != "p0"])
    assert without_created_at(snapshot(store)) == without_created_at(snapshot(fresh))
    assert supporter_count(store) == len(records) - 1


# ---------------------------------------------------------------- search and validation


def test_search_returns_the_closest_first_across_collections(store):
    store.sync(
        [
            record("s1", vec(0), collection=SKILLS),
            record("s2", vec(2), collection=SKILLS),
            record("e1", vec(0, 0.9, towards=2), collection=ERRORS),
            record("b1", vec(0, 0.6, towards=3), collection=PRACTICES),
        ]
    )
    hits = store.search(vec(0, 0.99, towards=2), limit=3)
    assert [(h.collection, h.payload["name"]) for h in hits] == [
        (SKILLS, "name_s1"),
        (ERRORS, "name_e1"),
        (PRACTICES, "name_b1"),
    ]
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].id == PatternStore.point_id(SKILLS, "s1")
    only_errors = store.search(vec(0), collection=ERRORS)
    assert [h.collection for h in only_errors] == [ERRORS]
    assert len(store.search(vec(0), limit=10)) == 4
    assert [h.payload["name"] for h in store.search(vec(0), score_threshold=0.8)] == ["name_s1", "name_e1"]
    with pytest.raises(ValueError):
        store.search(vec(0), collection="nope")


def test_invalid_records_are_rejected(store):
    with pytest.raises(ValueError, match="dimensions"):
        store.sync([record("e1", np.ones(DIM + 1))])
    with pytest.raises(ValueError, match="unknown pattern collection"):
        store.sync([record("e1", vec(0), collection="other")])
    with pytest.raises(ValueError, match="value_score"):
        store.sync([record("e1", vec(0), value=float("nan"))])
    with pytest.raises(ValueError, match="two different records"):
        store.sync([record("e1", vec(0)), record("e1", vec(0), value=0.9)])
    assert store.counts() == {c: 0 for c in PATTERN_COLLECTIONS}


class _CrashingClient:
    """Passes calls to a real client; the n-th write (upsert/delete) raises, as a crash would."""

    def __init__(self, client):
        self._client = client
        self.writes_left: int | None = None

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name not in ("upsert", "delete"):
            return attr

        def write(*args, **kwargs):
            if self.writes_left is not None:
                if self.writes_left == 0:
                    raise ConnectionError("simulated crash")
                self.writes_left -= 1
            return attr(*args, **kwargs)

        return write


@pytest.mark.parametrize("seed", [3, 11])
def test_random_incremental_history_matches_one_fresh_sync(open_store, seed):
    """Random adds, changes, re-routes, retractions and crashes (each retried) converge to the state
    a fresh store reaches from the surviving records in one sync."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    centres = nprng.normal(size=(3, DIM))
    recs = {}
    for i in range(18):
        v = centres[i % 3] / np.linalg.norm(centres[i % 3]) + nprng.normal(size=DIM) * 0.12
        recs[f"e{i:02d}"] = {
            "vector": v,
            "value": round(rng.uniform(0.7, 1), 2),
            "collection": rng.choice([SKILLS, ERRORS]),
            "day": rng.randint(1, 28),
        }
    make = lambda e: record(
        e, recs[e]["vector"], value=recs[e]["value"], collection=recs[e]["collection"], day=recs[e]["day"]
    )
    store = open_store("incremental")
    crashing = _CrashingClient(store.client)
    store.client = crashing
    live: set[str] = set()
    for _ in range(8):
        ids = sorted(recs)
        add = rng.sample(ids, rng.randint(0, 6))
        ret = set(rng.sample(sorted(live - set(add)), min(len(live - set(add)), rng.randint(0, 3))))
        changed = rng.choice(ids)
        if changed not in ret:
            recs[changed]["value"] = round(rng.uniform(0.7, 1), 2)
            if rng.random() < 0.5:
                recs[changed]["collection"] = rng.choice(PATTERN_COLLECTIONS)
            add.append(changed)
        add = sorted(set(add))
        if rng.random() < 0.5:
            crashing.writes_left = rng.randint(0, 6)
            try:
                store.sync([make(e) for e in add], ret)
            except ConnectionError:
                pass
            crashing.writes_left = None
        store.sync([make(e) for e in add], ret)  # the retry (or the only run)
        live = (live | set(add)) - ret
    fresh = open_store("fresh")
    fresh.sync([make(e) for e in sorted(live, reverse=True)])
    assert snapshot(store) == snapshot(fresh)
    assert supporter_count(store) == len(live)
    assert store.client.count("pattern-sync-journal", exact=True).count == 0


def test_points_lists_a_collection(store):
    store.sync([record("e1", vec(0)), record("e2", vec(3)), record("e3", vec(5), collection=ERRORS)])
    assert sorted(p.payload["anchor_event_id"] for p in store.points(SKILLS)) == ["e1", "e2"]
    assert [p.payload["anchor_event_id"] for p in store.points(ERRORS)] == ["e3"]


def test_rebuild_applies_a_new_merge_similarity_and_drops_orphans(tmp_path):
    from qdrant_client import models

    client = open_qdrant(QdrantConfig(path=str(tmp_path / "q")))
    try:
        store = PatternStore(client, DIM)
        store.sync([record("e1", vec(0)), record("e2", vec(0, 0.90), day=2), record("e3", vec(4))])
        assert store.counts()[SKILLS] == 3
        client.upsert(
            SKILLS,
            points=[
                models.PointStruct(
                    id=PatternStore.point_id(SKILLS, "ghost"),
                    vector=vec(6).tolist(),
                    payload={"source_event_ids": ["ghost"]},
                )
            ],
        )
        looser = PatternStore(client, DIM, merge_similarity=0.85)
        report = looser.rebuild()
        assert report.counts[SKILLS] == 2 and report.points_deleted == 2  # e2's own point, the ghost
        merged = [p.payload for p in looser.points(SKILLS) if p.payload["support_count"] == 2]
        assert merged[0]["source_event_ids"] == ["e1", "e2"]
        assert looser.rebuild().points_written == 0  # nothing left to change
    finally:
        client.close()


def test_event_time_may_be_missing_in_any_form(store):
    import pandas as pd

    store.sync(
        [
            record("e1", vec(0), event_time=None),
            record("e2", vec(3), event_time=pd.NaT),
            record("e3", vec(5), event_time=float("nan")),
        ]
    )
    assert all(p.payload["created_at"] for p in store.points(SKILLS))
    assert all(s["event_time"] is None for p in store.points(SKILLS) for s in p.payload["supporters"])
