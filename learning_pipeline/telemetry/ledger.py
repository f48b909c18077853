"""The ingest ledger: what has been read from which file, and what each partition holds.

One SQLite database under `<data_dir>/state/`. It is the single source of truth for offsets: a
segment's Parquet file is written first, then one transaction records the segment, its quarantined
lines and the file's new offset together. A crash before the commit leaves the old offset, so the
same bytes are read again; a crash after it has nothing left to redo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    file_id     TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    path        TEXT NOT NULL,     -- where it was last seen, relative to the telemetry directory
    dev         INTEGER NOT NULL,
    ino         INTEGER NOT NULL,
    compressed  INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,     -- first bytes of its content: tells rotation from replacement
    offset      INTEGER NOT NULL,  -- bytes of (decompressed) content consumed
    finished    INTEGER NOT NULL DEFAULT 0,
    retired     INTEGER NOT NULL DEFAULT 0,  -- truncated/replaced or gone: never matched by inode again
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_inode ON files (dev, ino) WHERE retired = 0;
CREATE TABLE IF NOT EXISTS segments (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    segment_id   TEXT UNIQUE NOT NULL,
    file_id      TEXT NOT NULL,
    source       TEXT NOT NULL,
    path         TEXT NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset   INTEGER NOT NULL,
    lines        INTEGER NOT NULL,
    events       INTEGER NOT NULL,
    quarantined  INTEGER NOT NULL,
    blank_lines  INTEGER NOT NULL,
    landed_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS segment_dates (
    seq         INTEGER NOT NULL,
    event_date  TEXT NOT NULL,
    source      TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    staged_path TEXT NOT NULL,     -- this segment's rows of that date, relative to the data dir
    PRIMARY KEY (source, event_date, seq)
);
CREATE TABLE IF NOT EXISTS partitions (
    source     TEXT NOT NULL,
    event_date TEXT NOT NULL,
    staged_seq INTEGER NOT NULL,   -- newest segment with rows for it
    built_seq  INTEGER,            -- newest segment the built Parquet includes
    rows       INTEGER,
    PRIMARY KEY (source, event_date)
);
CREATE TABLE IF NOT EXISTS quarantine (
    file_id       TEXT NOT NULL,
    source_offset INTEGER NOT NULL,
    source        TEXT NOT NULL,
    source_file   TEXT NOT NULL,
    line_bytes    INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    excerpt       TEXT NOT NULL,
    line          BLOB,            -- the whole line, so nothing is lost (NULL above max_line_bytes)
    seq           INTEGER NOT NULL,
    PRIMARY KEY (file_id, source_offset)
);
"""


@dataclasses.dataclass
class FileRecord:
    file_id: str
    source: str
    path: str
    dev: int
    ino: int
    compressed: bool
    fingerprint: bytes
    offset: int
    finished: bool = False
    retired: bool = False


@dataclasses.dataclass(frozen=True)
class QuarantinedLine:
    source_offset: int
    source_file: str
    line_bytes: int
    reason: str
    excerpt: str
    line: bytes | None


@dataclasses.dataclass(frozen=True)
class PendingPartition:
    source: str
    event_date: str
    staged_seq: int
    built_seq: int | None


