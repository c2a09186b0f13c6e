"""Finding spans over a text, as the runs of text a page shows plain or marked.

Spans come from stored events (attacker-influenced text, spans written by an older or newer gateway), so
any span that does not fit the text is dropped rather than trusted, and overlapping spans split the text
where they start and end: every character is shown exactly once, marked by every span that covers it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vallum.core.types import Finding


@dataclass(frozen=True, slots=True)
class Mark:
    category: str
    rule_id: str | None


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    marks: tuple[Mark, ...]  # empty for plain text

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(m.category for m in self.marks))

    @property
    def title(self) -> str:
        """What a mark's tooltip says: each category with the rules that found it."""
        return "; ".join(
            f"{m.category} {m.rule_id}" if m.rule_id else m.category for m in dict.fromkeys(self.marks)
        )


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    mark: Mark


def segments(text: str, spans: Iterable[Mapping[str, Any]] | None) -> list[Segment]:
    """`text` cut into runs; the runs joined give `text` back. Spans are {"start", "end", "category",
    "rule_id"} in the text's own (code point) coordinates."""
    valid = [s for s in (_parse(raw, len(text)) for raw in spans or ()) if s is not None]
    cuts = sorted({0, len(text), *(s.start for s in valid), *(s.end for s in valid)})
    out: list[Segment] = []
    for start, end in itertools.pairwise(cuts):
        marks = tuple(s.mark for s in valid if s.start <= start and end <= s.end)
        if out and out[-1].marks == marks:  # spans that cover the same marks leave no visible cut
            out[-1] = Segment(out[-1].text + text[start:end], marks)
        else:
            out.append(Segment(text[start:end], marks))
    return out


def finding_spans(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """A verdict's findings as spans over the text that was scanned."""
    return [
        {"start": f.span.start, "end": f.span.end, "category": f.category, "rule_id": f.rule_id}
        for f in findings
        if f.span is not None
    ]


def _parse(raw: object, length: int) -> _Span | None:
    if not isinstance(raw, Mapping):
        return None
    start, end = raw.get("start"), raw.get("end")
    if type(start) is not int or type(end) is not int:  # bools and floats are not offsets
        return None
    if not 0 <= start < end <= length:  # made for another text (or forged): its positions mean nothing here
        return None
    rule = raw.get("rule_id")
    return _Span(start, end, Mark(str(raw.get("category") or "unknown"), None if rule is None else str(rule)))
