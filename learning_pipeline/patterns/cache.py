"""Extraction results cached in SQLite, keyed by (event_id, prompt_version, model).

`model` is the configured LLM model name, or `"deterministic"` for the deterministic extractor, so a
new model or a new `PROMPT_VERSION` misses the cache and extracts again, while reruns and backfills of
the same partition cost no LLM call. What gets cached is decided by `extract.py` (see there).

Several processes (Dagster's multiprocess executor) may share one file: the database runs in WAL
mode (readers never block the writer), every write is one short transaction, and a busy database is
waited on (`busy_timeout`) rather than failed. Within a process one connection is shared under a
lock; it is reopened after a fork and not pickled.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from learning_pipeline.patterns.schema import Pattern

_SCHEMA = """
CREATE TABLE IF NOT EXISTS extractions (
    event_id       TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    model          TEXT NOT NULL,
    pattern_json   TEXT NOT NULL,
    path           TEXT NOT NULL,
    error          TEXT,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (event_id, prompt_version, model)
) WITHOUT ROWID
"""
_CHUNK = 500  # well under SQLite's host-parameter limit


@dataclass(frozen=True)
class CacheEntry:
    event_id: str
    prompt_version: str
    model: str
    pattern: Pattern
    path: str
    error: str | None
    created_at: str


class ExtractionCache:
    def __init__(self, path: str | os.PathLike[str], busy_timeout_seconds: float = 60.0):
        self.path = Path(path)
        self.busy_timeout_seconds = busy_timeout_seconds
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"ExtractionCache({str(self.path)!r})"

    def __getstate__(self) -> dict[str, object]:
        return {"path": self.path, "busy_timeout_seconds": self.busy_timeout_seconds}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["path"], state["busy_timeout_seconds"])  # type: ignore[misc, arg-type]

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_seconds, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_seconds * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(_SCHEMA)
        self._conn, self._pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def get_many(self, event_ids: Iterable[str], prompt_version: str, model: str) -> dict[str, CacheEntry]:
        """The cached entries among `event_ids` for this prompt version and model, by event id."""
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, CacheEntry] = {}
        with self._lock:
            conn = self._connect()
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                rows = conn.execute(
                    "SELECT event_id, pattern_json, path, error, created_at FROM extractions "
                    f"WHERE prompt_version = ? AND model = ? AND event_id IN ({','.join('?' * len(chunk))})",
                    [prompt_version, model, *chunk],
                ).fetchall()
                for event_id, pattern_json, path, error, created_at in rows:
                    found[event_id] = CacheEntry(
                        event_id=event_id,
                        prompt_version=prompt_version,
                        model=model,
                        pattern=Pattern.model_validate_json(pattern_json),
                        path=path,
                        error=error,
                        created_at=created_at,
                    )
        return found

    def put_many(self, entries: Iterable[CacheEntry | tuple[str, str, str, Pattern, str, str | None]]) -> int:
        """Insert or replace entries `(event_id, prompt_version, model, pattern, path, error)`, atomically."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        rows = []
        for entry in entries:
            if isinstance(entry, CacheEntry):
                event_id, prompt_version, model, pattern, path, error = (
                    entry.event_id,
                    entry.prompt_version,
                    entry.model,
                    entry.pattern,
                    entry.path,
                    entry.error,
                )
            else:
                event_id, prompt_version, model, pattern, path, error = entry
            rows.append((event_id, prompt_version, model, pattern.to_json(), path, error, now))
        if not rows:
            return 0
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO extractions "
                    "(event_id, prompt_version, model, pattern_json, path, error, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return len(rows)

    def count(self) -> int:
        with self._lock:
            return self._connect().execute("SELECT count(*) FROM extractions").fetchone()[0]
