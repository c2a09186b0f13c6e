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
group so that at most 0.5 / 1 / 2 / 5 % of it is flagged, each benign origin of the group weighing
the same. The raw log-odds are mapped to `sigmoid(margin - threshold)`, so score >= 0.5 means "over
the threshold for this source and paranoia"; only such windows become findings (`min_score`). Text
from a data source that fires is an indirect injection whatever the subtype head says.
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
from vallum.models.features import NGrams, ngrams
from vallum.models.linear import LinearModel, load_model
from vallum.text.chunking import chunks
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
class _Window:
    text_index: int
    view: View
    offset: int  # where the view starts in the joined batch
    start: int  # window bounds inside the view
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
        views = [(index, view) for index, text in enumerate(texts) for view in _distinct_views(text)]
        results: list[list[Finding]] = [[] for _ in texts]
        if not views:
            return results
        grams = ngrams([view.text for _, view in views], self.model.spec)
        per_view = [np.asarray(self.model.windows(view.text), dtype=np.int64) for _, view in views]
        view_of = np.repeat(np.arange(len(views)), [len(w) for w in per_view])
        local = np.concatenate(per_view)  # window bounds inside their view
        bounds = local + grams.offsets[view_of][:, None]
        margins = self.model.window_margins(grams, bounds)
        margins = self.model.damp_repetition(grams, bounds, margins, self._lowest_threshold(paranoia))
        owner = np.asarray([index for index, _ in views], dtype=np.int64)[view_of]
        best = np.full(len(texts), -1, dtype=np.int64)
        order = np.lexsort((margins, owner))  # by text, then margin ascending: each text's last is its best
        last = np.flatnonzero(np.append(owner[order][1:] != owner[order][:-1], True))
        best[owner[order][last]] = order[last]
        for index, (text, source) in enumerate(zip(texts, sources, strict=True)):
            if best[index] < 0:
                continue
            k = int(best[index])
            v = int(view_of[k])
            window = _Window(index, views[v][1], int(grams.offsets[v]), int(local[k, 0]), int(local[k, 1]))
            group = "data" if source.is_data else "request"
            margin = margins[best[index] : best[index] + 1]
            score = float(self.model.calibrated(margin, group, paranoia)[0])
            if score < self.min_score:
                continue
            start, end = self._narrow(grams, window)
            subtype = (
                "indirect_injection"
                if source.is_data
                else self.model.subtype(grams, window.offset + window.start, window.offset + window.end)
            )
            results[index].append(self._finding(text, window.view, start, end, score, subtype))
        return results

    def _lowest_threshold(self, paranoia: int) -> float:
        """The smallest margin that could give a score of `min_score` for any source at this paranoia."""
        p = min(max(self.min_score, 1e-6), 1 - 1e-6)
        logit = float(np.log(p / (1 - p)))
        return min(self.model.threshold(g, paranoia) for g in self.model.source_groups) + logit

    def _finding(
        self, text: NormalizedText, view: View, start: int, end: int, score: float, subtype: str
    ) -> Finding:
        span = view.span(start, end)
        if view is text.primary:
            excerpt = text.original[span.start : span.end]
        else:
            excerpt = f"[{view.name}] {view.text[start:end]}"
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

    def _narrow(self, grams: NGrams, window: _Window) -> tuple[int, int]:
        """The best-scoring SPAN_CHARS piece of a firing window, in view coordinates, for the span."""
        if window.end - window.start <= SPAN_CHARS:
            return window.start, window.end
        pieces = [
            (window.start + a, window.start + b)
            for a, b in chunks(window.end - window.start, SPAN_CHARS, SPAN_CHARS // 2)
        ]
        bounds = np.array([(window.offset + a, window.offset + b) for a, b in pieces], dtype=np.int64)
        return pieces[int(np.argmax(self.model.window_margins(grams, bounds)))]


def _distinct_views(text: NormalizedText) -> list[View]:
    seen: set[str] = set()
    views = []
    for view in text.views:
        if view.text.strip() and view.text not in seen:
            seen.add(view.text)
            views.append(view)
    return views
