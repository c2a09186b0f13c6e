"""Sliding-window call budgets per tool and identity, in process (one firewall, one set of counters)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from vallum.agents.policy import RateLimit

MAX_KEYS = 100_000  # least recently used budgets are forgotten beyond this


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._calls: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, tool: str, identity: str, limit: RateLimit) -> bool:
        """Count one call of `tool` by `identity` if the budget allows it; False (and nothing counted) if not."""
        key = (tool, identity if limit.by == "identity" else "*")
        now = self.clock()
        with self._lock:
            window = self._calls.get(key)
            if window is None:
                window = self._calls[key] = deque()
            self._calls.move_to_end(key)
            while window and window[0] <= now - limit.per_seconds:
                window.popleft()
            if len(window) >= limit.calls:
                return False
            window.append(now)
            while len(self._calls) > MAX_KEYS:
                self._calls.popitem(last=False)
            return True
