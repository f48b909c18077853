"""Value scoring: the seed's five components, exact earlier-similarity, embeddings and the score.

Plain Python (no Dagster): `defs/scoring.py` declares the assets and calls these functions.
"""

from learning_pipeline.scoring.components import (
    complexity,
    novelty_from_similarity,
    outcome_quality,
    reusability_from_count,
    static_components,
    text_features,
    user_feedback,
)
from learning_pipeline.scoring.config import (
    ScoringConfig,
    ScoringWeights,
    features_version,
    load_scoring_config,
    scoring_version,
)
from learning_pipeline.scoring.features import FEATURE_COLUMNS, compute_features, score, score_bands
from learning_pipeline.scoring.similarity import (
    OrderKeys,
    best_earlier_similarity,
    count_earlier_similar,
    order_keys,
)

__all__ = [
    "FEATURE_COLUMNS",
    "OrderKeys",
    "ScoringConfig",
    "ScoringWeights",
    "best_earlier_similarity",
    "complexity",
    "compute_features",
    "count_earlier_similar",
    "features_version",
    "load_scoring_config",
    "novelty_from_similarity",
    "order_keys",
    "outcome_quality",
    "reusability_from_count",
    "score",
    "score_bands",
    "scoring_version",
    "static_components",
    "text_features",
    "user_feedback",
]
