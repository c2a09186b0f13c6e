"""The recognizer interface (a Presidio-like `EntityRecognizer`) and the pattern-plus-validator base class.

Candidates are found with RE2 (linear time whatever the input); the validator (checksum, grammar,
library parse) only ever sees candidates, and a per-text budget bounds how many it sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

import re2

from vallum.pii.entity import PIIEntity

CONTEXT_WINDOW = 48
CONTEXT_BOOST = 0.2
# Validations one recognizer may spend on one text before it gives up on the rest (and says so).
DEFAULT_MAX_CANDIDATES = 4096


class Budget:
    """Counts validations for one recognizer on one text; `exhausted` says the tail went unscanned."""

    __slots__ = ("exhausted", "left")

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.exhausted = False

    def spend(self) -> bool:
        if self.left <= 0:
            self.exhausted = True
            return False
        self.left -= 1
        return True


class Recognizer(Protocol):
    name: str
    entity_types: frozenset[str]
    # Regions (ISO 3166) the recognizer belongs to; empty means it applies everywhere.
    regions: frozenset[str]

    def find(self, text: str, budget: Budget) -> Iterator[PIIEntity]: ...


class Validated(NamedTuple):
    start: int
    end: int
    score: float
    detail: str = ""


def has_context(text: str, start: int, words: tuple[str, ...]) -> bool:
    """Whether one of `words` (lower case) occurs in the few characters before `start`."""
    window = text[max(0, start - CONTEXT_WINDOW) : start].lower()
    return any(word in window for word in words)


def isolated(text: str, start: int, end: int) -> bool:
    """The span is not a piece of a longer token: no letter or digit touches it, nor `-7` / `.7` style tails."""
    if start > 0:
        before = text[start - 1]
        if before.isalnum() or (before in "-./:" and start > 1 and text[start - 2].isalnum()):
            return False
    if end < len(text):
        after = text[end]
        if after.isalnum() or (after in "-/:" and end + 1 < len(text) and text[end + 1].isalnum()):
            return False
        if after == "." and end + 1 < len(text) and text[end + 1].isdigit():
            return False
    return True


class PatternRecognizer:
    """One entity type: an RE2 candidate pattern, a validator, an optional context that raises the score."""

    name: str
    entity_type: str
    regions: frozenset[str] = frozenset()
    pattern: str
    context_words: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.entity_types = frozenset({self.entity_type})
        self._regex = re2.compile(self.pattern)

    def find(self, text: str, budget: Budget) -> Iterator[PIIEntity]:
        return self.find_in(text, budget, 0, len(text))

    def find_in(self, text: str, budget: Budget, pos: int, endpos: int) -> Iterator[PIIEntity]:
        """Candidates inside text[pos:endpos]; validators still see the whole text around them.

        The slice is matched on its own because the RE2 binding re-encodes the whole subject on every
        call, which would make many small ranges of a large text quadratic.
        """
        window = text if (pos, endpos) == (0, len(text)) else text[pos:endpos]
        for match in self._regex.finditer(window):
            start, end = match.start() + pos, match.end() + pos
            if not budget.spend():
                return
            found = self.validate(text, start, end)
            if found is None:
                continue
            score = found.score
            if self.context_words and has_context(text, found.start, self.context_words):
                score = min(1.0, score + CONTEXT_BOOST)
            yield PIIEntity(self.entity_type, found.start, found.end, score, self.name, found.detail)

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        raise NotImplementedError
