"""The telemetry sensor through Dagster's own evaluation API, and the runs it asks for."""

from __future__ import annotations

import json

import dagster as dg

from learning_pipeline.defs.resources import PipelineResource
from learning_pipeline.defs.telemetry import raw_telemetry, telemetry_sensor
from learning_pipeline_tests.conftest import all_events, append, event, jsonl
from learning_pipeline_tests.test_ingest import ids_of


def tick(instance, resource, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"pipeline": resource})
    result = telemetry_sensor(context)
    return result


def test_sensor_ticks_land_every_line_once_and_request_the_touched_partitions(settings, inbox):
    resource = PipelineResource(telemetry_dir=str(inbox), data_dir=str(settings.data_dir))
    live = inbox / "ralph-events.jsonl"
    written, run_keys, cursor = [], set(), None
    with dg.instance_for_test() as instance:
        for n in range(8):
            batch = [event(n * 10 + k, day=9 + n % 2) for k in range(4)]
            written += batch
            data = jsonl(*batch)
            append(live, data[:-9])  # the last line is half-written at this tick
            result = tick(instance, resource, cursor)
            append(live, data[-9:])
            cursor = result.cursor
            for request in result.run_requests or []:
                assert request.run_key not in run_keys  # a new key only when something is new
                run_keys.add(request.run_key)
                materialized = dg.materialize(
                    [raw_telemetry], partition_key=request.partition_key, instance=instance,
                    resources={"pipeline": resource},
                )
                assert materialized.success
        # the last tick sees the completed line; one more tick sees nothing new
        result = tick(instance, resource, cursor)
        for request in result.run_requests or []:
            dg.materialize([raw_telemetry], partition_key=request.partition_key, instance=instance,
                           resources={"pipeline": resource})
        idle = tick(instance, resource, result.cursor)
        assert not idle.run_requests and idle.skip_reason is not None
        # the cursor shows (file identity, offset) per file, and the offset is the file's end
        file_id, offset = json.loads(idle.cursor)["ralph-events.jsonl"]
        assert offset == live.stat().st_size and len(file_id) == 16

    events = all_events(settings)
    assert len(events) == len(written) and set(events["event_id"]) == ids_of(*written)


def test_materialisation_metadata_summarises_the_quarantine(settings, inbox):
    resource = PipelineResource(telemetry_dir=str(inbox), data_dir=str(settings.data_dir))
    append(inbox / "ralph-events.jsonl", jsonl(event(1)) + b"not json\n[1]\n")
    with dg.instance_for_test() as instance:
        (request,) = tick(instance, resource, None).run_requests
        result = dg.materialize([raw_telemetry], partition_key=request.partition_key, instance=instance,
                                resources={"pipeline": resource})
        metadata = result.asset_materializations_for_node("raw_telemetry")[0].metadata
    assert metadata["dagster/row_count"].value == 1
    assert metadata["quarantined_lines"].value == 2
    table = metadata["quarantine_by_reason"].value
    assert "| invalid JSON | 1 |" in table and "| JSON value is list, not an object | 1 |" in table
    assert "not json" not in metadata["quarantine_first_lines"].value  # no line content in the UI


def test_events_outside_the_partition_range_wait_instead_of_failing_a_run(settings, inbox):
    resource = PipelineResource(telemetry_dir=str(inbox), data_dir=str(settings.data_dir))
    append(inbox / "ralph-events.jsonl", jsonl(event(1), event(2, timestamp="2019-05-01T00:00:00Z")))
    with dg.instance_for_test() as instance:
        requests = tick(instance, resource, None).run_requests
    assert [r.partition_key for r in requests] == [dg.MultiPartitionKey({"date": "2026-01-09", "source": "ralph"})]
