"""One audit entry, its canonical encoding, and the hash that links it to the entry before it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from vallum.audit.errors import AuditError

GENESIS_HASH = "0" * 64  # what the first entry's `prev` holds
FIELDS = ("seq", "time", "actor", "action", "target", "detail", "prev", "hash")
# Not covered by the hash: the hash itself, and the signature made over it.
_UNHASHED = frozenset({"hash", "sig"})


class AuditAction(StrEnum):
    """What an entry records. Suggested `detail` shapes are in each value's comment."""

    POLICY_CHANGE = "policy_change"  # {"policy": name, "from": old label, "to": new label}
    KEY_CREATED = "key_created"  # {"key": key id, "tenant": ..., "user": ...}; never the key itself
    KEY_REVOKED = "key_revoked"  # {"key": key id, "reason": ...}
    ADMIN_ACTION = "admin_action"  # {"route": ..., "method": ..., ...} for anything else an admin does
    BLOCK = "block"  # vallum.audit.blocks.block_detail(event): ids and categories, never prompt text


def canonical_json(value: Any) -> bytes:
    """The one byte encoding hashes are computed over: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def chain_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over every field of an entry except `hash` and `sig`."""
    hashed = {key: value for key, value in fields.items() if key not in _UNHASHED}
    return hashlib.sha256(canonical_json(hashed)).hexdigest()


@dataclass(frozen=True, slots=True)
class Link:
    """The end of a chain, which the next entry commits to."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


GENESIS = Link(0, GENESIS_HASH)


@dataclass(frozen=True, slots=True)
class Draft:
    """An entry before it is linked into the chain: what the caller says happened."""

    time: float
    actor: str
    action: AuditAction
    target: str
    detail: Mapping[str, Any]

    def __post_init__(self) -> None:
        try:
            canonical_json(dict(self.detail))
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise AuditError(f"audit detail for {self.action} must be a JSON object: {exc}") from exc


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    time: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    prev: str
    hash: str
    sig: str | None = None

    @property
    def link(self) -> Link:
        return Link(self.seq, self.hash)

    def as_dict(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in FIELDS}
        if self.sig is not None:
            fields["sig"] = self.sig
        return fields

    def line(self) -> bytes:
        """The entry as one JSONL line, newline included."""
        return canonical_json(self.as_dict()) + b"\n"
