"""Cool-downs and blocks on identities, set by an admin or by behaviour analytics, checked on every request.

Checks read memory only. With a database the restrictions are also written there, and `reload` (run by the
gateway every `sync_interval_s`) takes in what other replicas set or lifted, so all of them enforce the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, or_, select
from sqlalchemy.exc import SQLAlchemyError

from vallum.admin.schema import identity_restrictions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Restriction:
    identity: str  # an identity key such as "user:acme/alice", "key:team-a", "tenant:acme", "ip:10.0.0.1"
    kind: str  # "block" (until lifted) or "cooldown" (until `until`)
    until: float | None
    reason: str
    by: str  # an admin's token id, or "analytics"

    def to_dict(self) -> dict[str, object]:
        return {
            "identity": self.identity,
            "kind": self.kind,
            "until": self.until,
            "reason": self.reason,
            "by": self.by,
        }


class IdentityControls:
    def __init__(self, clock: Callable[[], float] = time.time, engine: Engine | None = None) -> None:
        self._clock = clock
        self._engine = engine
        self._active: dict[str, Restriction] = {}

    def block(self, identity: str, reason: str, by: str) -> Restriction:
        restriction = Restriction(identity, "block", None, reason, by)
        self._set(restriction)
        return restriction

    def cooldown(self, identity: str, seconds: float, reason: str, by: str) -> Restriction:
        current = self._active.get(identity)
        if current is not None and current.kind == "block":
            return current  # a block is stronger than any cool-down
        restriction = Restriction(identity, "cooldown", self._clock() + seconds, reason, by)
        self._set(restriction)
        return restriction

    def lift(self, identity: str) -> bool:
        lifted = self._active.pop(identity, None) is not None
        self._store(
            lambda db: db.execute(
                delete(identity_restrictions).where(identity_restrictions.c.identity == identity)
            )
        )
        return lifted

    def reload(self) -> None:
        """Take the restrictions in force from the database (what every replica set); raises when it is down."""
        if self._engine is None:
            return
        table = identity_restrictions
        query = select(table).where(or_(table.c.until.is_(None), table.c.until > self._clock()))
        with self._engine.connect() as db:
            rows = db.execute(query).all()
        self._active = {
            row.identity: Restriction(row.identity, row.kind, row.until, row.reason, row.set_by)
            for row in rows
        }

    def check(self, identities: Iterable[str]) -> Restriction | None:
        """The restriction that applies to a request made as any of `identities`, if one does."""
        now = self._clock()
        for identity in identities:
            restriction = self._active.get(identity)
            if restriction is None:
                continue
            if restriction.until is not None and restriction.until <= now:
                self._active.pop(identity, None)  # reload (another thread) may have swapped the dict
                continue
            return restriction
        return None

    def _set(self, restriction: Restriction) -> None:
        self._active[restriction.identity] = restriction
        table = identity_restrictions

        def write(db: Connection) -> None:
            db.execute(delete(table).where(table.c.identity == restriction.identity))
            db.execute(
                insert(table).values(
                    identity=restriction.identity,
                    kind=restriction.kind,
                    until=restriction.until,
                    reason=restriction.reason,
                    set_by=restriction.by,
                )
            )

        self._store(write)

    def _store(self, change: Callable[[Connection], object]) -> None:
        if self._engine is None:
            return
        try:
            with self._engine.begin() as db:
                change(db)
        except SQLAlchemyError as exc:  # the database is down: this replica enforces it until its next sync
            log.error("could not store an identity restriction (it holds here until the next sync): %s", exc)

    def active(self) -> list[Restriction]:
        now = self._clock()
        return [r for r in self._active.values() if r.until is None or r.until > now]
