"""The gateway's ASGI app: OpenAI- and Anthropic-compatible routes with policy applied at every step.

One request: authenticate -> read and validate the body -> rate and budget limits -> route the model to
an upstream -> Guard over every input message -> upstream -> Guard over the answer (incrementally when
streamed, tool calls checked before they are forwarded) -> vault placeholders restored -> one event.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from vallum.admin.api import AdminServices, admin_routes
from vallum.admin.auth import AdminAuth
from vallum.admin.controls import IdentityControls
from vallum.admin.keys import KeyStore
from vallum.admin.policies import PolicyStore, PolicyVersion
from vallum.compliance.markdown import render_markdown
from vallum.compliance.report import build_report
from vallum.core.guard import Guard
from vallum.core.types import Identity, Source
from vallum.dashboard import dashboard_routes
from vallum.gateway import slots as slot_maps
from vallum.gateway.bodies import (
    ChatBody,
    CompletionBody,
    EmbeddingBody,
    MessagesBody,
    Schema,
    parse_json,
    read_body,
)
from vallum.gateway.breaker import State
from vallum.gateway.config import GatewayConfig
from vallum.gateway.errors import Api, GatewayError
from vallum.gateway.identity import Caller, KeyRing, presented_key
from vallum.gateway.inspection import StageRecord, fail_unscannable, inspect
from vallum.gateway.limits import Limiter
from vallum.gateway.metrics import GatewayMetrics
from vallum.gateway.monitoring import Monitor
from vallum.gateway.shared_limits import RedisLimiter
from vallum.gateway.shedding import LoadShedder
from vallum.gateway.slots import Json, Slot, Unscannable
from vallum.gateway.streams import OutputContext, relay_anthropic, relay_openai
from vallum.gateway.upstream import Connections, UpstreamClient, UpstreamResponse
from vallum.monitor.analytics import identity_keys
from vallum.monitor.database import make_engine
from vallum.monitor.fingerprint import simhash
from vallum.monitor.store import EventFilter
from vallum.monitor.tracing import PROVIDERS, RequestSpan, Telemetry
from vallum.monitor.writer import StoreSink
from vallum.vault import Vault

log = logging.getLogger(__name__)
T = TypeVar("T")
SlotMap = Callable[[Json], list[Slot]]
Relay = Callable[[UpstreamResponse, OutputContext], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # the upstream path below the base URL, and the route label in events and metrics
    api: Api
    schema: Schema
    request_slots: SlotMap
    response_slots: SlotMap | None  # None: the answer holds no text (embeddings)
    relay: Relay | None  # None: the endpoint does not stream


ENDPOINTS = {
    "/v1/chat/completions": Endpoint(
        "chat/completions", "openai", ChatBody, slot_maps.chat_request, slot_maps.chat_response, relay_openai
    ),
    "/v1/completions": Endpoint(
        "completions",
        "openai",
        CompletionBody,
        slot_maps.completion_request,
        slot_maps.completion_response,
        relay_openai,
    ),
    "/v1/embeddings": Endpoint(
        "embeddings", "openai", EmbeddingBody, slot_maps.embedding_request, None, None
    ),
    "/v1/messages": Endpoint(
        "messages",
        "anthropic",
        MessagesBody,
        slot_maps.messages_request,
        slot_maps.messages_response,
        relay_anthropic,
    ),
}


_OPERATIONS = {
    "chat/completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "messages": "chat",
}


class ClientGone(Exception):
    """The client disconnected while the gateway was waiting on the upstream."""


@dataclass(slots=True)
class Exchange:
    """One request's state on its way through the gateway; becomes its event."""

    endpoint: Endpoint
    started: float = field(default_factory=time.perf_counter)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    caller: Caller | None = None
    ip: str | None = None
    model: str | None = None
    upstream: str | None = None
    stream: bool = False
    span: RequestSpan = field(default_factory=RequestSpan)
    input: StageRecord = field(default_factory=StageRecord)
    output: StageRecord = field(default_factory=StageRecord)
    upstream_ms: float = 0.0
    status: int = 200
    code: str | None = None
    tokens: int = 0
    policy_version: str | None = None

    def event(self, shadow: bool) -> dict[str, Any]:
        ident = self.caller.identity if self.caller else Identity()
        return {
            "id": self.id,
            "time": time.time(),
            "api": self.endpoint.api,
            "route": self.endpoint.name,
            "model": self.model,
            "upstream": self.upstream,
            "identity": {
                "tenant": ident.tenant,
                "user": ident.user,
                "api_key": ident.api_key_id,
                "ip": self.ip,
            },
            "stream": self.stream,
            "shadow": shadow,
            "status": self.status,
            "code": self.code,
            "policy_version": self.policy_version,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "tokens": self.tokens,
            "latency_ms": {
                "guard": round(self.input.guard_ms + self.output.guard_ms, 3),
                "upstream": round(self.upstream_ms, 3),
                "total": round((time.perf_counter() - self.started) * 1000, 3),
            },
        }


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        engine = make_engine(config.database_url)
        self.controls = IdentityControls(engine=engine)
        self.monitor = Monitor(config, self.metrics, self.controls)  # creates or migrates the tables
        self.controls.reload()
        self.policies, self.key_store = PolicyStore(engine), KeyStore(engine)
        self.guards = {name: Guard(path) for name, path in config.policies.items()}
        # Versions published through the admin API win over the file; a replica only ever moves forward.
        self._in_force: dict[str, int] = {}
        self._policy_lock = threading.Lock()
        for name in self.policies.names():
            self._activate_policy(self.policies.get(name))
        self.keys = KeyRing([*config.keys, *self.key_store.active()])
        self.keys_required = config.keys_required or bool(self.keys.keys)
        self.limiter: Limiter | RedisLimiter = (
            RedisLimiter(config.redis_url, self.metrics, fail_mode=config.shared_state_fail)
            if config.redis_url
            else Limiter()
        )
        self._shared_marks = (self.policies.heads(), self.key_store.mark())
        self.telemetry = Telemetry.from_env()
        self.connections = Connections(config.limits.max_in_flight)
        self.upstreams = {u.name: UpstreamClient(u, self.connections, self.metrics) for u in config.upstreams}
        self.ready = False

    def app(self) -> ASGIApp:
        routes: list[BaseRoute] = [
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics_page),
            Route("/v1/models", self.models),
            *(Route(path, self._handler(endpoint), methods=["POST"]) for path, endpoint in ENDPOINTS.items()),
        ]
        if self.config.admin.tokens:
            services = self._admin_services()
            routes.append(Mount("/admin", routes=admin_routes(services)))
            routes.append(Mount("/dashboard", routes=dashboard_routes(services, lambda: self.guards)))
        limits = self.config.limits
        self.shedding = LoadShedder(
            Starlette(routes=routes, lifespan=self._lifespan),
            limits.max_in_flight,
            limits.max_loop_lag_ms / 1000,
            self.metrics,
        )
        return self.shedding

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        for guard in self.guards.values():
            guard.scan("warm-up")  # what detectors build on first use is built now, not on a client's request
        # What is loaded by now (models, rules, tables: over 100,000 objects) lives as long as the gateway.
        # Frozen, it is no longer walked by every full garbage collection, each of which would otherwise
        # stall all requests for tens of milliseconds.
        gc.collect()
        gc.freeze()
        self.ready = True
        sync = asyncio.get_running_loop().create_task(self._follow_shared_state())
        try:
            yield
        finally:
            self.ready = False
            sync.cancel()
            await self.connections.close()
            if isinstance(self.limiter, RedisLimiter):
                await self.limiter.close()
            self.monitor.close()
            self.telemetry.shutdown()
            gc.unfreeze()

    # ---- operational routes ------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        open_circuits = [n for n, u in self.upstreams.items() if u.breaker.state is State.OPEN]
        ready = self.ready and (not self.upstreams or len(open_circuits) < len(self.upstreams))
        body = {"status": "ready" if ready else "not_ready", "open_circuits": open_circuits}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_page(self, request: Request) -> Response:
        self.metrics.events_dropped.set(self.monitor.dropped)
        sink = self.monitor.sink
        if isinstance(sink, StoreSink):
            self.metrics.queue_depth.set(sink.queue_depth)
            self.metrics.events_written.set(sink.written)
        return Response(self.metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        try:
            caller = self._authenticate(request)
        except GatewayError as exc:
            return _error_response(exc, "openai")
        found: dict[str, dict[str, object]] = {}
        for route in self.config.routes:
            if not any(ch in route.model for ch in "*?["):
                found[route.model] = {"id": route.model, "object": "model", "owned_by": route.upstream}
            else:
                for model in await self.upstreams[route.upstream].list_models(dict(request.headers)):
                    found.setdefault(str(model["id"]), model)
        allowed = [m for name, m in found.items() if caller.key is None or caller.key.allows(name)]
        return JSONResponse({"object": "list", "data": allowed})

    # ---- the guarded API routes --------------------------------------------------------------------------

    def _handler(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            exchange = Exchange(endpoint)
            streaming = False
            try:
                response = await self._exchange(request, exchange)
                streaming = isinstance(response, StreamingResponse)
                return response
            except GatewayError as exc:
                exchange.status, exchange.code = exc.status, exc.code
                return _error_response(exc, endpoint.api)
            except ClientGone:
                exchange.status, exchange.code = 499, "client_disconnected"
                return Response(status_code=499)
            finally:
                if not streaming:  # a stream records itself when it ends
                    self._record(exchange)

        return handle

    async def _exchange(self, request: Request, ex: Exchange) -> Response:
        endpoint, config = ex.endpoint, self.config
        ex.ip = request.client.host if request.client else None
        ex.caller = caller = self._authenticate(request)
        self._check_restrictions(ex)
        body = parse_json(
            await read_body(request, config.limits), endpoint.schema, config.limits.max_messages
        )
        ex.model, ex.stream = body["model"], bool(body.get("stream"))
        limit = caller.key.limits if caller.key and caller.key.limits else config.default_limits
        if refusal := await self.limiter.admit(caller.limit_key, limit):
            message = (
                "Too many requests for this identity."
                if refusal.code == "rate_limited"
                else ("This identity's token budget for today is spent.")
            )
            raise GatewayError(429, refusal.code, message, retry_after=refusal.retry_after)
        if caller.key is not None and not caller.key.allows(body["model"]):
            raise GatewayError(403, "model_not_allowed", f"This API key may not use model {body['model']!r}.")
        routed = config.route(body["model"])
        if routed is None:
            raise GatewayError(404, "model_not_found", f"No upstream serves model {body['model']!r}.")
        upstream_config, upstream_model = routed
        upstream = self.upstreams[upstream_config.name]
        ex.upstream = upstream_config.name
        if endpoint.api == "anthropic" and upstream_config.kind == "azure":
            raise GatewayError(
                400, "wrong_api", f"Upstream {ex.upstream!r} does not speak the Anthropic API."
            )
        guard = self.guards[caller.policy]
        ex.policy_version = guard.policy.label
        vault = Vault(identity=caller.identity)
        try:
            request_slots = endpoint.request_slots(body)
        except Unscannable as exc:
            if refused := fail_unscannable(guard, str(exc)):
                raise refused from None
            request_slots = []
        ex.span = self.telemetry.start_request(
            _OPERATIONS[endpoint.name],
            PROVIDERS.get(upstream_config.kind, upstream_config.kind),
            upstream_model,
            urlsplit(upstream_config.base_url).hostname or "",
            policy_version=ex.policy_version,
            event_id=ex.id,
            parent=request.headers,
        )
        users = [s for s in request_slots if s.source is Source.USER]
        others = [s for s in request_slots if s.source is not Source.USER]
        try:
            for slots in (users, others):
                await inspect(
                    guard,
                    slots,
                    stage="input",
                    # Only what the user sent comes back restored in the answer: a credential redacted from
                    # the system prompt, a document or a tool result stays a placeholder for the user too.
                    # The successor numbers on from the user's vault, so no placeholder means two values.
                    vault=vault if slots is users else vault.successor(),
                    identity=caller.identity,
                    enforce=not config.shadow,
                    record=ex.input,
                    metrics=self.metrics,
                    keep_text=config.events.text != "none",
                )
        finally:
            if self.monitor.analytics is not None and ex.input.findings:
                # Near-duplicate attacks (a mutation campaign) are recognised by this fingerprint; only the
                # newest user message, since a chat resends its earlier turns with every request.
                newest = next((s.text for s in reversed(request_slots) if s.source is Source.USER), "")
                ex.input.fingerprint = simhash(newest)
        body["model"] = upstream_model
        payload = json.dumps(body, ensure_ascii=False).encode()
        headers = dict(request.headers)
        sent = time.perf_counter()
        response = await _unless_disconnected(
            request, upstream.send(endpoint.name, upstream_model, payload, headers, stream=ex.stream)
        )
        ex.upstream_ms = (time.perf_counter() - sent) * 1000
        self.metrics.upstream_seconds.labels(upstream_config.name).observe(ex.upstream_ms / 1000)
        if response.status_code >= 400:
            response.close()
            return self._upstream_error(response, ex)
        if ex.stream and endpoint.relay is not None:
            context = OutputContext(
                guard=guard,
                vault=vault,
                output_vault=vault.successor(),
                identity=caller.identity,
                enforce=not config.shadow,
                record=ex.output,
                metrics=self.metrics,
                holdback=config.stream_holdback,
                min_step=config.stream_min_step,
                first_step=config.stream_first_step,
                lookahead=config.stream_lookahead or None,
                max_wait=config.stream_max_wait_ms / 1000,
                keep_text=config.events.text != "none",
                on_usage=lambda tokens: self._charge(ex, tokens),
                upstream=upstream_config.name,
            )
            return StreamingResponse(
                self._stream(endpoint.relay, response, context, ex, sent),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-vallum-request-id": ex.id},
            )
        response.close()
        return await self._answer(response, ex, guard, vault)

    async def _answer(self, response: UpstreamResponse, ex: Exchange, guard: Guard, vault: Vault) -> Response:
        try:
            answer = json.loads(response.content)
        except ValueError:
            raise self._garbage(ex) from None
        if not isinstance(answer, dict):
            raise self._garbage(ex)
        assert ex.caller is not None
        usage = answer.get("usage") or {}
        if isinstance(usage, dict):
            ex.span.record_usage(
                usage.get("prompt_tokens", usage.get("input_tokens")),
                usage.get("completion_tokens", usage.get("output_tokens")),
                response_model=answer.get("model"),
            )
            tokens = usage.get("total_tokens") or (
                usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
            )
            self._charge(ex, int(tokens or 0))
        response_slots = ex.endpoint.response_slots
        if response_slots is not None:
            await inspect(
                guard,
                response_slots(answer),
                stage="output",
                vault=vault.successor(),
                identity=ex.caller.identity,
                enforce=not self.config.shadow,
                record=ex.output,
                metrics=self.metrics,
                keep_text=self.config.events.text != "none",
            )
            if len(vault):
                for slot in response_slots(answer):
                    slot.write(vault.restore(slot.text))
        return JSONResponse(answer, headers={"x-vallum-request-id": ex.id})

    async def _stream(
        self, relay: Relay, response: UpstreamResponse, context: OutputContext, ex: Exchange, sent: float
    ) -> AsyncIterator[bytes]:
        try:
            async for piece in relay(response, context):
                yield piece
        except (asyncio.CancelledError, GeneratorExit):
            # The client hung up: Starlette cancels the stream (or, on ASGI 2.4 servers, drops the generator).
            ex.status, ex.code = 499, "client_disconnected"
            raise
        finally:
            ex.upstream_ms = (time.perf_counter() - sent) * 1000
            if context.error is not None and ex.code is None:
                ex.code = context.error.code
            self._record(ex)
            response.close()

    def _upstream_error(self, response: UpstreamResponse, ex: Exchange) -> Response:
        """An upstream's own error (a 4xx about the request, a 5xx after retries) goes to the client as sent."""
        ex.status, ex.code = response.status_code, "upstream_error"
        try:
            json.loads(response.content)
        except ValueError:
            raise GatewayError(
                502,
                "upstream_invalid_response",
                f"Upstream {ex.upstream!r} answered {response.status_code} without a JSON body.",
            ) from None
        return Response(response.content, status_code=response.status_code, media_type="application/json")

    def _garbage(self, ex: Exchange) -> GatewayError:
        self.metrics.upstream_errors.labels(ex.upstream or "-", "invalid_response").inc()
        return GatewayError(
            502,
            "upstream_invalid_response",
            f"Upstream {ex.upstream!r} answered with something that is not JSON.",
        )

    def _check_restrictions(self, ex: Exchange) -> None:
        assert ex.caller is not None
        ident = ex.caller.identity
        keys = identity_keys(
            {"tenant": ident.tenant, "user": ident.user, "api_key": ident.api_key_id, "ip": ex.ip}
        )
        restriction = self.controls.check(keys)
        if restriction is None:
            return
        self.metrics.restrictions.labels(restriction.kind).inc()
        if restriction.kind == "block":
            raise GatewayError(403, "identity_blocked", f"Requests as {restriction.identity} are blocked.")
        raise GatewayError(
            429,
            "identity_cooldown",
            f"Requests as {restriction.identity} are paused for a while.",
            retry_after=max(1.0, (restriction.until or 0) - time.time()),
        )

    def _admin_services(self) -> AdminServices:
        return AdminServices(
            auth=AdminAuth(self.config.admin.tokens),
            policies=self.policies,
            keys=self.key_store,
            controls=self.controls,
            events=self.monitor.store,
            audit=self._audit,
            risks=self.monitor.riskiest,
            audit_trail=lambda limit: [
                e.fields if e.fields is not None else {"where": e.where, "unreadable": e.text}
                for e in self.monitor.audit.latest(limit)
            ],
            audit_verify=lambda: self.monitor.audit.verify().as_dict(),
            compliance=self._compliance,
            policy_changed=self._activate_policy,
            keys_changed=self._reload_keys,
        )

    def _audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        self.monitor.audit.record(action, actor=actor, target=target, detail=detail)

    async def _follow_shared_state(self) -> None:
        """Pick up policies, keys and identity restrictions that another replica (or this one) changed in the
        shared database."""
        while True:
            await asyncio.sleep(self.config.sync_interval_s)
            try:
                await asyncio.to_thread(self._sync_shared_state)
            except Exception as exc:  # a database outage must not end the loop; it recovers on its own
                self.metrics.shared_state_errors.labels("database", self.config.shared_state_fail).inc()
                log.warning("could not read shared policies, keys and restrictions: %s", exc)

    def _sync_shared_state(self) -> None:
        heads, keys = self.policies.heads(), self.key_store.mark()
        known_heads, known_keys = self._shared_marks
        for name, version in heads.items():
            if known_heads.get(name) != version and version > self._in_force.get(name, 0):
                self._activate_policy(self.policies.get(name, version))
                log.info("policy %s v%d is now in force", name, version)
        if keys != known_keys:
            self._reload_keys()
        self._shared_marks = (heads, keys)
        self.controls.reload()

    def _activate_policy(self, version: PolicyVersion) -> None:
        guard = Guard(version.policy())  # built outside the lock: it may take a while
        with self._policy_lock:
            # The admin API and the shared-state follower both get here; an older version never wins.
            if version.version >= self._in_force.get(version.name, 0):
                self.guards[version.name] = guard
                self._in_force[version.name] = version.version

    def _reload_keys(self) -> None:
        self.keys = KeyRing([*self.config.keys, *self.key_store.active()])
        # Once a key exists, every caller needs one; revoking the last key does not reopen the gateway.
        self.keys_required = self.keys_required or bool(self.keys.keys)

    def _compliance(self, since: float | None, kind: str) -> str | dict[str, Any]:
        features = {
            "rate_limits": any(k.limits and k.limits.requests_per_minute for k in self.keys.keys)
            or self.config.default_limits.requests_per_minute is not None,
            "token_budgets": any(k.limits and k.limits.tokens_per_day for k in self.keys.keys)
            or self.config.default_limits.tokens_per_day is not None,
            "tool_call_checks": True,
            "load_shedding": True,
            "model_allow_lists": any(k.models != ["*"] for k in self.keys.keys),
            "shadow": self.config.shadow,
        }
        store = self.monitor.store
        events = store.query(EventFilter(since=since), limit=100_000) if store is not None else []
        report = build_report(self.guards["default"].policy, features, events=events, period=(since, None))
        return render_markdown(report) if kind == "markdown" else report.model_dump(mode="json")

    def _authenticate(self, request: Request) -> Caller:
        presented = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        key = self.keys.find(presented) if presented else None
        if key is None and self.keys_required:
            code = "invalid_api_key" if presented else "missing_api_key"
            raise GatewayError(
                401, code, "A valid vallum API key is required (Authorization: Bearer or x-api-key)."
            )
        end_user = request.headers.get(self.config.end_user_header)
        identity = Identity(
            tenant=key.tenant if key else None,
            user=end_user or (key.user if key else None),
            api_key_id=key.id if key else None,
        )
        return Caller(identity, key)

    def _charge(self, ex: Exchange, tokens: int) -> None:
        ex.tokens += tokens
        if ex.caller is not None:
            self.limiter.charge(ex.caller.limit_key, tokens)

    def _record(self, ex: Exchange) -> None:
        self.metrics.requests.labels(ex.endpoint.name, str(ex.status)).inc()
        event = ex.event(self.config.shadow)
        ex.span.record_verdict("input", ex.input.action.value, ex.input.categories, ex.input.guard_ms)
        ex.span.record_verdict("output", ex.output.action.value, ex.output.categories, ex.output.guard_ms)
        if ex.code is not None:
            ex.span.set_error(ex.code)
        ex.span.end()
        self.monitor.emit(event)


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so the upstream call) if the client goes away meanwhile."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _error_response(error: GatewayError, api: Api) -> Response:
    return JSONResponse(error.body(api), status_code=error.status, headers=error.headers())
