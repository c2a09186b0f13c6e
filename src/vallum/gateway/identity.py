"""Who is calling: client API keys (kept only as digests) mapped to tenant, user, policy and limits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from vallum.core.types import Identity
from vallum.gateway.config import ClientKey

KEY_PREFIX = "vk-"


def new_key() -> tuple[str, str]:
    """A fresh client key and the digest to put in the configuration."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, digest(key)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated (or, on an open loopback gateway, anonymous) client and what applies to it."""

    identity: Identity
    key: ClientKey | None

    @property
    def limit_key(self) -> str:
        """What rate limits and budgets count against: the end user within a key, else the key."""
        ident = self.identity
        return f"{ident.tenant or '-'}/{ident.api_key_id or 'anonymous'}/{ident.user or '-'}"

    @property
    def policy(self) -> str:
        return self.key.policy if self.key else "default"


class KeyRing:
    def __init__(self, keys: list[ClientKey]) -> None:
        self.keys = keys
        self._by_digest = {k.sha256: k for k in keys}

    def find(self, presented: str) -> ClientKey | None:
        wanted = digest(presented)
        # Compare digests in constant time, so response timing says nothing about how close a guess was.
        for known, key in self._by_digest.items():
            if hmac.compare_digest(known, wanted):
                return key
        return None


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a client sent: `Authorization: Bearer` (OpenAI SDKs) or `x-api-key` (Anthropic SDKs)."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None
