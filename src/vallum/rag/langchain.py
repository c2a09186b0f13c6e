"""LangChain adapters (optional: needs `langchain-core`).

`GuardedRetriever` wraps any LangChain retriever: the documents it returns go through the
RetrievalGuard (ACLs from `metadata["acl"]`, then scanning), and come back sanitised where the policy
says, with `metadata["vallum"]` telling what was done. The requester comes from, in this order: the
`requester=` keyword of `invoke`, the run's `metadata["vallum_requester"]` ({"user", "groups",
"tenant"}), the `requester` field; with none it is anonymous and reads only chunks open to everyone.

A wrapped retriever that knows nothing of ACLs may fill its top k with chunks the caller cannot read
(the guard then drops them, and fewer come back). Push the ACL into the inner search where it can take
one: `search_kwargs_for=acl_filter` does this for vector stores whose search takes a `filter` callable
(InMemoryVectorStore); or use `StoreRetriever` over vallum's SqliteVecStore, which filters in SQL.

`LangChainEmbedder` lets any LangChain `Embeddings` feed vallum's vector store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from vallum.rag.acl import ACL, Requester
from vallum.rag.chunk import Chunk
from vallum.rag.embed import Vectors, normalise
from vallum.rag.errors import AclError
from vallum.rag.retrieval import RetrievalGuard, RetrievalResult
from vallum.rag.retriever import SecureRetriever

log = logging.getLogger(__name__)

REQUESTER_METADATA_KEY = "vallum_requester"
RESULT_METADATA_KEY = "vallum"


def acl_filter(requester: Requester) -> dict[str, Any]:
    """search kwargs that make a `filter`-callable vector store (InMemoryVectorStore) rank only
    documents the requester may read."""

    def readable(document: Document) -> bool:
        try:
            return ACL.parse(document.metadata.get("acl")).permits(requester)
        except AclError:
            return False

    return {"filter": readable}


def requester_from(value: object) -> Requester | None:
    """A Requester from itself or from a mapping {"user", "groups", "tenant"} (run metadata)."""
    if value is None or isinstance(value, Requester):
        return value
    if isinstance(value, Mapping):
        groups = value.get("groups") or ()
        return Requester(
            value.get("user"), frozenset([groups] if isinstance(groups, str) else groups), value.get("tenant")
        )
    raise TypeError(f"requester must be a vallum Requester or a mapping, not {type(value).__name__}")


class GuardedRetriever(BaseRetriever):
    """Any retriever, with vallum's retrieval guard applied to what it returns."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: BaseRetriever
    guard: RetrievalGuard
    requester: Requester | None = None
    search_kwargs_for: Callable[[Requester], dict[str, Any]] | None = None
    on_result: Callable[[RetrievalResult], None] | None = None

    def _requester(self, kwargs: dict[str, Any], metadata: Mapping[str, Any] | None) -> Requester:
        given = requester_from(kwargs.pop("requester", None))
        if given is None and metadata:
            given = requester_from(metadata.get(REQUESTER_METADATA_KEY))
        return given or self.requester or Requester()

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        requester = self._requester(kwargs, run_manager.metadata)
        if self.search_kwargs_for is not None:
            kwargs = {**self.search_kwargs_for(requester), **kwargs}
        documents = self.retriever.invoke(query, {"callbacks": run_manager.get_child()}, **kwargs)
        return self._guarded(documents, requester)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        requester = self._requester(kwargs, run_manager.metadata)
        if self.search_kwargs_for is not None:
            kwargs = {**self.search_kwargs_for(requester), **kwargs}
        documents = await self.retriever.ainvoke(query, {"callbacks": run_manager.get_child()}, **kwargs)
        return self._guarded(documents, requester)

    def _guarded(self, documents: Sequence[Document], requester: Requester) -> list[Document]:
        chunks = [_chunk(document, index) for index, document in enumerate(documents)]
        result = self.guard.filter(chunks, requester)
        if self.on_result is not None:
            self.on_result(result)
        source = {id(chunk): document for chunk, document in zip(chunks, documents, strict=True)}
        return [
            Document(
                page_content=kept.text,
                metadata={**source[id(kept.chunk)].metadata, RESULT_METADATA_KEY: kept.to_dict()},
                id=source[id(kept.chunk)].id,
            )
            for kept in result.chunks
        ]


class StoreRetriever(BaseRetriever):
    """vallum's SecureRetriever (ACLs in the store's query, then the guard) as a LangChain retriever."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: SecureRetriever
    k: int = 4
    requester: Requester | None = None
    on_result: Callable[[RetrievalResult], None] | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        given = requester_from(kwargs.pop("requester", None))
        if given is None and run_manager.metadata:
            given = requester_from(run_manager.metadata.get(REQUESTER_METADATA_KEY))
        requester = given or self.requester or Requester()
        result = self.retriever.retrieve(query, requester, int(kwargs.pop("k", self.k)))
        if self.on_result is not None:
            self.on_result(result)
        return [
            Document(
                page_content=kept.text,
                metadata={**kept.chunk.metadata, RESULT_METADATA_KEY: kept.to_dict()},
                id=kept.chunk.id,
            )
            for kept in result.chunks
        ]


class LangChainEmbedder:
    """A LangChain `Embeddings` as a vallum Embedder (for SqliteVecStore and SecureRetriever)."""

    def __init__(self, embeddings: Embeddings, dimensions: int | None = None) -> None:
        self.embeddings = embeddings
        self._dimensions = dimensions

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = len(self.embeddings.embed_query("dimension probe"))
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        return normalise(np.asarray(self.embeddings.embed_documents(list(texts)), dtype=np.float32))


def _chunk(document: Document, index: int) -> Chunk:
    chunk_id = document.id or str(document.metadata.get("id") or f"#{index}")
    return Chunk(chunk_id, document.page_content, document.metadata)
