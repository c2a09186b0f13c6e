"""The event store: batched writes, filtered reads, dashboard counts, retention and erasure, key rotation.

SQLite (one file, WAL) by default; PostgreSQL when several gateway replicas share one store. Every filter
value travels as a bound parameter, never as SQL text. The schema must exist: `database.upgrade(url)` first.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, bindparam, delete, func, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from vallum.errors import EventStoreError
from vallum.monitor.database import make_engine
from vallum.monitor.encryption import EventKeys, Sealed
from vallum.monitor.rows import TEXT_MODES, TextMode, json_fragment, to_event, to_row
from vallum.monitor.schema import events

log = logging.getLogger(__name__)

CountField = Literal["action", "category", "code", "route", "model", "api", "tenant", "user", "api_key", "ip"]
_COUNT_COLUMNS = {
    "action": events.c.action,
    "code": events.c.code,
    "route": events.c.route,
    "model": events.c.model,
    "api": events.c.api,
    "tenant": events.c.tenant,
    "user": events.c.user_id,
    "api_key": events.c.api_key,
    "ip": events.c.ip,
}


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a query, count or purge applies to; unset fields do not filter.

    `since` is inclusive and `until` exclusive (epoch seconds). `action` takes one action or several.
    `text` finds a case-insensitive substring in stored text, and only in redacted text: encrypted text
    stays opaque to the database.
    """

    since: float | None = None
    until: float | None = None
    tenant: str | None = None
    user: str | None = None
    api_key: str | None = None
    ip: str | None = None
    action: str | Sequence[str] | None = None
    category: str | None = None
    code: str | None = None
    text: str | None = None

    def clause(self) -> ColumnElement[bool]:
        c = events.c
        clauses: list[ColumnElement[bool]] = []
        if self.since is not None:
            clauses.append(c.time >= self.since)
        if self.until is not None:
            clauses.append(c.time < self.until)
        exact = (
            (c.tenant, self.tenant),
            (c.user_id, self.user),
            (c.api_key, self.api_key),
            (c.ip, self.ip),
            (c.code, self.code),
        )
        for column, value in exact:
            if value is not None:
                clauses.append(column == value)
        if isinstance(self.action, str):
            clauses.append(c.action == self.action)
        elif self.action is not None:
            clauses.append(c.action.in_(list(self.action)))
        if self.category is not None:
            clauses.append(c.categories.contains(f",{self.category},", autoescape=True))
        if self.text is not None:
            clauses.append(c.text_mode == "redacted")
            clauses.append(c.text.icontains(json_fragment(self.text), autoescape=True))
        return and_(true(), *clauses)


