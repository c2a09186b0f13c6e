"""Behaviour-risk snapshots: each identity's risk score and features over time, kept in the database.

The analytics worker offers every risk it computes to a `SnapshotRecorder`, which keeps at most one per
identity per `interval_s` (the first of each minute, stamped with the minute's start, so replicas scoring
the same identity write one row between them) and only while the risk is above zero, plus one more when it
falls back to zero; `flush` writes what it kept in one transaction. So the table grows with suspicious
activity, not with traffic. `history` reads one identity's snapshots back; `purge` applies retention and
erasure alongside the events (`vallum events purge`).
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, delete, or_, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from vallum.errors import EventStoreError
from vallum.monitor.analytics import IdentityKind, Risk, identity_keys
from vallum.monitor.schema import risk_snapshots

log = logging.getLogger(__name__)

INTERVAL_S = 60.0
_REMEMBERED = 100_000  # identities whose last snapshot is remembered; the oldest are forgotten first


@dataclass(frozen=True, slots=True)
class Snapshot:
    identity: str
    time: float  # the start of the interval it stands for (epoch seconds)
    score: float
    level: str
    features: dict[str, float]
    contributions: dict[str, float]

    @classmethod
    def of(cls, risk: Risk, time: float) -> Snapshot:
        return cls(risk.identity, time, risk.score, risk.level, dict(risk.features), dict(risk.contributions))

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "time": self.time,
            "score": self.score,
            "level": self.level,
            "features": self.features,
            "contributions": self.contributions,
        }


class SnapshotRecorder:
    def __init__(self, engine: Engine, interval_s: float = INTERVAL_S, remembered: int = _REMEMBERED) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.remembered = remembered
        self.written = 0
        self.failed = 0  # snapshots lost to database failures (logged)
        self._last: OrderedDict[str, tuple[float, float]] = OrderedDict()  # identity -> (interval, score)
        self._pending: list[Snapshot] = []

    def offer(self, risk: Risk, now: float) -> None:
        """Keep this risk as a snapshot if the identity has none for this interval yet and is worth one."""
        interval = math.floor(now / self.interval_s) * self.interval_s
        last = self._last.get(risk.identity)
        if last is not None and last[0] >= interval:
            return
        if risk.score <= 0 and (last is None or last[1] <= 0):
            return  # quiet, and already recorded as quiet (or never anything else)
        self._pending.append(Snapshot.of(risk, interval))
        self._last[risk.identity] = (interval, risk.score)
        self._last.move_to_end(risk.identity)
        if len(self._last) > self.remembered:
            self._last.popitem(last=False)

    def flush(self) -> None:
        """Write the snapshots kept so far; a database failure loses them (logged), never raises."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            write(self.engine, batch)
        except SQLAlchemyError as exc:
            self.failed += len(batch)
            log.warning("risk snapshots: could not write %d (%s)", len(batch), str(exc).splitlines()[0])
            return
        self.written += len(batch)


def write(engine: Engine, snapshots: Sequence[Snapshot]) -> None:
    """Insert these snapshots in one transaction; one already there for an identity and time is kept."""
    if not snapshots:
        return
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(risk_snapshots).on_conflict_do_nothing(index_elements=["identity", "time"])
    rows = [
        {
            "identity": s.identity,
            "time": s.time,
            "score": s.score,
            "level": s.level,
            "features": json.dumps(s.features, separators=(",", ":")),
            "contributions": json.dumps(s.contributions, separators=(",", ":")),
        }
        for s in snapshots
    ]
    with engine.begin() as connection:
        connection.execute(statement, rows)


def history(
    engine: Engine,
    identity: str,
    since: float | None = None,
    until: float | None = None,
    limit: int = 1440,
) -> list[Snapshot]:
    """One identity's snapshots from `since` (inclusive) to `until` (exclusive), oldest first; the latest
    `limit` of them when there are more."""
    if limit < 1:
        raise EventStoreError("limit must be at least 1")
    c = risk_snapshots.c
    clauses: list[ColumnElement[bool]] = [c.identity == identity]
    if since is not None:
        clauses.append(c.time >= since)
    if until is not None:
        clauses.append(c.time < until)
    statement = select(risk_snapshots).where(and_(*clauses)).order_by(c.time.desc()).limit(limit)
    with engine.connect() as connection:
        rows = connection.execute(statement).mappings().all()
    return [
        Snapshot(
            row["identity"],
            row["time"],
            row["score"],
            row["level"],
            json.loads(row["features"]),
            json.loads(row["contributions"]),
        )
        for row in reversed(rows)
    ]


def purge(
    engine: Engine,
    older_than: float | None = None,
    tenant: str | None = None,
    user: str | None = None,
    api_key: str | None = None,
    ip: str | None = None,
) -> int:
    """Delete snapshots older than `older_than` and/or of the identities the event criteria name: the user
    (within the tenant when one is given), else the tenant and its users, the API key, the address.
    Returns the number deleted."""
    if all(v is None for v in (older_than, tenant, user, api_key, ip)):
        raise EventStoreError("purge needs an age or an identity (tenant, user, API key or IP)")
    clauses: list[ColumnElement[bool]] = []
    if older_than is not None:
        clauses.append(risk_snapshots.c.time < older_than)
    named = _identities(tenant, user, api_key, ip)
    if named is not None:
        clauses.append(named)
    with engine.begin() as connection:
        return int(connection.execute(delete(risk_snapshots).where(and_(true(), *clauses))).rowcount)


def _identities(
    tenant: str | None, user: str | None, api_key: str | None, ip: str | None
) -> ColumnElement[bool] | None:
    column = risk_snapshots.c.identity
    # The keys exactly as analytics names them (long names become digests there), then what a key alone
    # cannot say: a user without a tenant may be under any tenant, and a tenant's users go with it.
    identity = {"tenant": tenant, "user": user, "api_key": api_key, "ip": ip}
    kinds: tuple[IdentityKind, ...] = ("user", "key", "ip") if user is not None else ("tenant", "key", "ip")
    keys = identity_keys(identity, kinds)
    if not keys:
        return None
    wanted: list[ColumnElement[bool]] = [column.in_(keys)]
    if user is not None and tenant is None:
        (user_key,) = identity_keys({"user": user}, ("user",))
        wanted.append(column.like("user:%/" + _escape(user_key.removeprefix("user:")), escape="\\"))
    if user is None and tenant is not None:
        (tenant_key,) = identity_keys({"tenant": tenant}, ("tenant",))
        wanted.append(column.like("user:" + _escape(tenant_key.removeprefix("tenant:")) + "/%", escape="\\"))
    return or_(*wanted)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
