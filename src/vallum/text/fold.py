"""Per-character folding into the canonical alphabet, and what kind of trick a folded character was.

fold_char is context free and cached, so whole texts fold at C speed with str.translate(FOLD_TABLE).
Look-alikes from other scripts (Cyrillic "а" for Latin "a") are not folded here: that depends on the
word around them and lives in normalize.py.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from vallum.text.unicode_tables import (
    BIDI_RANGES,
    COMBINING_RANGES,
    CONTROL_RANGES,
    FULLWIDTH_RANGE,
    INVISIBLE_RANGES,
    NATIVE_LETTERS,
    STYLED_LETTERS,
    STYLED_RANGES,
    TAG_RANGE,
    char_class,
    in_ranges,
)

REMOVABLE_RE = re.compile(
    "[" + char_class(TAG_RANGE, *BIDI_RANGES, *INVISIBLE_RANGES, *CONTROL_RANGES, *COMBINING_RANGES) + "]+"
)
# One removable run may mix kinds; this splits it (it only ever runs inside a run found above).
REMOVABLE_KIND_RE = re.compile(
    f"(?P<tag_chars>[{char_class(TAG_RANGE)}]+)"
    f"|(?P<bidi>[{char_class(*BIDI_RANGES)}]+)"
    f"|(?P<invisible>[{char_class(*INVISIBLE_RANGES)}]+)"
    f"|(?P<control>[{char_class(*CONTROL_RANGES)}]+)"
    f"|(?P<combining>[{char_class(*COMBINING_RANGES)}]+)"
)
FULLWIDTH_RUN_RE = re.compile(f"[{char_class(FULLWIDTH_RANGE)}\u3000]+")
STYLED_RUN_RE = re.compile(f"[{char_class(*STYLED_RANGES)}{''.join(STYLED_LETTERS)}]+")

_CACHE_LIMIT = 1 << 16  # distinct code points remembered; adversarial texts can hold a million


def _strip_latin_diacritics(ch: str) -> str:
    decomposed = unicodedata.normalize("NFD", ch)
    if len(decomposed) > 1 and decomposed[0].isascii():
        return decomposed[0]
    return ch


def fold_char(ch: str) -> str:
    """The canonical form of one character: '' (removed), ' ' (any space), or lower-case folded text."""
    if REMOVABLE_RE.match(ch):
        return ""
    if ch.isspace():
        return "\n" if ch in "\u2028\u2029" else " "
    if ch.isascii():
        return ch.lower()
    styled = STYLED_LETTERS.get(ch)
    if styled is not None:
        return styled
    folded = unicodedata.normalize("NFKC", ch).lower()
    folded = "".join(_strip_latin_diacritics(c) for c in folded)
    # NFKC may yield combining marks or spaces of its own (U+0344, U+00A8 ...); keep the alphabet clean.
    folded = REMOVABLE_RE.sub("", folded)
    return " " if folded.isspace() else folded


class _FoldTable(dict[int, str]):
    """str.translate table that computes entries on first use; bounded so hostile input cannot grow it."""

    def __missing__(self, code: int) -> str:
        folded = fold_char(chr(code))
        if len(self) < _CACHE_LIMIT:
            self[code] = folded
        return folded


FOLD_TABLE = _FoldTable()


@lru_cache(maxsize=4096)
def styling_kind(ch: str) -> str | None:
    """Signal kind for a kept character whose folding hides a styled Latin letter, else None."""
    code = ord(ch)
    if FULLWIDTH_RANGE[0] <= code <= FULLWIDTH_RANGE[1]:
        return "fullwidth"
    if ch in NATIVE_LETTERS:
        return None
    if ch in STYLED_LETTERS or (in_ranges(code, STYLED_RANGES) and FOLD_TABLE[code].isascii()):
        return "homoglyph"
    return None


class _FoldChars(dict[str, str]):
    """The same folding keyed by character, for map() over a slice."""

    def __missing__(self, ch: str) -> str:
        folded = FOLD_TABLE[ord(ch)]
        if len(self) < _CACHE_LIMIT:
            self[ch] = folded
        return folded


FOLD_CHARS = _FoldChars()
