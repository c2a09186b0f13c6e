"""URLs in output: where they point, whether the client fetches them by itself, and what data they carry.

A markdown image (or an <img src>, CSS url(...)) is fetched by the renderer without a click, so an
image URL whose query or path carries data sends that data to the URL's host: the classic zero-click
exfiltration of a prompt-injected answer. Links need a click and count less. A value carries data when
it decodes to text (several words, or base64/hex of text) or is long and random-looking.

URLs are found from their "//" with str.find; small fixed regexes then read a bounded stretch before it
(the scheme) and the URL body after it. They are linear (no nested repetition), so Python's `re` is safe
for them and much cheaper per call than the RE2 wrapper. The rest is string slicing.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_plus

from vallum.detectors.entropy import is_hex_digest, is_uuid, shannon_entropy
from vallum.text.decode import DecodeBudget, decode_payloads

# A URL is found from its "//" (str.find, C speed): what precedes it says whether it is one (a scheme,
# or a protocol-relative URL where it is fetched: ](//host...) or src=//host), what follows is its body.
_URL_BODY = re.compile(r"""[^\s<>"'`\\\])]+""")
_URL_LEAD = re.compile(
    r"""(?:(?P<scheme>\b(?:https?|ftp|wss?):)|\]\([ \t]*<?|\bsrc[ \t]*=[ \t]*["']?)\Z""", re.IGNORECASE
)
_LEAD_REACH = 16
_TRAILING = ".,;:!?*_~"
_LOOKBEHIND = 1000  # characters searched back for the "![" of a markdown image
_FETCHED_ATTRIBUTE = re.compile(r"""(?:\b(?:src|poster)[ \t]*=|\burl\()[ \t]*["']?[ \t]*\Z""", re.IGNORECASE)
_REFERENCE_DEFINITION = re.compile(r"(?m)^[ \t]{0,3}\[([^\]\n]{1,100})\]:[ \t]*<?\Z")
MAX_PIECES = 64  # values examined per URL
TEXT_MIN_CHARS, TEXT_MIN_SPACES = 20, 3
ENCODED_MIN_CHARS = 16


@dataclass(frozen=True, slots=True)
class FoundURL:
    url: str
    start: int
    end: int
    host: str
    fetched: bool  # an image, frame or stylesheet the client loads without a click
    path: str
    query: str
    userinfo: str


@dataclass(frozen=True, slots=True)
class Payload:
    """Why a URL carries data: `kind` is text, encoded or random; `where` names the piece."""

    kind: str
    where: str
    length: int


def find_urls(text: str, limit: int) -> Iterator[FoundURL]:
    """Every URL in text (up to `limit`, and `limit` non-URL "//" skipped), with host and fetch status."""
    fences: list[int] | None = None
    found = skipped = 0
    at = text.find("//")
    while at >= 0 and found < limit and skipped < limit:
        lead = _URL_LEAD.search(text, max(0, at - _LEAD_REACH), at)
        body = _URL_BODY.match(text, at)
        if lead is None or body is None:
            skipped += 1
            at = text.find("//", at + 2)
            continue
        start = lead.start() if lead.group("scheme") else at
        url = text[start : body.end()].rstrip(_TRAILING)
        if fences is None:
            fences = _fence_positions(text)
        inside_code = bisect.bisect_right(fences, start) % 2 == 1
        found += 1
        yield _parse(url, start, fetched=not inside_code and _is_fetched(text, start))
        at = text.find("//", body.end())


def data_in(found: FoundURL, *, random_min_chars: int, random_min_entropy: float) -> Payload | None:
    """The strongest evidence that the URL carries data, or None."""
    pieces = _pieces(found)
    best: Payload | None = None
    for count, (where, raw) in enumerate(pieces):
        if count >= MAX_PIECES:
            break
        value = unquote_plus(raw) if ("%" in raw or "+" in raw) else raw
        kind = _carries(value, random_min_chars, random_min_entropy)
        if kind is None:
            continue
        payload = Payload(kind, where, len(value))
        if best is None or _RANK[kind] > _RANK[best.kind]:
            best = payload
    return best


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """host is an allowed domain or a subdomain of one."""
    while True:
        if host in allowed:
            return True
        dot = host.find(".")
        if dot < 0:
            return False
        host = host[dot + 1 :]


_RANK = {"random": 0, "text": 1, "encoded": 2}


def _carries(value: str, random_min_chars: int, random_min_entropy: float) -> str | None:
    if len(value) >= TEXT_MIN_CHARS and value.count(" ") >= TEXT_MIN_SPACES:
        return "text"
    if len(value) < min(ENCODED_MIN_CHARS, random_min_chars):
        return None
    if len(value) >= ENCODED_MIN_CHARS and decode_payloads(
        value, DecodeBudget(chars_left=4096, attempts_left=4)
    ):
        return "encoded"
    if (
        len(value) >= random_min_chars
        and not is_hex_digest(value)
        and not is_uuid(value)
        and shannon_entropy(value) >= random_min_entropy
    ):
        return "random"
    return None


def _pieces(found: FoundURL) -> list[tuple[str, str]]:
    pieces: list[tuple[str, str]] = []
    if found.userinfo:
        pieces.append(("user info", found.userinfo))
    for part in found.query.replace(";", "&").split("&"):
        name, equals, value = part.partition("=")
        if equals and value:
            pieces.append((f"query value {name[:32]!r}", value))
        elif part:
            pieces.append(("query", part))
    pieces.extend(("path segment", segment) for segment in found.path.split("/") if segment)
    return pieces


def _parse(url: str, start: int, *, fetched: bool) -> FoundURL:
    begin = url.find("//") + 2
    end = len(url)
    for stop in "/?#":
        at = url.find(stop, begin)
        if 0 <= at < end:
            end = at
    authority = url[begin:end]
    userinfo, _, hostport = authority.rpartition("@")
    host = hostport[: hostport.find("]") + 1] if hostport.startswith("[") else hostport.partition(":")[0]
    rest = url[end:].partition("#")[0]
    path, _, query = rest.partition("?")
    return FoundURL(url, start, start + len(url), host.lower().rstrip("."), fetched, path, query, userinfo)


def _is_fetched(text: str, start: int) -> bool:
    before = text[max(0, start - 24) : start]
    stripped = before.rstrip(" \t<")
    if stripped.endswith("]("):
        opening = text.rfind("[", max(0, start - _LOOKBEHIND), start - (len(before) - len(stripped)) - 2)
        return opening > 0 and text[opening - 1] == "!"
    if _FETCHED_ATTRIBUTE.search(before):
        return True
    definition = _REFERENCE_DEFINITION.search(text[max(0, start - 120) : start])
    return definition is not None and _used_as_image(text, definition.group(1))


def _used_as_image(text: str, label: str) -> bool:
    """A reference definition `[label]: url` serves an image when `![...][label]` appears somewhere."""
    needle = f"][{label}]"
    at = text.find(needle)
    for _ in range(MAX_PIECES):  # bounded: a text can repeat one label endlessly
        if at < 0:
            return False
        opening = text.rfind("[", max(0, at - _LOOKBEHIND), at)
        if opening > 0 and text[opening - 1] == "!":
            return True
        at = text.find(needle, at + 1)
    return False


def _fence_positions(text: str) -> list[int]:
    """Offsets of ``` fences: a position is inside a code block when an odd number of fences precede it."""
    positions = []
    at = text.find("```")
    while at >= 0:
        positions.append(at)
        at = text.find("```", at + 3)
    return positions