class Ledger:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('ledger_id', ?)", (uuid.uuid4().hex[:12],)
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ledger_id(self) -> str:
        """Unique per ledger, so run keys never collide with those of a wiped earlier data dir."""
        return self._db.execute("SELECT value FROM meta WHERE key = 'ledger_id'").fetchone()[0]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- files ---------------------------------------------------------------------------------
    def files(self, source: str, include_retired: bool = False) -> list[FileRecord]:
        """The files followed for a source; retired ones (truncated, replaced) only when asked."""
        rows = self._db.execute(
            "SELECT file_id, source, path, dev, ino, compressed, fingerprint, offset, finished, retired "
            "FROM files WHERE source = ? AND (retired = 0 OR ?)",
            (source, include_retired),
        ).fetchall()
        return [FileRecord(*r[:5], bool(r[5]), r[6], r[7], bool(r[8]), bool(r[9])) for r in rows]

    def save_file(self, record: FileRecord, db: sqlite3.Connection | None = None) -> None:
        (db or self._db).execute(
            "INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(file_id) DO UPDATE SET "
            "path=excluded.path, dev=excluded.dev, ino=excluded.ino, fingerprint=excluded.fingerprint, "
            "offset=excluded.offset, finished=excluded.finished, retired=excluded.retired, "
            "updated_at=excluded.updated_at",
            (
                record.file_id, record.source, record.path, record.dev, record.ino,
                int(record.compressed), record.fingerprint, record.offset, int(record.finished),
                int(record.retired), time.time(),
            ),
        )

    # -- segments ------------------------------------------------------------------------------
    def commit_segment(
        self,
        record: FileRecord,
        segment_id: str,
        start: int,
        end: int,
        lines: int,
        staged: dict[str, tuple[int, str]],
        quarantined: Sequence[QuarantinedLine],
        blank_lines: int,
    ) -> int:
        """`staged` maps each event date to (rows, staged Parquet path) of this segment."""
        """Record a landed segment and move the file's offset, atomically. Returns its seq."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO segments (segment_id, file_id, source, path, start_offset, end_offset, lines, "
                "events, quarantined, blank_lines, landed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    segment_id, record.file_id, record.source, record.path, start, end, lines,
                    sum(rows for rows, _ in staged.values()), len(quarantined), blank_lines, time.time(),
                ),
            )
            seq = cur.lastrowid
            for event_date, (rows, staged_path) in staged.items():
                db.execute(
                    "INSERT INTO segment_dates VALUES (?,?,?,?,?)",
                    (seq, event_date, record.source, rows, staged_path),
                )
                db.execute(
                    "INSERT INTO partitions (source, event_date, staged_seq) VALUES (?,?,?) "
                    "ON CONFLICT(source, event_date) DO UPDATE SET staged_seq = excluded.staged_seq",
                    (record.source, event_date, seq),
                )
            db.executemany(
                "INSERT OR IGNORE INTO quarantine VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (record.file_id, q.source_offset, record.source, q.source_file, q.line_bytes,
                     q.reason, q.excerpt, q.line, seq)
                    for q in quarantined
                ],
            )
            record.offset = end
            self.save_file(record, db)
        return seq

    def segments_for(self, source: str, event_date: str, after_seq: int = 0) -> list[tuple[int, str]]:
        """(seq, staged_path) of the segments holding rows of one partition, oldest first."""
        return self._db.execute(
            "SELECT seq, staged_path FROM segment_dates "
            "WHERE source = ? AND event_date = ? AND seq > ? ORDER BY seq",
            (source, event_date, after_seq),
        ).fetchall()

    # -- partitions ----------------------------------------------------------------------------
    def pending_partitions(self) -> list[PendingPartition]:
        rows = self._db.execute(
            "SELECT source, event_date, staged_seq, built_seq FROM partitions "
            "WHERE built_seq IS NULL OR built_seq < staged_seq ORDER BY event_date, source"
        ).fetchall()
        return [PendingPartition(*r) for r in rows]

    def partitions_up_to(self, event_date: str) -> list[PendingPartition]:
        """Every partition with landed rows dated up to `event_date`, built or not."""
        rows = self._db.execute(
            "SELECT source, event_date, staged_seq, built_seq FROM partitions WHERE event_date <= ? "
            "ORDER BY event_date, source",
            (event_date,),
        ).fetchall()
        return [PendingPartition(*r) for r in rows]

    def partition_built(self, source: str, event_date: str, built_seq: int, rows: int) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE partitions SET built_seq = ?, rows = ? WHERE source = ? AND event_date = ?",
                (built_seq, rows, source, event_date),
            )

    def built_seq(self, source: str, event_date: str) -> int | None:
        row = self._db.execute(
            "SELECT built_seq FROM partitions WHERE source = ? AND event_date = ?", (source, event_date)
        ).fetchone()
        return row[0] if row else None

    # -- reporting -----------------------------------------------------------------------------
    def counts_by_source(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}

        def bucket(source: str) -> dict[str, int]:
            return counts.setdefault(
                source, {"raw_events": 0, "quarantined_lines": 0, "bytes_read": 0, "blank_lines": 0}
            )

        for source, rows in self._db.execute(
            "SELECT source, COALESCE(SUM(rows), 0) FROM partitions GROUP BY source"
        ):
            bucket(source)["raw_events"] = rows
        for source, n in self._db.execute("SELECT source, COUNT(*) FROM quarantine GROUP BY source"):
            bucket(source)["quarantined_lines"] = n
        for source, read, blank in self._db.execute(
            "SELECT source, SUM(end_offset - start_offset), SUM(blank_lines) FROM segments GROUP BY source"
        ):
            bucket(source)["bytes_read"] = read
            bucket(source)["blank_lines"] = blank
        return counts

    def quarantine_reasons(self, source: str | None = None) -> dict[str, int]:
        """Quarantined lines per reason kind (the reason up to its first colon)."""
        query = "SELECT reason FROM quarantine" + (" WHERE source = ?" if source else "")
        kinds: dict[str, int] = {}
        for (reason,) in self._db.execute(query, (source,) if source else ()):
            kind = reason.split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        return dict(sorted(kinds.items()))

    def quarantined(self, source: str | None = None, limit: int = 100) -> list[dict]:
        query = (
            "SELECT source, source_file, source_offset, line_bytes, reason, excerpt FROM quarantine"
            + (" WHERE source = ?" if source else "")
            + " ORDER BY seq, source_offset LIMIT ?"
        )
        args = (source, limit) if source else (limit,)
        keys = ("source", "source_file", "source_offset", "line_bytes", "reason", "excerpt")
        return [dict(zip(keys, row)) for row in self._db.execute(query, args)]


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """An advisory lock across processes (the sensor, runs, the CLI); released even on a crash."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
