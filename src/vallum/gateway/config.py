"""The gateway's configuration: upstreams, model routes, client keys, limits and events (YAML, validated).

Secrets never live in the file: an upstream names the environment variable or file that holds its key,
and a client key is stored as its SHA-256 digest (`vallum keygen` prints a new key and its digest).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vallum.errors import VallumError


class ConfigError(VallumError):
    """The gateway configuration is invalid or refers to something that is missing."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Breaker(_Strict):
    failures: int = Field(5, ge=1)  # consecutive failures that open the circuit
    reset_s: float = Field(30.0, gt=0)  # how long it stays open before one trial request


class Upstream(_Strict):
    name: str
    # openai: any OpenAI-compatible server (OpenAI, vLLM, Ollama, the simulator); azure: Azure OpenAI
    # deployments; anthropic: Anthropic's Messages API. Decides the URL layout and the auth header.
    kind: Literal["openai", "azure", "anthropic"] = "openai"
    base_url: str  # up to and including the version segment, e.g. http://127.0.0.1:8001/v1
    api_key_env: str | None = None
    api_key_file: Path | None = None
    api_version: str = "2024-10-21"  # Azure's api-version query parameter
    timeout_s: float = Field(120.0, gt=0)  # whole answer; for streams, the longest silence between chunks
    connect_timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    backoff_s: float = Field(0.2, ge=0)
    breaker: Breaker = Field(default_factory=Breaker)

    def api_key(self) -> str | None:
        if self.api_key_file is not None:
            try:
                return self.api_key_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"upstream {self.name!r}: cannot read api_key_file: {exc}") from exc
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(
                    f"upstream {self.name!r}: environment variable {self.api_key_env} is not set"
                )
            return key
        return None


class Route(_Strict):
    model: str = "*"  # glob over the model the client asks for
    upstream: str
    upstream_model: str | None = None  # the name the upstream knows the model by, when it differs


class RateLimit(_Strict):
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_day: int | None = Field(None, gt=0)


