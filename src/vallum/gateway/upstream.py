"""Calling an upstream LLM API: URL layout and auth per provider, retries, timeouts, a circuit breaker.

Only failures where the request cannot have been acted on are retried (the connection was refused or
timed out before it was made, or the server answered 429/502/503/504), with exponential back-off; a
read timeout is not, since the upstream may already be generating (and billing) the answer.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from vallum.gateway.breaker import CircuitBreaker, State
from vallum.gateway.config import Upstream
from vallum.gateway.errors import GatewayError
from vallum.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 502, 503, 504})
# Client headers that carry meaning for the upstream API and nothing about the client's own credentials.
_FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta", "openai-beta", "accept-language")
_MAX_RETRY_AFTER_S = 5.0


class UpstreamClient:
    def __init__(self, upstream: Upstream, http: httpx.AsyncClient, metrics: GatewayMetrics) -> None:
        self.upstream = upstream
        self.breaker = CircuitBreaker(upstream.breaker.failures, upstream.breaker.reset_s)
        self._http = http
        self._metrics = metrics
        self._key = upstream.api_key()  # read once at start-up: a missing key fails the start, not a request
        self._timeout = httpx.Timeout(upstream.timeout_s, connect=upstream.connect_timeout_s)

    def url(self, endpoint: str, model: str) -> str:
        base = self.upstream.base_url.rstrip("/")
        if self.upstream.kind == "azure":
            return f"{base}/openai/deployments/{model}/{endpoint}?api-version={self.upstream.api_version}"
        return f"{base}/{endpoint}"

    def headers(self, incoming: httpx.Headers | dict[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        for name in _FORWARDED_HEADERS:
            if value := incoming.get(name):
                headers[name] = value
        if self._key:
            if self.upstream.kind == "anthropic":
                headers["x-api-key"] = self._key
            elif self.upstream.kind == "azure":
                headers["api-key"] = self._key
            else:
                headers["authorization"] = f"Bearer {self._key}"
        if self.upstream.kind == "anthropic":
            headers.setdefault("anthropic-version", "2023-06-01")
        return headers

    async def send(
        self, endpoint: str, model: str, body: bytes, incoming: dict[str, str], *, stream: bool
    ) -> httpx.Response:
        """The upstream's response (its body unread when `stream`); the caller closes it."""
        name = self.upstream.name
        trial = self.breaker.state is State.HALF_OPEN  # allowed through, this request is the one trial
        if not self.breaker.allow():
            raise GatewayError(
                503,
                "upstream_circuit_open",
                f"Upstream {name!r} is failing; requests are paused for a moment.",
                retry_after=self.breaker.retry_after(),
            )
        try:
            return await self._send(endpoint, model, body, incoming, stream=stream)
        except BaseException:
            # A trial that ends without a verdict on the upstream (its client hung up, say) must make way
            # for another, or the half-open circuit would let nothing through ever again.
            if trial:
                self.breaker.abandon()
            raise

    async def _send(
        self, endpoint: str, model: str, body: bytes, incoming: dict[str, str], *, stream: bool
    ) -> httpx.Response:
        name = self.upstream.name
        request = self._http.build_request(
            "POST",
            self.url(endpoint, model),
            content=body,
            headers=self.headers(incoming),
            timeout=self._timeout,
        )
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if attempt < self.upstream.retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff(attempt, None))
                    continue
                self._failed("connect")
                raise GatewayError(
                    502, "upstream_unavailable", f"Upstream {name!r} cannot be reached."
                ) from exc
            except httpx.TimeoutException as exc:
                self._failed("timeout")
                raise GatewayError(
                    504, "upstream_timeout", f"Upstream {name!r} did not answer in time."
                ) from exc
            except httpx.HTTPError as exc:
                self._failed("protocol")
                raise GatewayError(
                    502, "upstream_invalid_response", f"Upstream {name!r} broke the connection."
                ) from exc
            if response.status_code in _RETRY_STATUS and attempt < self.upstream.retries:
                await response.aclose()
                attempt += 1
                await asyncio.sleep(self._backoff(attempt, response.headers.get("retry-after")))
                continue
            break
        if response.status_code >= 500:
            self._failed(f"http_{response.status_code}")
        else:
            self.breaker.success()
        if not stream:
            try:
                await response.aread()
            except httpx.TimeoutException as exc:
                await response.aclose()
                self._failed("timeout")
                raise GatewayError(
                    504, "upstream_timeout", f"Upstream {name!r} did not answer in time."
                ) from exc
            except httpx.HTTPError as exc:
                await response.aclose()
                self._failed("protocol")
                raise GatewayError(
                    502, "upstream_invalid_response", f"Upstream {name!r} broke off its answer."
                ) from exc
        return response

    async def list_models(self, incoming: dict[str, str]) -> list[dict[str, object]]:
        """The upstream's own model list (empty when it has none or cannot say)."""
        try:
            response = await self._http.get(
                f"{self.upstream.base_url.rstrip('/')}/models",
                headers=self.headers(incoming),
                timeout=self._timeout,
            )
            data = response.json().get("data") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return []
        return (
            [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
            if isinstance(data, list)
            else []
        )

    def _failed(self, kind: str) -> None:
        self.breaker.failure()
        self._metrics.upstream_errors.labels(self.upstream.name, kind).inc()
        log.warning("upstream %s failed: %s", self.upstream.name, kind)

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), _MAX_RETRY_AFTER_S)
            except ValueError:
                pass
        return float(self.upstream.backoff_s * 2 ** (attempt - 1))
