"""An embedded vector store on SQLite with the sqlite-vec extension, with ACLs enforced inside the query.

Each chunk row holds its text, JSON metadata and float32 embedding; each ACL entry is a row of a grants
table (`user:ann`, `group:sales`, `tenant:acme`, `everyone`). A search is one SQL statement whose WHERE
clause keeps only the chunks the requester may read (through the grants table's primary-key index)
before `vec_distance_cosine` ranks them and LIMIT takes k: a forbidden chunk is never ranked, so it
can neither be returned nor push a permitted chunk out of the top k. The scan over the permitted
chunks is exact (sqlite-vec's SIMD distance, no approximate index): fine up to some hundred thousand
chunks per reader.

Python's own sqlite3 is used when it can load extensions; builds without that (pyenv's default, some
distributions) use `apsw`, which bundles an SQLite that can.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from vallum.rag.acl import ACL, EVERYONE, Requester
from vallum.rag.chunk import Chunk
from vallum.rag.embed import Vectors, normalise
from vallum.rag.errors import AclError, StoreError

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS vallum_rag_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS vallum_rag_chunks (
        rowid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        text TEXT NOT NULL,
        metadata TEXT NOT NULL,
        embedding BLOB NOT NULL,
        tenant_scoped INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS vallum_rag_grants (
        principal TEXT NOT NULL,
        chunk INTEGER NOT NULL,
        PRIMARY KEY (principal, chunk)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS vallum_rag_grants_chunk ON vallum_rag_grants (chunk)",
)
_SEARCH = """
SELECT c.id, c.text, c.metadata, vec_distance_cosine(c.embedding, :query) AS distance
FROM vallum_rag_chunks AS c
WHERE c.rowid IN (
        SELECT g.chunk FROM vallum_rag_grants AS g
        WHERE g.principal IN (SELECT value FROM json_each(:principals))
    )
  AND (c.tenant_scoped = 0 OR c.rowid IN (
        SELECT g.chunk FROM vallum_rag_grants AS g WHERE g.principal = :tenant
    ))
