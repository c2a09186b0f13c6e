"""Learned injection/jailbreak classifier: hashed n-grams and a linear model, pure numpy.

How a text is scored: every distinct view the normaliser produces (canonical, despaced, deleet,
decoded:*) is cut into overlapping windows, and all windows of all views of all texts in a batch are
featurised and scored in one vectorised pass. A text's score is its best window's, so an attack
hidden in the middle of a long benign document still stands out, and an obfuscated copy of an
attack scores as its de-obfuscated view does. The winning window is narrowed to its best
sub-window for the finding's span, mapped back to the original text with `View.span`.

Source sensitivity (the choice): one model, two threshold sets. The artefact stores a decision
margin per source group ("request": user turns; "data": retrieval and tool results, which should
never carry instructions) and per paranoia level 1..4, each chosen on held-out benign text of that
group so that at most 0.5 / 1 / 2 / 5 % of it is flagged, taking the strictest benign source of the
group. The raw log-odds are mapped to `sigmoid(margin - threshold)`, so score >= 0.5 means "over the
threshold for this source and paranoia"; only such windows become findings (`min_score`). Text from
a data source that fires is an indirect injection whatever the subtype head says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from vallum.core.types import Finding, Severity, Source
from vallum.models.features import featurize
from vallum.models.linear import LinearModel, load_model
from vallum.models.windows import window_bounds
from vallum.text.normalize import NormalizedText, View

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "injection.npz"
SPAN_CHARS = 64
MAX_EVIDENCE_CHARS = 160
CRITICAL_SCORE = 0.8
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=4)
def _cached_model(path: str) -> LinearModel:
    return load_model(path)


@dataclass(frozen=True, slots=True)
class _Piece:
    text_index: int
    view: View
    start: int
    end: int


class InjectionClassifier:
    name: ClassVar[str] = "injection_classifier"
    categories: ClassVar[tuple[str, ...]] = ("injection",)
    sources: ClassVar[frozenset[Source]] = frozenset({Source.USER, Source.RETRIEVAL, Source.TOOL_RESULT})

    def __init__(self, model_path: str | Path | None = None, min_score: float = 0.5) -> None:
        self.model = _cached_model(str(model_path or DEFAULT_MODEL_PATH))
        self.min_score = min_score

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        return self.detect_batch([text], [source], paranoia)[0]

    def detect_batch(
        self, texts: Sequence[NormalizedText], sources: Sequence[Source], paranoia: int
    ) -> list[list[Finding]]:
        pieces = self._pieces(texts)
        if not pieces:
            return [[] for _ in texts]
        rows = featurize([p.view.text[p.start : p.end] for p in pieces], self.model.spec)
        margins = self.model.margins(rows)
        owner = np.fromiter((p.text_index for p in pieces), dtype=np.int64, count=len(pieces))
        results: list[list[Finding]] = []
        for index, (text, source) in enumerate(zip(texts, sources, strict=True)):
            mine = np.flatnonzero(owner == index)
            if len(mine) == 0:
                results.append([])
                continue
            best = int(mine[np.argmax(margins[mine])])
            group = "data" if source.is_data else "request"
            score = float(self.model.calibrated(margins[best : best + 1], group, paranoia)[0])
            if score < self.min_score:
                results.append([])
                continue
            subtype = "indirect_injection" if source.is_data else self.model.subtype(rows, best)
            results.append([self._finding(text, pieces[best], score, subtype)])
        return results

    def _pieces(self, texts: Sequence[NormalizedText]) -> list[_Piece]:
        model = self.model
        pieces: list[_Piece] = []
        for index, text in enumerate(texts):
            seen: set[str] = set()
            for view in text.views:
                if view.text in seen or not view.text.strip():
                    continue
                seen.add(view.text)
                for start, end in window_bounds(len(view.text), model.window_chars, model.window_stride):
                    pieces.append(_Piece(index, view, start, end))
        return pieces

    def _finding(self, text: NormalizedText, piece: _Piece, score: float, subtype: str) -> Finding:
        start, end = self._narrow(piece)
        span = piece.view.span(start, end)
        if piece.view is text.primary or piece.view.name == "canonical":
            excerpt = text.original[span.start : span.end]
        else:
            excerpt = f"[{piece.view.name}] {piece.view.text[start:end]}"
        evidence = _SPACES.sub(" ", excerpt).strip()[:MAX_EVIDENCE_CHARS]
        severity = Severity.CRITICAL if score >= CRITICAL_SCORE else Severity.ERROR
        return Finding(
            detector=self.name,
            category="injection",
            severity=severity,
            score=score,
            span=span,
            evidence=evidence,
            subtype=subtype,
            rule_id=f"{self.name}:{subtype}",
        )

    def _narrow(self, piece: _Piece) -> tuple[int, int]:
        """The best-scoring SPAN_CHARS sub-window of a firing window (only runs when something fired)."""
        if piece.end - piece.start <= SPAN_CHARS:
            return piece.start, piece.end
        bounds = [
            (piece.start + a, piece.start + b)
            for a, b in window_bounds(piece.end - piece.start, SPAN_CHARS, SPAN_CHARS // 2)
        ]
        rows = featurize([piece.view.text[a:b] for a, b in bounds], self.model.spec)
        return bounds[int(np.argmax(self.model.margins(rows)))]
