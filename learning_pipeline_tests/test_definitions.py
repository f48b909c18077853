"""The project loads the way `dagster dev` loads it, and the bundled sample telemetry is what the
README says it is."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from learning_pipeline.settings import PROJECT_ROOT, load_settings
from learning_pipeline.telemetry.landing import land_pending
from learning_pipeline.telemetry.ledger import Ledger


def test_dagster_validates_the_workspace_from_the_repo_root():
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_the_graph_jobs_sensor_and_checks_are_declared():
    from learning_pipeline.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"raw_telemetry", "interaction_history", "event_features", "scored_events",
                    "extracted_patterns", "skills_patterns", "error_solutions", "best_practices"}
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("scored_events")).parent_keys == {dg.AssetKey("event_features")}
    assert defs.resolve_sensor_def("telemetry_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    rescore = defs.resolve_job_def("rescore_job")
    assert {k.to_user_string() for k in rescore.asset_layer.selected_asset_keys} == {
        "scored_events", "extracted_patterns", "skills_patterns", "error_solutions", "best_practices"}
    checks = {c.name for c in graph.asset_check_keys}
    assert checks == {"scores_in_range", "score_distribution"}


def test_sample_telemetry_has_every_source_and_exactly_the_six_malformed_lines(tmp_path):
    settings = load_settings(telemetry_dir=PROJECT_ROOT / "data" / "sample-telemetry", data_dir=tmp_path)
    report = land_pending(settings)
    assert report.events == 241 and report.quarantined == 6
    with Ledger(settings.ledger_path) as ledger:
        reasons = sorted(q["reason"].split(":")[0] for q in ledger.quarantined())
        sources = {p.source for p in ledger.pending_partitions()}
    assert sources == {"ralph", "aidb", "hybrid", "vscode"}
    assert reasons == sorted([
        "invalid JSON", "field 'iterations'", "field 'success'", "JSON value is list, not an object",
        "missing timestamp", "unparseable timestamp",
    ])
