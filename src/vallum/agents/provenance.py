"""Where a tool call's argument values came from.

Values are taken out of a call's arguments (`extract_values`): e-mail addresses, URLs and domains, IBAN-
and account-like numbers, card numbers, phone numbers, file paths, numbers, and the argument strings
themselves as free text. Each is normalised for comparison (case, spacing inside account numbers,
URL schemes) and looked up in the conversation's texts (`find`).

The provenance of a value is the best place it was seen, in this order:

- `trusted`: in what the user or the system said;
- `directed`: in a tool result that the user pointed the agent at (a call whose arguments came from
  trusted or directed text: the file the user named, the contact the user asked for), outside any
  injected span;
- `untrusted`: elsewhere in tool results, outside any injected span;
- `injected`: only inside spans of tool results that the engine flags as prompt injection;
- `unknown`: nowhere in the conversation (made up by the model, computed, or decoded from something).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stdnum import luhn

from vallum.core.types import Span


class Kind(StrEnum):
    EMAIL = "email"
    URL = "url"
    DOMAIN = "domain"
    IBAN = "iban"
    ACCOUNT = "account"
    CARD = "card"
    PHONE = "phone"
    PATH = "path"
    NUMBER = "number"
    TEXT = "text"


# Kinds that name who or where an effect lands: an attacker who chooses one of these chooses the victim.
DESTINATION_KINDS = frozenset(
    {Kind.EMAIL, Kind.URL, Kind.DOMAIN, Kind.IBAN, Kind.ACCOUNT, Kind.PHONE, Kind.PATH}
)
_COMPACT_KINDS = frozenset({Kind.IBAN, Kind.ACCOUNT, Kind.CARD, Kind.PHONE})


class Provenance(StrEnum):
    TRUSTED = "trusted"
    DIRECTED = "directed"
    UNTRUSTED = "untrusted"
    INJECTED = "injected"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    Provenance.TRUSTED: 0,
    Provenance.DIRECTED: 1,
    Provenance.UNTRUSTED: 2,
    Provenance.INJECTED: 3,
    Provenance.UNKNOWN: 4,
}


@dataclass(frozen=True, slots=True)
class Value:
    kind: Kind
    raw: str  # as written in the arguments
    key: str  # normalised: what is searched for
    argument: str  # where in the arguments: "recipients[0]", "body"
    whole: bool  # the value is the whole argument string, not a piece of a longer one
    fallback: str | None = None  # a URL's host: a URL is as trusted as its host when the URL itself is new


# ---- extraction ---------------------------------------------------------------------------------------------

_TLDS = (
    "com|net|org|io|co|dev|app|ai|info|biz|xyz|me|us|uk|de|fr|ch|nl|eu|ru|cn|jp|in|br|au|ca|es|it|se|no|"
    "pl|ly|gl|gg|tv|cc|site|online|store|tech|cloud|page|link|live|pro|top|club|shop|blog|news|edu|gov|"
    "mil|int|at|be|dk|fi|ie|pt|cz|gr|hu|ro|sk|kr|tw|hk|sg|nz|za|mx|ar|cl|tk|ml|ga|cf|gq|su|to|ws|fm|am"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}")
_URL = re.compile(r"(?:(?:https?|ftp|wss?)://|www\.)[^\s<>\"'`\\\]\[(){}|^]+", re.IGNORECASE)
_DOMAIN = re.compile(
    rf"(?<![\w@.\-/])(?:[a-z0-9](?:[a-z0-9\-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})(?![\w\-])(?:/[^\s<>\"'`]*)?",
    re.IGNORECASE,
)
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[A-Z0-9]{10,30}|(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)(?![A-Za-z0-9])"
)
_DIGITS = re.compile(r"(?<![\w.+])\d(?:[ \-]?\d){7,22}(?![\w])")
_PHONE = re.compile(r"(?<![\w+])\+\d(?:[ \-().]?\d){6,14}(?!\w)")
_PATH = re.compile(r"(?<![\w:/.])(?:~|\.{1,2})?/(?:[\w.\-@]+/?)+|(?<!\w)[A-Za-z]:\\(?:[\w.\- ]+\\?)+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[-./]\d{2}[-./]\d{4}|\d{8}")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_SPACES = re.compile(r"\s+")
_TRAILING = ".,;:!?)]}'\">"
MAX_TEXT_CHARS = 300
MIN_FRAGMENT_CHARS = 24
MAX_FRAGMENTS = 16


def extract_values(arguments: Mapping[str, Any], *, limit: int = 96) -> list[Value]:
    """Every value worth tracing in a call's arguments, at most `limit`, typed values first."""
    values: list[Value] = []
    for path, leaf in _leaves(arguments, ""):
        if isinstance(leaf, bool) or leaf is None:
            continue
        if isinstance(leaf, int | float):
            values.append(Value(Kind.NUMBER, str(leaf), number_key(float(leaf)), path, True))
        elif isinstance(leaf, str):
            values.extend(values_in_text(leaf, path))
        if len(values) >= limit:
            break
    return values[:limit]


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def values_in_text(text: str, argument: str) -> list[Value]:
    """The typed values inside one argument string, then the string itself (or its sentences) as text."""
    stripped = text.strip()
    if not stripped:
        return []
    found: list[Value] = []
    taken: list[tuple[int, int]] = []

    def add(kind: Kind, start: int, end: int, key: str, fallback: str | None = None) -> None:
        if any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        raw = text[start:end]
        found.append(Value(kind, raw, key, argument, raw.strip() == stripped, fallback))

    for m in _EMAIL.finditer(text):
        add(Kind.EMAIL, m.start(), m.end(), m.group().lower())
    for m in _URL.finditer(text):
        end = m.end() - (len(m.group()) - len(m.group().rstrip(_TRAILING)))
        key = url_key(text[m.start() : end])
        add(Kind.URL, m.start(), end, key, key.split("/", 1)[0])
    for m in _DOMAIN.finditer(text):
        end = m.end() - (len(m.group()) - len(m.group().rstrip(_TRAILING)))
        key = url_key(text[m.start() : end])
        add(Kind.DOMAIN if "/" not in key else Kind.URL, m.start(), end, key, key.split("/", 1)[0])
    for m in _IBAN.finditer(text):
        add(Kind.IBAN, m.start(), m.end(), compact(m.group()))
    for m in _PHONE.finditer(text):
        add(Kind.PHONE, m.start(), m.end(), "+" + compact(m.group()))
    for m in _DIGITS.finditer(text):
        digits = compact(m.group())
        if _DATE.fullmatch(m.group()):
            continue
        kind = Kind.CARD if 13 <= len(digits) <= 19 and luhn.is_valid(digits) else Kind.ACCOUNT
        add(kind, m.start(), m.end(), digits)
    for m in _PATH.finditer(text):
        if m.group().count("/") + m.group().count("\\") >= 1 and len(m.group()) > 1:
            add(Kind.PATH, m.start(), m.end(), m.group().lower())
    if len(stripped) <= MAX_TEXT_CHARS:
        key = text_key(stripped)
        if key and not any(v.whole for v in found):
            found.append(Value(Kind.TEXT, stripped, key, argument, True))
    else:
        pieces = [p for p in _SENTENCE.split(stripped) if len(p.strip()) >= MIN_FRAGMENT_CHARS]
        for piece in pieces[:MAX_FRAGMENTS]:
            found.append(Value(Kind.TEXT, piece.strip(), text_key(piece), argument, False))
    return found


