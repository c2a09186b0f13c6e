"""Shape of a candidate secret value: its entropy, and the shapes that look random but are not secrets."""

from __future__ import annotations

import math
from collections import Counter

import re2

_UUID = re2.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX = re2.compile(r"^[0-9a-fA-F]+$")
# Names in code: letters, underscores and dots without digits (PASSWORD_FIELD, os.environ.get, getToken).
_IDENTIFIER = re2.compile(r"^[A-Za-z_][A-Za-z_.\-]*$")
# Lengths of SHA-1, SHA-256 and SHA-512 digests; MD5's 32 is left out because many API keys are 32 hex.
_DIGEST_LENGTHS = frozenset({40, 64, 128})


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s own character distribution (0 for an empty string)."""
    if not value:
        return 0.0
    length = len(value)
    return -sum(n / length * math.log2(n / length) for n in Counter(value).values())


def is_uuid(value: str) -> bool:
    return _UUID.search(value) is not None


def is_hex_digest(value: str) -> bool:
    """A git commit id or a SHA-256/512 checksum: random-looking, public, and everywhere in code."""
    return len(value) in _DIGEST_LENGTHS and _HEX.search(value) is not None


def is_identifier(value: str) -> bool:
    return _IDENTIFIER.search(value) is not None


def longest_run(value: str) -> int:
    """Length of the longest run of one repeated character ("xxxxxxxx", "00000000")."""
    best = run = 0
    previous = ""
    for char in value:
        run = run + 1 if char == previous else 1
        previous = char
        best = max(best, run)
    return best