ORDER BY distance
LIMIT :k
"""
ALL_READERS = "everyone"


def grants(acl: ACL) -> tuple[list[str], bool]:
    """The principals an ACL grants, and whether it is scoped to tenants."""
    principals = {ALL_READERS if u == EVERYONE else f"user:{u}" for u in acl.users}
    principals |= {ALL_READERS if g == EVERYONE else f"group:{g}" for g in acl.groups}
    scoped = bool(acl.tenants) and EVERYONE not in acl.tenants
    if scoped:
        principals |= {f"tenant:{t}" for t in acl.tenants}
    return sorted(principals), scoped


def principals_of(requester: Requester) -> list[str]:
    out = [ALL_READERS, *(f"group:{g}" for g in sorted(requester.groups))]
    if requester.user is not None:
        out.append(f"user:{requester.user}")
    return out


class SqliteVecStore:
    """Chunks, embeddings and ACLs in one SQLite file (":memory:" for a throw-away store)."""

    def __init__(self, path: str | Path = ":memory:", *, dimensions: int | None = None) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = _connect(self.path)
        with self._transaction():
            for statement in SCHEMA:
                self._db.execute(statement)
            stored = self._meta("dimensions")
            if stored is None and dimensions is not None:
                self._db.execute(
                    "INSERT INTO vallum_rag_meta (key, value) VALUES ('dimensions', ?)", (str(dimensions),)
                )
            elif stored is not None and dimensions is not None and int(stored) != dimensions:
                raise StoreError(
                    f"{self.path} holds {stored}-dimensional embeddings; this embedder makes {dimensions}"
                )
        found = self._meta("dimensions")
        self.dimensions: int | None = int(found) if found is not None else None

    # ---- writing ----------------------------------------------------------------------------------

    def add(self, chunks: Sequence[Chunk], embeddings: Vectors) -> None:
        """Insert or replace chunks with their embeddings. Every chunk needs a valid `acl` metadata entry."""
        vectors = normalise(embeddings)
        if len(chunks) != len(vectors):
            raise StoreError(f"{len(chunks)} chunks but {len(vectors)} embeddings")
        if not chunks:
            return
        width = vectors.shape[1]
        rows: list[tuple[Chunk, bytes, list[str], bool]] = []
        for chunk, vector in zip(chunks, vectors, strict=True):
            try:
                principals, scoped = grants(chunk.acl)
            except AclError as exc:
                raise StoreError(f"chunk {chunk.id!r}: {exc}") from None
            rows.append((chunk, vector.astype(np.float32).tobytes(), principals, scoped))
        with self._transaction():
            if self.dimensions is None:
                self._db.execute(
                    "INSERT INTO vallum_rag_meta (key, value) VALUES ('dimensions', ?)", (str(width),)
                )
                self.dimensions = width
            elif width != self.dimensions:
                raise StoreError(f"embeddings have {width} dimensions; this store holds {self.dimensions}")
            for chunk, blob, principals, scoped in rows:
                self._delete(chunk.id)
                metadata = json.dumps(dict(chunk.metadata), ensure_ascii=False, default=str)
                self._db.execute(
                    "INSERT INTO vallum_rag_chunks (id, text, metadata, embedding, tenant_scoped) VALUES (?, ?, ?, ?, ?)",
                    (chunk.id, chunk.text, metadata, blob, int(scoped)),
                )
                rowid = self._scalar("SELECT rowid FROM vallum_rag_chunks WHERE id = ?", (chunk.id,))
                for principal in principals:
                    self._db.execute(
                        "INSERT INTO vallum_rag_grants (principal, chunk) VALUES (?, ?)", (principal, rowid)
                    )

    def delete(self, ids: Sequence[str]) -> None:
        with self._transaction():
            for chunk_id in ids:
                self._delete(chunk_id)

    def _delete(self, chunk_id: str) -> None:
        rowid = self._scalar("SELECT rowid FROM vallum_rag_chunks WHERE id = ?", (chunk_id,))
        if rowid is not None:
            self._db.execute("DELETE FROM vallum_rag_grants WHERE chunk = ?", (rowid,))
            self._db.execute("DELETE FROM vallum_rag_chunks WHERE rowid = ?", (rowid,))

    # ---- reading ----------------------------------------------------------------------------------

    def search(self, embedding: Vectors, requester: Requester, k: int = 4) -> list[Chunk]:
        """The k chunks nearest to `embedding` among those `requester` may read, nearest first."""
        if k <= 0:
            return []
        vector = normalise(embedding)
        if vector.shape[0] != 1:
            raise StoreError("search takes one query embedding")
        if self.dimensions is not None and vector.shape[1] != self.dimensions:
            raise StoreError(
                f"the query has {vector.shape[1]} dimensions; this store holds {self.dimensions}"
            )
        params = {
            "query": vector[0].tobytes(),
            "principals": json.dumps(principals_of(requester)),
            "tenant": f"tenant:{requester.tenant}" if requester.tenant is not None else None,
            "k": int(k),
        }
        with self._lock:
            rows = list(self._db.execute(_SEARCH, params))
        return [
            Chunk(chunk_id, text, _metadata(metadata), 1.0 - float(distance))
            for chunk_id, text, metadata, distance in rows
        ]

    def get(self, chunk_id: str) -> Chunk | None:
        with self._lock:
            rows = list(
                self._db.execute("SELECT id, text, metadata FROM vallum_rag_chunks WHERE id = ?", (chunk_id,))
            )
        return Chunk(rows[0][0], rows[0][1], _metadata(rows[0][2])) if rows else None

    def __len__(self) -> int:
        return int(self._scalar("SELECT count(*) FROM vallum_rag_chunks", ()) or 0)

    # ---- plumbing ---------------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        value = self._scalar("SELECT value FROM vallum_rag_meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    def _scalar(self, sql: str, params: Sequence[Any]) -> Any:
        with self._lock:
            rows = list(self._db.execute(sql, tuple(params)))
        return rows[0][0] if rows else None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteVecStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _metadata(raw: str) -> Mapping[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def _connect(path: str) -> Any:
    """An SQLite connection with sqlite-vec loaded: stdlib sqlite3 if it can load extensions, else apsw."""
    try:
        sqlite_vec = importlib.import_module("sqlite_vec")
    except ImportError:
        raise StoreError("SqliteVecStore needs sqlite-vec: pip install 'vallum[rag]'") from None
    extension = sqlite_vec.loadable_path()
    connection: Any = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    if hasattr(connection, "enable_load_extension"):
        try:
            connection.enable_load_extension(True)
            connection.load_extension(extension)
            connection.enable_load_extension(False)
        except sqlite3.Error:
            connection.close()
        else:
            _configure(connection, path)
            return connection
    else:
        connection.close()
    try:
        apsw = importlib.import_module("apsw")
    except ImportError:
        raise StoreError(
            "this Python's sqlite3 cannot load extensions, so sqlite-vec needs apsw: pip install apsw"
        ) from None
    try:
        connection = apsw.Connection(path)
        connection.enable_load_extension(True)
        connection.load_extension(extension)
        connection.enable_load_extension(False)
    except apsw.Error as exc:
        raise StoreError(f"cannot open {path} with sqlite-vec: {exc}") from exc
    _configure(connection, path)
    return connection


def _configure(connection: Any, path: str) -> None:
    if path != ":memory:":
        list(connection.execute("PRAGMA journal_mode=WAL"))
    list(connection.execute("PRAGMA busy_timeout=5000"))
