"""Cool-downs and blocks on identities, set by an admin or by behaviour analytics, checked on every request."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Restriction:
    identity: str  # an identity key such as "user:acme/alice", "key:team-a", "tenant:acme", "ip:10.0.0.1"
    kind: str  # "block" (until lifted) or "cooldown" (until `until`)
    until: float | None
    reason: str
    by: str  # an admin's token id, or "analytics"

    def to_dict(self) -> dict[str, object]:
        return {
            "identity": self.identity,
            "kind": self.kind,
            "until": self.until,
            "reason": self.reason,
            "by": self.by,
        }


class IdentityControls:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._active: dict[str, Restriction] = {}

    def block(self, identity: str, reason: str, by: str) -> Restriction:
        restriction = Restriction(identity, "block", None, reason, by)
        self._active[identity] = restriction
        return restriction

    def cooldown(self, identity: str, seconds: float, reason: str, by: str) -> Restriction:
        current = self._active.get(identity)
        if current is not None and current.kind == "block":
            return current  # a block is stronger than any cool-down
        restriction = Restriction(identity, "cooldown", self._clock() + seconds, reason, by)
        self._active[identity] = restriction
        return restriction

    def lift(self, identity: str) -> bool:
        return self._active.pop(identity, None) is not None

    def check(self, identities: Iterable[str]) -> Restriction | None:
        """The restriction that applies to a request made as any of `identities`, if one does."""
        now = self._clock()
        for identity in identities:
            restriction = self._active.get(identity)
            if restriction is None:
                continue
            if restriction.until is not None and restriction.until <= now:
                del self._active[identity]
                continue
            return restriction
        return None

    def active(self) -> list[Restriction]:
        now = self._clock()
        return [r for r in self._active.values() if r.until is None or r.until > now]
