"""Patterns through Dagster: an LLM on a real loopback server, reruns that never call it again nor
duplicate points, withdrawal after a rescore, two runs sharing Qdrant local mode, and retrieval of a
learned pattern for a paraphrase with the real model."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from learning_pipeline.defs.patterns import extracted_patterns, pattern_collections
from learning_pipeline.defs.resources import EmbeddingResource, LLMResource
from learning_pipeline.defs.scoring import event_features, interaction_history, scored_events
from learning_pipeline.defs.telemetry import partition_key, raw_telemetry
from learning_pipeline.settings import load_settings
from learning_pipeline.status import pattern_counts
from learning_pipeline.telemetry.landing import land_pending
from learning_pipeline_tests.conftest import append, jsonl
from learning_pipeline_tests.fake_llm import FakeLLM, Reply
from learning_pipeline_tests.test_scoring_assets import PARTITIONS, resources, write_telemetry

ALL_ASSETS = [raw_telemetry, interaction_history, event_features, scored_events, extracted_patterns,
              pattern_collections]


def run_partitions(assets, inbox: Path, data: Path, llm: LLMResource, order=PARTITIONS, config=None,
                   extra_resources=None) -> None:
    land_pending(load_settings(telemetry_dir=inbox, data_dir=data))
    with dg.instance_for_test() as instance:
        for source, date in order:
            result = dg.materialize(
                assets, partition_key=partition_key(source, date), instance=instance,
                resources={**resources(inbox, data, config), "llm": llm, **(extra_resources or {})},
            )
            assert result.success


def extracted(data: Path) -> pd.DataFrame:
    files = sorted((data / "assets" / "extracted_patterns").glob("*/*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_llm_patterns_reruns_and_backfills_never_call_the_llm_again_nor_duplicate_points(tmp_path, inbox):
    write_telemetry(inbox)
    data = tmp_path / "data"
    settings = load_settings(telemetry_dir=inbox, data_dir=data)
    with FakeLLM([], default=Reply.fenced()) as fake:
        llm = LLMResource(base_url=fake.base_url, model="fake-7b")
        run_partitions(ALL_ASSETS, inbox, data, llm)
        first_calls, first_counts = fake.count, pattern_counts(settings)
        patterns = extracted(data)
        assert first_calls == len(patterns) > 0  # one call per high-value event: valid fenced JSON
        assert set(patterns["path"]) == {"llm"} and set(patterns["model"]) == {"fake-7b"}
        assert sum(first_counts.values()) > 0

        run_partitions(ALL_ASSETS, inbox, data, llm)  # a rerun
        run_partitions(ALL_ASSETS, inbox, data, llm, order=list(reversed(PARTITIONS)))  # a backfill
        assert fake.count == first_calls
        assert pattern_counts(settings) == first_counts


def test_a_dead_llm_never_fails_the_run_and_is_retried_later(tmp_path, inbox):
    write_telemetry(inbox)
    data = tmp_path / "data"
    with FakeLLM([]) as fake:
        dead_url = fake.base_url  # the port is closed once the server stops
    run_partitions(ALL_ASSETS, inbox, data, LLMResource(base_url=dead_url, max_retries=1, timeout_seconds=2))
    patterns = extracted(data)
    assert len(patterns) > 0 and set(patterns["path"]) == {"deterministic_fallback"}
    assert patterns["error"].notna().all()
    # the fallbacks were not cached: with a live LLM the same events are extracted by it
    with FakeLLM([], default=Reply.json()) as fake:
        run_partitions([extracted_patterns], inbox, data, LLMResource(base_url=fake.base_url))
        assert fake.count == len(patterns)
    assert set(extracted(data)["path"]) == {"llm"}


def test_a_rescore_below_the_threshold_withdraws_patterns_and_a_lower_one_brings_them_back(tmp_path, inbox):
    write_telemetry(inbox)
    data = tmp_path / "data"
    settings = load_settings(telemetry_dir=inbox, data_dir=data)
    no_llm = LLMResource()
    run_partitions(ALL_ASSETS, inbox, data, no_llm)
    before = pattern_counts(settings)
    assert sum(before.values()) > 0

    strict = tmp_path / "strict.toml"
    strict.write_text("[scoring]\nthreshold = 0.99\n")
    rescore = [scored_events, extracted_patterns, pattern_collections]
    run_partitions(rescore, inbox, data, no_llm, config=strict)
    assert sum(pattern_counts(settings).values()) == 0

    run_partitions(rescore, inbox, data, no_llm)  # back to the default threshold
    assert pattern_counts(settings) == before


def test_two_runs_at_once_share_qdrant_local_mode(tmp_path, inbox):
    """Run A holds the local Qdrant folder for a while; run B starts meanwhile and must wait its turn
    instead of failing with "Storage folder ... is already accessed"."""
    write_telemetry(inbox)
    data = tmp_path / "data"
    run_partitions([raw_telemetry], inbox, data, LLMResource())
    script = textwrap.dedent(
        f"""
        import contextlib, sys, time
        import dagster as dg
        from learning_pipeline.defs.scoring import interaction_history
        from learning_pipeline.defs.telemetry import partition_key
        from learning_pipeline_tests.test_scoring_assets import CountingQdrant, resources

        class SlowQdrant(CountingQdrant):
            @contextlib.contextmanager
            def client(self, settings):
                with super().client(settings) as client:
                    print("holding", time.time(), flush=True)
                    yield client
                    time.sleep(float(sys.argv[3]))

        source, date, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
        run_resources = resources({str(inbox)!r}, {str(data)!r})
        run_resources["qdrant"] = SlowQdrant()
        with dg.instance_for_test() as instance:
            result = dg.materialize([interaction_history], partition_key=partition_key(source, date),
                                    instance=instance, resources=run_resources)
        print("done", time.time(), flush=True)
        sys.exit(0 if result.success else 1)
        """
    )

    def start(source: str, date: str, hold: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", script, source, date, str(hold)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = start(*PARTITIONS[0], hold=12.0)
    assert first.stdout.readline().startswith("holding")  # run A has the folder open now
    second = start(*PARTITIONS[1], hold=0.0)
    outputs = [first.communicate(timeout=300), second.communicate(timeout=300)]
    assert first.returncode == 0, outputs[0][1][-2000:]
    assert second.returncode == 0, outputs[1][1][-2000:]
    first_done = float(outputs[0][0].split()[-1])
    second_holding = float(outputs[1][0].split()[1])
    assert second_holding >= first_done - 0.5  # B got the folder only once A let go

    from learning_pipeline.defs.resources import QdrantResource

    with QdrantResource().client(load_settings(telemetry_dir=inbox, data_dir=data)) as client:
        assert client.count("interaction-history", exact=True).count == 30  # both partitions, no duplicates


@pytest.mark.real_model
def test_search_finds_a_learned_pattern_for_a_paraphrase_with_the_real_model(tmp_path, inbox):
    from learning_pipeline.patterns.search import search_learned_patterns

    answer = ("1. Add `virtualisation.docker.enable = true;` to configuration.nix\n"
              "2. Add your user to the docker group\n3. Run `sudo nixos-rebuild switch`\n\n"
              "This turns the daemon on at boot.\n```nix\nvirtualisation.docker.enable = true;\n```")
    learned = {"event_type": "query_completion", "query": "How do I enable Docker on NixOS?",
               "response": answer, "success": True, "user_feedback": 1, "timestamp": "2026-01-09T10:00:00Z"}
    others = [
        ("How do I pin nixpkgs in a flake?", "1. Add an input\n2. Lock it\n```nix\ninputs.nixpkgs.url = \"...\";\n```"),
        ("Fix psycopg2.OperationalError: connection refused", "1. Start postgres\n2. Check the port\n```bash\npg_isready\n```"),
        ("How can I speed up cargo builds?", "1. Use sccache\n2. Enable incremental builds\n```toml\n[profile.dev]\n```"),
    ]
    events = [learned] + [
        {"event_type": "query_completion", "query": q, "response": a, "success": True, "user_feedback": 1,
         "timestamp": f"2026-01-09T1{i}:30:00Z"} for i, (q, a) in enumerate(others, start=1)
    ]
    append(inbox / "aidb-events.jsonl", jsonl(*events))
    data = tmp_path / "data"
    real = {"embeddings": EmbeddingResource()}
    run_partitions(ALL_ASSETS, inbox, data, LLMResource(), order=[("aidb", "2026-01-09")], extra_resources=real)
    settings = load_settings(telemetry_dir=inbox, data_dir=data)
    assert sum(pattern_counts(settings).values()) == 4

    hits = search_learned_patterns("What's the way to switch on the Docker daemon under NixOS?", settings=settings)
    from learning_pipeline.telemetry.normalize import event_id_of

    assert event_id_of("aidb", learned) in hits[0].source_event_ids
    assert hits[0].score > hits[1].score
    assert any("nixos-rebuild" in step for step in hits[0].steps)
