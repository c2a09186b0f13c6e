"""Many RE2 patterns matched in one linear-time pass; exact spans only for the patterns that hit."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

import re2

from vallum.errors import DetectorError
from vallum.text.normalize import NormalizedText, View

DEFAULT_MAX_MEM = 64 << 20
MAX_EVIDENCE_CHARS = 160


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_HasId)


class PatternSet:
    """An `re2.Set` for the single pass plus one compiled regexp per pattern for its span.

    Patterns are matched case-insensitively: views other than the canonical one (decoded base64, say)
    are not guaranteed to be lower-cased.
    """

    def __init__(self, patterns: Sequence[str], *, max_mem: int = DEFAULT_MAX_MEM) -> None:
        options = re2.Options()
        options.case_sensitive = False
        options.max_mem = max_mem
        self._set = re2.Set.SearchSet(options)
        # Without capture groups RE2 finds the overall span with its DFAs instead of the slower NFA.
        span_options = re2.Options()
        span_options.case_sensitive = False
        span_options.max_mem = max_mem
        span_options.never_capture = True
        self._regexps = []
        for pattern in patterns:
            try:
                self._set.Add(pattern)
                self._regexps.append(re2.compile(pattern, span_options))
            except re2.error as exc:
                raise DetectorError(f"RE2 rejected pattern {pattern!r}: {exc}") from exc
        if patterns:
            try:
                self._set.Compile()
            except re2.error as exc:
                raise DetectorError(
                    f"{len(patterns)} patterns do not fit RE2's memory budget of {max_mem} bytes; "
                    "raise max_mem or split the rules"
                ) from exc

    def __len__(self) -> int:
        return len(self._regexps)

    def matching(self, data: bytes) -> list[int]:
        """Indices of every pattern that occurs in UTF-8 `data`, in ascending order."""
        if not self._regexps:
            return []
        return sorted(self._set.Match(data) or ())

    def span(self, index: int, text: str, data: bytes) -> tuple[int, int] | None:
        """Character range of the leftmost match of pattern `index` in `text` (`data` is its UTF-8)."""
        match = self._regexps[index].search(data)
        if match is None:
            return None
        start, end = match.span()
        if len(data) == len(text):  # pure ASCII: byte offsets are character offsets
            return start, end
        char_start = len(data[:start].decode("utf-8"))
        return char_start, char_start + len(data[start:end].decode("utf-8"))


def first_match_per_rule(
    patterns: PatternSet,
    rule_of_pattern: Sequence[R],
    text: NormalizedText,
    accept: Callable[[R], bool] = lambda _rule: True,
) -> Iterator[tuple[R, View, int, int]]:
    """Each accepted rule's first match over the text's distinct views: (rule, view, start, end in the view)."""
    reported: set[str] = set()
    scanned: set[str] = set()
    for view in text.views:
        if view.text in scanned:
            continue
        scanned.add(view.text)
        data = view.text.encode("utf-8")
        for index in patterns.matching(data):
            rule = rule_of_pattern[index]
            if rule.id in reported or not accept(rule):
                continue
            found = patterns.span(index, view.text, data)
            if found is None:
                continue
            reported.add(rule.id)
            yield rule, view, found[0], found[1]


def evidence(matched: str) -> str:
    """A matched stretch as findings quote it: whitespace collapsed, at most MAX_EVIDENCE_CHARS."""
    trimmed = " ".join(matched.split())
    return trimmed if len(trimmed) <= MAX_EVIDENCE_CHARS else trimmed[: MAX_EVIDENCE_CHARS - 1] + "…"
