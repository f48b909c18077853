"""`learning-pipeline`: run the pipeline without the UI, and inspect what it learned.

    learning-pipeline run              process everything pending, once, through every asset
    learning-pipeline status [--json]  counts per stage
    learning-pipeline search "question" [--collection C] [--limit K] [--json]
                                       the learned patterns that best answer a question
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time

from learning_pipeline.settings import ConfigError, Settings, load_settings


def _print(message: str) -> None:
    print(message, flush=True)


def run_pending(settings: Settings) -> int:
    """Land new telemetry, then materialise every pending partition; runs go to DAGSTER_HOME."""
    import dagster as dg

    from learning_pipeline.definitions import defs
    from learning_pipeline.defs.telemetry import buildable, partition_key
    from learning_pipeline.instance import ensure_dagster_home
    from learning_pipeline.telemetry.landing import land_pending
    from learning_pipeline.telemetry.ledger import Ledger

    home = ensure_dagster_home(settings)
    started = time.monotonic()
    _print(f"telemetry: {settings.telemetry_dir}")
    landed = land_pending(settings)
    for note in landed.notes:
        _print(f"  {note}")
    _print(
        f"landed {landed.lines} new lines ({landed.bytes_read:,} bytes): {landed.events} events, "
        f"{landed.quarantined} quarantined, {landed.blank_lines} blank"
    )
    today = dt.datetime.now(dt.UTC).date()
    with Ledger(settings.ledger_path) as ledger:
        pending = [p for p in ledger.pending_partitions() if buildable(settings, p, today)]
        waiting = len(ledger.pending_partitions()) - len(pending)
    if waiting:
        _print(f"{waiting} partition(s) dated outside the partition range wait in staging")
    if not pending:
        _print("nothing new to process: every partition is up to date")
        return 0

    job = defs.resolve_job_def("telemetry_partition_job")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    failures = []
    with dg.DagsterInstance.get() as instance:
        for index, p in enumerate(pending, start=1):
            t0 = time.monotonic()
            result = job.execute_in_process(
                run_config=quiet,
                instance=instance,
                partition_key=partition_key(p.source, p.event_date),
                tags={"learning_pipeline/trigger": "cli"},
                raise_on_error=False,
            )
            state = "ok" if result.success else "FAILED"
            if not result.success:
                failures.append((p, result.run_id))
            _print(
                f"[{index}/{len(pending)}] {p.event_date} {p.source}: {state} "
                f"({time.monotonic() - t0:.1f}s, run {result.run_id[:8]})"
            )
    from learning_pipeline.status import collect_status

    status = collect_status(settings)
    _print(
        f"done in {time.monotonic() - started:.1f}s: {len(pending) - len(failures)}/{len(pending)} "
        f"partitions; {status['raw_events']} raw events, {status['quarantined_lines']} quarantined lines; "
        f"runs recorded in {home}"
    )
    for p, run_id in failures:
        _print(f"  failed: {p.event_date} {p.source} (run {run_id}); see `dagster dev` for its logs")
    return 1 if failures else 0


def show_status(settings: Settings, as_json: bool) -> int:
    from learning_pipeline.status import collect_status

    status = collect_status(settings)
    if as_json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(f"raw events          {status['raw_events']:>10,}")
    print(f"quarantined lines   {status['quarantined_lines']:>10,}")
    print(f"scored events       {status['scored_events']:>10,}")
    print(f"high-value events   {status['high_value_events']:>10,}")
    print(f"pending partitions  {status['pending_partitions']:>10,}")
    for collection, points in status["patterns"].items():
        print(f"patterns {collection:<18} {points:>6,}")
    print("per source:")
    for name, counts in status["sources"].items():
        print(
            f"  {name:<12} {counts['raw_events']:>8,} events  {counts['quarantined_lines']:>6,} quarantined"
            f"  {counts['bytes_read']:>12,} bytes read"
        )
    return 0


def search(settings: Settings, question: str, collection: str | None, limit: int, as_json: bool) -> int:
    from learning_pipeline.patterns.search import search_learned_patterns

    hits = search_learned_patterns(question, collection=collection, limit=limit, settings=settings)
    if as_json:
        print(json.dumps([hit.as_dict() for hit in hits], indent=2))
        return 0
    if not hits:
        print("no learned patterns yet: run `learning-pipeline run` first")
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank}. [{hit.score:.3f}] {hit.name}  ({hit.collection}, value {hit.value_score:.2f}, "
              f"{hit.support_count} supporting event(s))")
        print(f"   {hit.description}")
        for step in hit.steps[:5]:
            print(f"   - {step}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="learning-pipeline", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="process everything pending, once, through every asset")
    status = commands.add_parser("status", help="counts per stage")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    find = commands.add_parser("search", help="the learned patterns that best answer a question")
    find.add_argument("question")
    find.add_argument("--collection", choices=["skills-patterns", "error-solutions", "best-practices"])
    find.add_argument("--limit", type=int, default=5)
    find.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "run":
            return run_pending(settings)
        if args.command == "search":
            return search(settings, args.question, args.collection, args.limit, args.json)
        return show_status(settings, args.json)
    except ConfigError as exc:
        print(f"learning-pipeline: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
