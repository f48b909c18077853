"""Landing: read the new complete lines of every telemetry file, exactly once.

Each file is followed by identity (device + inode, checked against a fingerprint of its first bytes),
not by name, so rotation by rename keeps its place; a shrunk or rewritten file starts over; a gzip
archive or a copy of a file already read continues where that file stopped (matched by the
fingerprint of its decompressed content). Only lines that end in a newline are taken, except at the
end of a file that can no longer grow (an archive, or a rotated file idle for the grace period).

New lines are parsed into canonical events, written as a staged Parquet segment, and then the
segment, its quarantined lines and the new offset are committed in one ledger transaction.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import gzip
import multiprocessing
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from learning_pipeline.settings import Settings, SourceConfig
from learning_pipeline.storage import write_parquet_atomic
from learning_pipeline.telemetry.ledger import FileRecord, Ledger, QuarantinedLine, exclusive_lock
from learning_pipeline.telemetry.normalize import Malformed, normalize_line
from learning_pipeline.telemetry.schema import EVENT_COLUMNS, EVENT_SCHEMA

FINGERPRINT_BYTES = 4096
BLOCK_BYTES = 8 * 1_048_576  # one staged segment at most: bounds memory whatever the file size
EXCERPT_CHARS = 160
PARSE_WORKERS = min(4, os.cpu_count() or 1)
PARALLEL_BACKLOG_BYTES = 2 * BLOCK_BYTES  # below this, starting worker processes costs more than it saves
GZIP_RATIO_GUESS = 6  # JSONL compresses about this well; only used to guess an archive's backlog
GZIP_MAGIC = b"\x1f\x8b"
EVENT_DATE_COLUMN = EVENT_COLUMNS.index("event_date")


@dataclasses.dataclass
class LandingReport:
    bytes_read: int = 0  # new telemetry content consumed
    bytes_scanned: int = 0  # every byte read from disk, fingerprints and partial lines included
    lines: int = 0
    events: int = 0
    quarantined: int = 0
    blank_lines: int = 0
    segments: int = 0
    files: int = 0
    more_pending: bool = False
    touched: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # (source, event_date)
    notes: list[str] = dataclasses.field(default_factory=list)  # rotations, truncations, skipped files

    def merge(self, other: LandingReport) -> None:
        for field in ("bytes_read", "bytes_scanned", "lines", "events", "quarantined", "blank_lines",
                      "segments", "files"):
            setattr(self, field, getattr(self, field) + getattr(other, field))
        self.more_pending = other.more_pending
        self.touched |= other.touched
        self.notes += other.notes


class _CountingReader:
    """Wraps a binary file and counts what is read through it (the O(new bytes) evidence)."""

    def __init__(self, fh, report: LandingReport):
        self._fh, self._report = fh, report

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._report.bytes_scanned += len(data)
        return data

    def seek(self, offset: int) -> None:
        self._fh.seek(offset)

    def close(self) -> None:
        self._fh.close()


def _open(path: Path, compressed: bool, report: LandingReport) -> _CountingReader:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the reader's close(), always in a finally
    return _CountingReader(gzip.GzipFile(fileobj=raw) if compressed else raw, report)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _fingerprint(path: Path, compressed: bool, length: int, report: LandingReport) -> bytes:
    if length <= 0:
        return b""
    fh = _open(path, compressed, report)
    try:
        return fh.read(length)
    except (EOFError, zlib.error, OSError):
        return b""
    finally:
        fh.close()


def discover_files(settings: Settings, source: SourceConfig) -> list[Path]:
    found: set[Path] = set()
    for pattern in source.patterns:
        for path in settings.telemetry_dir.glob(pattern):
            if path.name.endswith(settings.telemetry.ignore_suffixes) or path.name.startswith("."):
                continue
            if path.is_file():
                found.add(path)
    return sorted(found)


def _is_live_name(path: Path, source: SourceConfig) -> bool:
    """The file a writer appends to: a pattern without wildcards (`ralph-events.jsonl`)."""
    return any(path.name == p for p in source.patterns if not any(c in p for c in "*?["))


def _resolve(
    ledger: Ledger, source: SourceConfig, path: Path, rel: str, st: os.stat_result, report: LandingReport
) -> FileRecord:
    """The ledger record that follows this file, creating or re-basing one when needed."""
    compressed = _is_gzip(path)
    for record in ledger.files(source.name):
        if (record.dev, record.ino) != (st.st_dev, st.st_ino):
            continue
        if record.compressed:
            if record.path != rel:
                record.path = rel
                ledger.save_file(record)
            return record
        if st.st_size == record.offset and record.path == rel:
            return record  # nothing new; a rewrite to the very same size is not worth a read
        if st.st_size < record.offset:
            report.notes.append(f"{rel}: truncated ({st.st_size} < {record.offset} bytes read); starting over")
        elif _fingerprint(path, False, len(record.fingerprint), report) != record.fingerprint:
            report.notes.append(f"{rel}: content replaced; starting over")
        else:
            if record.path != rel:
                report.notes.append(f"{record.path} -> {rel}: rotated, continuing at byte {record.offset}")
                record.path = rel
                ledger.save_file(record)
            return record
        record.retired = True
        ledger.save_file(record)
        break

    head = _fingerprint(path, compressed, FINGERPRINT_BYTES, report)
    record = FileRecord(
        file_id=uuid.uuid4().hex[:16], source=source.name, path=rel, dev=st.st_dev, ino=st.st_ino,
        compressed=compressed, fingerprint=b"", offset=0,
    )
    ancestor = max(
        (
            known for known in ledger.files(source.name, include_retired=True)
            if known.fingerprint and head.startswith(known.fingerprint)
            and (known.dev, known.ino) != (st.st_dev, st.st_ino)
        ),
        key=lambda known: known.offset,
        default=None,
    )
    if ancestor is not None and (compressed or st.st_size >= ancestor.offset):
        record.offset, record.fingerprint = ancestor.offset, ancestor.fingerprint
        report.notes.append(f"{rel}: same content as {ancestor.path}; continuing at byte {ancestor.offset}")
    ledger.save_file(record)
    return record


def _blocks(
    fh: _CountingReader, start: int, limit: int | None, final: bool, max_line: int
) -> Iterator[tuple[int, bytes, list[tuple[int, int, bytes]]]]:
    """Line-aligned blocks `(offset, bytes, overlong)` read from `start`.

    `overlong` lists `(offset, length, head)` of lines longer than `max_line` met before the block:
    such a line is never held whole in memory, only its head (for the excerpt). Reading stops after
    `limit` bytes (at a line end) or at EOF; an unterminated tail is only yielded when the file is
    `final`. The end of what a block covers is `offset + len(bytes)`.
    """
    pos = start  # offset of the first byte not yet yielded
    carry = b""
    skip: list | None = None  # [offset, length so far, head] while inside an overlong line
    overlong: list[tuple[int, int, bytes]] = []
    at_eof = False
    while limit is None or pos - start < limit:
        want = BLOCK_BYTES if limit is None else min(BLOCK_BYTES, max(limit - (pos - start), 4096))
        data = fh.read(want)
        if not data:
            at_eof = True
            break
        if skip is not None:
            cut = data.find(b"\n")
            if cut == -1:
                skip[1] += len(data)
                continue
            skip[1] += cut
            overlong.append((skip[0], skip[1], skip[2]))
            pos = skip[0] + skip[1] + 1
            skip = None
            data = data[cut + 1:]
        buf = carry + data
        last = buf.rfind(b"\n")
        if last == -1:
            if len(buf) > max_line:
                skip, carry = [pos, len(buf), buf[: EXCERPT_CHARS * 4]], b""
            else:
                carry = buf
            continue
        yield pos, buf[: last + 1], overlong
        overlong = []
        pos += last + 1
        carry = buf[last + 1:]
    if at_eof and final and skip is not None:
        overlong.append((skip[0], skip[1], skip[2]))
        yield skip[0] + skip[1], b"", overlong
    elif at_eof and final and carry:
        yield pos, carry, overlong
    elif overlong:
        yield pos, b"", overlong


def _excerpt(raw: bytes) -> str:
    return raw[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]


@dataclasses.dataclass
class ParsedBlock:
    tables: dict[str, pa.Table]  # event date -> that date's canonical rows
    quarantined: list[QuarantinedLine]
    blank_lines: int
    lines: int

    @property
    def events(self) -> int:
        return sum(t.num_rows for t in self.tables.values())


def parse_block(
    source: str, rel: str, offset: int, block: bytes, overlong: list[tuple[int, int, bytes]], max_line: int
) -> ParsedBlock:
    """Canonical rows (split by event date), quarantined lines and counts of one line-aligned block.

    Pure: it runs in a worker process when a backlog is large.
    """
    rows_by_date: dict[str, list[tuple]] = {}
    bad = [
        QuarantinedLine(o, rel, n, f"line too long: {n} bytes > max_line_bytes {max_line}", _excerpt(head), None)
        for o, n, head in overlong
    ]
    blank = 0
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    for raw in lines:
        try:
            if len(raw) > max_line:
                raise Malformed(f"line too long: {len(raw)} bytes > max_line_bytes {max_line}")
            if not raw.strip(b" \t\r") or raw in (b"\xef\xbb\xbf", b"\xef\xbb\xbf\r"):
                blank += 1
            else:
                row = normalize_line(source, raw, rel, offset)
                rows_by_date.setdefault(row[EVENT_DATE_COLUMN], []).append(row)
        except Malformed as exc:
            keep = raw if len(raw) <= max_line else None
            bad.append(QuarantinedLine(offset, rel, len(raw), str(exc), _excerpt(raw), keep))
        offset += len(raw) + 1
    tables = {date: rows_to_table(rows) for date, rows in rows_by_date.items()}
    return ParsedBlock(tables, bad, blank, len(lines) + len(overlong))


def rows_to_table(rows: list[tuple]) -> pa.Table:
    if not rows:
        return EVENT_SCHEMA.empty_table()
    columns = list(zip(*rows))
    return pa.Table.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, EVENT_SCHEMA)], schema=EVENT_SCHEMA
    )


class _Parser:
    """Parses blocks inline, or in a pool of worker processes once a file's backlog is large.

    Parsing is the CPU cost of landing; with workers, blocks are parsed in parallel while the
    main process writes and commits them strictly in file order.
    """

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def parse_in_order(self, jobs: Iterator[tuple], parallel: bool) -> Iterator[tuple[tuple, ParsedBlock]]:
        if not parallel:
            for job in jobs:
                yield job, parse_block(*job[2:])
            return
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=PARSE_WORKERS, mp_context=multiprocessing.get_context("forkserver")
            )
        in_flight: collections.deque = collections.deque()
        for job in jobs:
            in_flight.append((job, self._pool.submit(parse_block, *job[2:])))
            if len(in_flight) > PARSE_WORKERS:
                done_job, future = in_flight.popleft()
                yield done_job, future.result()
        while in_flight:
            done_job, future = in_flight.popleft()
            yield done_job, future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _land_file(
    settings: Settings, ledger: Ledger, source: SourceConfig, path: Path, budget: int | None,
    report: LandingReport, parser: _Parser,
) -> int:
    """Land what is new in one file, at most about `budget` bytes; returns the bytes consumed."""
    rel = str(path.relative_to(settings.telemetry_dir))
    try:
        st = path.stat()
        record = _resolve(ledger, source, path, rel, st, report)
    except FileNotFoundError:
        return 0  # rotated away between listing and reading: the next tick finds it by inode
    if record.finished or (not record.compressed and st.st_size == record.offset):
        return 0
    report.files += 1
    final = record.compressed or (
        not _is_live_name(path, source)
        and time.time() - st.st_mtime >= settings.telemetry.rotated_tail_grace_seconds
    )
    max_line = settings.telemetry.max_line_bytes
    backlog = st.st_size * GZIP_RATIO_GUESS if record.compressed else st.st_size - record.offset
    parallel = min(backlog, budget if budget is not None else backlog) >= PARALLEL_BACKLOG_BYTES
    consumed = 0
    fh = _open(path, record.compressed, report)
    try:
        fh.seek(record.offset)
        jobs = (
            (offset, offset + len(block), source.name, rel, offset, block, overlong, max_line)
            for offset, block, overlong in _blocks(fh, record.offset, budget, final, max_line)
        )
        for job, parsed in parser.parse_in_order(jobs, parallel and PARSE_WORKERS > 1):
            _commit_segment(settings, ledger, record, record.offset, job[1], parsed, report)
            consumed += job[1] - job[0]
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        # An archive still being written (or damaged): keep what was committed, retry next tick.
        report.notes.append(f"{rel}: unreadable compressed data ({exc}); will retry")
        return consumed
    finally:
        fh.close()
    if record.compressed:
        record.finished = True
    if len(record.fingerprint) < FINGERPRINT_BYTES:
        record.fingerprint = _fingerprint(path, record.compressed, min(FINGERPRINT_BYTES, record.offset), report)
    ledger.save_file(record)
    return consumed


def _commit_segment(
    settings: Settings, ledger: Ledger, record: FileRecord, start: int, end: int, parsed: ParsedBlock,
    report: LandingReport,
) -> None:
    segment_id = f"{record.file_id}-{start:015d}"
    staged: dict[str, tuple[int, str]] = {}
    for event_date, table in parsed.tables.items():
        # One file per segment and date: a partition build reads exactly its own rows. A rerun
        # after a crash lands the same offset again under the same names, overwriting.
        staged_rel = f"staging/{record.source}/{event_date}/{segment_id}.parquet"
        write_parquet_atomic(table, settings.data_dir / staged_rel)
        staged[event_date] = (table.num_rows, staged_rel)
    ledger.commit_segment(record, segment_id, start, end, parsed.lines, staged, parsed.quarantined, parsed.blank_lines)
    report.segments += 1
    report.bytes_read += end - start
    report.lines += parsed.lines
    report.events += parsed.events
    report.quarantined += len(parsed.quarantined)
    report.blank_lines += parsed.blank_lines
    report.touched |= {(record.source, d) for d in staged}


def land_pending(settings: Settings, max_bytes: int | None = None) -> LandingReport:
    """Land new lines of every source, at most about `max_bytes` (None: everything pending)."""
    report = LandingReport()
    budget = max_bytes
    parser = _Parser()
    with exclusive_lock(settings.state_dir / "ingest.lock"), Ledger(settings.ledger_path) as ledger:
        try:
            for source in settings.telemetry.sources:
                for path in discover_files(settings, source):
                    remaining = None if budget is None else budget - report.bytes_read
                    if remaining is not None and remaining <= 0:
                        report.more_pending = True
                        return report
                    consumed = _land_file(settings, ledger, source, path, remaining, report, parser)
                    if remaining is not None and consumed >= remaining:
                        report.more_pending = True
        finally:
            parser.close()
    return report
