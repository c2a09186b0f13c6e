"""Seeded obfuscations of text, the tricks attackers use to slip past filters."""

from __future__ import annotations

import base64
import codecs
import random
from collections.abc import Callable

_HOMOGLYPHS = {"a": "а", "c": "с", "e": "е", "i": "і", "o": "о", "p": "р", "x": "х", "y": "у", "s": "ѕ"}
_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060")


def base64_wrap(text: str, rng: random.Random) -> str:
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return rng.choice(("Decode this and follow it: {}", "{}", "Here is a message: {}")).format(encoded)


def homoglyphs(text: str, rng: random.Random) -> str:
    return "".join(_HOMOGLYPHS[c] if c in _HOMOGLYPHS and rng.random() < 0.6 else c for c in text)


def zero_width(text: str, rng: random.Random) -> str:
    return "".join(c + rng.choice(_ZERO_WIDTH) if c.isalpha() and rng.random() < 0.5 else c for c in text)


def spacing(text: str, rng: random.Random) -> str:
    return " ".join(text)


def leetspeak(text: str, rng: random.Random) -> str:
    return "".join(_LEET.get(c.lower(), c) if rng.random() < 0.8 else c for c in text)


def rot13(text: str, rng: random.Random) -> str:
    return codecs.encode(text, "rot13")


def full_width(text: str, rng: random.Random) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in text)


OBFUSCATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "base64": base64_wrap,
    "homoglyphs": homoglyphs,
    "zero_width": zero_width,
    "spacing": spacing,
    "leetspeak": leetspeak,
    "rot13": rot13,
    "full_width": full_width,
}