def url_key(url: str) -> str:
    key = url.strip().lower()
    for prefix in ("https://", "http://", "ftp://", "wss://", "ws://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    key = key.removeprefix("www.")
    return key.rstrip("/")


def compact(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum()).lower()


def text_key(text: str) -> str:
    return _SPACES.sub(" ", text.lower()).strip(" \t\n\"'`“”‘’.,;:!?")


def number_key(number: float) -> str:
    if number != number or number in (float("inf"), float("-inf")):
        return str(number)
    return str(int(number)) if number.is_integer() else repr(number)


# ---- looking values up ------------------------------------------------------------------------------------

_NUMBER_TOKEN = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])\d+(?:\.\d+)?(?![\w])")


@dataclass(slots=True)
class SourceText:
    """A text prepared for lookups: lower-cased once, with numbers and a compact form built on demand."""

    text: str
    lowered: str = ""
    _numbers: dict[str, list[Span]] | None = None
    _compact: tuple[str, list[int]] | None = None

    def __post_init__(self) -> None:
        lowered = self.text.lower()
        if len(lowered) != len(self.text):  # a few characters lower-case to two; keep offsets aligned
            lowered = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in self.text)
        self.lowered = lowered

    @property
    def numbers(self) -> dict[str, list[Span]]:
        if self._numbers is None:
            numbers: dict[str, list[Span]] = {}
            for m in _NUMBER_TOKEN.finditer(self.text):
                try:
                    key = number_key(float(m.group().replace(",", "")))
                except ValueError:
                    continue
                numbers.setdefault(key, []).append(Span(m.start(), m.end()))
            self._numbers = numbers
        return self._numbers

    @property
    def compacted(self) -> tuple[str, list[int]]:
        if self._compact is None:
            positions = [i for i, ch in enumerate(self.lowered) if ch.isalnum()]
            self._compact = ("".join(self.lowered[i] for i in positions), positions)
        return self._compact


