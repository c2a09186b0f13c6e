"""Load shedding: past a limit of requests in flight, new ones are refused at once with a 503.

Without it an overloaded gateway slows every request down (and its upstream connection pool grows with
the backlog) until all of them time out; with it, the requests it accepts keep their latency.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from vallum.gateway.errors import Api, GatewayError
from vallum.gateway.metrics import GatewayMetrics

_OVERLOADED = GatewayError(503, "overloaded", "The gateway is at capacity; retry shortly.", retry_after=1)


class InFlightLimit:
    def __init__(self, app: ASGIApp, limit: int, metrics: GatewayMetrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await self._refuse(scope, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        api: Api = "anthropic" if scope["path"] == "/v1/messages" else "openai"
        body = json.dumps(_OVERLOADED.body(api)).encode()
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
        self.metrics.requests.labels(scope["path"].removeprefix("/v1/"), "503").inc()
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
