"""Rate limits and token budgets shared by every gateway replica, counted atomically in Redis.

One Lua script per request refills and takes from the identity's token bucket (on Redis's own clock, so
replicas with drifting clocks still agree) and checks its daily token budget; usage is added afterwards with
INCRBY, off the request path. When Redis cannot be reached the configured fail mode decides: `open` admits
the request, `closed` refuses it with 503; either way a metric counts it and the log says so, and the next
request simply tries Redis again, so service comes back by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from vallum.gateway.config import RateLimit
from vallum.gateway.errors import GatewayError
from vallum.gateway.limits import Refusal
from vallum.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

_DAY_S = 86_400
_TAKE = """
local budget = tonumber(ARGV[3])
if budget >= 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= budget then return {2, 0} end
end
local rate = tonumber(ARGV[1])
if rate <= 0 then return {0, 0} end
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
local refused = 0
if tokens >= 1 then tokens = tokens - 1 else refused = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
if refused == 1 then return {1, tostring((1 - tokens) / rate)} end
return {0, 0}
"""


class RedisLimiter:
    def __init__(
        self, url: str, metrics: GatewayMetrics, *, fail_mode: str = "open", prefix: str = "vallum:limits:"
    ) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self._take = self._redis.register_script(_TAKE)
        self._metrics, self._fail_mode, self._prefix = metrics, fail_mode, prefix
        self._pending: set[asyncio.Task[None]] = set()
        self._last_warning = 0.0

    async def admit(self, who: str, limit: RateLimit) -> Refusal | None:
        if limit.requests_per_minute is None and limit.tokens_per_day is None:
            return None
        rate = (limit.requests_per_minute or 0) / 60.0
        capacity = max(1.0, rate * 10)  # bursts of up to ten seconds' worth, as in process
        budget = limit.tokens_per_day if limit.tokens_per_day is not None else -1
        try:
            verdict, wait = await self._take(
                keys=[self._bucket(who), self._budget(who)], args=[rate, capacity, budget]
            )
        except RedisError as exc:
            return self._unavailable(exc)
        if int(verdict) == 1:
            return Refusal("rate_limited", float(wait))
        if int(verdict) == 2:
            return Refusal("budget_exceeded", _DAY_S - time.time() % _DAY_S)
        return None

    def charge(self, who: str, tokens: int) -> None:
        if tokens <= 0:
            return
        task = asyncio.get_running_loop().create_task(self._add(who, tokens))
        self._pending.add(task)  # keep a reference until it is done
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._redis.aclose()

    async def _add(self, who: str, tokens: int) -> None:
        key = self._budget(who)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(key, tokens)
                pipe.expire(key, 2 * _DAY_S)
                await pipe.execute()
        except RedisError as exc:
            self._unavailable(exc)

    def _unavailable(self, exc: RedisError) -> Refusal | None:
        self._metrics.shared_state_errors.labels("redis", self._fail_mode).inc()
        now = time.monotonic()
        if now - self._last_warning > 10:  # one line per ten seconds, not one per request
            self._last_warning = now
            log.warning(
                "shared rate limits unavailable (%s); failing %s until Redis answers", exc, self._fail_mode
            )
        if self._fail_mode == "closed":
            raise GatewayError(
                503,
                "limits_unavailable",
                "Rate limits cannot be checked right now; retry shortly.",
                retry_after=1,
            )
        return None

    def _bucket(self, who: str) -> str:
        return f"{self._prefix}bucket:{who}"

    def _budget(self, who: str) -> str:
        return f"{self._prefix}budget:{int(time.time() // _DAY_S)}:{who}"
