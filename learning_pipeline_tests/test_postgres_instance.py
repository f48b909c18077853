"""The production instance (deploy/dagster.postgres.yaml) on the real PostgreSQL at 127.0.0.1:5432:
assets materialise and the run and the materialisation are read back from Postgres itself."""

from __future__ import annotations

import os
import shutil
import uuid

import dagster as dg
import psycopg2
import pytest

from learning_pipeline.defs.resources import PipelineResource
from learning_pipeline.defs.telemetry import partition_key, raw_telemetry
from learning_pipeline.settings import PROJECT_ROOT
from learning_pipeline.telemetry.landing import land_pending
from learning_pipeline_tests.conftest import append, event, jsonl

PG = {"host": "127.0.0.1", "port": 5432, "user": os.environ.get("LP_TEST_PG_USER", "postgres")}


def _server_reachable() -> bool:
    try:
        psycopg2.connect(dbname="postgres", connect_timeout=3, **PG).close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.fixture
def postgres_database():
    if not _server_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI and is not reachable")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not running (start it to run this test)")
    name = f"lp_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_materialisations_are_recorded_in_postgres(tmp_path, monkeypatch, settings, inbox, postgres_database):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    for key, value in {
        "DAGSTER_PG_USERNAME": PG["user"], "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_DB": postgres_database, "DAGSTER_PG_PORT": str(PG["port"]),
    }.items():
        monkeypatch.setenv(key, value)

    append(inbox / "ralph-events.jsonl", jsonl(*[event(i) for i in range(5)]))
    land_pending(settings)
    resource = PipelineResource(telemetry_dir=str(inbox), data_dir=str(settings.data_dir))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize(
            [raw_telemetry], partition_key=partition_key("ralph", "2026-01-09"), instance=instance,
            resources={"pipeline": resource},
        )
        assert result.success
        run_id = result.run_id

    # read it back from Postgres itself, not through the instance that wrote it
    with psycopg2.connect(dbname=postgres_database, **PG) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute(
            "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        )
        assert cur.fetchall() == [('["raw_telemetry"]', "2026-01-09|ralph")]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        record = instance.get_latest_materialization_event(dg.AssetKey("raw_telemetry"))
        assert record.asset_materialization.metadata["dagster/row_count"].value == 5