class EventStore:
    """Events in the database at `url`; text stored per `text_mode` (none, redacted or encrypted).

    Keys for encrypted text come from `keys` or else VALLUM_EVENT_KEYS: required for text_mode
    "encrypted" (a missing or invalid key fails here, at start), and used when present to decrypt on request.
    """

    def __init__(self, url: str, *, text_mode: TextMode = "none", keys: EventKeys | None = None) -> None:
        if text_mode not in TEXT_MODES:
            raise EventStoreError(f"event text mode {text_mode!r} is not one of {', '.join(TEXT_MODES)}")
        self.url = url
        self.text_mode = text_mode
        self.keys = keys if keys is not None else EventKeys.from_env(required=text_mode == "encrypted")
        self.engine = make_engine(url)
        # Insert-or-ignore makes a retried batch harmless when the first try committed but its reply was lost.
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert(events).on_conflict_do_nothing(index_elements=["id"])

    def write_batch(self, batch: Sequence[Mapping[str, Any]]) -> None:
        """Write these events in one transaction; raises SQLAlchemyError when the database fails."""
        if not batch:
            return
        rows = [to_row(e, self.text_mode, self.keys) for e in batch]
        with self.engine.begin() as connection:
            connection.execute(self._insert, rows)

    def query(
        self, where: EventFilter | None = None, *, limit: int = 100, offset: int = 0, decrypt: bool = False
    ) -> list[dict[str, Any]]:
        """Matching events, newest first; encrypted text is decrypted only when `decrypt` is set."""
        if limit < 0 or offset < 0:
            raise EventStoreError("limit and offset must not be negative")
        if decrypt:
            self._require_keys("decrypt stored text")
        statement = (
            select(events)
            .where((where or EventFilter()).clause())
            .order_by(events.c.time.desc(), events.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
        return [to_event(row, self.keys, decrypt) for row in rows]

    def get(self, event_id: str, *, decrypt: bool = False) -> dict[str, Any] | None:
        """One event by id, or None."""
        if decrypt:
            self._require_keys("decrypt stored text")
        with self.engine.connect() as connection:
            row = connection.execute(select(events).where(events.c.id == event_id)).mappings().first()
        return None if row is None else to_event(row, self.keys, decrypt)

    def count(self, where: EventFilter | None = None) -> int:
        statement = select(func.count()).select_from(events).where((where or EventFilter()).clause())
        with self.engine.connect() as connection:
            return int(connection.execute(statement).scalar_one())

    def count_by(self, field: CountField, where: EventFilter | None = None) -> dict[str, int]:
        """Matching events counted by `field`, largest first; an event counts once under each of its
        categories, and events without one count under "" (for category, code, tenant, ...)."""
        clause = (where or EventFilter()).clause()
        column = events.c.categories if field == "category" else _COUNT_COLUMNS[field]
        statement = select(column.label("value"), func.count().label("n")).where(clause).group_by(column)
        with self.engine.connect() as connection:
            grouped = connection.execute(statement).mappings().all()
        counts: Counter[str] = Counter()
        for group in grouped:
            key: str = group["value"] or ""
            if field == "category":
                # Few distinct category sets exist, so splitting the groups here is cheap.
                for category in key.strip(",").split(","):
                    counts[category] += group["n"]
            else:
                counts[key] += group["n"]
        return dict(counts.most_common())

    def purge(
        self,
        older_than: float | None = None,
        tenant: str | None = None,
        user: str | None = None,
        api_key: str | None = None,
        ip: str | None = None,
    ) -> int:
        """Delete events older than `older_than` (epoch seconds) and/or of one identity (right to erasure);
        criteria combine with AND, and at least one is required. Returns the number deleted."""
        if all(v is None for v in (older_than, tenant, user, api_key, ip)):
            raise EventStoreError("purge needs an age or an identity (tenant, user, API key or IP)")
        where = EventFilter(until=older_than, tenant=tenant, user=user, api_key=api_key, ip=ip)
        with self.engine.begin() as connection:
            deleted = connection.execute(delete(events).where(where.clause())).rowcount
        if self.engine.dialect.name == "sqlite":
            self._checkpoint()
        return int(deleted)

    def rotate(self, batch_size: int = 500) -> int:
        """Re-encrypt every row not under the current key with the current key; returns how many."""
        keys = self._require_keys("rotate keys")
        c = events.c
        pending = (
            select(c.id, c.text, c.key_id)
            .where(c.text_mode == "encrypted", c.key_id != keys.current)
            .order_by(c.id)
            .limit(batch_size)
        )
        rewrite = (
            update(events)
            .where(c.id == bindparam("row_id"))
            .values(text=bindparam("blob"), key_id=keys.current)
        )
        rotated = 0
        while True:
            with self.engine.begin() as connection:
                rows = connection.execute(pending).mappings().all()
                if not rows:
                    return rotated
                changes = []
                for row in rows:
                    plain = keys.decrypt(Sealed(row["key_id"], row["text"]), row["id"])
                    changes.append({"row_id": row["id"], "blob": keys.encrypt(plain, row["id"]).blob})
                connection.execute(rewrite, changes)
            rotated += len(rows)

    def close(self) -> None:
        self.engine.dispose()

    def _require_keys(self, purpose: str) -> EventKeys:
        if self.keys is None:
            raise EventStoreError(f"cannot {purpose}: no keys; set VALLUM_EVENT_KEYS=id:<base64 of 32 bytes>")
        return self.keys

    def _checkpoint(self) -> None:
        # Erased rows must also leave the write-ahead log, not only the main file.
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except SQLAlchemyError:
            log.warning(
                "purge: could not checkpoint the SQLite WAL; erased rows stay in it until the next checkpoint"
            )
