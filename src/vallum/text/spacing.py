"""Letter spacing ("i g n o r e  a l l", "i-g-n-o-r-e", "i.g.n.o.r.e") and whitespace collapsing."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from typing import TYPE_CHECKING

from vallum.text.offsets import MapBuilder, OffsetMap, replace_spans

if TYPE_CHECKING:
    from wordninja import LanguageModel

# A run of at least four single letters, each followed by a short separator. The separator that occurs
# most in a run joins letters; any other separator ("  " among " ") marks a word boundary.
_SEP = r"(?:[ \t]{1,3}|[ \t]?[.\-_*/|~+·•][ \t]?)"
_SPACED_RUN = re.compile(rf"(?<![^\W\d_])[^\W\d_](?:{_SEP}[^\W\d_](?![^\W\d_])){{3,}}")
_SPACED_PIECE = re.compile(rf"({_SEP})([^\W\d_])")
_WS_TO_SPACE = bytes.maketrans(b"\t\n\r\x0b\x0c", b"     ")
_SPACES = re.compile(b" +")
# A joined group is split into English words only when they look like words: long on average and no stray
# single letters ("z e i g m i r" must not become "ze ig mir"); otherwise it stays joined.
_MIN_GROUP = 6
_MIN_MEAN_WORD = 4.0
# The word search is pure Python (about 10 µs a letter): a group longer than this stays joined, and a text
# gets this many letters split in all, so a megabyte of spaced-out letters costs what a short attack does.
_MAX_GROUP = 256
_SPLIT_BUDGET = 2048


def may_have_spaced_letters(letter_classes: bytes, projection: bytes) -> bool:
    """Cheap gate on the canonical text's letter classes (letters as b"a", see text.leet.CLASSES) and its
    ASCII projection, where any other script's letters (Chinese, Cyrillic, Arabic) show as "?"."""
    return (
        b".a.a.a.a." in letter_classes
        or letter_classes.startswith(b"a.a.a.a.")
        or letter_classes.endswith(b".a.a.a.a")
        or b"? ? ? ?" in projection
    )


def despace(text: str, parent: OffsetMap | None) -> tuple[str, list[tuple[int, int]], OffsetMap | None]:
    """text with spaced-out words joined, the runs found (spans in text), and its map (through parent)."""
    runs: list[tuple[int, int]] = []
    builder = MapBuilder(len(text), parent)
    done, budget = 0, _SPLIT_BUDGET
    for run in _SPACED_RUN.finditer(text):
        start, end = run.span()
        builder.linear(text[done:start], done)
        builder.linear(text[start], start)
        pieces = list(_SPACED_PIECE.finditer(text, start + 1, end))
        joiner = Counter(p.group(1) for p in pieces).most_common(1)[0][0]
        breaks, budget = _word_breaks(text[start], pieces, joiner, budget)
        for i, piece in enumerate(pieces):
            if piece.group(1) != joiner or i in breaks:
                builder.block(" ", piece.start(1), piece.end(1))
            builder.linear(piece.group(2), piece.start(2))
        runs.append((start, end))
        done = end
    builder.linear(text[done:], done)
    despaced, offsets = builder.build()
    return despaced, runs, offsets


def _word_breaks(first: str, pieces: list[re.Match[str]], joiner: str, budget: int) -> tuple[set[int], int]:
    """Indices of the pieces that begin an English word inside a group of joined letters (spacing out every
    letter drops the spaces between words too: "p l e a s e s p e l l" reads "please spell"), and the budget
    of letters left."""
    breaks: set[int] = set()
    groups: list[list[tuple[int, str]]] = [[(-1, first)]]
    for i, piece in enumerate(pieces):
        if piece.group(1) != joiner:
            groups.append([])
        groups[-1].append((i, piece.group(2)))
    for group in groups:
        if _MIN_GROUP <= len(group) <= min(_MAX_GROUP, budget):
            budget -= len(group)
            breaks |= _english_breaks(group)
    return breaks, budget


def _english_breaks(group: list[tuple[int, str]]) -> set[int]:
    letters = "".join(letter for _, letter in group)
    if not (letters.isascii() and letters.isalpha()):
        return set()
    words = _english().split(letters)
    if (
        "".join(words) != letters  # the breaks below index letters by the words' lengths
        or len(words) < 2
        or len(letters) / len(words) < _MIN_MEAN_WORD
        or any(len(w) == 1 and w.lower() not in ("a", "i") for w in words)
    ):
        return set()
    breaks, at = set(), 0
    for word in words[:-1]:
        at += len(word)
        breaks.add(group[at][0])
    return breaks


@cache
def _english() -> LanguageModel:
    """Word costs from English word frequencies; loaded on the first spaced-out text (about 80 ms)."""
    import wordninja

    return wordninja.DEFAULT_LANGUAGE_MODEL


def collapse_whitespace(text: str, parent: OffsetMap | None) -> tuple[str, OffsetMap | None]:
    """Every whitespace run becomes one character, none at either end: a line break where the run held
    one (rules anchored at line starts keep working), a space otherwise. parent maps text to its base."""
    raw = text.encode("ascii", "replace")
    projection = raw.translate(_WS_TO_SPACE)
    flat = text
    if projection != raw:
        flat = flat.replace("\t", " ").replace("\r", "\n").replace("\x0b", "\n").replace("\x0c", "\n")
    n = len(projection)
    if not n or (projection[0] != 32 and projection[-1] != 32 and b"  " not in projection):
        return flat, parent  # one-for-one replacements at most: the parent's map still holds
    edits: list[tuple[int, int, str]] = []
    start = projection.find(b"  ")
    while start >= 0:
        end = start + 2
        if end < n and projection[end] == 32:
            end = _SPACES.match(projection, end).end()  # type: ignore[union-attr]  # matches at a space
        edits.append((start, end, "\n" if flat.find("\n", start, end) >= 0 else " "))
        start = projection.find(b"  ", end)
    if projection[0] == 32:
        if edits and edits[0][0] == 0:
            edits[0] = (0, edits[0][1], "")
        else:
            edits.insert(0, (0, 1, ""))
    if projection[-1] == 32:
        if edits and edits[-1][1] == n:
            edits[-1] = (edits[-1][0], n, "")
        else:
            edits.append((n - 1, n, ""))
    return replace_spans(flat, edits, parent)
