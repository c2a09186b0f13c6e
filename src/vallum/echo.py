"""System-prompt echo: how much of a protected prompt a text reproduces, and where, robust to reformatting.

The prompt and the text are reduced to content words (lower case, stopwords dropped, words cut to
their first STEM_CHARS characters so that "instructions" and "instruction" agree) and compared as
shingles of `size` content words: `size` consecutive ones, and the `size` of a window one word longer
with one inner word skipped, so that a word inserted or dropped does not break the shingles around it.
A shingle's key combines its words' hashes order-free, so it ignores word order inside the shingle: light
rewording, reordered words, markdown bullets, changed whitespace, case and punctuation all leave most
shingles intact. Shingles made only of generic
assistant vocabulary ("helpful", "assistant", "answer", "questions") do not count: every prompt has them.

Matching is linear in the text: one regex scan, one hash per word, one set lookup per shingle. Word
positions are only computed when something matched.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

STEM_CHARS = 6
DEFAULT_SHINGLE = 3
# Words are runs of anything but whitespace and ASCII punctuation: str.translate + split finds them at
# C speed; _WORD finds the same words with their positions, only once something matched.
_PUNCTUATION_TO_SPACE = str.maketrans(dict.fromkeys(string.punctuation, " "))
_WORD = re.compile(f"[^\\s{re.escape(string.punctuation)}]+")


@dataclass(frozen=True, slots=True)
class EchoMatch:
    """`matched` of the prompt's `total` distinctive shingles occur in the text, in these char ranges."""

    matched: int
    total: int
    spans: tuple[tuple[int, int], ...]

    @property
    def coverage(self) -> float:
        return self.matched / self.total if self.total else 0.0


class EchoIndex:
    """The distinctive shingles of one protected prompt."""

    def __init__(
        self,
        prompt: str,
        *,
        stopwords: Iterable[str],
        generic_words: Iterable[str],
        size: int = DEFAULT_SHINGLE,
    ) -> None:
        if size < 2:
            raise ValueError(f"shingle size must be at least 2, not {size}")
        self.size = size
        self._stopwords = frozenset(word.lower() for word in stopwords)
        generic = {word.lower()[:STEM_CHARS] for word in generic_words}
        words = self._content_words(prompt.lower())
        shingles = set()
        for skipped, keys in enumerate(self._keys(words)):
            for start, key in enumerate(keys):
                members = _members(words, start, size, skipped)
                # XOR cancels a repeated word, so such shingles would stand for fewer words than they hold.
                if len(set(members)) == size and not generic.issuperset(members):
                    shingles.add(key)
        self.shingles = frozenset(shingles)

    @property
    def total(self) -> int:
        return len(self.shingles)

    def match(self, text: str, *, max_gap: int | None = None) -> EchoMatch | None:
        """Shingles of the prompt found in lower-cased `text`; None when there are none.

        Hits at most `max_gap` words apart (default: the shingle size, so one edited word does not
        split a passage) are reported as one span.
        """
        if not self.shingles:
            return None
        wanted = self.shingles
        found: set[int] = set()
        starts: set[int] = set()
        for keys in self._keys(self._content_words(text)):
            if wanted.isdisjoint(keys):  # the usual case, decided at C speed
                continue
            hits = [i for i, key in enumerate(keys) if key in wanted]
            starts.update(hits)
            found.update(keys[i] for i in hits)
        if not found:
            return None
        positions = [m.span() for m in _WORD.finditer(text) if m.group() not in self._stopwords]
        last_word = len(positions) - 1
        gap = self.size if max_gap is None else max_gap
        spans = []
        ordered = sorted(starts)
        first = last = ordered[0]
        for i in ordered[1:]:
            if i - last > gap:
                spans.append((positions[first][0], positions[min(last + self.size, last_word)][1]))
                first = i
            last = i
        spans.append((positions[first][0], positions[min(last + self.size, last_word)][1]))
        return EchoMatch(len(found), len(wanted), tuple(spans))

    def _content_words(self, text: str) -> list[str]:
        stop = self._stopwords
        return [
            word[:STEM_CHARS] for word in text.translate(_PUNCTUATION_TO_SPACE).split() if word not in stop
        ]

    def _keys(self, words: list[str]) -> list[list[int]]:
        """Shingle keys by start position: consecutive words first, then one list per skipped inner word.

        Keys combine word hashes with XOR: order-free, and a skipped word is taken out of a longer
        window by XOR-ing it again.
        """
        hashes = list(map(hash, words))
        size = self.size
        consecutive = hashes[: max(0, len(hashes) - size + 1)]
        for shift in range(1, size):
            consecutive = list(map(operator.xor, consecutive, hashes[shift:]))
        window = list(map(operator.xor, consecutive, hashes[size:]))
        return [consecutive] + [list(map(operator.xor, window, hashes[skip:])) for skip in range(1, size)]


def _members(words: list[str], start: int, size: int, skipped: int) -> list[str]:
    """The words of shingle list `skipped` (0: consecutive; k: inner word k of a longer window left out)."""
    if skipped == 0:
        return words[start : start + size]
    window = words[start : start + size + 1]
    return window[:skipped] + window[skipped + 1 :]
