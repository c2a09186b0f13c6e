"""The audit log as a SQL table (SQLAlchemy Core): SQLite by default, PostgreSQL for several replicas.

Each append is one transaction that first takes the chain's write lock, then reads the tail and inserts
the batch, so writers in many processes still form one chain: PostgreSQL takes a transaction-level
advisory lock named after the table, SQLite starts the transaction with BEGIN IMMEDIATE (its database
write lock). `seq` is the primary key besides, so a writer that skipped the lock would fail, not fork.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from vallum.audit.backend import Seal, StoredEntry
from vallum.audit.entry import FIELDS, GENESIS, AuditEntry, Draft, Link, canonical_json
from vallum.audit.errors import AuditError

DEFAULT_TABLE = "vallum_audit"
_READING = "vallum_audit_reading"


def audit_table(metadata: MetaData, name: str = DEFAULT_TABLE, schema: str | None = None) -> Table:
    return Table(
        name,
        metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("time", Double, nullable=False),
        Column("actor", Text, nullable=False),
        Column("action", String(64), nullable=False),
        Column("target", Text, nullable=False),
        # The canonical JSON text, not a JSON column: the database must not re-encode what was hashed.
        Column("detail", Text, nullable=False),
        Column("prev", String(64), nullable=False),
        Column("hash", String(64), nullable=False, unique=True),
        Column("sig", Text, nullable=True),
        schema=schema,
    )


def audit_engine(url: str) -> Engine:
    """An engine for `url`; plain postgresql:// URLs get psycopg 3, SQLite gets locking fit for a chain."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise AuditError(f"not a database URL: {url!r} ({exc})") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    engine = create_engine(parsed, connect_args={"timeout": 30.0})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling would issue a deferred BEGIN; we issue ours (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock before the tail is read, so two processes cannot both read seq N;
    # readers take a plain (deferred) snapshot and leave writers alone.
    reading = connection.get_execution_options().get(_READING, False)
    connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


class SqlAuditTable:
    def __init__(
        self, url: str, *, table: str = DEFAULT_TABLE, schema: str | None = None, create: bool = True
    ) -> None:
        """`create=False` reads an existing table only (verify, export) and fails if it is not there."""
        self.engine = audit_engine(url)
        self._url = self.engine.url.render_as_string(hide_password=True)
        self.table = audit_table(MetaData(), table, schema)
        qualified = f"{schema}.{table}" if schema else table
        self._lock_id = int.from_bytes(
            hashlib.sha256(f"vallum.audit:{qualified}".encode()).digest()[:8], "big", signed=True
        )
        try:
            if create:
                with self.engine.begin() as connection:
                    self._lock(connection)
                    self.table.create(connection, checkfirst=True)
            else:
                self._require_table(table, schema)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise AuditError(f"cannot open audit table in {self._url}: {exc}") from exc

    @property
    def name(self) -> str:
        return f"{self._url} table {self.table.fullname}"

    def append(self, drafts: Sequence[Draft], seal: Seal) -> list[AuditEntry]:
        try:
            with self.engine.begin() as connection:
                self._lock(connection)
                last = connection.execute(
                    select(self.table.c.seq, self.table.c.hash).order_by(self.table.c.seq.desc()).limit(1)
                ).first()
                tail = Link(last.seq, last.hash) if last else GENESIS
                entries = []
                for draft in drafts:
                    entry = seal(draft, tail)
                    entries.append(entry)
                    tail = entry.link
                if entries:
                    connection.execute(insert(self.table), [_row(entry) for entry in entries])
                return entries
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot append to the audit log in {self.name}: {exc}") from exc

    def read(self) -> Iterator[StoredEntry]:
        try:
            with self.engine.connect().execution_options(**{_READING: True}) as connection:
                rows = connection.execution_options(yield_per=1000).execute(
                    select(self.table).order_by(self.table.c.seq)
                )
                for number, row in enumerate(rows, start=1):
                    yield _stored(f"row {number}", row._mapping)
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log in {self.name}: {exc}") from exc

    def latest(self, limit: int) -> list[StoredEntry]:
        newest_first = select(self.table).order_by(self.table.c.seq.desc()).limit(max(limit, 0))
        try:
            with self.engine.connect().execution_options(**{_READING: True}) as connection:
                rows = connection.execute(newest_first).all()
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log in {self.name}: {exc}") from exc
        return [_stored(f"seq {row.seq}", row._mapping) for row in reversed(rows)]

    def close(self) -> None:
        self.engine.dispose()

    def _require_table(self, table: str, schema: str | None) -> None:
        url = self.engine.url
        on_disk = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        # Connecting would create an empty database where the operator mistyped a path.
        if on_disk and not Path(str(url.database)).is_file():
            raise AuditError(f"cannot read audit database {url.database}: no such file")
        with self.engine.connect().execution_options(**{_READING: True}) as connection:
            if not inspect(connection).has_table(table, schema=schema):
                raise AuditError(f"{self.name}: there is no audit table {table!r} in this database")

    def _lock(self, connection: Connection) -> None:
        # SQLite already holds its write lock (BEGIN IMMEDIATE); PostgreSQL takes one for this chain only.
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(self._lock_id)))


def _row(entry: AuditEntry) -> dict[str, Any]:
    row = entry.as_dict()
    row["detail"] = canonical_json(entry.detail).decode()
    row.setdefault("sig", None)
    return row


def _stored(where: str, row: Any) -> StoredEntry:
    fields = _fields(row)
    return StoredEntry(where, fields, canonical_json(fields).decode())


def _fields(row: Any) -> dict[str, Any]:
    fields = {name: row[name] for name in FIELDS}
    # Detail that is not JSON stays the stored text: verification reports the entry as malformed.
    with contextlib.suppress(TypeError, ValueError):
        fields["detail"] = json.loads(row["detail"])
    if row["sig"] is not None:
        fields["sig"] = row["sig"]
    return fields
