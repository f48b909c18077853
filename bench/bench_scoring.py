"""Scoring throughput with the real model: embedding alone, first scoring end to end, the seed's naive
approach, and a rescore after a weight change, on the same generated events.

    python bench/bench_scoring.py [--sizes 10000 100000] [--naive-sample 200]

The events are worded the way real telemetry is: nearly every question and answer is unique, and
many questions are paraphrases of a dozen problems. Every approach sees the same events:
- embedding alone: the model over the distinct texts, batched (the floor for any exact scorer);
- first scoring: `event_features` + `scored_events` for every partition, with an empty cache;
- naive (the seed's pseudo-code): per event, one embed call for its query and one similarity search
  in Qdrant local mode over the interaction history; measured on a sample of events, as a rate;
- rescore: `scored_events` for every partition with new weights (features stored).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOPICS = [
    ("enable docker", "NixOS"), ("pin nixpkgs", "a flake"), ("fix connection refused", "psycopg2"),
    ("speed up builds", "cargo"), ("configure a reverse proxy", "nginx"), ("run tests in parallel", "pytest"),
    ("rotate logs", "systemd"), ("mount a volume", "docker compose"), ("add a user", "NixOS"),
    ("debug a segfault", "rust"), ("create an index", "postgres"), ("limit memory", "kubernetes"),
]
WORDINGS = ["How do I {a} in {b}", "how to {a} with {b}", "{b}: {a}", "What's the way to {a} on {b}",
            "Can you show me how to {a} using {b}", "{a} {b} not working", "best way to {a} in {b}"]
DETAILS = ["on my laptop", "for the staging box", "after the upgrade", "in CI", "behind a proxy",
           "with flakes", "on aarch64", "for a new project", "without root", "in a container"]
WORDS = ["config", "service", "module", "option", "package", "flag", "volume", "cache", "index", "user", "group", "port", "path", "file", "build", "test", "deploy", "restart", "check", "log", "error", "warning", "timeout", "retry"]


def generate(inbox: Path, n: int, seed: int = 11) -> None:
    """Telemetry as a stack writes it: almost every question and answer is worded differently, and
    many questions are paraphrases of the same few problems (what reusability is about)."""
    rng = random.Random(seed)
    sources = ("ralph", "aidb", "hybrid", "vscode")
    files = {s: open(inbox / f"{s}-events.jsonl", "w") for s in sources}  # noqa: SIM115 - closed below
    for i in range(n):
        a, b = rng.choice(TOPICS)
        query = f"{rng.choice(WORDINGS).format(a=a, b=b)} {rng.choice(DETAILS)}? ({rng.choice(WORDS)} {i % 997})"
        steps = "\n".join(f"{k}. {rng.choice(WORDS).capitalize()} the {rng.choice(WORDS)} {rng.choice(WORDS)}"
                          for k in range(1, rng.randint(2, 5)))
        answer = f"To {a} in {b}:\n{steps}\nThen verify the {rng.choice(WORDS)} ({i})."
        obj = {"event_type": "query_completion", "query": query, "response": answer,
               "success": rng.random() > 0.25, "user_feedback": rng.choice([1, 0, -1, None]),
               "tools_used": ["shell"] if rng.random() > 0.5 else [],
               "timestamp": 1767225600 + rng.randrange(30 * 86400)}
        files[sources[i % 4]].write(json.dumps(obj) + "\n")
    for fh in files.values():
        fh.close()


def bench(n: int, naive_sample: int) -> dict:
    from qdrant_client import QdrantClient, models

    from learning_pipeline.scoring.config import ScoringConfig, ScoringWeights
    from learning_pipeline.scoring.embeddings import (
        CachedEmbedder,
        EmbeddingCache,
        SentenceTransformerEmbedder,
    )
    from learning_pipeline.scoring.partitions import build_features, build_scores
    from learning_pipeline.settings import load_settings
    from learning_pipeline.telemetry.landing import land_pending
    from learning_pipeline.telemetry.ledger import Ledger
    from learning_pipeline.telemetry.partitions import build_raw_partition, read_raw_partition

    tmp = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    (tmp / "inbox").mkdir()
    generate(tmp / "inbox", n)
    settings = load_settings(telemetry_dir=tmp / "inbox", data_dir=tmp / "data")
    land_pending(settings)
    with Ledger(settings.ledger_path) as ledger:
        partitions = [(p.source, p.event_date) for p in ledger.pending_partitions()]
        for source, date in partitions:
            build_raw_partition(settings, ledger, source, date)
    partitions.sort(key=lambda p: (p[1], p[0]))
    import pandas as pd

    events = pd.concat([read_raw_partition(settings, s, d).to_pandas() for s, d in partitions])
    texts = sorted(set(events["query"]) | set(events["response"]))

    model = SentenceTransformerEmbedder()
    model.embed(["warm up"])
    t0 = time.perf_counter()
    model.embed(texts)
    t_embed = time.perf_counter() - t0

    cfg = ScoringConfig()
    cached = CachedEmbedder(model, EmbeddingCache(settings.embedding_cache_path, model.model_id))
    t0 = time.perf_counter()
    for source, date in partitions:
        build_features(settings, cached, cfg, source, date)
        build_scores(settings, cfg, source, date)
    t_first = time.perf_counter() - t0

    reweighted = ScoringConfig(weights=ScoringWeights(outcome_quality=0.3, user_feedback=0.2, reusability=0.3,
                                                      complexity=0.1, novelty=0.1))
    t0 = time.perf_counter()
    for source, date in partitions:
        build_scores(settings, reweighted, source, date)
    t_rescore = time.perf_counter() - t0

    # The seed's way: per event, embed its query, then search the history in Qdrant (local mode).
    client = QdrantClient(path=str(tmp / "qdrant"))
    client.create_collection("interaction-history", vectors_config=models.VectorParams(
        size=model.dimension, distance=models.Distance.COSINE))
    vectors = cached.embed(events["query"].tolist())
    stamps = events["timestamp"].astype("int64").to_numpy()
    for start in range(0, len(events), 2048):
        client.upsert("interaction-history", points=[
            models.PointStruct(id=i, vector=vectors[i].tolist(), payload={"t": int(stamps[i])})
            for i in range(start, min(start + 2048, len(events)))
        ])
    sample = random.Random(3).sample(range(len(events)), naive_sample)
    queries = events["query"].tolist()
    t0 = time.perf_counter()
    for i in sample:
        vector = model.embed([queries[i]])[0]
        client.query_points("interaction-history", query=vector.tolist(), limit=10, score_threshold=0.85,
                            query_filter=models.Filter(must=[models.FieldCondition(
                                key="t", range=models.Range(lt=int(stamps[i])))]))
    t_naive = (time.perf_counter() - t0) / naive_sample * n
    client.close()
    return {"events": n, "texts": len(texts), "partitions": len(partitions), "embed_s": t_embed,
            "first_s": t_first, "naive_s_extrapolated": t_naive, "rescore_s": t_rescore}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--naive-sample", type=int, default=200)
    args = parser.parse_args()
    print(f"{'events':>8} {'texts':>7} {'embed ev/s':>11} {'first ev/s':>11} {'naive ev/s':>11} "
          f"{'rescore ev/s':>13} {'first/embed':>12} {'first/naive':>12} {'rescore/first':>14}")
    for n in args.sizes:
        r = bench(n, args.naive_sample)
        rate = {k: n / r[k] for k in ("embed_s", "first_s", "naive_s_extrapolated", "rescore_s")}
        print(f"{n:>8,} {r['texts']:>7,} {rate['embed_s']:>11,.0f} {rate['first_s']:>11,.0f} "
              f"{rate['naive_s_extrapolated']:>11,.1f} {rate['rescore_s']:>13,.0f} "
              f"{rate['first_s'] / rate['embed_s']:>12.2f} {rate['first_s'] / rate['naive_s_extrapolated']:>12.1f} "
              f"{rate['rescore_s'] / rate['first_s']:>14.0f}", flush=True)


if __name__ == "__main__":
    main()
