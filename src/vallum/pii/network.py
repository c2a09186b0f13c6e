"""IPv4 and IPv6 addresses, validated by the standard library's `ipaddress`.

Decision on dotted quads that are software versions: a valid dotted quad is an address unless the
words just before it say it is a version ("version 1.2.3.4", "v1.2.3.4", "release 10.0.0.1"); a
dotted run of five or more numbers ("1.2.3.4.5") is never an address. Loopback, private and
unspecified addresses are still reported, with a lower confidence: they identify no one on their own.
"""

from __future__ import annotations

import ipaddress

from vallum.pii.entity import IP_ADDRESS
from vallum.pii.recognizer import PatternRecognizer, Validated

_VERSION_WORDS = ("version", "ver.", "release", "build", "firmware", "v", "version:")


def _after_version_word(text: str, start: int) -> bool:
    if start > 0 and text[start - 1] in "vV":
        return True
    words = text[max(0, start - 24) : start].lower().split()
    return bool(words) and words[-1].rstrip(":") in _VERSION_WORDS


def _score(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> float:
    if address.is_loopback or address.is_unspecified or address.is_private or address.is_link_local:
        return 0.4
    return 0.8


class IPv4Recognizer(PatternRecognizer):
    name = "ipv4"
    entity_type = IP_ADDRESS
    pattern = r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"
    context_words = ("ip", "address", "host", "server", "client", "connect", "login from")

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        if (start > 0 and text[start - 1] in ".") or (
            end < len(text) - 1 and text[end] == "." and text[end + 1].isdigit()
        ):
            return None
        if _after_version_word(text, start):
            return None
        try:
            address = ipaddress.IPv4Address(text[start:end])
        except ValueError:
            return None
        return Validated(start, end, _score(address), "v4")


class IPv6Recognizer(PatternRecognizer):
    name = "ipv6"
    entity_type = IP_ADDRESS
    pattern = r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\d{1,3}(?:\.\d{1,3}){3})?"
    context_words = IPv4Recognizer.context_words

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        candidate = text[start:end]
        if (start > 0 and (text[start - 1].isalnum() or text[start - 1] == ":")) or (
            end < len(text) and (text[end].isalnum() or text[end] == ":")
        ):
            return None
        if sum(1 for group in candidate.split(":") if group) < 3 or "." in candidate.split(":")[0]:
            return None
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            return None
        return Validated(start, end, _score(address), "v6")
