"""The audit log: callers record what happened, a backend links and stores it, and it reads back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vallum.audit.backend import AuditBackend, StoredEntry
from vallum.audit.blocks import block_detail
from vallum.audit.entry import AuditAction, AuditEntry, Draft, Link, chain_hash
from vallum.audit.errors import AuditError
from vallum.audit.jsonl import JsonlAuditFile
from vallum.audit.signing import Signer
from vallum.audit.sql import DEFAULT_TABLE, SqlAuditTable
from vallum.audit.verify import Verification, verify_chain


class AuditLog:
    """Records audit entries through a backend, signing each one when a signer is given.

    Appending does I/O (an fsync, or a database transaction): call it from a writer thread, not on a
    request's path. `record_many` links a batch in one write.
    """

    def __init__(
        self, backend: AuditBackend, *, signer: Signer | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.backend = backend
        self.signer = signer
        self._clock = clock

    @classmethod
    def open(
        cls,
        *,
        file: str | Path | None = None,
        db_url: str | None = None,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        signer: Signer | None = None,
    ) -> AuditLog:
        """A log in a JSONL file or a database table (created when missing); pass `Signer.from_env()`
        to sign entries with VALLUM_AUDIT_SIGNING_KEY."""
        if (file is None) == (db_url is None):
            raise AuditError("an audit log lives in a file or a database: give one of file and db_url")
        backend: AuditBackend = (
            JsonlAuditFile(file)
            if file is not None
            else SqlAuditTable(str(db_url), table=table, schema=schema)
        )
        return cls(backend, signer=signer)

    def record(
        self,
        action: AuditAction | str,
        *,
        actor: str,
        target: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        return self.record_many([self.draft(action, actor=actor, target=target, detail=detail)])[0]

    def record_block(self, event: Mapping[str, Any], *, actor: str = "gateway") -> AuditEntry:
        """A blocking decision from a gateway event: ids, identity, categories, never the text."""
        return self.record(
            AuditAction.BLOCK, actor=actor, target=str(event.get("id", "")), detail=block_detail(event)
        )

    def draft(
        self,
        action: AuditAction | str,
        *,
        actor: str,
        target: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> Draft:
        try:
            known = AuditAction(action)
        except ValueError:
            names = ", ".join(a.value for a in AuditAction)
            raise AuditError(f"unknown audit action {action!r}; known: {names}") from None
        return Draft(self._clock(), actor, known, target, dict(detail or {}))

    def record_many(self, drafts: Sequence[Draft]) -> list[AuditEntry]:
        return self.backend.append(drafts, self._seal)

    def read(self) -> Iterator[StoredEntry]:
        return self.backend.read()

    def latest(self, limit: int = 100) -> list[StoredEntry]:
        return self.backend.latest(limit)

    def verify(
        self, *, public_key: Ed25519PublicKey | None = None, anchor: Link | None = None
    ) -> Verification:
        return verify_chain(self.backend.read(), public_key=public_key, anchor=anchor)

    def close(self) -> None:
        self.backend.close()

    def _seal(self, draft: Draft, after: Link) -> AuditEntry:
        fields: dict[str, Any] = {
            "seq": after.seq + 1,
            "time": float(draft.time),
            "actor": draft.actor,
            "action": str(draft.action),
            "target": draft.target,
            "detail": dict(draft.detail),
            "prev": after.hash,
        }
        digest = chain_hash(fields)
        signature = self.signer.sign(digest) if self.signer else None
        return AuditEntry(**fields, hash=digest, sig=signature)
