"""Errors of the RAG module: each says which document or chunk was at fault and what to do about it."""

from __future__ import annotations

from vallum.errors import InputError, VallumError


class RagError(VallumError):
    """Base class of everything vallum.rag raises on purpose."""


class DocumentError(RagError, InputError):
    """A document could not be read or extracted (corrupt PDF, binary junk, bad encoding, too large)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.reason = message
        self.path = path


class AclError(RagError):
    """A chunk's `acl` metadata is malformed; the chunk is treated as unreadable (fail closed)."""


class StoreError(RagError):
    """The vector store cannot be opened or used (missing extension, dimension mismatch, bad data)."""
