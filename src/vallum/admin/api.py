"""The admin API: events, identities and their risk, client keys, versioned policies, audit and compliance.

Every route names the permission it needs; `AdminAuth` maps the caller's token to a role and refuses the
rest (401 without a valid token, 403 for a role without the permission). Every change is written to the
audit log with the token id that made it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from vallum.admin.auth import AdminAuth, Permission
from vallum.admin.controls import IdentityControls
from vallum.admin.keys import KeyStore, KeyStoreError
from vallum.admin.policies import PolicyStore, PolicyStoreError, PolicyVersion
from vallum.errors import PolicyError
from vallum.gateway.config import AdminToken, RateLimit
from vallum.gateway.errors import GatewayError
from vallum.monitor import snapshots
from vallum.monitor.store import EventFilter, EventStore

AuditRecorder = Callable[[str, str, str, dict[str, Any]], None]  # actor, action, target, detail
Handler = Callable[[Request, AdminToken], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


@dataclass
class AdminServices:
    auth: AdminAuth
    policies: PolicyStore
    keys: KeyStore
    controls: IdentityControls
    events: EventStore | None
    audit: AuditRecorder
    risks: Callable[[int], list[dict[str, Any]]]  # the riskiest identities, most risky first
    audit_trail: Callable[[int], list[dict[str, Any]]]  # the latest audit entries
    audit_verify: Callable[[], dict[str, Any]]
    compliance: Callable[[float | None, str], str | dict[str, Any]]  # (since, "json" | "markdown")
    policy_changed: Callable[[PolicyVersion], None]  # makes a published version the one the gateway applies
    keys_changed: Callable[[], None]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    tenant: str | None = None
    user: str | None = None
    policy: str = "default"
    models: list[str] = Field(default_factory=lambda: ["*"])
    limits: RateLimit | None = None


class Restrict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float | None = Field(None, gt=0)  # a cool-down; without it, a block until lifted
    reason: str = ""


def admin_routes(services: AdminServices) -> list[BaseRoute]:
    api = _AdminApi(services)
    guarded = [
        ("/events", "GET", Permission.READ_EVENTS, api.events),
        ("/events/{id}", "GET", Permission.READ_EVENTS, api.event),
        ("/identities", "GET", Permission.READ_IDENTITIES, api.identities),
        ("/identities/history", "GET", Permission.READ_IDENTITIES, api.identity_history),
        ("/identities/{identity}/restriction", "PUT", Permission.ACT_ON_IDENTITIES, api.restrict),
        ("/identities/{identity}/restriction", "DELETE", Permission.ACT_ON_IDENTITIES, api.lift),
        ("/keys", "GET", Permission.MANAGE_KEYS, api.list_keys),
        ("/keys", "POST", Permission.MANAGE_KEYS, api.create_key),
        ("/keys/{id}", "DELETE", Permission.MANAGE_KEYS, api.revoke_key),
        ("/policies", "GET", Permission.READ_POLICIES, api.policy_names),
        ("/policies/{name}", "GET", Permission.READ_POLICIES, api.policy_history),
        ("/policies/{name}", "PUT", Permission.WRITE_POLICIES, api.publish_policy),
        ("/policies/{name}/diff", "GET", Permission.READ_POLICIES, api.policy_diff),
        ("/policies/{name}/rollback", "POST", Permission.WRITE_POLICIES, api.rollback_policy),
        ("/policies/{name}/{version:int}", "GET", Permission.READ_POLICIES, api.policy_version),
        ("/audit", "GET", Permission.READ_AUDIT, api.audit_trail),
        ("/audit/verify", "GET", Permission.READ_AUDIT, api.audit_verify),
        ("/compliance", "GET", Permission.READ_COMPLIANCE, api.compliance),
    ]
    return [
        Route(path, _guard(services.auth, permission, handler), methods=[method])
        for path, method, permission, handler in guarded
    ]


def _guard(
    auth: AdminAuth, permission: Permission, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            token = auth.require(request.headers.get("authorization"), permission)
            return await handler(request, token)
        except GatewayError as exc:
            return JSONResponse(exc.body("openai"), status_code=exc.status, headers=exc.headers())

    return endpoint


class _AdminApi:
    def __init__(self, services: AdminServices) -> None:
        self.s = services

    # ---- events ------------------------------------------------------------------------------------------

    async def events(self, request: Request, token: AdminToken) -> Response:
        store = self._store()
        q = request.query_params
        where = EventFilter(
            since=_number(q.get("since"), "since"),
            until=_number(q.get("until"), "until"),
            tenant=q.get("tenant"),
            user=q.get("user"),
            api_key=q.get("api_key"),
            ip=q.get("ip"),
            action=q.getlist("action") or None,
            category=q.get("category"),
            code=q.get("code"),
            text=q.get("q"),
        )
        limit = int(_number(q.get("limit"), "limit") or 100)
        offset = int(_number(q.get("offset"), "offset") or 0)
        if not 0 < limit <= 1000 or offset < 0:
            raise GatewayError(400, "invalid_query", "limit must be 1-1000 and offset >= 0")
        found = store.query(where, limit=limit, offset=offset)
        return JSONResponse({"events": found, "total": store.count(where), "limit": limit, "offset": offset})

    async def event(self, request: Request, token: AdminToken) -> Response:
        store = self._store()
        wanted = request.path_params["id"]
        match = store.get(wanted)
        if match is None:
            raise GatewayError(404, "event_not_found", f"No event with id {wanted!r}.")
        return JSONResponse(match)

    # ---- identities --------------------------------------------------------------------------------------

    async def identities(self, request: Request, token: AdminToken) -> Response:
        limit = int(_number(request.query_params.get("limit"), "limit") or 50)
        return JSONResponse(
            {
                "identities": self.s.risks(limit),
                "restrictions": [r.to_dict() for r in self.s.controls.active()],
            }
        )

    async def identity_history(self, request: Request, token: AdminToken) -> Response:
        """One identity's risk snapshots (score, level, features) over time, oldest first; the identity is a
        query parameter because user identities contain a slash (user:TENANT/NAME)."""
        store = self._store()
        q = request.query_params
        identity = q.get("identity", "")
        if not identity:
            raise GatewayError(400, "invalid_query", "name the identity: ?identity=user:acme/alice")
        asked = _number(q.get("limit"), "limit")
        limit = 1440 if asked is None else int(asked)  # a day of one snapshot a minute
        if not 0 < limit <= 10_000:
            raise GatewayError(400, "invalid_query", "limit must be 1-10000")
        found = await asyncio.to_thread(
            snapshots.history,
            store.engine,
            identity,
            _number(q.get("since"), "since"),
            _number(q.get("until"), "until"),
            limit,
        )
        return JSONResponse({"identity": identity, "snapshots": [s.to_dict() for s in found]})

    async def restrict(self, request: Request, token: AdminToken) -> Response:
        identity = request.path_params["identity"]
        body = _model(Restrict, await _json(request, default={}))
        if body.seconds is not None:
            done = self.s.controls.cooldown(identity, body.seconds, body.reason, token.id)
        else:
            done = self.s.controls.block(identity, body.reason, token.id)
        self.s.audit(token.id, "admin_action", identity, {"restriction": done.to_dict()})
        return JSONResponse(done.to_dict())

    async def lift(self, request: Request, token: AdminToken) -> Response:
        identity = request.path_params["identity"]
        if not self.s.controls.lift(identity):
            raise GatewayError(404, "no_restriction", f"{identity} has no active restriction.")
        self.s.audit(token.id, "admin_action", identity, {"restriction": "lifted"})
        return Response(status_code=204)

    # ---- keys --------------------------------------------------------------------------------------------

    async def list_keys(self, request: Request, token: AdminToken) -> Response:
        return JSONResponse({"keys": self.s.keys.listing()})

    async def create_key(self, request: Request, token: AdminToken) -> Response:
        body = _model(NewKey, await _json(request))
        if body.policy not in self.s.policies.names() and body.policy != "default":
            raise GatewayError(400, "unknown_policy", f"No policy named {body.policy!r}.")
        try:
            secret, key = self.s.keys.create(
                body.id,
                token.id,
                tenant=body.tenant,
                user=body.user,
                policy=body.policy,
                models=body.models,
                limits=body.limits,
            )
        except KeyStoreError as exc:
            raise GatewayError(409, "key_exists", str(exc)) from None
        self.s.keys_changed()
        self.s.audit(
            token.id, "key_created", key.id, {"tenant": key.tenant, "user": key.user, "policy": key.policy}
        )
        # The secret is shown once, here; only its digest is stored.
        return JSONResponse({"key": secret, **key.model_dump(exclude={"sha256"})}, status_code=201)

    async def revoke_key(self, request: Request, token: AdminToken) -> Response:
        key_id = request.path_params["id"]
        try:
            self.s.keys.revoke(key_id)
        except KeyStoreError as exc:
            raise GatewayError(404, "key_not_found", str(exc)) from None
        self.s.keys_changed()
        self.s.audit(token.id, "key_revoked", key_id, {})
        return Response(status_code=204)

    # ---- policies ----------------------------------------------------------------------------------------

    async def policy_names(self, request: Request, token: AdminToken) -> Response:
        latest = [self.s.policies.get(name) for name in self.s.policies.names()]
        return JSONResponse({"policies": [v.to_dict(with_text=False) for v in latest]})

    async def policy_history(self, request: Request, token: AdminToken) -> Response:
        history = self.s.policies.history(request.path_params["name"])
        if not history:
            raise GatewayError(404, "policy_not_found", f"No policy named {request.path_params['name']!r}.")
        return JSONResponse(
            {"active": history[0].to_dict(), "history": [v.to_dict(with_text=False) for v in history]}
        )

    async def policy_version(self, request: Request, token: AdminToken) -> Response:
        try:
            found = self.s.policies.get(request.path_params["name"], request.path_params["version"])
        except PolicyStoreError as exc:
            raise GatewayError(404, "policy_not_found", str(exc)) from None
        return JSONResponse(found.to_dict())

    async def publish_policy(self, request: Request, token: AdminToken) -> Response:
        name = request.path_params["name"]
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            payload = await _json(request)
            text, comment = str(payload.get("text", "")), str(payload.get("comment", ""))
        else:
            text, comment = _utf8(raw), request.query_params.get("comment", "")
        try:
            published = self.s.policies.publish(name, text, token.id, comment)
        except PolicyError as exc:
            raise GatewayError(400, "invalid_policy", str(exc)) from None
        self._activate(published, token)
        return JSONResponse(published.to_dict(with_text=False), status_code=201)

    async def policy_diff(self, request: Request, token: AdminToken) -> Response:
        name = request.path_params["name"]
        old = int(_number(request.query_params.get("from"), "from") or 0)
        new = int(_number(request.query_params.get("to"), "to") or 0)
        try:
            return PlainTextResponse(self.s.policies.diff(name, old, new))
        except PolicyStoreError as exc:
            raise GatewayError(404, "policy_not_found", str(exc)) from None

    async def rollback_policy(self, request: Request, token: AdminToken) -> Response:
        name = request.path_params["name"]
        version = (await _json(request)).get("version")
        if not isinstance(version, int):
            raise GatewayError(
                400, "invalid_request", 'body must be {"version": <int>}', {"param": "version"}
            )
        try:
            published = self.s.policies.rollback(name, version, token.id)
        except PolicyStoreError as exc:
            raise GatewayError(404, "policy_not_found", str(exc)) from None
        self._activate(published, token)
        return JSONResponse(published.to_dict(with_text=False), status_code=201)

    def _activate(self, published: PolicyVersion, token: AdminToken) -> None:
        self.s.policy_changed(published)
        self.s.audit(
            token.id,
            "policy_change",
            published.name,
            {"version": published.version, "label": published.label, "comment": published.comment},
        )

    # ---- audit and compliance ----------------------------------------------------------------------------

    async def audit_trail(self, request: Request, token: AdminToken) -> Response:
        limit = int(_number(request.query_params.get("limit"), "limit") or 100)
        return JSONResponse({"entries": self.s.audit_trail(limit)})

    async def audit_verify(self, request: Request, token: AdminToken) -> Response:
        return JSONResponse(self.s.audit_verify())

    async def compliance(self, request: Request, token: AdminToken) -> Response:
        since = _number(request.query_params.get("since"), "since")
        kind = request.query_params.get("format", "json")
        if kind not in ("json", "markdown"):
            raise GatewayError(400, "invalid_query", "format must be json or markdown", {"param": "format"})
        report = self.s.compliance(since, kind)
        if isinstance(report, str):
            return PlainTextResponse(report, media_type="text/markdown")
        return JSONResponse(report)

    def _store(self) -> EventStore:
        if self.s.events is None:
            raise GatewayError(
                404, "no_event_store", "The gateway has no event store configured (monitor.store)."
            )
        return self.s.events


async def _json(request: Request, default: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = await request.body()
    if not raw and default is not None:
        return default
    try:
        value = json.loads(_utf8(raw))
    except ValueError:
        raise GatewayError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise GatewayError(400, "invalid_request", "The request body must be a JSON object.")
    return value


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GatewayError(400, "invalid_utf8", "The request body is not valid UTF-8.") from None


def _model(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GatewayError(400, "invalid_request", f"{where}: {first['msg']}", {"param": where}) from None


def _number(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise GatewayError(400, "invalid_query", f"{name} must be a number", {"param": name}) from None
