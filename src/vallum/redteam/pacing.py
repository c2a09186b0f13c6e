"""Request pacing: at most `rate` requests started per second across all concurrent attacks."""

from __future__ import annotations

import asyncio
import time


class Pacer:
    """Spaces request starts at least 1/rate seconds apart; no rate means no spacing."""

    def __init__(self, rate: float | None = None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be a positive number of requests per second")
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)
