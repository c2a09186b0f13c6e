"""Leetspeak ("1gn0r3 pr3v10us 1nstruct10ns"): spot tokens that mix letters with look-alike digits."""

from __future__ import annotations

import re

LEET = str.maketrans("0134579@$", "oieastgas")
# Letter classes of the canonical text's ASCII projection: letter -> "a", leet substitute -> "1", any
# other byte -> ".". Shared by the cheap gates of this module and of text.spacing.
CLASSES = bytes(
    ord("a") if chr(b).isalpha() and b < 128 else ord("1") if chr(b) in "0134579@$" else ord(".")
    for b in range(256)
)
_LEET_CORE = re.compile(rb"a11*a")  # a letter, substitutes, a letter ("n0r", "t10n"); literal prefix
# A whole token of letters and substitutes only, with a substitute between letters: "mp3", "covid19",
# "user@example.com" and hashes (which hold a 2, 6 or 8 soon enough) are left alone. Trailing
# punctuation is not part of it.
_LEET_WORD = re.compile(r"[a-z0134579@$]*[a-z][0134579@$]+[a-z][a-z0134579@$]*")
_SUBSTITUTES = re.compile(r"[0134579@$]")
# Once a text has shown leetspeak, heavier tokens are read too ("1n57ruc710n5", "5y573m", "4ll"): a letter
# and a substitute somewhere, substitutes at most three in four. Alone such tokens are too ambiguous.
_HEAVY_WORD = re.compile(r"(?=[a-z0134579@$]*[a-z])(?=[a-z0134579@$]*[0134579@$])[a-z0134579@$]{3,}")
_TOKEN = re.compile(r"[^ \n]+")
_TRAILING_PUNCTUATION = ".,;:!?'\")]"


def may_have_leet(letter_classes: bytes) -> bool:
    """Cheap gate on the canonical text's letter CLASSES."""
    return b"a1" in letter_classes and _LEET_CORE.search(letter_classes) is not None


def _end_or_len(text: str, sub: str, start: int) -> int:
    found = text.find(sub, start)
    return len(text) if found < 0 else found


def _leet_tokens(canonical: str, letter_classes: bytes) -> list[tuple[int, int]]:
    tokens: list[tuple[int, int]] = []
    for core in _LEET_CORE.finditer(letter_classes):
        if tokens and core.start() < tokens[-1][1]:
            continue
        # canonical text has single spaces and line breaks as its only whitespace
        start = max(canonical.rfind(" ", 0, core.start()), canonical.rfind("\n", 0, core.start())) + 1
        end = min(_end_or_len(canonical, " ", core.end()), _end_or_len(canonical, "\n", core.end()))
        while end > start and canonical[end - 1] in _TRAILING_PUNCTUATION:
            end -= 1
        if (
            _LEET_WORD.fullmatch(canonical, start, end)
            and len(_SUBSTITUTES.findall(canonical, start, end)) * 2 <= end - start
        ):
            tokens.append((start, end))
    return _with_heavy_tokens(canonical, tokens) if tokens else tokens


def _with_heavy_tokens(canonical: str, tokens: list[tuple[int, int]]) -> list[tuple[int, int]]:
    taken = set(tokens)
    found = list(tokens)
    for match in _TOKEN.finditer(canonical):
        start, end = match.span()
        while end > start and canonical[end - 1] in _TRAILING_PUNCTUATION:
            end -= 1
        if (start, end) in taken or not _HEAVY_WORD.fullmatch(canonical, start, end):
            continue
        if len(_SUBSTITUTES.findall(canonical, start, end)) * 4 <= (end - start) * 3:
            found.append((start, end))
    return sorted(found)


def deleet(canonical: str, letter_classes: bytes) -> tuple[str, list[tuple[int, int]]]:
    """canonical with leet tokens spelled out (one character for one, so offsets do not move)."""
    tokens = _leet_tokens(canonical, letter_classes)
    if not tokens:
        return canonical, []
    parts: list[str] = []
    done = 0
    for start, end in tokens:
        parts.append(canonical[done:start])
        parts.append(canonical[start:end].translate(LEET))
        done = end
    parts.append(canonical[done:])
    return "".join(parts), tokens
