"""Load shedding: when the gateway is saturated, new requests are refused at once with a 503.

Without it an overloaded gateway slows every request down (and the backlog grows its connection pools,
which costs more per request) until all of them time out; with it, the requests it accepts keep their
latency. Saturation shows as event-loop lag (the loop runs late because the CPU is busy) long before it
shows in the number of requests in flight, which for LLM calls is mostly time spent waiting on upstreams;
so both are watched: lag over `max_loop_lag_s`, or more than `max_in_flight` requests.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from vallum.gateway.errors import Api, GatewayError
from vallum.gateway.metrics import GatewayMetrics

_OVERLOADED = GatewayError(503, "overloaded", "The gateway is at capacity; retry shortly.", retry_after=1)
_PROBE_INTERVAL_S = 0.05


class LoadShedder:
    def __init__(
        self, app: ASGIApp, max_in_flight: int, max_loop_lag_s: float, metrics: GatewayMetrics
    ) -> None:
        self.app, self.max_in_flight, self.max_loop_lag_s, self.metrics = (
            app,
            max_in_flight,
            max_loop_lag_s,
            metrics,
        )
        self.in_flight = 0
        self.loop_lag_s = 0.0
        self._probe: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._measure_lag())
        if self.in_flight >= self.max_in_flight or self.loop_lag_s > self.max_loop_lag_s:
            await self._refuse(scope, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(_PROBE_INTERVAL_S)
            self.loop_lag_s = max(0.0, loop.time() - started - _PROBE_INTERVAL_S)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        api: Api = "anthropic" if scope["path"] == "/v1/messages" else "openai"
        body = json.dumps(_OVERLOADED.body(api)).encode()
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
        self.metrics.requests.labels(scope["path"].removeprefix("/v1/"), "503").inc()
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
