"""The small interface every audit store implements, and an entry as it is read back."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vallum.audit.entry import AuditEntry, Draft, Link

Seal = Callable[[Draft, Link], AuditEntry]  # links a draft after the given tail: hash, and signature


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as read back, before anyone trusts it: `fields` is None when it is not a JSON object."""

    where: str  # "line 7" in a file, "row 7" in a table: how an operator finds it
    fields: dict[str, Any] | None
    text: str  # as stored, so that an export carries a damaged entry unchanged


class AuditBackend(Protocol):
    """Where entries live. `append` links and writes a batch atomically: every writer, in any thread or
    process, reads the tail and appends under one lock, so that concurrent writers form one chain."""

    @property
    def name(self) -> str: ...

    def append(self, drafts: Sequence[Draft], seal: Seal) -> list[AuditEntry]: ...

    def read(self) -> Iterator[StoredEntry]: ...

    def latest(self, limit: int) -> list[StoredEntry]:
        """The last `limit` entries in chain order (oldest first)."""
        ...

    def close(self) -> None: ...
