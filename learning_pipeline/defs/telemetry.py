"""Telemetry in: the `raw_telemetry` asset, its partitions, and the sensor that feeds it."""


import datetime as dt
import json

import dagster as dg

from learning_pipeline.defs.resources import PipelineResource
from learning_pipeline.settings import Settings, load_settings
from learning_pipeline.telemetry.landing import land_pending
from learning_pipeline.telemetry.ledger import Ledger, PendingPartition
from learning_pipeline.telemetry.partitions import build_raw_partition

SETTINGS = load_settings()


def telemetry_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    """UTC event date x source: one partition per source per day (years of headroom under 100k)."""
    return dg.MultiPartitionsDefinition(
        {
            "date": dg.DailyPartitionsDefinition(
                start_date=settings.telemetry.partition_start_date.isoformat(), end_offset=1
            ),
            "source": dg.StaticPartitionsDefinition(list(settings.telemetry.source_names)),
        }
    )


TELEMETRY_PARTITIONS = telemetry_partitions(SETTINGS)


def partition_key(source: str, event_date: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": event_date, "source": source})


def split_partition_key(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["source"], keys["date"]


def buildable(settings: Settings, pending: PendingPartition, today: dt.date) -> bool:
    """Partitions Dagster knows: a configured source and a date from the start date to today.

    Events dated outside that window stay staged, nothing is dropped, and are built once the
    window covers them (a later start date edit, or tomorrow arriving for clock-skewed events).
    """
    date = dt.date.fromisoformat(pending.event_date)
    return (
        pending.source in settings.telemetry.source_names
        and settings.telemetry.partition_start_date <= date <= today
    )


def quarantine_metadata(ledger: Ledger, source: str) -> dict[str, dg.MetadataValue]:
    reasons = ledger.quarantine_reasons(source)
    # Locations and reasons only: excerpts may hold whatever the line held, so they stay on disk.
    rows = "\n".join(f"| {kind} | {count} |" for kind, count in reasons.items())
    recent = "\n".join(
        f"| `{q['source_file']}` | {q['source_offset']} | {q['reason']} |"
        for q in ledger.quarantined(source, limit=20)
    )
    return {
        "quarantined_lines": dg.MetadataValue.int(sum(reasons.values())),
        "quarantine_by_reason": dg.MetadataValue.md(
            "| reason | lines |\n|---|---|\n" + rows if rows else "nothing quarantined"
        ),
        "quarantine_first_lines": dg.MetadataValue.md(
            "| file | offset | reason |\n|---|---|---|\n" + recent if recent else "nothing quarantined"
        ),
    }


@dg.asset(
    partitions_def=TELEMETRY_PARTITIONS,
    group_name="telemetry",
    kinds={"parquet"},
    description=(
        "Canonical, validated telemetry events of one source on one UTC day "
        "(schema: learning_pipeline/telemetry/schema.py). Lines that cannot be understood are "
        "quarantined with file, offset and reason; the metadata summarises the source's quarantine."
    ),
)
def raw_telemetry(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    settings = pipeline.settings()
    source, event_date = split_partition_key(context)
    with Ledger(settings.ledger_path) as ledger:
        build = build_raw_partition(settings, ledger, source, event_date)
        quarantine = quarantine_metadata(ledger, source)
    context.log.info(
        f"{source} {event_date}: {build.rows} events ({build.new_rows} new, "
        f"{build.duplicates_dropped} duplicates dropped) from {build.segments_read} new segments"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": build.rows,
            "new_rows": build.new_rows,
            "duplicates_dropped": build.duplicates_dropped,
            "segments_read": build.segments_read,
            "path": dg.MetadataValue.path(str(build.path)),
            **quarantine,
        }
    )


telemetry_partition_job = dg.define_asset_job(
    "telemetry_partition_job",
    selection=dg.AssetSelection.groups("telemetry", "scoring", "patterns"),
    description="Everything one telemetry partition feeds: what the sensor and `learning-pipeline run` launch.",
    # A partition's assets form a chain: a process per step (the multiprocess default) would only add
    # seconds of start-up per step. Parallelism comes from runs of different partitions.
    executor_def=dg.in_process_executor,
)


def run_requests_for(settings: Settings, ledger: Ledger, today: dt.date) -> list[dg.RunRequest]:
    """One run per partition with staged rows newer than its last build.

    The run key names the ledger, the partition and the newest staged segment: it is new exactly
    when there is something new, and never repeats (a wiped data dir gets a new ledger id).
    """
    return [
        dg.RunRequest(
            run_key=f"{ledger.ledger_id}:{p.source}:{p.event_date}:{p.staged_seq}",
            partition_key=partition_key(p.source, p.event_date),
            tags={"learning_pipeline/trigger": "telemetry_sensor"},
        )
        for p in ledger.pending_partitions()
        if buildable(settings, p, today)
    ]


@dg.sensor(
    job=telemetry_partition_job,
    minimum_interval_seconds=SETTINGS.telemetry.sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Lands the new complete lines of every telemetry file (at most max_bytes_per_tick per tick) "
        "and asks for runs of the raw_telemetry partitions that received events."
    ),
)
def telemetry_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineResource) -> dg.SensorResult:
    settings = pipeline.settings()
    report = land_pending(settings, settings.telemetry.max_bytes_per_tick)
    for note in report.notes:
        context.log.info(note)
    with Ledger(settings.ledger_path) as ledger:
        requests = run_requests_for(settings, ledger, dt.datetime.now(dt.UTC).date())
        # The ledger is the durable truth; the cursor mirrors it so the UI shows what was read.
        cursor = json.dumps(
            {
                f.path: [f.file_id, f.offset]
                for source in settings.telemetry.source_names
                for f in ledger.files(source)
            },
            sort_keys=True,
        )
    summary = (
        f"landed {report.lines} lines ({report.bytes_read} bytes): {report.events} events, "
        f"{report.quarantined} quarantined, {report.blank_lines} blank"
        + ("; more pending" if report.more_pending else "")
    )
    context.log.info(summary)
    if not requests:
        return dg.SensorResult(skip_reason=summary if report.lines else "no new telemetry", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
