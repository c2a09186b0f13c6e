"""Per-identity request rates and token budgets: counted in this process, or in Redis for several replicas.

Both counters share one interface: `admit` before a request (awaited: the shared one asks Redis), `charge`
after it with the tokens the upstream reported (never awaited on the request path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from vallum.gateway.config import RateLimit

Clock = Callable[[], float]
_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str  # rate_limited | budget_exceeded
    retry_after: float


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class _Budget:
    used: int
    day: int


class Limiter:
    """A token bucket per identity for requests, and a daily token budget charged from upstream usage.

    The count lives in this process; `RedisLimiter` keeps the same count for all replicas together."""

    def __init__(self, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self._clock, self._wall = clock, wall
        self._buckets: dict[str, _Bucket] = {}
        self._budgets: dict[str, _Budget] = {}

    async def admit(self, who: str, limit: RateLimit) -> Refusal | None:
        return self.take(who, limit)

    def take(self, who: str, limit: RateLimit) -> Refusal | None:
        """Take one request from `who`'s allowance; None when admitted, else why not and for how long."""
        if limit.tokens_per_day is not None:
            budget = self._budget(who)
            if budget.used >= limit.tokens_per_day:
                return Refusal("budget_exceeded", _DAY_S - self._wall() % _DAY_S)
        rate = limit.requests_per_minute
        if rate is None:
            return None
        now = self._clock()
        capacity = max(1.0, rate / 60.0 * 10)  # bursts of up to ten seconds' worth of requests
        bucket = self._buckets.get(who)
        if bucket is None:
            bucket = self._buckets[who] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate / 60.0)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return Refusal("rate_limited", (1.0 - bucket.tokens) * 60.0 / rate)

    def charge(self, who: str, tokens: int) -> None:
        if tokens > 0:
            self._budget(who).used += tokens

    def used(self, who: str) -> int:
        return self._budget(who).used

    def _budget(self, who: str) -> _Budget:
        day = int(self._wall() // _DAY_S)
        budget = self._budgets.get(who)
        if budget is None or budget.day != day:
            budget = self._budgets[who] = _Budget(0, day)
        return budget
