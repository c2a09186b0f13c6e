"""Who may use the admin API: bearer tokens (stored as digests) with one role each, and what a role may do."""

from __future__ import annotations

import hmac
from enum import StrEnum

from vallum.gateway.config import AdminToken
from vallum.gateway.errors import GatewayError
from vallum.gateway.identity import digest, presented_key


class Permission(StrEnum):
    READ_EVENTS = "events:read"
    READ_IDENTITIES = "identities:read"
    ACT_ON_IDENTITIES = "identities:act"
    MANAGE_KEYS = "keys:manage"
    READ_POLICIES = "policies:read"
    WRITE_POLICIES = "policies:write"
    READ_AUDIT = "audit:read"
    READ_COMPLIANCE = "compliance:read"


# Analysts investigate traffic; auditors check the record (audit trail, policy history, compliance) without
# seeing traffic; admins change things. Only admins can change anything.
GRANTS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "analyst": frozenset(
        {
            Permission.READ_EVENTS,
            Permission.READ_IDENTITIES,
            Permission.READ_POLICIES,
            Permission.READ_COMPLIANCE,
        }
    ),
    "auditor": frozenset({Permission.READ_AUDIT, Permission.READ_POLICIES, Permission.READ_COMPLIANCE}),
}


class AdminAuth:
    def __init__(self, tokens: list[AdminToken]) -> None:
        self._tokens = tokens

    def require(self, authorization: str | None, permission: Permission) -> AdminToken:
        """The token's holder when it may do `permission`; a 401 or 403 error otherwise."""
        presented = presented_key(authorization, None)
        if presented is None:
            raise GatewayError(
                401, "missing_admin_token", "The admin API needs Authorization: Bearer <admin token>."
            )
        wanted = digest(presented)
        holder = next((t for t in self._tokens if hmac.compare_digest(t.sha256, wanted)), None)
        if holder is None:
            raise GatewayError(401, "invalid_admin_token", "The admin token is not valid.")
        if permission not in GRANTS[holder.role]:
            raise GatewayError(
                403,
                "forbidden_for_role",
                f"The {holder.role} role may not do {permission.value}.",
                {"role": holder.role},
            )
        return holder
