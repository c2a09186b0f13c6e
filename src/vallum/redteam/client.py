"""The target: an OpenAI- or Anthropic-compatible endpoint, called with retries and backoff.

Rate limits (429), server errors (5xx), timeouts, dropped connections and 200s that are not JSON are
retried with exponential backoff (honouring Retry-After); past the last retry the call raises
TargetError, which the runner reports as an error, never as a defended attack. Other 4xx answers fail at
once (a wrong key or model will not fix itself), unless a guard says it blocked the request.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from vallum.redteam.campaign import Message
from vallum.redteam.catalogue import ToolSpec
from vallum.redteam.errors import TargetError
from vallum.redteam.pacing import Pacer
from vallum.redteam.wire import Api, Reply, blocked_code, endpoint, headers, parse_reply, request_body

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
DEFAULT_MODELS: dict[str, str] = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


@dataclass(frozen=True)
class Target:
    url: str
    api: Api = "openai"
    model: str = ""
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_tokens: int = 512
    temperature: float = 0.0
    name: str = ""  # a label for reports; the URL when empty

    @property
    def label(self) -> str:
        return self.name or self.url

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_MODELS[self.api]


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4  # further tries after the first
    backoff_s: float = 0.5  # the first wait; doubles each retry, with jitter
    max_backoff_s: float = 30.0


class TargetClient:
    """Sends conversations to one target; share one per run (it holds the connection pool)."""

    def __init__(
        self,
        target: Target,
        retry: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.target = target
        self.retry = retry or RetryPolicy()
        self.pacer = pacer or Pacer()
        timeout = httpx.Timeout(target.timeout_s, connect=min(10.0, target.timeout_s))
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._url = endpoint(target.url, target.api)
        self._headers = headers(target.api, target.api_key)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec], *, key: str = ""
    ) -> Reply:
        body = request_body(
            self.target.api,
            model=self.target.model_name,
            system=system,
            messages=messages,
            tools=tools,
            max_tokens=self.target.max_tokens,
            temperature=self.target.temperature,
        )
        return await self.post(body, key=key)

    async def post(self, body: dict[str, Any], *, key: str = "") -> Reply:
        """POST one request body, retrying what may pass; the jitter is seeded by `key` (deterministic)."""
        rng = random.Random(f"backoff:{key}")
        problem, status = "", None
        retry_after: float | None = None
        for attempt in range(self.retry.retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, rng, retry_after))
            retry_after = None
            await self.pacer.wait()
            try:
                response = await self._http.post(self._url, json=body, headers=self._headers)
            except httpx.TimeoutException:
                problem, status = f"timed out after {self.target.timeout_s:g} s", None
                continue
            except httpx.TransportError as exc:
                problem, status = f"{type(exc).__name__}: {exc}", None
                continue
            status = response.status_code
            parsed = _json(response)
            if status >= 400:
                code = blocked_code(parsed)
                if code is not None:
                    return Reply(blocked=code, status=status, tries=attempt + 1)
                problem = f"HTTP {status}: {_error_message(parsed, response)}"
                if status not in RETRY_STATUSES:
                    raise TargetError(f"{self._url} answered {problem}", status=status, tries=attempt + 1)
                retry_after = _retry_after(response)
                continue
            try:
                reply = parse_reply(self.target.api, parsed)
            except ValueError as exc:
                problem = f"HTTP {status} with an unreadable body ({exc})"
                continue
            return Reply(reply.text, reply.tool_calls, reply.blocked, status, attempt + 1)
        tries = self.retry.retries + 1
        raise TargetError(f"{self._url} failed {tries} times; last: {problem}", status=status, tries=tries)

    def _delay(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        delay: float = self.retry.backoff_s * 2.0 ** (attempt - 1) * (0.5 + rng.random() / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.retry.max_backoff_s)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _error_message(parsed: Any, response: httpx.Response) -> str:
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        message = parsed["error"].get("message")
        if isinstance(message, str):
            return message[:300]
    return response.text[:300] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(str(value))) if value is not None else None
    except ValueError:
        return None
