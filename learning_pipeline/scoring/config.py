"""Scoring settings: the `[scoring]` section of `config/pipeline.toml`.

Two groups with two version hashes, so the Dagster layer re-runs only what a change affects:
- `weights` and `threshold` decide the value score (`scoring_version`, the code version of
  `scored_events`); changing them never re-embeds or re-searches anything.
- `reusability_similarity`, `reusability_limit` and `novelty_similarity` change the weight-independent
  features (`features_version`, the code version of `event_features`).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from learning_pipeline.settings import ConfigError, _format_validation_error, read_config_file

# Bump when the code of `features.score` (resp. the component/feature code) changes what it computes,
# so that the Dagster code versions change with it even when the configuration does not.
SCORE_FORMULA_VERSION = 1
FEATURES_FORMULA_VERSION = 1

_SUM_TOLERANCE = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoringWeights(_Strict):
    """The seed's weights (they must sum to 1)."""

    outcome_quality: float = Field(default=0.40, ge=0, le=1)
    user_feedback: float = Field(default=0.20, ge=0, le=1)
    reusability: float = Field(default=0.20, ge=0, le=1)
    complexity: float = Field(default=0.10, ge=0, le=1)
    novelty: float = Field(default=0.10, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> ScoringWeights:
        total = sum(self.as_dict().values())
        if not math.isclose(total, 1.0, rel_tol=0.0, abs_tol=_SUM_TOLERANCE):
            raise PydanticCustomError(
                "weights_sum", "weights sum to {total}, must sum to 1", {"total": f"{total:.6g}"}
            )
        return self

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in type(self).model_fields}


class ScoringConfig(_Strict):
    weights: ScoringWeights = ScoringWeights()
    # An event at or above this value score is "high value": patterns are extracted from it.
    threshold: float = Field(default=0.7, ge=0, le=1)
    # Reusability counts earlier events whose query is at least this cosine-similar (the seed's 0.85) ...
    reusability_similarity: float = Field(default=0.85, gt=0, le=1)
    # ... at most this many (the seed's search limit of 10).
    reusability_limit: int = Field(default=10, ge=1)
    # Novelty: 1 - the best similarity, at or above this, of the response to earlier responses.
    novelty_similarity: float = Field(default=0.90, gt=0, le=1)


def load_scoring_config(config_file: Path | str | None) -> ScoringConfig:
    """The `[scoring]` section of `config_file`; None or a file without the section -> the defaults.

    Raises `ConfigError` naming the file and the field (e.g. `scoring.weights.novelty: ...`).
    """
    if config_file is None:
        return ScoringConfig()
    path = Path(config_file)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file does not exist")
    raw = read_config_file(path).get("scoring", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: scoring: must be a table ([scoring])")
    try:
        return ScoringConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, "scoring", path)) from exc


def _short_hash(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def scoring_version(cfg: ScoringConfig) -> str:
    """12 hex characters that change exactly when the weights, the threshold or the score formula do."""
    return _short_hash(
        {"formula": SCORE_FORMULA_VERSION, "weights": cfg.weights.as_dict(), "threshold": cfg.threshold}
    )


def features_version(cfg: ScoringConfig, embedding_model_id: str = "") -> str:
    """12 hex characters that change when what `event_features` computes changes: the similarity
    settings, the feature code, and (when given) the embedding model. Weights play no part."""
    return _short_hash(
        {
            "formula": FEATURES_FORMULA_VERSION,
            "reusability_similarity": cfg.reusability_similarity,
            "reusability_limit": cfg.reusability_limit,
            "novelty_similarity": cfg.novelty_similarity,
            "embedding_model_id": embedding_model_id,
        }
    )