class ClientKey(_Strict):
    id: str  # a name for logs and events; never the key itself
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tenant: str | None = None
    user: str | None = None
    policy: str = "default"  # a name from `policies`
    models: list[str] = Field(default_factory=lambda: ["*"])  # globs this key may call
    limits: RateLimit | None = None

    def allows(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


class Limits(_Strict):
    # Past either limit new requests get 503 at once, so an overload sheds load instead of slowing every
    # request down until all of them time out. In-flight requests are mostly waiting on upstreams, so the
    # count can be high; event-loop lag is what shows the CPU is saturated.
    max_in_flight: int = Field(4096, gt=0)
    max_loop_lag_ms: float = Field(250.0, gt=0)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    max_messages: int = Field(512, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)  # a client that uploads slower than this is cut off


class Events(_Strict):
    # store: the database at `database_url` (queryable through the admin API); jsonl: a file of lines.
    sink: Literal["store", "jsonl", "none"] = "store"
    path: Path = Path("vallum-events.jsonl")  # for the jsonl sink
    queue_size: int = Field(10_000, gt=0)
    batch_size: int = Field(500, gt=0)
    overflow: Literal["drop", "block"] = "drop"  # a full queue: drop and count, or wait for room
    # Store sink: a directory journaling every accepted event until the store commits it, so a crash loses
    # less than one batch (replayed at the next start). auto: beside a SQLite file (vallum.db-spool),
    # else ./vallum-events-spool; off: no journal (a crash then loses up to queue_size events).
    spool: Literal["auto", "off"] | Path = "auto"
    # none: events carry findings (detector, rule, span, score) but no text; redacted: the scanned text
    # too, rewritten by policy first, so nothing the policy redacts is ever stored; encrypted: that same
    # redacted text, sealed with AES-GCM under VALLUM_EVENT_KEYS (store sink only).
    text: Literal["none", "redacted", "encrypted"] = "none"

    @model_validator(mode="after")
    def _encryption_needs_the_store(self) -> Events:
        if self.text == "encrypted" and self.sink != "store":
            raise ValueError("events.text: encrypted needs events.sink: store")
        return self


class Analytics(_Strict):
    enabled: bool = True
    # Escalations applied on their own; by default analytics only alerts and scores. Source addresses are
    # shared behind proxies and NAT, so they are only acted on when `act_on_ip` says so.
    act: list[Literal["cooldown", "block"]] = Field(default_factory=list)
    act_on_ip: bool = False


class Audit(_Strict):
    # database: a table in `database_url` (one chain even with several replicas); file: a JSONL file.
    backend: Literal["database", "file"] = "database"
    path: Path = Path("vallum-audit.jsonl")
    blocks: bool = True  # also record every blocking decision, not only admin changes


class AdminToken(_Strict):
    id: str  # who acts, as the audit log records it
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # of the bearer token (`vallum keygen` makes one)
    # admin changes things; analyst investigates traffic; auditor reads the audit trail and compliance.
    role: Literal["admin", "analyst", "auditor"]


class Admin(_Strict):
    # The admin API is served under /admin once at least one token is configured.
    tokens: list[AdminToken] = Field(default_factory=list)


class GatewayConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Policy files by name (None: the built-in policy); keys pick one, "default" serves everyone else.
    policies: dict[str, Path | None] = Field(default_factory=lambda: dict[str, Path | None](default=None))
    upstreams: list[Upstream] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    keys: list[ClientKey] = Field(default_factory=list)
    # auto: keys are required unless the gateway listens on loopback only and no key is configured.
    require_keys: Literal["auto", "always", "never"] = "auto"
    end_user_header: str = "x-vallum-user"
    default_limits: RateLimit = Field(default_factory=RateLimit)  # per identity, for keys without their own
    shadow: bool = False  # decide and record, but never block or rewrite
    # Streamed text is released as it settles (vallum.core.settled: the last words, and any that could
    # still be part of a number, a name or a key, wait), never holding back more than this many characters.
    stream_holdback: int = Field(128, ge=1)
    # Hold back `stream_holdback` characters always, so that a block comes before any word of the passage
    # that caused it; chosen by itself when a detector reads across words (a protected prompt, NER).
    stream_lookahead: bool = False
    # Streamed text is scanned once this much is ready to go: smaller gives a smoother stream on slow
    # upstreams, at more rescanning (about (128 + step) / step times the text).
    stream_min_step: int = Field(256, ge=1)
    stream_first_step: int = Field(1, ge=1)  # the first words go out as soon as this much is settled
    # ...and later text once this long has passed since the last release, however little is ready: a slow
    # model's words reach the reader at its pace instead of in stream_min_step bursts.
    stream_max_wait_ms: float = Field(50, gt=0)
    limits: Limits = Field(default_factory=Limits)
    events: Events = Field(default_factory=Events)
    # Events, audit trail, versioned policies and admin-made keys; PostgreSQL when replicas share them.
    database_url: str = "sqlite:///vallum.db"
    redis_url: str | None = None  # rate limits, budgets and analytics windows shared by several replicas
    # When Redis or the database cannot be reached: open lets requests through, closed refuses them (503).
    shared_state_fail: Literal["open", "closed"] = "open"
    sync_interval_s: float = Field(
        2.0, gt=0
    )  # how often a replica looks for policies and keys changed elsewhere
    analytics: Analytics = Field(default_factory=Analytics)
    alerts: Path | None = None  # alert rules (examples/alerts.yaml)
    audit: Audit = Field(default_factory=Audit)
    admin: Admin = Field(default_factory=Admin)
    drain_s: float = Field(30.0, ge=0)  # how long shutdown waits for open streams

    @model_validator(mode="after")
    def _references_exist(self) -> GatewayConfig:
        names = [u.name for u in self.upstreams]
        if len(set(names)) != len(names):
            raise ValueError("upstream names must be unique")
        for route in self.routes:
            if route.upstream not in names:
                raise ValueError(f"route for {route.model!r} names unknown upstream {route.upstream!r}")
        if "default" not in self.policies:
            raise ValueError("policies must define 'default'")
        for key in self.keys:
            if key.policy not in self.policies:
                raise ValueError(f"key {key.id!r} names unknown policy {key.policy!r}")
        if self.require_keys == "never" and not _is_loopback(self.host):
            raise ValueError(f"require_keys: never is refused on a non-loopback host ({self.host})")
        return self

    @cached_property
    def keys_required(self) -> bool:
        if self.require_keys == "auto":
            return bool(self.keys) or not _is_loopback(self.host)
        return self.require_keys == "always"

    def route(self, model: str) -> tuple[Upstream, str] | None:
        """The upstream for `model` and the model name to send it, or None when no route matches."""
        by_name = {u.name: u for u in self.upstreams}
        for route in self.routes:
            if fnmatch.fnmatchcase(model, route.model):
                return by_name[route.upstream], route.upstream_model or model
        return None

    @classmethod
    def load(cls, path: Path | None = None, **overrides: object) -> GatewayConfig:
        """The file's settings (if any), then VALLUM_* environment variables, then explicit overrides."""
        data: dict[str, object] = {}
        if path is not None:
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read gateway config {path}: {exc}") from exc
            if loaded is not None and not isinstance(loaded, dict):
                raise ConfigError(f"{path}: the top level must be a mapping")
            data.update(loaded or {})
        for key, variable in (("database_url", "VALLUM_DATABASE_URL"), ("redis_url", "VALLUM_REDIS_URL")):
            if value := os.environ.get(variable):
                data[key] = value
        if policy := os.environ.get("VALLUM_POLICY"):
            data["policies"] = {**dict(data.get("policies") or {}), "default": policy}  # type: ignore[call-overload]
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ConfigError(f"{path or 'gateway config'}: {where}: {first['msg']}") from exc


def single_upstream(base_url: str) -> tuple[list[Upstream], list[Route]]:
    """`vallum serve --upstream URL`: one OpenAI-compatible upstream that serves every model."""
    upstream = Upstream(name="default", kind="openai", base_url=base_url.rstrip("/"))
    return [upstream], [Route(model="*", upstream="default")]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
