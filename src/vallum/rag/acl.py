"""Document ACLs on chunks, and the identity a retrieval request carries.

A chunk's `acl` metadata is `{"users": [...], "groups": [...], "tenants": [...]}` (each a list of
strings or one string). A requester may read a chunk when its tenant is one of `tenants` (if any are
given) and its user is one of `users` or one of its groups is one of `groups`. "*" in users or groups
means everyone (within the tenants, if any). An ACL that grants nobody, a missing ACL and a malformed
one all deny: retrieval fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vallum.core.types import Identity
from vallum.rag.errors import AclError

EVERYONE = "*"
ACL_KEYS = ("users", "groups", "tenants")


@dataclass(frozen=True, slots=True)
class Requester:
    """Who is asking: user, groups and tenant, from the request (e.g. the gateway's Identity)."""

    user: str | None = None
    groups: frozenset[str] = frozenset()
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.groups, frozenset):
            object.__setattr__(self, "groups", frozenset(_strings(self.groups, "groups")))

    @classmethod
    def from_identity(cls, identity: Identity | None, groups: Iterable[str] = ()) -> Requester:
        if identity is None:
            return cls(groups=frozenset(groups))
        return cls(identity.user, frozenset(groups), identity.tenant)

    def describe(self) -> str:
        parts = [f"user={self.user or '-'}", f"groups={','.join(sorted(self.groups)) or '-'}"]
        if self.tenant:
            parts.append(f"tenant={self.tenant}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class ACL:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, value: object) -> ACL:
        """An ACL from chunk metadata; AclError says what is wrong with a malformed one."""
        if isinstance(value, ACL):
            return value
        if value is None:
            raise AclError(
                "no acl metadata; give the chunk one, e.g. {'groups': ['finance']} ({'groups': ['*']} for everyone)"
            )
        if not isinstance(value, Mapping):
            raise AclError(
                f"acl must be a mapping like {{'groups': ['finance']}}, not {type(value).__name__}"
            )
        unknown = sorted(str(k) for k in value if k not in ACL_KEYS)
        if unknown:
            raise AclError(f"acl has unknown keys {unknown}; allowed: {', '.join(ACL_KEYS)}")
        return cls(
            frozenset(_strings(value.get("users"), "users")),
            frozenset(_strings(value.get("groups"), "groups")),
            frozenset(_strings(value.get("tenants"), "tenants")),
        )

    def permits(self, requester: Requester) -> bool:
        if self.tenants and EVERYONE not in self.tenants and requester.tenant not in self.tenants:
            return False
        if EVERYONE in self.users or EVERYONE in self.groups:
            return True
        if requester.user is not None and requester.user in self.users:
            return True
        return not self.groups.isdisjoint(requester.groups)

    def to_dict(self) -> dict[str, list[str]]:
        return {key: sorted(getattr(self, key)) for key in ACL_KEYS if getattr(self, key)}


def _strings(value: object, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = list(value)
        if all(isinstance(item, str) and item for item in items):
            return [str(item) for item in items]
    raise AclError(f"acl {key} must be a string or a list of non-empty strings, not {value!r}"[:200])
