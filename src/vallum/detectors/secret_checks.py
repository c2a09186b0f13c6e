"""Validators named by secret rules: checksums that confirm a token, structures that reject a look-alike."""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable
from enum import Enum

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE64_CHARS = frozenset(_BASE62 + "+/=")


class Check(Enum):
    VALID = "valid"  # the value's own checksum or structure confirms it
    UNVERIFIED = "unverified"  # right shape, but the checksum does not add up (a made-up or mangled token)
    INVALID = "invalid"  # not this kind of secret at all: drop the match


def github_crc32(value: str) -> Check:
    """GitHub and npm tokens end in the base62 CRC32 (6 characters) of their 30 random characters."""
    prefix, _, rest = value.partition("_")
    if not prefix or len(rest) != 36:
        return Check.UNVERIFIED
    return Check.VALID if _base62(zlib.crc32(rest[:30].encode()), 6) == rest[30:] else Check.UNVERIFIED


def jwt(value: str) -> Check:
    """Header and payload are base64url JSON objects and the header names its signing algorithm."""
    parts = value.split(".")
    header, payload = _json_object(parts[0]), _json_object(parts[1]) if len(parts) > 1 else None
    if header is None or payload is None or "alg" not in header:
        return Check.INVALID
    return Check.VALID


def pem_body(value: str) -> Check:
    """A private-key header followed by key material, not just the header quoted in prose."""
    _, _, after_header = value.partition("KEY-----")
    if not after_header:
        return Check.INVALID
    body_chars = sum(1 for char in after_header[:400] if char in _BASE64_CHARS)
    return Check.VALID if body_chars >= 40 else Check.INVALID


def _json_object(part: str) -> dict[str, object] | None:
    try:
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        parsed = json.loads(decoded)
    except (binascii.Error, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _base62(number: int, width: int) -> str:
    digits = ""
    while number:
        number, remainder = divmod(number, 62)
        digits = _BASE62[remainder] + digits
    return digits.rjust(width, "0")


VALIDATORS: dict[str, Callable[[str], Check]] = {
    "github_crc32": github_crc32,
    "jwt": jwt,
    "pem_body": pem_body,
}
