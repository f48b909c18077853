"""The [scoring] section: defaults, validation with errors that name the field, version hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from learning_pipeline.scoring.config import (
    ScoringConfig,
    ScoringWeights,
    features_version,
    load_scoring_config,
    scoring_version,
)
from learning_pipeline.settings import DEFAULT_CONFIG_FILE, ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_seeds():
    cfg = ScoringConfig()
    assert cfg.weights.as_dict() == {
        "outcome_quality": 0.40, "user_feedback": 0.20, "reusability": 0.20, "complexity": 0.10, "novelty": 0.10,
    }
    assert (cfg.threshold, cfg.reusability_similarity, cfg.reusability_limit, cfg.novelty_similarity) == (
        0.7, 0.85, 10, 0.90,
    )
    assert load_scoring_config(None) == cfg


def test_file_without_section_gives_defaults(tmp_path):
    assert load_scoring_config(write(tmp_path, "[telemetry]\nmax_line_bytes = 4096\n")) == ScoringConfig()


def test_project_config_file_loads_as_the_defaults():
    assert load_scoring_config(DEFAULT_CONFIG_FILE) == ScoringConfig()


def test_values_are_read(tmp_path):
    cfg = load_scoring_config(write(tmp_path, """
[scoring]
threshold = 0.65
reusability_limit = 5
[scoring.weights]
outcome_quality = 0.5
user_feedback = 0.1
reusability = 0.2
complexity = 0.1
novelty = 0.1
"""))
    assert cfg.threshold == 0.65
    assert cfg.reusability_limit == 5
    assert cfg.weights.outcome_quality == 0.5 and cfg.weights.user_feedback == 0.1


def test_weights_that_do_not_sum_to_one(tmp_path):
    path = write(tmp_path, "[scoring.weights]\noutcome_quality = 0.45\n")
    with pytest.raises(ConfigError) as err:
        load_scoring_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "scoring.weights: weights sum to 1.05, must sum to 1" in message


def test_sum_within_tolerance_is_accepted():
    ScoringWeights(outcome_quality=0.4 + 5e-7)
    with pytest.raises(ValidationError):
        ScoringWeights(outcome_quality=0.4 + 5e-6)


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[scoring.weights]\nnovelty = 1.5\n", "scoring.weights.novelty"),
        ("[scoring.weights]\ncomplexity = -0.1\nnovelty = 0.3\n", "scoring.weights.complexity"),
        ("[scoring]\nthreshold = 1.2\n", "scoring.threshold"),
        ("[scoring]\nthreshold = -0.01\n", "scoring.threshold"),
        ("[scoring]\nreusability_similarity = 0\n", "scoring.reusability_similarity"),
        ("[scoring]\nreusability_limit = 0\n", "scoring.reusability_limit"),
        ("[scoring]\nnovelty_similarity = 1.1\n", "scoring.novelty_similarity"),
        ("[scoring]\nthreshhold = 0.7\n", "scoring.threshhold"),
        ("[scoring.weights]\nspeed = 0.0\n", "scoring.weights.speed"),
        ("[scoring]\nthreshold = \"high\"\n", "scoring.threshold"),
    ],
)
def test_invalid_values_name_the_field(tmp_path, toml, field):
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as err:
        load_scoring_config(path)
    assert str(path) in str(err.value)
    assert f"{field}: " in str(err.value)


def test_scoring_not_a_table(tmp_path):
    with pytest.raises(ConfigError, match="scoring: must be a table"):
        load_scoring_config(write(tmp_path, "scoring = 3\n"))


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_scoring_config(tmp_path / "nope.toml")


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        ScoringConfig().threshold = 0.5  # type: ignore[misc]


def test_scoring_version_follows_weights_and_threshold_only():
    base = ScoringConfig()
    v = scoring_version(base)
    assert len(v) == 12 and int(v, 16) >= 0
    assert scoring_version(ScoringConfig()) == v  # stable
    shifted = ScoringWeights(outcome_quality=0.35, novelty=0.15)
    assert scoring_version(base.model_copy(update={"weights": shifted})) != v
    assert scoring_version(base.model_copy(update={"threshold": 0.75})) != v
    for feature_change in ({"reusability_similarity": 0.8}, {"reusability_limit": 5}, {"novelty_similarity": 0.95}):
        changed = base.model_copy(update=feature_change)
        assert scoring_version(changed) == v
        assert features_version(changed) != features_version(base)


def test_features_version_ignores_weights_and_threshold():
    base = ScoringConfig()
    changed = ScoringConfig(weights=ScoringWeights(outcome_quality=0.35, novelty=0.15), threshold=0.6)
    assert features_version(changed) == features_version(base)
    assert features_version(base, "model-a") != features_version(base, "model-b")
