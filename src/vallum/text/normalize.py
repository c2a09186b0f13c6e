"""INTERFACE STUB (to be replaced by the full implementation).

normalize(text) -> NormalizedText with:
  original: str
  views: tuple[View, ...]   views[0] is the primary view ("canonical": NFKC, confusables folded,
                            invisible/tag/bidi removed, full-width folded, lower-cased, whitespace collapsed);
                            further views: "despaced", "deleet", "decoded:base64|hex|url|rot13" ...
  signals: tuple[Signal, ...]  obfuscation evidence (kind, span in original)
View: name, text, and .span(start, end) -> Span in the original text.
"""

from __future__ import annotations

from dataclasses import dataclass

from vallum.core.types import Span


@dataclass(frozen=True, slots=True)
class Signal:
    kind: str
    span: Span


@dataclass(frozen=True, slots=True)
class View:
    name: str
    text: str
    # starts[i] / ends[i]: the original range that view character i came from; None means identity.
    starts: tuple[int, ...] | None = None
    ends: tuple[int, ...] | None = None

    def span(self, start: int, end: int) -> Span:
        if self.starts is None or self.ends is None:
            return Span(start, end)
        if start >= end:
            pos = self.starts[start] if start < len(self.starts) else (self.ends[-1] if self.ends else 0)
            return Span(pos, pos)
        return Span(self.starts[start], self.ends[end - 1])


@dataclass(frozen=True, slots=True)
class NormalizedText:
    original: str
    views: tuple[View, ...]
    signals: tuple[Signal, ...] = ()

    @property
    def primary(self) -> View:
        return self.views[0]


def normalize(text: str) -> NormalizedText:
    return NormalizedText(text, (View("canonical", text.lower()),))