def find(source: SourceText, value: Value, limit: int = 16) -> list[Span]:
    """Where `value` occurs in `source`, as whole words (at most `limit` places)."""
    if value.kind is Kind.NUMBER:
        return source.numbers.get(value.key, [])[:limit]
    spans = _find_words(source.lowered, value.key, limit)
    if not spans and value.kind in _COMPACT_KINDS:
        spans = _find_compact(source, value.key.lstrip("+"), limit)
    return spans


def _find_words(haystack: str, needle: str, limit: int) -> list[Span]:
    if not needle:
        return []
    words = needle.split(" ")
    first = words[0]
    spans: list[Span] = []
    start = haystack.find(first)
    while start != -1 and len(spans) < limit:
        end = _match_rest(haystack, start + len(first), words[1:])
        if end is not None and _bounded(haystack, start, end, needle):
            spans.append(Span(start, end))
        start = haystack.find(first, start + 1)
    return spans


def _match_rest(haystack: str, pos: int, words: list[str]) -> int | None:
    """The end of `words` following `pos`, each after a run of whitespace; None when they do not follow."""
    for word in words:
        gap = pos
        while gap < len(haystack) and haystack[gap].isspace():
            gap += 1
        if gap == pos or not haystack.startswith(word, gap):
            return None
        pos = gap + len(word)
    return pos


def _bounded(haystack: str, start: int, end: int, needle: str) -> bool:
    before_ok = start == 0 or not needle[0].isalnum() or not haystack[start - 1].isalnum()
    after_ok = end >= len(haystack) or not needle[-1].isalnum() or not haystack[end].isalnum()
    return before_ok and after_ok


def _find_compact(source: SourceText, key: str, limit: int) -> list[Span]:
    if len(key) < 8:
        return []
    text, positions = source.compacted
    spans: list[Span] = []
    at = text.find(key)
    while at != -1 and len(spans) < limit:
        start, end = positions[at], positions[at + len(key) - 1] + 1
        if _bounded(source.lowered, start, end, key):
            spans.append(Span(start, end))
        at = text.find(key, at + 1)
    return spans


# ---- provenance -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """One message that values may have come from, with how far it is trusted.

    `level` is trusted, directed or untrusted; `regions` are the injected spans of a tool result. Past
    `scanned` characters a text was not scanned for injections: what lies there is never directed.
    """

    index: int
    role: str
    source: SourceText
    level: Provenance
    tool: str | None = None
    tool_call_id: str | None = None
    scanned: int | None = None
    regions: tuple[Span, ...] = ()
    cores: tuple[str, ...] = ()  # the injected passages as `passage_key`s

    def level_at(self, span: Span) -> Provenance:
        if self.level is Provenance.TRUSTED:
            return Provenance.TRUSTED
        if any(span.start < r.end and r.start < span.end for r in self.regions):
            return Provenance.INJECTED
        if self.scanned is not None and span.end > self.scanned:
            return Provenance.UNTRUSTED
        return self.level


@dataclass(frozen=True, slots=True)
class Sighting:
    evidence: Evidence
    span: Span
    level: Provenance


def provenance(value: Value, evidence: list[Evidence]) -> tuple[Provenance, Sighting | None]:
    """The best provenance of `value` over `evidence` (messages before the call), and where it was seen."""
    best = _best(value.key, value, evidence)
    if best is None and value.fallback and value.fallback != value.key:
        host = Value(Kind.DOMAIN, value.fallback, value.fallback, value.argument, False)
        best = _best(host.key, host, evidence)
    if best is None:
        return Provenance.UNKNOWN, None
    return best.level, best


def _best(key: str, value: Value, evidence: list[Evidence]) -> Sighting | None:
    best: Sighting | None = None
    for item in evidence:
        if best is not None and item.level.rank >= best.level.rank:
            continue  # this message cannot do better than what was already found
        for span in find(item.source, value):
            level = item.level_at(span)
            if best is None or level.rank < best.level.rank:
                best = Sighting(item, span, level)
                if level is item.level:
                    break
    return best
