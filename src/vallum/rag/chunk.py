"""A retrieved chunk: its text, its metadata (with the `acl`), and the retriever's score."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vallum.rag.acl import ACL


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    score: float | None = None  # similarity from the retriever (higher is closer), where it gives one

    @property
    def acl(self) -> ACL:
        """The chunk's ACL; raises AclError when `acl` metadata is missing or malformed."""
        return ACL.parse(self.metadata.get("acl"))
