"""normalize(text): the views detectors read, the obfuscation found on the way, and spans back to the text.

views[0] ("canonical"): NFKC-folded, look-alike letters folded to Latin, invisible, tag, bidi and control
characters removed, lower-cased, whitespace collapsed. Further views exist only when the text shows the
trick they undo: "despaced" (letter spacing), "deleet" (leetspeak), "decoded:<kind>" (tag_chars, base64,
hex, url, rot13). Every view maps any range back to the original text with View.span.

Speed: plain ASCII text costs a lower(), a few byte translations and literal searches, all at C speed;
the per-character Python work is confined to the characters that actually change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vallum.core.types import Span
from vallum.text.decode import (
    MAX_DECODED_CHARS,
    MAX_DEPTH,
    ROT13,
    DecodeBudget,
    decode_payloads,
    rot13_evidence,
)
from vallum.text.fold import (
    FOLD_CHARS,
    FOLD_TABLE,
    FULLWIDTH_RUN_RE,
    REMOVABLE_KIND_RE,
    REMOVABLE_RE,
    STYLED_RUN_RE,
    styling_kind,
)
from vallum.text.leet import CLASSES as LETTER_CLASSES
from vallum.text.leet import deleet, may_have_leet
from vallum.text.offsets import MapBuilder, OffsetMap, replace_spans
from vallum.text.spacing import collapse_whitespace, despace, may_have_spaced_letters
from vallum.text.unicode_tables import (
    CONFUSABLES,
    CONTROL_RANGES,
    EMOJI_JOINERS,
    FOLDING_RANGES,
    FULLWIDTH_RANGE,
    LOOKALIKE_SCRIPT_RANGES,
    STYLED_LETTERS,
    STYLED_RANGES,
    TAG_RANGE,
    char_class,
)

CANONICAL = "canonical"
DESPACED = "despaced"
DELEET = "deleet"
DECODED = "decoded:"
MAX_SIGNALS_PER_KIND = 64  # further evidence of a kind widens the last signal instead of adding one

_PAYLOAD_SIGNAL = {"base64": "base64", "hex": "hex", "url": "url_encoding"}


@dataclass(frozen=True, slots=True)
class Signal:
    """Evidence of an obfuscation trick: its kind and where it sits in the original text."""

    kind: str
    span: Span


@dataclass(frozen=True, slots=True)
class View:
    """One rendering of the text; span() maps a range of it back to the original text.

    offsets None means character i of the view is character i of the original. Hand-made views (tests,
    plugins) may instead pass per-character `starts` and `ends` in the original, as in the first
    interface; they are turned into an OffsetMap.
    """

    name: str
    text: str
    offsets: OffsetMap | None = None
    starts: tuple[int, ...] | None = None
    ends: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.starts is not None and self.ends is not None and self.offsets is None:
            n = len(self.starts)
            per_char = OffsetMap(
                range(n), self.starts, self.ends, bytes(n), n, self.ends[-1] if self.ends else 0
            )
            object.__setattr__(self, "offsets", per_char)

    def span(self, start: int, end: int) -> Span:
        n = len(self.text)
        start = min(max(start, 0), n)
        end = min(max(end, start), n)
        if self.offsets is None:
            return Span(start, end)
        return Span(*self.offsets.resolve(start, end))


@dataclass(frozen=True, slots=True)
class NormalizedText:
    original: str
    views: tuple[View, ...]
    signals: tuple[Signal, ...] = ()

    @property
    def primary(self) -> View:
        return self.views[0]

    def view(self, name: str) -> View | None:
        return next((v for v in self.views if v.name == name), None)


class _SignalLog:
    """Signals by kind; past MAX_SIGNALS_PER_KIND the last one of a kind widens to cover the rest."""

    def __init__(self) -> None:
        self._by_kind: dict[str, list[tuple[int, int]]] = {}

    def add(self, kind: str, start: int, end: int) -> None:
        found = self._by_kind.get(kind)
        if found is None:
            self._by_kind[kind] = [(start, end)]
        elif len(found) < MAX_SIGNALS_PER_KIND:
            found.append((start, end))
        else:
            last_start, last_end = found[-1]
            found[-1] = (min(last_start, start), max(last_end, end))

    def full(self, kind: str) -> bool:
        found = self._by_kind.get(kind)
        return found is not None and len(found) >= MAX_SIGNALS_PER_KIND

    def result(self) -> tuple[Signal, ...]:
        if not self._by_kind:
            return ()
        every = [(start, end, kind) for kind, found in self._by_kind.items() for start, end in found]
        every.sort()
        return tuple(Signal(kind, Span(start, end)) for start, end, kind in every)


# ---- look-alike letters from other scripts --------------------------------------------------------------

_LOOKALIKE = char_class(*LOOKALIKE_SCRIPT_RANGES)
_LOOKALIKE_RE = re.compile(f"[{_LOOKALIKE}]")
_LOOKALIKE_RUN = re.compile(f"[{_LOOKALIKE}]+")
_LATIN_RUN = re.compile("[A-Za-z]+")
_CONFUSABLE_RUN = re.compile(f"[{''.join(CONFUSABLES)}]+")
_NATIVE_LETTER_RE = re.compile(
    "["
    + "".join(
        re.escape(chr(code))
        for first, last in LOOKALIKE_SCRIPT_RANGES
        for code in range(first, last + 1)
        if chr(code).isalpha() and chr(code) not in CONFUSABLES
    )
    + "]"
)
_LETTERS = re.compile(r"[^\W\d_]+")
_MAX_WORD = 256


def _word_around(text: str, pos: int) -> tuple[int, int]:
    start = pos
    while start > 0 and pos - start < _MAX_WORD and text[start - 1].isalpha():
        start -= 1
    match = _LETTERS.match(text, pos, pos + _MAX_WORD)
    return start, match.end() if match else pos + 1


def _mixed_script_words(src: str, native: bool) -> list[tuple[int, int]]:
    """Words with Latin letters next to look-alike-script letters. Walks the runs of whichever script
    is the minority (Latin runs in Russian text, look-alike runs in English text)."""
    runs, neighbours = (_LATIN_RUN, _LOOKALIKE_RE) if native else (_LOOKALIKE_RUN, _LATIN_RUN)
    words: list[tuple[int, int]] = []
    for run in runs.finditer(src):
        start, end = run.span()
        if words and start < words[-1][1]:
            continue
        if (start and neighbours.match(src, start - 1)) or neighbours.match(src, end):
            words.append(_word_around(src, start))
    return words


def _fold_lookalikes(src: str, signals: _SignalLog) -> str:
    """Fold Cyrillic/Greek/Armenian/Cherokee look-alikes where they pose as Latin (one char for one).

    Inside a word that mixes them with Latin letters they always pose. Elsewhere they are folded only
    when the text holds no letter of those scripts without a Latin twin: genuine Russian or Greek text
    always has some, and stays as written.
    """
    if _LOOKALIKE_RE.search(src) is None:
        return src
    native = _NATIVE_LETTER_RE.search(src) is not None
    mixed = _mixed_script_words(src, native)
    for word in mixed:
        signals.add("mixed_script", *word)
    regions = mixed if native else [(0, len(src))]
    parts: list[str] = []
    done = 0
    reported_until = 0
    for start, end in regions:
        for run in _CONFUSABLE_RUN.finditer(src, start, end):
            parts.append(src[done : run.start()])
            parts.append("".join(map(CONFUSABLES.__getitem__, run.group())))
            done = run.end()
            if run.start() >= reported_until and not signals.full("homoglyph"):
                word = _word_around(src, run.start())
                signals.add("homoglyph", *word)
                reported_until = word[1]
    if not parts:
        return src
    parts.append(src[done:])
    return "".join(parts)


# ---- per-character folding of the characters that change -----------------------------------------------

# Characters whose fold differs from lower(). The BMP class compiles to a bitmap (one lookup per
# character); astral characters are found with one range test and folded like any other run.
_SUSPECT_BMP_RUN = re.compile(
    f"[{char_class(*CONTROL_RANGES, *(r for r in FOLDING_RANGES if r[1] < 0x10000))}]+"
)
_ASTRAL_RUN = re.compile("[\U00010000-\U0010ffff]+")
_STYLED_ANY = re.compile(f"[{char_class(FULLWIDTH_RANGE, *STYLED_RANGES)}{''.join(STYLED_LETTERS)}]")
_ASCII_CONTROLS = bytes(range(32, 127)) + b"\t\n\r\x0b\x0c"  # what remains after deleting these
_TAG_TO_ASCII = {code: chr(code - TAG_RANGE[0]) for code in range(TAG_RANGE[0] + 0x20, TAG_RANGE[0] + 0x7F)}


def _suspect_runs(lowered: str) -> list[tuple[int, int]]:
    runs = [m.span() for m in _SUSPECT_BMP_RUN.finditer(lowered)]
    astral = [m.span() for m in _ASTRAL_RUN.finditer(lowered)] if not lowered.isascii() else []
    if astral:
        runs = sorted(runs + astral)
    return runs


def _is_emoji_joiner(text: str, start: int, end: int) -> bool:
    """ZWJ / VS16 inside an emoji sequence is how emoji are written, not a hiding place."""
    return (
        start > 0
        and not text[start - 1].isascii()
        and not text[start - 1].isalnum()
        and all(ch in EMOJI_JOINERS for ch in text[start:end])
    )


def _report_removed(
    text: str, start: int, end: int, signals: _SignalLog, hidden: list[tuple[int, int, str]]
) -> None:
    for part in REMOVABLE_KIND_RE.finditer(text, start, end):
        kind = part.lastgroup or "invisible"
        run_start, run_end = part.span()
        if kind == "invisible" and _is_emoji_joiner(text, run_start, run_end):
            continue
        if kind == "combining" and run_end - run_start < 2:
            continue  # one accent written decomposed; stacks of marks are the trick
        if kind == "tag_chars":
            smuggled = part.group().translate(_TAG_TO_ASCII)
            if smuggled.strip():
                hidden.append((run_start, run_end, smuggled))
        signals.add(kind, run_start, run_end)


def _report_styling(text: str, start: int, end: int, signals: _SignalLog) -> None:
    for run in FULLWIDTH_RUN_RE.finditer(text, start, end):
        if any(ch.isalpha() for ch in run.group()):
            signals.add("fullwidth", *run.span())
    for run in STYLED_RUN_RE.finditer(text, start, end):
        if any(styling_kind(ch) == "homoglyph" for ch in run.group()):
            signals.add("homoglyph", *run.span())


def _fold(
    text: str, lowered: str, signals: _SignalLog, hidden: list[tuple[int, int, str]]
) -> tuple[str, OffsetMap | None, list[tuple[int, int]]]:
    """Fold every character that changes; returns the text, its map, and the removed runs.

    Runs that fold one character for one only extend the pending linear stretch; the builder hears
    about it only where lengths change, which is rare.
    """
    builder = MapBuilder(len(lowered))
    removed: list[tuple[int, int]] = []
    pending: list[str] = []
    pending_start = 0
    done = 0
    styling_open = True
    for run_start, run_end in _suspect_runs(lowered):
        pending.append(lowered[done:run_start])
        segment = lowered[run_start:run_end]
        parts = list(map(FOLD_CHARS.__getitem__, segment))
        joined = "".join(parts)
        if len(joined) == len(segment) and "" not in parts:
            pending.append(joined)
        else:
            builder.linear("".join(pending), pending_start)
            pending = []
            for gone in REMOVABLE_RE.finditer(lowered, run_start, run_end):
                _report_removed(text, gone.start(), gone.end(), signals, hidden)
                removed.append(gone.span())
            for i, part in enumerate(parts):
                if len(part) == 1:
                    builder.linear(part, run_start + i)
                else:
                    builder.block(part, run_start + i, run_start + i + 1)
            pending_start = run_end
        if styling_open and _STYLED_ANY.search(text, run_start, run_end) is not None:
            _report_styling(text, run_start, run_end, signals)
            styling_open = not (signals.full("fullwidth") and signals.full("homoglyph"))
        done = run_end
    pending.append(lowered[done:])
    builder.linear("".join(pending), pending_start)
    folded, offsets = builder.build()
    return folded, offsets, removed


def _without(text: str, removed: list[tuple[int, int]]) -> tuple[str, OffsetMap | None]:
    """text minus the removed runs, case kept: what the payload decoders read."""
    return replace_spans(text, [(start, end, "") for start, end in removed])


# ---- decoded views --------------------------------------------------------------------------------------


def _canonical_form(decoded: str) -> str:
    """Decoded payloads map to their payload as a whole, so only their text needs folding."""
    folded = decoded.lower() if decoded.isascii() else decoded.translate(FOLD_TABLE)
    return " ".join(folded.split())


def _decoded_view(kind: str, segments: list[tuple[int, int, str]], original_len: int) -> View:
    builder = MapBuilder(original_len)
    for i, (start, end, decoded) in enumerate(sorted(segments, key=lambda s: (s[0], s[1]))):
        if i:
            builder.block("\n", start, end)  # separators belong to the payload they lead into
        builder.block(_canonical_form(decoded) or " ", start, end)
    text, offsets = builder.build()
    return View(DECODED + kind, text, offsets)


def _cleaned(
    text: str, signals: _SignalLog, hidden: list[tuple[int, int, str]]
) -> tuple[str, OffsetMap | None, list[tuple[int, int]]]:
    """The text folded (case, look-alikes, accents, invisible characters removed), its map to the text, and
    the runs removed."""
    removed: list[tuple[int, int]] = []
    cleaned_map: OffsetMap | None = None
    if text.isascii():
        cleaned = text.lower()
        if text.encode("ascii").translate(None, _ASCII_CONTROLS):
            cleaned, cleaned_map, removed = _fold(text, cleaned, signals, hidden)
    else:
        src = text.replace("\u0130", "I") if "\u0130" in text else text  # its lower() is two characters
        cleaned, cleaned_map, removed = _fold(text, _fold_lookalikes(src, signals).lower(), signals, hidden)
    return cleaned, cleaned_map, removed


def _unrotated(text: str, canonical: str) -> str:
    """The canonical view of the text with ROT13 undone where ROT13 tools apply it: on ASCII letters only.
    In a language with accents, turning the canonical view back would also turn the accented vowels, which
    the tool left alone and folding made ASCII."""
    if text.isascii():
        return canonical.translate(ROT13)
    cleaned, cleaned_map, _ = _cleaned(text.translate(ROT13), _SignalLog(), [])
    unrotated, _ = collapse_whitespace(cleaned, cleaned_map)
    # Folding is character by character, so the two line up; should they not, the whole view is turned.
    return unrotated if len(unrotated) == len(canonical) else canonical.translate(ROT13)


def _resolve(offsets: OffsetMap | None, start: int, end: int) -> tuple[int, int]:
    return (start, end) if offsets is None else offsets.resolve(start, end)


def normalize(
    text: str, *, max_decode_depth: int = MAX_DEPTH, max_decoded_chars: int = MAX_DECODED_CHARS
) -> NormalizedText:
    """The canonical view, the de-obfuscated views the text calls for, and the obfuscation signals."""
    signals = _SignalLog()
    hidden: list[tuple[int, int, str]] = []
    cleaned, cleaned_map, removed = _cleaned(text, signals, hidden)
    canonical, canonical_map = collapse_whitespace(cleaned, cleaned_map)
    views = [View(CANONICAL, canonical, canonical_map)]

    projection = canonical.encode("ascii", "replace")  # one byte per character
    letter_classes = projection.translate(LETTER_CLASSES)
    if may_have_spaced_letters(letter_classes, projection):
        despaced, runs, despace_map = despace(cleaned, cleaned_map)
        if runs:
            views.append(View(DESPACED, *collapse_whitespace(despaced, despace_map)))
            for start, end in runs:
                signals.add("letter_spacing", *_resolve(cleaned_map, start, end))
    if may_have_leet(letter_classes):
        spelled, tokens = deleet(canonical, letter_classes)
        if tokens:
            views.append(View(DELEET, spelled, canonical_map))
            for start, end in tokens:
                signals.add("leetspeak", *_resolve(canonical_map, start, end))

    scan, scan_map = _without(text, removed) if removed else (text, None)
    payloads = decode_payloads(scan, DecodeBudget(chars_left=max_decoded_chars), 1, max_decode_depth)
    if hidden or payloads:
        decoded: dict[str, list[tuple[int, int, str]]] = {"tag_chars": hidden} if hidden else {}
        for payload in payloads:
            start, end = _resolve(scan_map, payload.start, payload.end)
            decoded.setdefault(payload.kind, []).append((start, end, payload.text))
            if payload.suspicious:
                signals.add(_PAYLOAD_SIGNAL[payload.kind], start, end)
        views.extend(_decoded_view(kind, segments, len(text)) for kind, segments in decoded.items())

    ascii_letters = None if text.isascii() else text.lower().encode("ascii", "ignore")
    rot13 = rot13_evidence(canonical, projection, ascii_letters)
    if rot13 is not None:
        views.append(View(DECODED + "rot13", _unrotated(text, canonical), canonical_map))
        signals.add("rot13", *_resolve(canonical_map, *rot13))
    return NormalizedText(text, tuple(views), signals.result())
