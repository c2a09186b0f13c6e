"""Sliding windows per identity: the counters behind behaviour analytics, in process or shared through Redis.

Each identity (a string such as "user:acme/alice") has the state a `Layout` describes:
- counters summed over a sliding window, kept as time buckets (`buckets` per window, so a window of 60 s
  reads the last 50 to 60 seconds);
- distinct-member sets over a window (each member with the time it was last seen);
- recent fingerprints of attacks (64-bit simhash hex) and of later requests near one of them (Hamming
  distance at most `near_distance`), grouped by the attack they descend from: the reading is the largest
  number of distinct variants of one attack in the window (so a request repeated unchanged adds nothing);
- a baseline of volume: an exponentially weighted mean of the amount per period over the completed
  periods, and how many periods the identity has been known for.

Every event applies one `Change` to all of its identities in a single call, which returns a `Reading` per
identity, so `RedisWindows` costs one round trip per event (a Lua script, atomic). A `Change` that adds
nothing only reads, and creates no state.

`MemoryWindows` keeps state in this process, bounded: stale buckets and members are dropped as they are
touched, identities unseen for `idle_s` are evicted, and beyond `max_identities` the least recently
updated identity goes (an identity takes about 2.5 KB with analytics' layout, so the default bound is
about 125 MB). `RedisWindows` keeps it in Redis with expiry on every key, so replicas share it;
when Redis cannot be reached it raises `WindowsUnavailable` and the caller decides to fail open or closed.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from vallum.errors import VallumError


class WindowsUnavailable(VallumError):
    """The shared window store (Redis) could not be reached or refused the update."""


@dataclass(frozen=True, slots=True)
class Layout:
    """What is kept per identity. Made once from configuration and passed with every call."""

    counters: tuple[tuple[str, float], ...]  # (name, window in seconds), in the order of Change.counts
    sets: tuple[tuple[str, float], ...]  # (name, window in seconds), in the order of Change.members
    fingerprint_window_s: float = 1800.0
    fingerprints_kept: int = 32
    near_distance: int = 12
    baseline_period_s: float = 600.0
    baseline_alpha: float = 0.1
    buckets: int = 6
    max_members: int = 256  # per set; the oldest go first, so one busy identity cannot grow without bound

    def __post_init__(self) -> None:
        windows = [w for _, w in self.counters + self.sets] + [
            self.fingerprint_window_s,
            self.baseline_period_s,
        ]
        if any(not w > 0 for w in windows):
            raise ValueError("every window and the baseline period must be longer than 0 seconds")
        if self.buckets < 1 or self.fingerprints_kept < 1 or self.max_members < 1:
            raise ValueError("buckets, fingerprints_kept and max_members must be at least 1")
        if not 0 < self.baseline_alpha <= 1:
            raise ValueError("baseline_alpha must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class Change:
    """What one event adds to each of its identities."""

    counts: tuple[int, ...] = ()  # an amount per layout counter; () adds nothing
    members: tuple[tuple[str, ...], ...] = ()  # new members per layout set; () adds nothing
    fingerprint: str | None = None  # compared with the remembered attack fingerprints; kept if near one
    remember: bool = False  # keep `fingerprint` as an attack fingerprint for later comparisons
    volume: int = 0  # added to the baseline's current period

    @property
    def writes(self) -> bool:
        return bool(any(self.counts) or any(self.members) or self.fingerprint or self.volume)


@dataclass(frozen=True, slots=True)
class Reading:
    """An identity's windows after a change."""

    counts: tuple[int, ...]  # per layout counter: the sum over its window
    distinct: tuple[int, ...]  # per layout set: members seen within its window
    variants: int  # the most distinct variants of one remembered attack within the fingerprint window
    baseline: float  # mean amount per completed period (exponentially weighted)
    periods: int  # completed periods since the identity was first seen: how much history the mean has


class Windows(Protocol):
    def apply(self, layout: Layout, keys: Sequence[str], change: Change, now: float) -> list[Reading]:
        """Apply `change` to every identity in `keys` at time `now` (seconds); one reading per key."""
        ...

    def close(self) -> None: ...


