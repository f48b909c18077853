"""Scoring through Dagster: order-free features, a weight change rescored without embedding or
searching, code versions that follow the weights, and bad config that touches nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pandas.testing as pdt

from learning_pipeline.defs.resources import EmbeddingResource, PipelineResource, QdrantResource
from learning_pipeline.defs.scoring import event_features, interaction_history, scored_events
from learning_pipeline.defs.telemetry import partition_key, raw_telemetry
from learning_pipeline.scoring.config import load_scoring_config
from learning_pipeline.scoring.embeddings import HashingEmbedder
from learning_pipeline.scoring.partitions import all_scores, features_path, scored_path
from learning_pipeline.settings import load_settings
from learning_pipeline.telemetry.landing import land_pending
from learning_pipeline_tests.conftest import append, event, jsonl

CALLS = {"embed": 0, "qdrant": 0}


class CountingHashingEmbeddings(EmbeddingResource):
    """The real cache and resource code around a small deterministic model, counting model calls."""

    def model(self, settings):
        inner = HashingEmbedder()

        class Counting:
            model_id = "hashing-test"
            dimension = inner.dimension

            def embed(self, texts):
                CALLS["embed"] += 1
                return inner.embed(texts)

        return Counting()


class CountingQdrant(QdrantResource):
    def client(self, settings):
        CALLS["qdrant"] += 1
        return super().client(settings)


SCORING_ASSETS = [raw_telemetry, interaction_history, event_features, scored_events]
PARTITIONS = [("ralph", "2026-01-09"), ("aidb", "2026-01-09"), ("ralph", "2026-01-10"), ("aidb", "2026-01-10")]


def write_telemetry(inbox: Path) -> None:
    questions = ["how do I enable docker on nixos", "enable docker on nixos how", "nixos docker enable",
                 "pin nixpkgs in a flake", "why is my rust build slow"]
    ralph = [event(i, day=9 + i % 2, prompt=questions[i % 5], output=f"answer {i % 3}",
                   files_modified=[f"f{j}.py" for j in range(i % 6)]) for i in range(30)]
    aidb = [{"event_type": "query_completion", "query": questions[(i + 2) % 5], "success": i % 3 != 0,
             "user_feedback": [1, 0, -1, None][i % 4], "response": "1. do this\n2. then that\n```bash\nls\n```",
             "timestamp": f"2026-01-{9 + i % 2:02d}T11:{i:02d}:00Z"} for i in range(30)]
    append(inbox / "ralph-events.jsonl", jsonl(*ralph))
    append(inbox / "aidb-events.jsonl", jsonl(*aidb))


def resources(inbox: Path, data: Path, config: Path | None = None) -> dict:
    return {
        "pipeline": PipelineResource(telemetry_dir=str(inbox), data_dir=str(data),
                                     config_file=str(config) if config else None),
        "embeddings": CountingHashingEmbeddings(),
        "qdrant": CountingQdrant(),
    }


def materialize_all(assets, inbox: Path, data: Path, order=PARTITIONS, config: Path | None = None) -> None:
    land_pending(load_settings(telemetry_dir=inbox, data_dir=data))
    with dg.instance_for_test() as instance:
        for source, date in order:
            result = dg.materialize(assets, partition_key=partition_key(source, date), instance=instance,
                                    resources=resources(inbox, data, config))
            assert result.success


def read_all(root: Path, asset: str) -> pd.DataFrame:
    files = sorted((root / "assets" / asset).glob("*/*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]).sort_values("event_id").reset_index(drop=True)


def test_backfilling_partitions_in_any_order_gives_identical_features(tmp_path, inbox):
    write_telemetry(inbox)
    materialize_all(SCORING_ASSETS, inbox, tmp_path / "forward")
    materialize_all(SCORING_ASSETS, inbox, tmp_path / "backward", order=list(reversed(PARTITIONS)))
    forward = read_all(tmp_path / "forward", "event_features")
    pdt.assert_frame_equal(forward, read_all(tmp_path / "backward", "event_features"))
    # the paraphrased questions really were found as earlier similar queries, across sources
    assert (forward["similar_earlier_queries"] > 0).sum() > 20
    assert set(forward["reusability"]) >= {0.3, 1.0}


def test_a_weight_change_rescores_without_embedding_or_searching_and_equals_a_fresh_run(tmp_path, inbox):
    write_telemetry(inbox)
    data = tmp_path / "data"
    materialize_all(SCORING_ASSETS, inbox, data)
    features_before = read_all(data, "event_features")

    new_weights = tmp_path / "weights.toml"
    new_weights.write_text(
        "[scoring]\nthreshold = 0.6\n[scoring.weights]\noutcome_quality = 0.2\nuser_feedback = 0.2\n"
        "reusability = 0.4\ncomplexity = 0.1\nnovelty = 0.1\n"
    )
    CALLS.update(embed=0, qdrant=0)
    materialize_all([scored_events], inbox, data, config=new_weights)
    assert CALLS == {"embed": 0, "qdrant": 0}
    pdt.assert_frame_equal(read_all(data, "event_features"), features_before)  # features untouched

    fresh = tmp_path / "fresh"
    materialize_all(SCORING_ASSETS, inbox, fresh, config=new_weights)
    rescored, from_scratch = read_all(data, "scored_events"), read_all(fresh, "scored_events")
    pdt.assert_frame_equal(rescored, from_scratch)
    expected = (0.2 * rescored.outcome_quality + 0.2 * rescored.user_feedback + 0.4 * rescored.reusability
                + 0.1 * rescored.complexity + 0.1 * rescored.novelty)
    assert (rescored.value_score - expected).abs().max() < 1e-9
    assert (rescored.high_value == (rescored.value_score >= 0.6)).all()


def code_versions(config: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LEARNING_PIPELINE_CONFIG"}
    if config:
        env["LEARNING_PIPELINE_CONFIG"] = str(config)
    script = (
        "from learning_pipeline.definitions import defs\n"
        "import dagster as dg\n"
        "for name in ('event_features', 'scored_events'):\n"
        "    spec = defs.resolve_assets_def(name).specs_by_key[dg.AssetKey(name)]\n"
        "    print(name, spec.code_version)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return dict(line.split() for line in out.stdout.strip().splitlines())


def test_scored_events_code_version_follows_the_weights_and_features_do_not(tmp_path):
    edited = tmp_path / "pipeline.toml"
    edited.write_text("[scoring.weights]\noutcome_quality = 0.3\nuser_feedback = 0.3\n")
    default, changed = code_versions(None), code_versions(edited)
    assert default["scored_events"] != changed["scored_events"]
    assert default["event_features"] == changed["event_features"]


def test_bad_config_stops_with_a_clear_error_and_leaves_results_untouched(tmp_path, inbox):
    write_telemetry(inbox)
    data = tmp_path / "data"
    materialize_all(SCORING_ASSETS, inbox, data)
    before = {p: p.read_bytes() for p in sorted((data / "assets").rglob("*.parquet"))}

    bad = tmp_path / "bad.toml"
    bad.write_text("[scoring.weights]\noutcome_quality = 0.9\n")  # the weights now sum to 1.5
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNING_PIPELINE_")}
    env.update(LEARNING_PIPELINE_CONFIG=str(bad), LEARNING_PIPELINE_TELEMETRY_DIR=str(inbox),
               LEARNING_PIPELINE_DATA_DIR=str(data))
    append(inbox / "ralph-events.jsonl", jsonl(event(999)))
    result = subprocess.run([sys.executable, "-m", "learning_pipeline.cli", "run"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    assert "scoring.weights" in result.stderr and "sum" in result.stderr and str(bad) in result.stderr
    assert {p: p.read_bytes() for p in sorted((data / "assets").rglob("*.parquet"))} == before
    assert load_settings(telemetry_dir=inbox, data_dir=data).telemetry  # the default config still loads
    assert load_scoring_config(None).threshold == 0.7


def test_status_counts_scored_and_high_value_events(tmp_path, inbox):
    from learning_pipeline.status import collect_status

    write_telemetry(inbox)
    data = tmp_path / "data"
    materialize_all(SCORING_ASSETS, inbox, data)
    settings = load_settings(telemetry_dir=inbox, data_dir=data)
    status = collect_status(settings)
    scores = all_scores(settings)
    assert status["scored_events"] == len(scores) == 60
    assert status["high_value_events"] == int(scores["high_value"].sum())
    assert features_path(settings, "ralph", "2026-01-09").exists() and scored_path(settings, "aidb", "2026-01-10").exists()
