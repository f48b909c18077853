"""Embedders and the persistent embedding cache; one test with the real bundled model."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pandas as pd
import pytest

from learning_pipeline.scoring.embeddings import (
    CachedEmbedder,
    Embedder,
    EmbeddingCache,
    HashingEmbedder,
    SentenceTransformerEmbedder,
)
from learning_pipeline.scoring.features import compute_features


class CountingEmbedder(HashingEmbedder):
    """A HashingEmbedder that records every text it is asked to embed."""

    def __init__(self, delay: float = 0.0):
        super().__init__(dimension=64)
        self.seen: list[str] = []
        self.delay = delay

    def embed(self, texts):
        self.seen.extend(texts)
        time.sleep(self.delay)
        return super().embed(texts)


def test_hashing_embedder():
    emb = HashingEmbedder(dimension=128)
    assert isinstance(emb, Embedder)
    vecs = emb.embed(["restart the nginx service", "restart the nginx service now", "bake a cake", ""])
    assert vecs.dtype == np.float32 and vecs.shape == (4, 128)
    assert np.allclose(np.linalg.norm(vecs[:3], axis=1), 1.0, atol=1e-6)
    assert not vecs[3].any()  # empty text: a zero row
    assert vecs[0] @ vecs[1] > 0.6 > abs(vecs[0] @ vecs[2])
    assert np.array_equal(emb.embed(["restart the nginx service"])[0], vecs[0])  # deterministic


def test_cache_embeds_each_text_once_across_instances(tmp_path):
    path = tmp_path / "state" / "embeddings.sqlite"
    texts = ["alpha beta", "gamma delta", "alpha beta", "epsilon", "gamma delta", "alpha beta"]
    inner = CountingEmbedder()
    first = CachedEmbedder(inner, EmbeddingCache(path, inner.model_id), batch_size=2)
    vecs = first.embed(texts)
    assert sorted(inner.seen) == ["alpha beta", "epsilon", "gamma delta"]  # duplicates embedded once
    assert first.texts_embedded == 3 and first.embed_calls == 2  # batches of 2
    assert vecs.shape == (6, 64) and vecs.dtype == np.float32
    assert np.array_equal(vecs, inner.embed(texts))  # input order kept
    assert first.embed(["epsilon", "alpha beta"]).shape == (2, 64) and first.texts_embedded == 3

    # A fresh cache object on the same file (another run): nothing is embedded again.
    inner2 = CountingEmbedder()
    second = CachedEmbedder(inner2, EmbeddingCache(path, inner2.model_id))
    again = second.embed(list(reversed(texts)) + ["zeta"])
    assert inner2.seen == ["zeta"]
    assert second.texts_embedded == 1 and second.embed_calls == 1
    assert np.array_equal(again[:6], vecs[::-1])
    third = CachedEmbedder(CountingEmbedder(), EmbeddingCache(path, inner.model_id))
    third.embed(texts + ["zeta"])
    assert third.texts_embedded == 0 and third.embed_calls == 0 and third.cache_hits == 4
    assert len(EmbeddingCache(path, inner.model_id)) == 4
    assert len(EmbeddingCache(path, "another-model")) == 0  # keyed by model too
    assert first.embed([]).shape == (0, 64)


def test_cache_refuses_another_models_vectors(tmp_path):
    with pytest.raises(ValueError, match="cache is for model"):
        CachedEmbedder(HashingEmbedder(64), EmbeddingCache(tmp_path / "e.sqlite", "hashing-v1-128"))


def _embed_in_child(path, texts, queue):
    inner = CountingEmbedder(delay=0.02)
    cached = CachedEmbedder(inner, EmbeddingCache(path, inner.model_id), batch_size=4)
    cached.embed(texts)
    queue.put(cached.texts_embedded)


def test_concurrent_processes_never_embed_the_same_text_twice(tmp_path):
    path = tmp_path / "embeddings.sqlite"
    texts = [f"text number {i}" for i in range(40)]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_embed_in_child, args=(path, order, queue))
             for order in (texts, list(reversed(texts)), texts[10:30])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sum(queue.get(timeout=5) for _ in procs) == 40
    assert len(EmbeddingCache(path, HashingEmbedder(64).model_id)) == 40


TARGET = "How do I configure networking on NixOS?"
PARAPHRASES = [
    "How do I set up networking on NixOS?",
    "How do I configure the network on NixOS?",
    "NixOS networking configuration - how do I do it?",
    "How can networking be configured on NixOS?",
    "How to set up NixOS networking?",
]
UNRELATED = "Bake a chocolate cake recipe"


@pytest.mark.real_model
def test_real_model_reusability_is_order_free(tmp_path):
    model = SentenceTransformerEmbedder()
    assert model.dimension == 384
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite", model.model_id)
    embedder = CachedEmbedder(model, cache)

    queries = PARAPHRASES + [TARGET, UNRELATED]
    responses = [f"Set networking options in configuration.nix, variant {i}, then rebuild." for i in range(6)]
    responses.append("Mix flour, sugar and cocoa; bake for 30 minutes at 180 degrees.")
    events = pd.DataFrame({
        "event_id": [f"ev{i}" for i in range(7)],
        "source": ["aidb"] * 7,
        "timestamp": pd.to_datetime(range(1_767_225_600, 1_767_225_607), unit="s", utc=True),
        "query": queries,
        "response": responses,
        "success": [True] * 7,
    })

    def features(frame: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
        kwargs = {}
        if history is not None:
            kwargs = {"history": history, "history_query_vecs": embedder.embed(list(history["query"])),
                          "history_response_vecs": embedder.embed(list(history["response"]))}
        return compute_features(frame, embedder.embed(list(frame["query"])),
                                embedder.embed(list(frame["response"])), **kwargs)

    vecs = embedder.embed(queries)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    similarities = vecs[:5] @ vecs[5]
    print("paraphrase similarities to the target:", np.round(similarities, 4))
    assert (similarities >= 0.85).all()
    assert vecs[6] @ vecs[5] < 0.3

    whole = features(events).set_index("event_id")
    assert whole.loc["ev5", "similar_earlier_queries"] == 5 and whole.loc["ev5", "reusability"] == 1.0
    assert whole.loc["ev6", "similar_earlier_queries"] == 0 and whole.loc["ev6", "reusability"] == 0.3
    assert whole.loc["ev0", "reusability"] == 0.3  # nothing before the first paraphrase

    rng = np.random.default_rng(0)
    shuffled = events.iloc[rng.permutation(len(events))].reset_index(drop=True)
    pd.testing.assert_frame_equal(features(shuffled).set_index("event_id").loc[whole.index], whole)
    first, second = shuffled.iloc[:3], shuffled.iloc[3:]
    for a, b in ((first, second), (second, first)):
        parts = pd.concat([features(a, history=b), features(b, history=a)]).set_index("event_id")
        pd.testing.assert_frame_equal(parts.loc[whole.index], whole)

    # Every text reached the model once; a second embedder on the same path shares the loaded model.
    assert embedder.texts_embedded == 14 and embedder.embed_calls == 2  # the queries, then the responses
    other = SentenceTransformerEmbedder()
    assert other.model_id == model.model_id and other._model() is model._model()