def _empty(layout: Layout) -> Reading:
    return Reading((0,) * len(layout.counters), (0,) * len(layout.sets), 0, 0.0, 0)


def _fold(state: list[float], period: int, alpha: float) -> tuple[float, int]:
    """The baseline [period, count, mean, periods] as of `period`: earlier periods folded into the mean.

    Periods without any traffic count as history with an amount of zero, so the mean decays over quiet
    time; the first completed period sets the mean directly."""
    start, count, mean, periods = state
    if period <= start:  # the current period, or a replica whose clock is a little behind
        return mean, int(periods)
    mean = count if periods == 0 else alpha * count + (1 - alpha) * mean
    gap = period - int(start) - 1
    if gap > 0:
        mean *= (1 - alpha) ** gap
    return mean, int(periods) + 1 + gap


# ---- in process ---------------------------------------------------------------------------------------------


class _Counter:
    """Time buckets, oldest first, and their running total."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: list[list[int]] = []  # [bucket index, amount]; a few, so a list beats a deque
        self.total = 0

    def add(self, current: int, buckets_per_window: int, amount: int) -> int:
        buckets = self.buckets
        while buckets and buckets[0][0] <= current - buckets_per_window:
            self.total -= buckets.pop(0)[1]
        if amount:
            # ">=": an event a little older than the newest bucket (threads racing) joins that bucket.
            if buckets and buckets[-1][0] >= current:
                buckets[-1][1] += amount
            else:
                buckets.append([current, amount])
            self.total += amount
        return self.total


@dataclass(frozen=True, slots=True)
class _Step:
    currents: list[int]  # per counter: the bucket index of now
    amounts: tuple[int, ...]
    period: int  # the baseline period of now
    fingerprint: int | None


@dataclass(slots=True)
class _Identity:
    seen: float
    counters: list[_Counter]
    members: list[dict[str, float]]  # per set: member -> last seen, in order of last sight
    # (time, fingerprint, remembered as an attack, the attack it descends from), newest last
    prints: list[tuple[float, int, bool, int]] = field(default_factory=list)
    baseline: list[float] | None = None  # [period, count in it, mean, periods]


class MemoryWindows:
    """Windows in this process: the default for a single gateway. Safe to share between threads."""

    def __init__(self, *, max_identities: int = 50_000, idle_s: float = 86_400.0) -> None:
        if max_identities < 1 or idle_s <= 0:
            raise ValueError("max_identities must be at least 1 and idle_s longer than 0 seconds")
        self.max_identities = max_identities
        self.idle_s = idle_s
        # Ordered by last update, oldest first, so eviction by idleness and by count both pop from the front.
        self._identities: OrderedDict[str, _Identity] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._identities)

    def apply(self, layout: Layout, keys: Sequence[str], change: Change, now: float) -> list[Reading]:
        with self._lock:
            return self._apply(layout, keys, change, now)

    def _apply(self, layout: Layout, keys: Sequence[str], change: Change, now: float) -> list[Reading]:
        writes = change.writes
        if writes:
            self._evict_idle(now)
        # What is the same for every identity of the change, worked out once.
        nb = layout.buckets
        step = _Step(
            currents=[math.floor(now / (window / nb)) for _, window in layout.counters],
            amounts=change.counts or (0,) * len(layout.counters),
            period=math.floor(now / layout.baseline_period_s),
            fingerprint=int(change.fingerprint, 16) if change.fingerprint else None,
        )
        out = []
        for key in keys:
            state = self._identities.get(key)
            if state is None:
                if not writes:
                    out.append(_empty(layout))
                    continue
                state = _Identity(now, [_Counter() for _ in layout.counters], [{} for _ in layout.sets])
                self._identities[key] = state
                if len(self._identities) > self.max_identities:
                    self._identities.popitem(last=False)
            elif writes:
                state.seen = now
                self._identities.move_to_end(key)
            out.append(self._update(layout, state, change, now, step))
        return out

    def close(self) -> None:
        with self._lock:
            self._identities.clear()

    def _evict_idle(self, now: float) -> None:
        identities = self._identities
        while identities:
            oldest = next(iter(identities.values()))
            if oldest.seen > now - self.idle_s:
                return
            identities.popitem(last=False)

    def _update(self, layout: Layout, state: _Identity, change: Change, now: float, step: _Step) -> Reading:
        nb = layout.buckets
        counts = tuple(
            [
                counter.add(current, nb, amount)
                for counter, current, amount in zip(state.counters, step.currents, step.amounts, strict=True)
            ]
        )

        distinct = []
        for i, (_, window) in enumerate(layout.sets):
            seen = state.members[i]
            added = change.members[i] if change.members else ()
            if not seen and not added:
                distinct.append(0)
                continue
            cutoff = now - window
            if added:
                for member in added:
                    seen.pop(member, None)  # re-inserted, so the dict stays in order of last sight
                    seen[member] = now
                for stale in [m for m, t in seen.items() if t <= cutoff]:
                    del seen[stale]
                while len(seen) > layout.max_members:
                    del seen[next(iter(seen))]
            distinct.append(sum(1 for t in seen.values() if t > cutoff))

        variants = self._variants(layout, state, change, now, step.fingerprint)

        mean, periods = 0.0, 0
        period = step.period
        if state.baseline is not None:
            mean, periods = _fold(state.baseline, period, layout.baseline_alpha)
            if change.volume:
                if period > state.baseline[0]:
                    state.baseline = [period, 0, mean, periods]
                state.baseline[1] += change.volume
        elif change.volume:
            state.baseline = [period, change.volume, 0.0, 0]
        return Reading(counts, tuple(distinct), variants, mean, periods)

    @staticmethod
    def _variants(layout: Layout, state: _Identity, change: Change, now: float, fp: int | None) -> int:
        if not state.prints and not (fp is not None and change.remember):
            return 0
        cutoff = now - layout.fingerprint_window_s
        live = [p for p in state.prints if p[0] > cutoff]
        if fp is not None:
            # The nearest remembered attack (the newest of equals) is the one this request descends from.
            best, family = layout.near_distance + 1, None
            for _, other, anchor, cluster in reversed(live):
                if anchor and (distance := (fp ^ other).bit_count()) < best:
                    best, family = distance, cluster
            if change.remember or family is not None:
                live.append((now, fp, change.remember, fp if family is None else family))
                del live[: -layout.fingerprints_kept]
        state.prints = live
        if not live:
            return 0
        families: dict[int, set[int]] = {}
        for _, member, _, cluster in live:
            families.setdefault(cluster, set()).add(member)
        return max(len(members) for members in families.values()) - 1  # the original is not a variant


# ---- Redis ----------------------------------------------------------------------------------------------------

# KEYS, per identity in order: one hash per counter (field = bucket index), one sorted set per set (score =
# last seen), one list of fingerprints ("time|fp|remembered|attack it descends from", newest first), one
# hash for the baseline (p, c, m, n). ARGV[1] = now; ARGV[2] = JSON of the layout (l), the change (ch) and
# the number of identities (n). Returns, per identity: the counter sums, the distinct counts, the variants,
# the baseline mean (a string: Lua numbers come back as integers) and the periods. Semantics match
# MemoryWindows line for line.
_SCRIPT = """
local now = tonumber(ARGV[1])
local a = cjson.decode(ARGV[2])
local L, ch = a.l, a.ch
local function fmt(x) return string.format('%.17g', x) end
local nibbles = {[0]=0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4}
local function popcount(x)
  local c = 0
  for i = 0, 28, 4 do c = c + nibbles[bit.band(bit.rshift(x, i), 15)] end
  return c
