"""Build one `raw_telemetry` partition (event date x source) from the staged segments.

The partition file carries, in its Parquet metadata, the newest segment it includes. A rebuild
starts from it and adds only the newer segments, so a tick costs the new rows plus one rewrite of
that day's file. The result depends only on the set of landed lines: rows are deduplicated by
`event_id` (the first landed copy is kept) and sorted by (timestamp, event_id), so a partition
materialised again, or rebuilt from scratch, has the same content.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from learning_pipeline.settings import Settings
from learning_pipeline.storage import partition_path, read_metadata, write_parquet_atomic
from learning_pipeline.telemetry.ledger import Ledger, exclusive_lock
from learning_pipeline.telemetry.schema import EVENT_SCHEMA

RAW_ASSET = "raw_telemetry"
_BUILT_SEQ_KEY = "learning_pipeline.built_through_seq"
_LEDGER_KEY = "learning_pipeline.ledger_id"


@dataclasses.dataclass(frozen=True)
class PartitionBuild:
    path: Path
    rows: int
    new_rows: int
    duplicates_dropped: int
    segments_read: int
    built_through_seq: int


def raw_partition_path(settings: Settings, source: str, event_date: str) -> Path:
    return partition_path(settings.assets_dir, RAW_ASSET, source, event_date)


def read_raw_partition(settings: Settings, source: str, event_date: str) -> pa.Table:
    path = raw_partition_path(settings, source, event_date)
    return pq.read_table(path, schema=EVENT_SCHEMA) if path.exists() else EVENT_SCHEMA.empty_table()


def _previous_build(path: Path, ledger_id: str) -> tuple[pa.Table | None, int]:
    """The partition as last built, if it was built from this ledger; else start from nothing."""
    if not path.exists():
        return None, 0
    meta = read_metadata(path)
    if meta.get(_LEDGER_KEY) != ledger_id or _BUILT_SEQ_KEY not in meta:
        return None, 0
    return pq.read_table(path, schema=EVENT_SCHEMA), int(meta[_BUILT_SEQ_KEY])


def dedupe_and_sort(table: pa.Table) -> tuple[pa.Table, int]:
    """Keep the first row of each event_id (input order = landing order), sort by time then id."""
    if table.num_rows == 0:
        return table, 0
    indexed = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    first = indexed.group_by("event_id", use_threads=False).aggregate([("_row", "min")])
    keep = pc.sort_indices(first["_row_min"])
    unique = indexed.take(pc.take(first["_row_min"], keep)).drop_columns(["_row"])
    order = pc.sort_indices(unique, sort_keys=[("timestamp", "ascending"), ("event_id", "ascending")])
    return unique.take(order), table.num_rows - unique.num_rows


def build_raw_partition(settings: Settings, ledger: Ledger, source: str, event_date: str) -> PartitionBuild:
    # Two runs of one partition (ticks close together) take turns, so the later always includes
    # what the earlier wrote and the recorded built_seq never goes backwards.
    with exclusive_lock(settings.state_dir / "locks" / f"{RAW_ASSET}-{source}-{event_date}.lock"):
        return _build(settings, ledger, source, event_date)


def _build(settings: Settings, ledger: Ledger, source: str, event_date: str) -> PartitionBuild:
    path = raw_partition_path(settings, source, event_date)
    previous, after_seq = _previous_build(path, ledger.ledger_id)
    segments = ledger.segments_for(source, event_date, after_seq)
    pieces = [previous] if previous is not None else []
    for _, staged in segments:
        pieces.append(pq.read_table(settings.data_dir / staged, schema=EVENT_SCHEMA))
    combined = pa.concat_tables(pieces) if pieces else EVENT_SCHEMA.empty_table()
    result, duplicates = dedupe_and_sort(combined)
    built_seq = max([after_seq] + [seq for seq, _ in segments])
    write_parquet_atomic(
        result, path, {_BUILT_SEQ_KEY: str(built_seq), _LEDGER_KEY: ledger.ledger_id}
    )
    ledger.partition_built(source, event_date, built_seq, result.num_rows)
    previous_rows = previous.num_rows if previous is not None else 0
    return PartitionBuild(
        path=path,
        rows=result.num_rows,
        new_rows=result.num_rows - previous_rows,
        duplicates_dropped=duplicates,
        segments_read=len(segments),
        built_through_seq=built_seq,
    )
