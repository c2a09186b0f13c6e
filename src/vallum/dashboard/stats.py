"""Aggregates for the overview and identity pages, computed in SQL on the event store's `events` table.

Every value travels as a bound parameter. Work that would need JSON functions (which differ between SQLite
and PostgreSQL) is done in Python over a bounded sample instead.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, Integer, and_, cast, func, select

from vallum.monitor.schema import events
from vallum.monitor.store import EventFilter

ACTIONS = ("allow", "flag", "redact", "block")
PERCENTILES = (0.5, 0.95, 0.99)
DETECTOR_SAMPLE = 10_000


@dataclass(frozen=True, slots=True)
class Traffic:
    starts: tuple[float, ...]  # each bucket's first second (epoch)
    bucket_s: float
    by_action: dict[str, list[int]]  # action -> count per bucket, for every action in ACTIONS

    @property
    def totals(self) -> list[int]:
        return [sum(counts[i] for counts in self.by_action.values()) for i in range(len(self.starts))]

    @property
    def total(self) -> int:
        return sum(self.totals)

    @property
    def blocked(self) -> int:
        return sum(self.by_action["block"])

    def block_rates(self) -> list[float | None]:
        return [
            None if total == 0 else blocked / total
            for total, blocked in zip(self.totals, self.by_action["block"], strict=True)
        ]


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    values: dict[float, float]  # quantile -> milliseconds, nearest rank


@dataclass(frozen=True, slots=True)
class DetectorCounts:
    counts: list[tuple[str, int]]  # detector -> events it found something in, most first
    sampled: bool  # True when only the newest DETECTOR_SAMPLE events with findings were read


def traffic(engine: Engine, where: EventFilter, start: float, bucket_s: float, buckets: int) -> Traffic:
    """Events per time bucket and action, for `buckets` buckets of `bucket_s` seconds from `start`."""
    position = (events.c.time - start) / bucket_s
    # Both truncate towards zero for the non-negative positions here; PostgreSQL's CAST would round.
    index = func.floor(position) if engine.dialect.name == "postgresql" else cast(position, Integer)
    statement = (
        select(index.label("bucket"), events.c.action, func.count().label("n"))
        .where(where.clause(), events.c.time >= start, events.c.time < start + bucket_s * buckets)
        .group_by("bucket", events.c.action)
    )
    by_action = {action: [0] * buckets for action in ACTIONS}
    with engine.connect() as connection:
        for row in connection.execute(statement).mappings():
            bucket = int(row["bucket"])
            if 0 <= bucket < buckets and row["action"] in by_action:
                by_action[row["action"]][bucket] += row["n"]
    return Traffic(tuple(start + i * bucket_s for i in range(buckets)), bucket_s, by_action)


def latency(engine: Engine, where: EventFilter) -> dict[str, Percentiles]:
    """p50/p95/p99 of guard, upstream and total latency; guard and upstream only over requests that were
    scanned or sent upstream (refused requests would pull them towards zero)."""
    c = events.c
    columns: dict[str, tuple[ColumnElement[float], ColumnElement[bool]]] = {
        "guard": (c.guard_ms, c.guard_ms > 0),
        "upstream": (c.upstream_ms, c.upstream_ms > 0),
        "total": (c.total_ms, c.total_ms.is_not(None)),
    }
    return {
        name: _percentiles(engine, column, and_(where.clause(), present), PERCENTILES)
        for name, (column, present) in columns.items()
    }


def top_detectors(engine: Engine, where: EventFilter, limit: int) -> DetectorCounts:
    """The detectors that found something in the most events (each detector counts once per event)."""
    statement = (
        select(events.c.detail)
        .where(where.clause(), events.c.detail.contains('"findings":[{', autoescape=True))
        .order_by(events.c.time.desc())
        .limit(DETECTOR_SAMPLE + 1)
    )
    counts: Counter[str] = Counter()
    with engine.connect() as connection:
        details: list[str] = list(connection.execute(statement).scalars())
    for raw in details[:DETECTOR_SAMPLE]:
        counts.update(_detectors(raw))
    return DetectorCounts(counts.most_common(limit), len(details) > DETECTOR_SAMPLE)


def _percentiles(
    engine: Engine, column: ColumnElement[float], where: ColumnElement[bool], quantiles: Sequence[float]
) -> Percentiles:
    with engine.connect() as connection:
        count = int(connection.execute(select(func.count()).select_from(events).where(where)).scalar_one())
        values: dict[float, float] = {}
        if count:
            for q in quantiles:
                rank = max(0, math.ceil(q * count) - 1)
                nth = select(column).where(where).order_by(column).limit(1).offset(rank)
                values[q] = float(connection.execute(nth).scalar_one())
    return Percentiles(count, values)


def _detectors(detail: str) -> set[str]:
    try:
        parsed = json.loads(detail)
    except ValueError:
        return set()
    found = set()
    for stage in ("input", "output"):
        for finding in (parsed.get(stage) or {}).get("findings") or ():
            if isinstance(finding, dict) and finding.get("detector"):
                found.add(str(finding["detector"]))
    return found
