"""Retrieval for the stack: the learned patterns that best answer a new question.

    from learning_pipeline.patterns.search import search_learned_patterns
    for hit in search_learned_patterns("how do I turn on docker in nixos?"):
        print(hit.score, hit.name, hit.steps)
"""

from __future__ import annotations

import dataclasses

from learning_pipeline.patterns.partitions import search_patterns
from learning_pipeline.patterns.store import PatternStore
from learning_pipeline.scoring.embeddings import cached_embedder
from learning_pipeline.settings import Settings, load_settings
from learning_pipeline.vector_store import qdrant_session


@dataclasses.dataclass(frozen=True)
class LearnedPattern:
    collection: str
    score: float
    name: str
    description: str
    prerequisites: list[str]
    steps: list[str]
    tags: list[str]
    example: str
    value_score: float
    support_count: int
    source_event_ids: list[str]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def search_learned_patterns(
    question: str, collection: str | None = None, limit: int = 5, settings: Settings | None = None
) -> list[LearnedPattern]:
    settings = settings or load_settings()
    if not settings.qdrant_url and not settings.qdrant_path.exists():
        return []
    embedder = cached_embedder(settings)
    with qdrant_session(settings) as client:
        store = PatternStore(client, embedder.dimension)
        hits = search_patterns(store, embedder, question, collection=collection, limit=limit)
    return [
        LearnedPattern(
            collection=hit.collection, score=float(hit.score), name=hit.payload["name"],
            description=hit.payload["description"], prerequisites=list(hit.payload.get("prerequisites", [])),
            steps=list(hit.payload.get("steps", [])), tags=list(hit.payload.get("tags", [])),
            example=hit.payload.get("example", ""), value_score=float(hit.payload.get("value_score", 0.0)),
            support_count=int(hit.payload.get("support_count", 1)),
            source_event_ids=list(hit.payload.get("source_event_ids", [])),
        )
        for hit in hits
    ]