end
local fp_hi, fp_lo
if ch.f ~= '' then
  fp_hi, fp_lo = tonumber(string.sub(ch.f, 1, 8), 16), tonumber(string.sub(ch.f, 9, 16), 16)
end
local out = {}
local k = 1
for _ = 1, a.n do
  for i, w in ipairs(L.c) do
    local key = KEYS[k]; k = k + 1
    local width = w / L.b
    local cur = math.floor(now / width)
    local amount = ch.c[i] or 0
    if amount ~= 0 then redis.call('HINCRBY', key, tostring(cur), amount) end
    local flat = redis.call('HGETALL', key)
    local total = 0
    for j = 1, #flat, 2 do
      if tonumber(flat[j]) > cur - L.b then
        total = total + tonumber(flat[j + 1])
      elseif amount ~= 0 then
        redis.call('HDEL', key, flat[j])
      end
    end
    if amount ~= 0 then redis.call('PEXPIRE', key, math.ceil((w + width) * 1000)) end
    out[#out + 1] = total
  end
  for i, w in ipairs(L.s) do
    local key = KEYS[k]; k = k + 1
    local cutoff = now - w
    local added = ch.m[i] or {}
    if #added > 0 then
      for _, member in ipairs(added) do redis.call('ZADD', key, now, member) end
      redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(cutoff))
      local size = redis.call('ZCARD', key)
      if size > L.mm then redis.call('ZREMRANGEBYRANK', key, 0, size - L.mm - 1) end
      redis.call('PEXPIRE', key, math.ceil(w * 1000))
    end
    out[#out + 1] = redis.call('ZCOUNT', key, '(' .. fmt(cutoff), '+inf')
  end
  do
    local key = KEYS[k]; k = k + 1
    local cutoff = now - L.fw
    local live = {}
    local best, family = L.fd + 1, nil
    for _, entry in ipairs(redis.call('LRANGE', key, 0, -1)) do
      local t, fp, anchor, cluster = string.match(entry, '^([^|]*)|([^|]*)|(%d)|([^|]*)$')
      if tonumber(t) > cutoff then
        live[#live + 1] = {fp, cluster}
        if fp_hi and anchor == '1' then
          local hi, lo = tonumber(string.sub(fp, 1, 8), 16), tonumber(string.sub(fp, 9, 16), 16)
          local distance = popcount(bit.bxor(hi, fp_hi)) + popcount(bit.bxor(lo, fp_lo))
          if distance < best then best, family = distance, cluster end
        end
      end
    end
    if fp_hi and (ch.r == 1 or family) then
      family = family or ch.f
      redis.call('LPUSH', key, fmt(now) .. '|' .. ch.f .. '|' .. ch.r .. '|' .. family)
      redis.call('LTRIM', key, 0, L.fk - 1)
      redis.call('PEXPIRE', key, math.ceil(L.fw * 1000))
      table.insert(live, 1, {ch.f, family})
    end
    local families, largest = {}, 0
    for j = 1, math.min(#live, L.fk) do
      local fp, cluster = live[j][1], live[j][2]
      local members = families[cluster]
      if not members then members = {n = 0}; families[cluster] = members end
      if not members[fp] then
        members[fp] = true
        members.n = members.n + 1
        if members.n > largest then largest = members.n end
      end
    end
    out[#out + 1] = math.max(largest - 1, 0)
  end
  do
    local key = KEYS[k]; k = k + 1
    local period = math.floor(now / L.bp)
    local s = redis.call('HMGET', key, 'p', 'c', 'm', 'n')
    local mean, periods = 0, 0
    if s[1] then
      local p, c, m, n = tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
      if period > p then
        if n == 0 then m = c else m = L.ba * c + (1 - L.ba) * m end
        local gap = period - p - 1
        if gap > 0 then m = m * (1 - L.ba) ^ gap end
        n = n + 1 + gap
        mean, periods = m, n
        if ch.v ~= 0 then redis.call('HSET', key, 'p', period, 'c', ch.v, 'm', fmt(m), 'n', n) end
      else
        mean, periods = m, n
        if ch.v ~= 0 then redis.call('HINCRBY', key, 'c', ch.v) end
      end
    elseif ch.v ~= 0 then
      redis.call('HSET', key, 'p', period, 'c', ch.v, 'm', 0, 'n', 0)
    end
    if ch.v ~= 0 then redis.call('PEXPIRE', key, L.ttl) end
    out[#out + 1] = fmt(mean)
    out[#out + 1] = periods
  end
end
return out
"""


class RedisWindows:
    """Windows in Redis, shared by every gateway replica that uses the same server and key prefix.

    One script call per event, atomic on a single Redis server (or a primary with replicas). A Redis
    Cluster would need every identity of an event in one slot, which keys of different identities are not.
    The replicas' clocks give the time buckets, so keep them in sync (NTP)."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = "vallum:windows:", idle_s: float = 86_400.0
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.idle_s = idle_s
        self._sha: str | None = None
        self._layouts: dict[Layout, tuple[str, tuple[str, ...]]] = {}

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "vallum:windows:", timeout_s: float = 0.25, idle_s: float = 86_400.0
    ) -> RedisWindows:
        """A client that gives up after `timeout_s` without retrying: analytics must not stall requests."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, prefix=prefix, idle_s=idle_s)

    def apply(self, layout: Layout, keys: Sequence[str], change: Change, now: float) -> list[Reading]:
        if not keys:
            return []
        layout_json, suffixes = self._layout(layout)
        payload = (
            f'{{"l":{layout_json},"n":{len(keys)},"ch":'
            + json.dumps(
                {
                    "c": list(change.counts),
                    "m": [list(m) for m in change.members],
                    "f": change.fingerprint or "",
                    "r": int(change.remember),
                    "v": change.volume,
                },
                separators=(",", ":"),
            )
            + "}"
        )
        # Braces make a hash tag: all keys of one identity would share a Redis Cluster slot.
        redis_keys = [f"{self.prefix}{{{key}}}{suffix}" for key in keys for suffix in suffixes]
        flat = self._run(redis_keys, [repr(now), payload])
        return self._readings(layout, flat, len(keys))

    def close(self) -> None:
        self.client.close()

    def _layout(self, layout: Layout) -> tuple[str, tuple[str, ...]]:
        cached = self._layouts.get(layout)
        if cached is None:
            spec = {
                "c": [w for _, w in layout.counters],
                "s": [w for _, w in layout.sets],
                "b": layout.buckets,
                "mm": layout.max_members,
                "fw": layout.fingerprint_window_s,
                "fk": layout.fingerprints_kept,
                "fd": layout.near_distance,
                "bp": layout.baseline_period_s,
                "ba": layout.baseline_alpha,
                "ttl": math.ceil(self.idle_s * 1000),
            }
            # Window lengths are part of the keys, so a changed configuration starts fresh windows instead of
            # reading buckets of another width.
            suffixes = (
                *(f":c:{name}:{w:g}" for name, w in layout.counters),
                *(f":s:{name}:{w:g}" for name, w in layout.sets),
                f":f:{layout.fingerprint_window_s:g}",
                f":b:{layout.baseline_period_s:g}",
            )
            cached = self._layouts[layout] = (json.dumps(spec, separators=(",", ":")), suffixes)
        return cached

    def _run(self, keys: list[str], args: list[str]) -> list[Any]:
        try:
            if self._sha is None:
                self._sha = str(self.client.script_load(_SCRIPT))
            try:
                return list(self.client.evalsha(self._sha, len(keys), *keys, *args))
            except redis.exceptions.NoScriptError:  # Redis restarted or its script cache was flushed
                self._sha = str(self.client.script_load(_SCRIPT))
                return list(self.client.evalsha(self._sha, len(keys), *keys, *args))
        except redis.exceptions.RedisError as exc:
            raise WindowsUnavailable(
                f"the analytics window store in Redis failed ({type(exc).__name__}: {exc}); check that Redis "
                f"is running and reachable at {self._where()}"
            ) from exc

    def _where(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return str(kwargs["path"])
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    @staticmethod
    def _readings(layout: Layout, flat: list[Any], count: int) -> list[Reading]:
        nc, ns = len(layout.counters), len(layout.sets)
        width = nc + ns + 3
        out = []
        for i in range(count):
            row = flat[i * width : (i + 1) * width]
            out.append(
                Reading(
                    counts=tuple(int(v) for v in row[:nc]),
                    distinct=tuple(int(v) for v in row[nc : nc + ns]),
                    variants=int(row[nc + ns]),
                    baseline=float(row[nc + ns + 1]),
                    periods=int(row[nc + ns + 2]),
                )
            )
        return out
