"""RAG protection: scan documents before indexing, and guard what retrieval puts into prompts.

    from vallum.rag import DocumentScanner, RetrievalGuard, Requester
    DocumentScanner().scan_path("handbook.pdf").action      # before indexing
    RetrievalGuard().filter(chunks, Requester(user="ann", groups=frozenset({"sales"})))  # at query time

`vallum.rag.langchain` (needs langchain-core) adapts LangChain retrievers and embeddings.
"""

from __future__ import annotations

from vallum.rag.acl import ACL, Requester
from vallum.rag.chunk import Chunk
from vallum.rag.cli import run_rag_scan
from vallum.rag.document import ExtractedDocument, Format, HiddenSegment, Hiding, Location
from vallum.rag.embed import Embedder, HashingEmbedder, MiniLMEmbedder
from vallum.rag.errors import AclError, DocumentError, RagError, StoreError
from vallum.rag.extract import extract
from vallum.rag.retrieval import DroppedChunk, DropReason, GuardedChunk, RetrievalGuard, RetrievalResult
from vallum.rag.retriever import SecureRetriever, VectorStore
from vallum.rag.scanner import (
    DocumentFinding,
    DocumentReport,
    DocumentScanner,
    HiddenContent,
    rag_scan_policy,
)
from vallum.rag.store import SqliteVecStore

__all__ = [
    "ACL",
    "AclError",
    "Chunk",
    "DocumentError",
    "DocumentFinding",
    "DocumentReport",
    "DocumentScanner",
    "DropReason",
    "DroppedChunk",
    "Embedder",
    "ExtractedDocument",
    "Format",
    "GuardedChunk",
    "HashingEmbedder",
    "HiddenContent",
    "HiddenSegment",
    "Hiding",
    "Location",
    "MiniLMEmbedder",
    "RagError",
    "Requester",
    "RetrievalGuard",
    "RetrievalResult",
    "SecureRetriever",
    "SqliteVecStore",
    "StoreError",
    "VectorStore",
    "extract",
    "rag_scan_policy",
    "run_rag_scan",
]
