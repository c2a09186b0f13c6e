"""Canary tokens: a random marker planted in a system prompt, and a matcher that finds it in output.

A canary reaching the output proves the system prompt leaked. Models that leak rarely copy it
cleanly, so the matcher also finds it case-changed, split by spaces, punctuation or newlines,
reversed, ROT13-, hex- or base64-encoded, and cut short (a long enough prefix).

All matching is one RE2 alternation per text (linear time): each canary contributes one branch per
form, and each branch allows up to three separator characters between the canary's characters.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

import re2

from vallum.errors import DetectorError

CanaryStyle = Literal["word", "hex"]

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
WORD_SYLLABLES = 10  # 14 * 5 = 70 syllables: ~6.1 bits each, ~61 bits per canary
HEX_DIGITS = 16  # 64 bits
MIN_CANARY_CHARS = 8
DEFAULT_MIN_PREFIX = 12
DEFAULT_TEMPLATE = "\n\nInternal reference: {canary}"
# Separator characters tolerated between two characters of a canary ("zoba-ti ke\nlu").
_SEPARATOR = "[^0-9a-z]{0,3}"


def generate_canary(style: CanaryStyle = "word") -> str:
    """A fresh random canary: a pronounceable word (`"word"`) or a hex id (`"hex"`), >= 60 bits."""
    if style == "hex":
        return secrets.token_hex(HEX_DIGITS // 2)
    if style == "word":
        return "".join(secrets.choice(_CONSONANTS) + secrets.choice(_VOWELS) for _ in range(WORD_SYLLABLES))
    raise ValueError(f"unknown canary style {style!r}; use 'word' or 'hex'")


def add_canary(
    system_prompt: str,
    canary: str | None = None,
    *,
    style: CanaryStyle = "word",
    template: str = DEFAULT_TEMPLATE,
) -> tuple[str, str]:
    """(system prompt with the canary planted at its end, the canary). Keep the canary for the detector."""
    if "{canary}" not in template:
        raise ValueError("template must contain '{canary}'")
    canary = canary if canary is not None else generate_canary(style)
    return system_prompt + template.format(canary=canary), canary


def fingerprint(canary: str) -> str:
    """A short name for a canary that does not disclose it (evidence, logs)."""
    return hashlib.sha256(canary.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class CanaryHit:
    """A canary found in `form` at text[start:end]; `matched` of its `length` characters were seen."""

    canary: str
    form: str
    start: int
    end: int
    matched: int
    length: int

    @property
    def complete(self) -> bool:
        return self.matched >= self.length


def _chars(canary: str) -> str:
    core = "".join(ch for ch in canary.lower() if ch.isascii() and ch.isalnum())
    if len(core) < MIN_CANARY_CHARS:
        raise DetectorError(
            f"canary {fingerprint(canary)} has {len(core)} letters and digits; at least "
            f"{MIN_CANARY_CHARS} are needed (use vallum.canary.generate_canary())"
        )
    return core


def _prefix_pattern(chars: str, minimum: int) -> str:
    """Matches chars[:k] for any k >= minimum, separators allowed between characters; longest wins."""
    minimum = min(minimum, len(chars))
    head = _SEPARATOR.join(re2.escape(ch) for ch in chars[:minimum])
    tail = ""
    for ch in reversed(chars[minimum:]):
        tail = f"(?:{_SEPARATOR}{re2.escape(ch)}{tail})?"
    return head + tail


def _suffix_pattern(chars: str, minimum: int) -> str:
    """Matches chars[-k:] for any k >= minimum: what a reversed text shows of a cut-short canary."""
    minimum = min(minimum, len(chars))
    split = len(chars) - minimum
    body = _SEPARATOR.join(re2.escape(ch) for ch in chars[split:])
    lead = ""
    for ch in chars[:split]:
        lead = f"(?:{lead}{re2.escape(ch)}{_SEPARATOR})?"
    return lead + body


def _base64_cores(canary: str) -> list[str]:
    """Base64 text that any encoding containing the canary contains, one per byte alignment (0, 1, 2)."""
    cores = []
    for shift in range(3):
        data = b"\0" * shift + canary.encode()
        whole = data[: len(data) - len(data) % 3]
        encoded = base64.b64encode(whole).decode()
        cores.append(encoded[4:] if shift else encoded)  # the first group mixes in unknown bytes
    return [core for core in cores if len(core) >= MIN_CANARY_CHARS]


class CanaryMatcher:
    """Finds any of a set of canaries, in any supported form, in lower-cased text or in original text."""

    def __init__(
        self, canaries: list[str] | tuple[str, ...], *, min_prefix: int = DEFAULT_MIN_PREFIX
    ) -> None:
        if min_prefix < MIN_CANARY_CHARS:
            raise DetectorError(f"min_prefix must be at least {MIN_CANARY_CHARS}, not {min_prefix}")
        self.canaries = tuple(dict.fromkeys(canaries))
        # branch index -> (canary, form, characters that count toward its length)
        self._folded_branches: list[tuple[str, str, int]] = []
        self._exact_branches: list[tuple[str, str, int]] = []
        folded, exact = [], []
        for canary in self.canaries:
            chars = _chars(canary)
            hexed = chars.encode().hex()
            forms = [
                ("plain", _prefix_pattern(chars, min_prefix), len(chars)),
                ("reversed", _suffix_pattern(chars[::-1], min_prefix), len(chars)),
                ("hex", _prefix_pattern(hexed, 2 * min_prefix), len(hexed)),
            ]
            rotated = codecs.encode(chars, "rot13")
            if rotated != chars:  # an all-digit canary is its own ROT13
                forms.append(("rot13", _prefix_pattern(rotated, min_prefix), len(chars)))
            for form, pattern, length in forms:
                folded.append(f"({pattern})")
                self._folded_branches.append((canary, form, length))
            for core in _base64_cores(canary):
                exact.append(f"({re2.escape(core)})")
                self._exact_branches.append((canary, "base64", len(core)))
        self._folded = _compile(folded, case_sensitive=False)
        self._exact = _compile(exact, case_sensitive=True)

    def find_folded(self, text: str) -> list[CanaryHit]:
        """Plain, reversed, hex and ROT13 forms in a lower-cased view of the output."""
        return _hits(self._folded, self._folded_branches, text)

    def find_exact(self, text: str) -> list[CanaryHit]:
        """Base64 forms, which are case-exact: search the original text."""
        return _hits(self._exact, self._exact_branches, text)


def _compile(branches: list[str], *, case_sensitive: bool) -> re2._Regexp | None:
    if not branches:
        return None
    options = re2.Options()
    options.case_sensitive = case_sensitive
    try:
        return re2.compile("|".join(branches), options)
    except re2.error as exc:
        raise DetectorError(f"{len(branches)} canary patterns do not fit RE2's memory budget: {exc}") from exc


def _hits(regexp: re2._Regexp | None, branches: list[tuple[str, str, int]], text: str) -> list[CanaryHit]:
    if regexp is None:
        return []
    hits = []
    for match in regexp.finditer(text):
        index = match.lastindex - 1 if match.lastindex else 0
        canary, form, length = branches[index]
        seen = length if form == "base64" else sum(ch.isalnum() for ch in match.group())
        if form == "hex":
            seen //= 2
            length //= 2
        hits.append(CanaryHit(canary, form, match.start(), match.end(), min(seen, length), length))
    return hits
