"""Permission-aware retrieval end to end: embed the query, search the store for what the requester may
read, then let the RetrievalGuard re-check ACLs and scan, block, flag or sanitise.

    retriever = SecureRetriever(SqliteVecStore("kb.db"), MiniLMEmbedder(), RetrievalGuard())
    retriever.add(chunks)
    result = retriever.retrieve("refund policy", Requester(user="ann", groups=frozenset({"sales"})), k=4)

The store filters by ACL inside its query, so top-k is filled from permitted chunks only. Chunks the
guard then blocks would leave top-k short, so `fetch_k` (default 2k) candidates are fetched and the
first k survivors returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from vallum.rag.acl import Requester
from vallum.rag.chunk import Chunk
from vallum.rag.embed import Embedder, Vectors
from vallum.rag.retrieval import RetrievalGuard, RetrievalResult
from vallum.vault import Vault


class VectorStore(Protocol):
    def add(self, chunks: Sequence[Chunk], embeddings: Vectors) -> None: ...

    def search(self, embedding: Vectors, requester: Requester, k: int = 4) -> list[Chunk]: ...


class SecureRetriever:
    def __init__(self, store: VectorStore, embedder: Embedder, guard: RetrievalGuard | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.guard = guard if guard is not None else RetrievalGuard()

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Embed and store chunks (each with `acl` metadata)."""
        if chunks:
            self.store.add(chunks, self.embedder.embed([c.text for c in chunks]))

    def retrieve(
        self,
        query: str,
        requester: Requester,
        k: int = 4,
        *,
        fetch_k: int | None = None,
        vault: Vault | None = None,
    ) -> RetrievalResult:
        candidates = self.store.search(self.embedder.embed([query]), requester, fetch_k or 2 * k)
        result = self.guard.filter(candidates, requester, vault=vault)
        return RetrievalResult(result.chunks[:k], result.dropped)
